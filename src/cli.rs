//! The commands behind `cargo xtask gen|plan|renew|check`, as library functions so that tests drive exactly what
//! users run. Each returns the text to print and, where it matters, whether there is something to act on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::generate::Sealing;
use crate::output::{self, Changes};
use crate::pki::inspect::CertInfo;
use crate::pki::keys::KeySource;
use crate::pki::store::Store;
use crate::pki::{Origin, Policy};
use crate::spec::Cluster;
use std::collections::BTreeMap;

pub const USAGE: &str = "\
cargo xtask gen [--spec FILE] [--out DIR] [--dry-run] [--seed N] [--now YYYY-MM-DDTHH:MM:SSZ]
    Generate the PKI, kubeconfigs and static pod manifests for a cluster spec (default: the embedded demo spec,
    fixtures/demo.yaml) into DIR (default: ./out). On an existing DIR it keeps every CA, key and certificate that
    still matches the spec and reissues the rest; --dry-run only prints the plan.
cargo xtask plan [--spec FILE] [--out DIR]
    What gen would do, per certificate (keep / issue / reissue / remove, with the reason) and per file. Writes
    nothing. Exit status 0: nothing to do; 2: gen would change something.
cargo xtask renew [all|NAME...] [--keep-keys] [--spec FILE] [--out DIR]
    Reissue leaf certificates (by profile name, e.g. apiserver, or store id, e.g. nodes/cp-1/apiserver) with new
    keys (--keep-keys: the same keys), keeping the CAs; every kubeconfig that embeds one is rewritten.
cargo xtask csr [--spec FILE] [--out DIR]
    For CAs given in pki.cas without their key (external CA mode): write a key (into DIR/pki) and a CSR (into
    DIR/csr) for every certificate such a CA must sign, and DIR/csr/SIGNING.md with what the signer must put in.
cargo xtask import-signed SIGNED-DIR [--spec FILE] [--out DIR]
    Take certificates signed by the external CA back (SIGNED-DIR/<id>.crt, ids as in SIGNING.md), check each
    (key, chain, subject, SANs, usages), then generate as gen does.
cargo xtask import-kubeadm KUBERNETES-DIR --node NAME [--spec FILE] [--out DIR]
    Adopt an existing kubeadm node's /etc/kubernetes (CAs, keys, certificates, kubeconfigs' client certificates)
    as node NAME, so later plans and renewals go through kubeforge; then generate as gen does.
cargo xtask check [--out DIR] [--within DURATION] [--format text|json]
    Every certificate kubeforge knows (CAs, kubeconfig client certificates and kubelet certificates included)
    with its expiry, residual time and signer. Exit status 1 when any expires within DURATION (default 30d).
    Reads only public files (certificates and index.json).

--seed and --now make gen reproducible, for tests and demos only: never for a real cluster (the keys are then
predictable).";

/// The options shared by gen, plan and renew.
struct Options {
    spec: Option<PathBuf>,
    out: PathBuf,
    seed: Option<u64>,
    now: Option<time::OffsetDateTime>,
    dry_run: bool,
    policy: Policy,
    /// import-signed / import-kubeadm: the directory to import from.
    source: Option<PathBuf>,
    /// import-kubeadm: which node of the spec the directory belongs to.
    node: Option<String>,
    /// An age identity file for a sealed store (else `$KUBEFORGE_AGE_IDENTITY`).
    identity: Option<PathBuf>,
    /// gen: also write plain copies of this node's secrets (`all`: every node's and the store's).
    materialize: Option<String>,
}

fn parse_options(cmd: &str, args: &[String], allow: &[&str]) -> Result<Options, Error> {
    let mut o = Options {
        spec: None,
        out: PathBuf::from("out"),
        seed: None,
        now: None,
        dry_run: false,
        policy: Policy::default(),
        source: None,
        node: None,
        identity: None,
        materialize: None,
    };
    let usage = || format!("see `cargo xtask help`:\n{USAGE}");
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a.starts_with("--") && !allow.contains(&a) {
            return Err(Error::new(format!("{cmd}: unknown option {a:?}; {}", usage())));
        }
        let mut value = || -> Result<&String, Error> {
            i += 1;
            args.get(i).ok_or_else(|| Error::new(format!("{cmd}: {a} needs a value")))
        };
        match a {
            "--spec" => o.spec = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            "--seed" => {
                let v = value()?;
                o.seed = Some(v.parse().map_err(|_| Error::new(format!("--seed {v:?}: expected a whole number")))?);
            }
            "--now" => {
                let v = value()?;
                o.now = Some(
                    crate::parse_instant(v)
                        .ok_or_else(|| Error::new(format!("--now {v:?}: expected YYYY-MM-DDTHH:MM:SSZ")))?,
                );
            }
            "--dry-run" => o.dry_run = true,
            "--node" => o.node = Some(value()?.clone()),
            "--identity" => o.identity = Some(PathBuf::from(value()?)),
            "--materialize" => o.materialize = Some(value()?.clone()),
            "--keep-keys" => o.policy.keep_keys = true,
            name if cmd == "renew" && !name.starts_with('-') => o.policy.renew.push(name.to_string()),
            path if cmd.starts_with("import") && !path.starts_with('-') && o.source.is_none() => {
                o.source = Some(PathBuf::from(path))
            }
            other => return Err(Error::new(format!("{cmd}: unexpected argument {other:?}; {}", usage()))),
        }
        i += 1;
    }
    Ok(o)
}

fn load_cluster(o: &Options) -> Result<Cluster, Error> {
    Ok(match &o.spec {
        Some(path) => crate::spec::load(path)?,
        None => crate::spec::parse(Path::new("<embedded demo spec: fixtures/demo.yaml>"), crate::DEMO_SPEC)?,
    })
}

/// Everything a run decides, before (or without) writing.
struct Run {
    cluster: Cluster,
    generated: crate::Generated,
    changes: Changes,
}

fn prepare(o: &Options) -> Result<Run, Error> {
    let cluster = load_cluster(o)?;
    let keys = match o.seed {
        Some(s) => KeySource::seeded(s),
        None => KeySource::from_os().map_err(Error::new)?,
    };
    let now = o.now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let (store, sealing) = open_store(&cluster, o)?;
    let generated = crate::generate::generate_with(&cluster, &store, &keys, now, &o.policy, sealing.as_ref())?;
    let changes = output::changes(&generated.tree, &o.out)?;
    Ok(Run { cluster, generated, changes })
}

/// The PKI store of OUT, decrypted in memory when the spec seals secrets and sealed files exist (which needs an
/// identity), and the sealing to apply to this run's output.
fn open_store(cluster: &Cluster, o: &Options) -> Result<(Store, Option<Sealing>), Error> {
    let pki = o.out.join("pki");
    let Some(recipients) = &cluster.sealed_to else {
        if let Some(m) = &o.materialize {
            return Err(Error::new(format!(
                "--materialize {m}: secrets are only sealed with pki.encryption.age in the spec; without it every \
                 file is already written in plain"
            )));
        }
        return Ok((Store::plain(&pki), None));
    };
    if let Some(m) = &o.materialize {
        if m != "all" && !cluster.nodes.iter().any(|n| &n.name == m) {
            return Err(Error::new(format!("--materialize {m:?}: not a node of the spec (or `all`)")));
        }
    }
    let recipients = recipients
        .iter()
        .map(|r| crate::sealed::parse_recipient(r).map_err(Error::new))
        .collect::<Result<Vec<_>, _>>()?;
    let sealed = crate::sealed::sealed_files(&o.out)?;
    let previous = if sealed.is_empty() {
        BTreeMap::new()
    } else {
        let path = crate::sealed::identity_path(o.identity.as_deref()).ok_or_else(|| {
            Error::new(format!(
                "{}/{} holds sealed secrets: give the age identity that opens them with --identity FILE or ${}. \
                 (plan and check also work without one, from public files only.)",
                o.out.display(),
                crate::sealed::SECRETS_DIR,
                crate::sealed::IDENTITY_ENV
            ))
        })?;
        let ids = crate::sealed::load_identities(&path)?;
        crate::sealed::unseal_all(&o.out, &ids)?
    };
    let store = if sealed.is_empty() {
        // A plain store being sealed for the first time (or nothing yet): read it from disk.
        Store::plain(&pki)
    } else {
        let keys = previous
            .iter()
            .filter_map(|(p, (plain, _))| {
                let rel = p.strip_prefix("pki/")?;
                Some((rel.to_string(), String::from_utf8_lossy(plain).into_owned()))
            })
            .collect();
        Store::sealed(&pki, keys)
    };
    Ok((store, Some(Sealing { recipients, previous, materialize: o.materialize.clone() })))
}

/// `gen`: returns the summary to print.
pub fn run_gen(args: &[String]) -> Result<String, Error> {
    let o = parse_options(
        "gen",
        args,
        &["--spec", "--out", "--seed", "--now", "--dry-run", "--identity", "--materialize"],
    )?;
    let run = prepare(&o)?;
    if o.dry_run {
        return Ok(describe(&run, &o.out, true));
    }
    output::apply(&run.generated.tree, &run.changes, &o.out)?;
    Ok(describe(&run, &o.out, false))
}

/// `plan`: the summary, and whether gen would change anything.
pub fn run_plan(args: &[String]) -> Result<(String, bool), Error> {
    let o = parse_options("plan", args, &["--spec", "--out", "--seed", "--now", "--identity"])?;
    let cluster = load_cluster(&o)?;
    let sealed_without_identity = cluster.sealed_to.is_some()
        && !crate::sealed::sealed_files(&o.out)?.is_empty()
        && crate::sealed::identity_path(o.identity.as_deref()).is_none();
    if sealed_without_identity {
        return public_plan(&cluster, &o);
    }
    let run = prepare(&o)?;
    Ok((describe(&run, &o.out, true), !run.changes.is_empty()))
}

/// `renew`: reissue the named leaves (or all) and write.
pub fn run_renew(args: &[String]) -> Result<String, Error> {
    let o = parse_options("renew", args, &["--spec", "--out", "--seed", "--now", "--keep-keys", "--identity"])?;
    if o.policy.renew.is_empty() {
        return Err(Error::new("renew: name the certificates to renew (profile names or store ids), or `all`"));
    }
    let run = prepare(&o)?;
    let known: BTreeSet<&str> = run
        .generated
        .pki
        .certs
        .values()
        .filter(|m| !m.request.profile.usage.is_ca())
        .flat_map(|m| [m.request.id.as_str(), m.request.profile.name])
        .collect();
    for name in &o.policy.renew {
        if name != "all" && !known.contains(name.as_str()) {
            let ca = crate::pki::profile::Profile::by_name(name).is_some_and(|p| p.usage.is_ca());
            let why = if ca {
                "is a CA; kubeforge renews leaves only (a CA rotation is a deliberate, separate step)".to_string()
            } else {
                format!(
                    "is not a leaf certificate of this cluster (known: {})",
                    known.iter().copied().collect::<Vec<_>>().join(", ")
                )
            };
            return Err(Error::new(format!("renew: {name:?} {why}")));
        }
    }
    output::apply(&run.generated.tree, &run.changes, &o.out)?;
    Ok(describe(&run, &o.out, false))
}

/// `csr`: keys and signing requests for every certificate an external CA must sign.
pub fn run_csr(args: &[String]) -> Result<String, Error> {
    let o = parse_options("csr", args, &["--spec", "--out", "--seed", "--now"])?;
    let cluster = load_cluster(&o)?;
    let keys = match o.seed {
        Some(s) => KeySource::seeded(s),
        None => KeySource::from_os().map_err(Error::new)?,
    };
    let now = o.now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let requests = crate::pki::plan::requests(&cluster);
    let cas = crate::pki::external::keyless_cas(&cluster, &requests);
    if cas.is_empty() {
        return Ok(
            "csr: every CA's key is available (no pki.cas entry without key): kubeforge signs everything itself".into(),
        );
    }
    let store = o.out.join("pki");
    let reqs = crate::pki::external::signing_requests(&cluster, &requests, &store, &keys, now)?;
    let mut tree = output::Tree::default();
    let mut rows = Vec::new();
    for r in &reqs {
        let id = &r.request.id;
        tree.add(format!("pki/{id}.key"), r.key_pem.clone(), crate::generate::MODE_SECRET, output::Kind::Key);
        tree.add(format!("csr/{id}.csr"), r.csr_pem.clone(), crate::generate::MODE_SECRET, output::Kind::Csr);
        let signer = cas.iter().find(|(c, _)| Some(c) == r.request.signer.as_ref()).map(|(_, i)| i.subject.clone());
        let subject = match &r.request.o {
            Some(org) => format!("O = {org}, CN = {}", r.request.cn),
            None => format!("CN = {}", r.request.cn),
        };
        let sans: Vec<String> = r
            .request
            .dns
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(r.request.ips.iter().map(|i| format!("IP:{i}")))
            .collect();
        let usage = r.request.profile.usage;
        let eku: Vec<&str> = [(usage.server(), "serverAuth"), (usage.client(), "clientAuth")]
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        rows.push((
            id.clone(),
            signer.unwrap_or_default(),
            subject,
            if sans.is_empty() { "-".into() } else { sans.join(", ") },
            eku.join(", "),
        ));
    }
    let list = crate::render::SigningList {
        cluster: &cluster.name,
        store: store.display().to_string(),
        cas: cas.iter().map(|(id, _)| id.clone()).collect(),
        validity: format!("{}h", cluster.cert_validity / 3600),
        rows,
    };
    use askama::Template;
    tree.add(
        "csr/SIGNING.md",
        crate::render::finish(list.render().expect("signing template")),
        crate::generate::MODE_PUBLIC,
        output::Kind::Inventory,
    );
    let mut changes = output::changes(&tree, &o.out)?;
    changes.remove.clear(); // a partial tree: never remove anything
    output::apply(&tree, &changes, &o.out)?;
    Ok(format!(
        "csr: {} signing request{} in {}/csr for {}; what the signer must add: {}/csr/SIGNING.md",
        reqs.len(),
        if reqs.len() == 1 { "" } else { "s" },
        o.out.display(),
        list.cas.join(", "),
        o.out.display()
    ))
}

/// `import-signed`: check and store certificates an external CA signed, then generate.
pub fn run_import_signed(args: &[String]) -> Result<String, Error> {
    let o = parse_options("import-signed", args, &["--spec", "--out", "--seed", "--now"])?;
    let dir =
        o.source.clone().ok_or_else(|| Error::new("import-signed: name the directory with the signed certificates"))?;
    let cluster = load_cluster(&o)?;
    let now = o.now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let requests = crate::pki::plan::requests(&cluster);
    let cas = crate::pki::external::keyless_cas(&cluster, &requests);
    let store = o.out.join("pki");
    let found = output::files_with_extension(&dir, "crt")?;
    if found.is_empty() {
        return Err(Error::new(format!("import-signed: no .crt files under {}", dir.display())));
    }
    let mut problems = Vec::new();
    let mut tree = output::Tree::default();
    for p in &found {
        let id = p.strip_prefix(&dir).unwrap().with_extension("").to_string_lossy().into_owned();
        let Some(req) = requests.iter().find(|r| r.id == id) else {
            problems.push(format!("{}: {id:?} is not a certificate of this cluster", p.display()));
            continue;
        };
        let Some((_, ca)) = cas.iter().find(|(c, _)| Some(c) == req.signer.as_ref()) else {
            problems
                .push(format!("{}: kubeforge signs {id} itself; it takes back only what csr asked for", p.display()));
            continue;
        };
        let key_path = store.join(format!("{id}.key"));
        let key = std::fs::read_to_string(&key_path)
            .ok()
            .and_then(|k| crate::pki::keys::Key::from_pem(&k).ok())
            .ok_or_else(|| Error::new(format!("{}: no key for {id}; run `cargo xtask csr` first", key_path.display())));
        let key = match key {
            Ok(k) => k,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        let pem = std::fs::read_to_string(p).map_err(|e| Error::new(format!("{}: {e}", p.display())))?;
        let why = crate::pki::external::check_signed(&cluster, req, &pem, &key, ca, now);
        if why.is_empty() {
            tree.add(format!("pki/{id}.crt"), pem, crate::generate::MODE_CERT, output::Kind::Cert);
        } else {
            problems.push(format!("{}: {}", p.display(), why.join("; ")));
        }
    }
    if !problems.is_empty() {
        return Err(Error::new(format!("import-signed: nothing imported:\n  - {}", problems.join("\n  - "))));
    }
    let mut changes = output::changes(&tree, &o.out)?;
    changes.remove.clear();
    output::apply(&tree, &changes, &o.out)?;
    let run = prepare(&o)?;
    output::apply(&run.generated.tree, &run.changes, &o.out)?;
    Ok(format!(
        "imported {} signed certificate{}\n{}",
        found.len(),
        if found.len() == 1 { "" } else { "s" },
        describe(&run, &o.out, false)
    ))
}

/// `import-kubeadm`: adopt a kubeadm node's /etc/kubernetes, then generate.
pub fn run_import_kubeadm(args: &[String]) -> Result<String, Error> {
    let o = parse_options("import-kubeadm", args, &["--spec", "--out", "--seed", "--now", "--node"])?;
    let dir =
        o.source.clone().ok_or_else(|| Error::new("import-kubeadm: name the kubeadm directory (/etc/kubernetes)"))?;
    let node =
        o.node.clone().ok_or_else(|| Error::new("import-kubeadm: --node NAME says which node of the spec it is"))?;
    let cluster = load_cluster(&o)?;
    let tree = crate::import::kubeadm(&cluster, &dir, &node, &o.out.join("pki"))?;
    let n = tree.files.len();
    let mut changes = output::changes(&tree, &o.out)?;
    changes.remove.clear();
    output::apply(&tree, &changes, &o.out)?;
    let run = prepare(&o)?;
    output::apply(&run.generated.tree, &run.changes, &o.out)?;
    Ok(format!("adopted {n} files of {} as node {node}\n{}", dir.display(), describe(&run, &o.out, false)))
}

/// `plan` for a sealed store without its identity: certificate by certificate, from the public certificates
/// alone (what would be kept, issued, reissued and why). File-level changes need the secrets and are not listed.
fn public_plan(cluster: &Cluster, o: &Options) -> Result<(String, bool), Error> {
    let now = o.now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let requests = crate::pki::plan::requests(cluster);
    let store = o.out.join("pki");
    let read = |id: &str| {
        std::fs::read_to_string(store.join(format!("{id}.crt"))).ok().and_then(|p| CertInfo::from_pem(&p).ok())
    };
    let mut lines = Vec::new();
    let (mut kept, mut todo) = (0, false);
    for r in requests.iter().filter(|r| !r.profile.usage.is_ca()) {
        let ca = r.signer.as_deref().and_then(read);
        match (read(&r.id), ca) {
            (Some(info), Some(ca)) => {
                let why = crate::pki::differences(cluster, r, &info, &ca, now);
                if why.is_empty() {
                    kept += 1;
                } else {
                    todo = true;
                    lines.push(format!("    reissue  {} — {}", r.id, why.join("; ")));
                }
            }
            _ => {
                todo = true;
                lines.push(format!("    issue    {} — new", r.id));
            }
        }
    }
    let mut s = format!(
        "kubeforge plan (public files only: no age identity given): cluster {:?} ({})\n  certificates: {kept} kept, {} to be issued\n",
        cluster.name,
        cluster.version,
        lines.len()
    );
    for l in &lines {
        s += l;
        s.push('\n');
    }
    s += "  files: not compared (the secrets are sealed; give --identity to see every file)";
    Ok((s, todo))
}

fn describe(run: &Run, out: &Path, dry_run: bool) -> String {
    let c = &run.cluster;
    let mut s = String::new();
    let cps = c.nodes.iter().filter(|n| n.is_control_plane()).count();
    let workers = c.nodes.len() - cps;
    s += &format!(
        "kubeforge{}: cluster {:?} ({}), {} nodes ({cps} control plane, {workers} worker{}), {}\n",
        if dry_run { " plan" } else { "" },
        c.name,
        c.version,
        c.nodes.len(),
        if workers == 1 { "" } else { "s" },
        c.key_algorithm.name()
    );
    let certs = &run.generated.pki.certs;
    let verb = |o: Origin| match (o, dry_run) {
        (Origin::Kept, _) => "keep",
        (Origin::Issued, true) => "issue",
        (Origin::Issued, false) => "issued",
        (Origin::Reissued, true) => "reissue",
        (Origin::Reissued, false) => "reissued",
    };
    let cas: Vec<String> = certs
        .values()
        .filter(|m| m.request.profile.usage.is_ca())
        .map(|m| {
            let how = match c.provided_cas.get(m.request.profile.name) {
                Some(p) if p.key_pem.is_none() => "provided, external: no key",
                Some(_) => "provided",
                None if m.origin == Origin::Kept => "kept",
                None => "created",
            };
            format!("{} ({how})", m.request.id)
        })
        .collect();
    s += &format!("  CAs: {}\n", cas.join(", "));
    let kept = certs.values().filter(|m| !m.request.profile.usage.is_ca() && m.origin == Origin::Kept).count();
    let fresh: Vec<&crate::pki::Material> =
        certs.values().filter(|m| !m.request.profile.usage.is_ca() && m.origin != Origin::Kept).collect();
    s += &format!("  certificates: {kept} kept, {} {}issued\n", fresh.len(), if dry_run { "to be " } else { "" });
    for m in &fresh {
        let why = if m.reasons.is_empty() { "new".to_string() } else { m.reasons.join("; ") };
        s += &format!("    {:<8} {} — {why}\n", verb(m.origin), m.request.id);
    }
    for p in run.changes.remove.iter().filter_map(|p| p.strip_prefix("pki/")?.strip_suffix(".crt")) {
        s += &format!("    {:<8} {p} — no longer in the spec\n", if dry_run { "remove" } else { "removed" });
    }
    s += &format!(
        "  service-account key: {}\n",
        if run.generated.pki.sa.origin == Origin::Kept { "kept" } else { "created" }
    );
    let ch = &run.changes;
    if ch.is_empty() {
        s += &format!("  {}: nothing to do: all {} files are up to date\n", out.display(), ch.unchanged);
    } else {
        s += &format!(
            "  {}: {} file{} {}written, {} {}removed, {} unchanged\n",
            out.display(),
            ch.write.len(),
            if ch.write.len() == 1 { "" } else { "s" },
            if dry_run { "to be " } else { "" },
            ch.remove.len(),
            if dry_run { "to be " } else { "" },
            ch.unchanged
        );
        if dry_run {
            for p in &ch.write {
                s += &format!("    write   {p}\n");
            }
            for p in &ch.remove {
                s += &format!("    remove  {p}\n");
            }
        }
    }
    if !dry_run {
        s += &format!(
            "  next: copy {0}/nodes/<node>/ onto each node's /, then apply {0}/bootstrap/ once with super-admin.conf",
            out.display()
        );
    }
    s.trim_end().to_string()
}

/// One row of `check`.
pub struct Expiry {
    pub name: String,
    pub is_ca: bool,
    pub subject: String,
    pub signer: String,
    pub not_after: time::OffsetDateTime,
    pub residual_seconds: i64,
    pub within: bool,
}

/// `check`: the report, and whether any certificate expires within the window.
pub fn run_check(args: &[String]) -> Result<(String, bool), Error> {
    let (mut out, mut within, mut json) = (PathBuf::from("out"), 30 * 86400i64, false);
    let mut now = time::OffsetDateTime::now_utc();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let v = args.get(i + 1).ok_or_else(|| Error::new(format!("check: {a} needs a value; see `cargo xtask help`")));
        match a {
            "--out" => out = PathBuf::from(v?),
            "--within" => {
                let v = v?;
                within = parse_window(v).ok_or_else(|| {
                    Error::new(format!("--within {v:?}: expected a duration such as 30d, 720h or 90m"))
                })?;
            }
            "--format" => {
                json = match v?.as_str() {
                    "json" => true,
                    "text" => false,
                    other => return Err(Error::new(format!("--format {other:?}: expected text or json"))),
                }
            }
            "--now" => {
                let v = v?;
                now = crate::parse_instant(v)
                    .ok_or_else(|| Error::new(format!("--now {v:?}: expected YYYY-MM-DDTHH:MM:SSZ")))?;
            }
            other => return Err(Error::new(format!("check: unexpected argument {other:?}; see `cargo xtask help`"))),
        }
        i += 2;
    }
    let rows = expiries(&out, now, within)?;
    let any = rows.iter().any(|r| r.within);
    Ok((if json { expiries_json(&rows) } else { expiries_text(&rows, within) }, any))
}

/// `30d`, `720h`, `90m`, `45s`, or a Go duration of h/m/s.
fn parse_window(s: &str) -> Option<i64> {
    if let Some(d) = s.strip_suffix('d') {
        return d.parse::<i64>().ok().filter(|d| *d >= 0).map(|d| d * 86400);
    }
    if s == "0" {
        return Some(0);
    }
    crate::spec::parse_duration(s)
}

/// Every certificate in the store (`OUT/pki/**.crt`), plus CAs that only the index knows (an external etcd CA).
pub fn expiries(out: &Path, now: time::OffsetDateTime, within: i64) -> Result<Vec<Expiry>, Error> {
    let store = out.join("pki");
    if !store.is_dir() {
        return Err(Error::new(format!(
            "{}: no PKI store here; run `cargo xtask gen --out {}` first",
            store.display(),
            out.display()
        )));
    }
    let mut found: Vec<(String, String)> = Vec::new();
    for p in output::files_with_extension(&store, "crt")? {
        let rel = p.strip_prefix(&store).unwrap().with_extension("");
        let pem = std::fs::read_to_string(&p).map_err(|e| Error::new(format!("{}: {e}", p.display())))?;
        found.push((rel.to_string_lossy().into_owned(), pem));
    }
    // CAs kubeforge installs but does not keep in its store (etcd.external.clientCA), from the index.
    if let Ok(text) = std::fs::read_to_string(out.join("index.json")) {
        let index: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::new(format!("{}: {e}", out.join("index.json").display())))?;
        let mut seen = BTreeSet::new();
        for f in index["files"].as_array().into_iter().flatten() {
            if f["kind"] == "ca-cert" && f["certificate"]["profile"].is_null() {
                let path = f["path"].as_str().unwrap_or_default();
                if let Ok(pem) = std::fs::read_to_string(out.join(path)) {
                    if seen.insert(f["sha256"].to_string()) {
                        found.push(("external-etcd-ca".into(), pem));
                    }
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (name, pem) in found {
        let info = CertInfo::from_pem(&pem).map_err(|e| Error::new(format!("{name}: {e}")))?;
        let residual = (info.not_after - now).whole_seconds();
        rows.push(Expiry {
            name,
            is_ca: info.is_ca,
            signer: info.issuer.clone(),
            subject: info.subject,
            not_after: info.not_after,
            residual_seconds: residual,
            within: residual <= within,
        });
    }
    rows.sort_by(|a, b| (a.is_ca, &a.name).cmp(&(b.is_ca, &b.name)));
    Ok(rows)
}

fn residual(seconds: i64) -> String {
    if seconds <= 0 {
        return "EXPIRED".into();
    }
    let days = seconds / 86400;
    if days >= 365 {
        format!("{}y {}d", days / 365, days % 365)
    } else if days > 0 && seconds % 86400 < 3600 {
        format!("{days}d")
    } else if days > 0 {
        format!("{days}d {}h", (seconds % 86400) / 3600)
    } else {
        format!("{}h {}m", seconds / 3600, (seconds % 3600) / 60)
    }
}

fn expiries_text(rows: &[Expiry], within: i64) -> String {
    let mut s = String::new();
    for (title, ca) in [("CERTIFICATE", false), ("CERTIFICATE AUTHORITY", true)] {
        let part: Vec<&Expiry> = rows.iter().filter(|r| r.is_ca == ca).collect();
        if part.is_empty() {
            continue;
        }
        let w = part.iter().map(|r| r.name.len()).max().unwrap_or(0).max(title.len());
        s += &format!("{title:<w$}  {:<20}  {:<13}  SIGNER\n", "EXPIRES", "RESIDUAL TIME");
        for r in part {
            s += &format!(
                "{:<w$}  {:<20}  {:<13}  {}{}\n",
                r.name,
                crate::index::rfc3339(r.not_after),
                residual(r.residual_seconds),
                r.signer,
                if r.within { "  <- expires within the window" } else { "" }
            );
        }
        s.push('\n');
    }
    let n = rows.iter().filter(|r| r.within).count();
    s += &if n == 0 {
        format!("all {} certificates are valid for more than {}", rows.len(), residual(within))
    } else {
        format!("{n} of {} certificates expire within {}: run `cargo xtask renew`", rows.len(), residual(within))
    };
    s
}

fn expiries_json(rows: &[Expiry]) -> String {
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "isCa": r.is_ca,
                "subject": r.subject,
                "signer": r.signer,
                "notAfter": crate::index::rfc3339(r.not_after),
                "residualSeconds": r.residual_seconds,
                "expiresWithinWindow": r.within,
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).expect("json")
}
