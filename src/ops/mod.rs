//! The operations behind the command line: each a function from typed inputs to a typed report
//! ([`report`]), built from one [`Context`] (the cluster, OUT, the store and its sealing, the key source, the
//! clock). The command line (`crate::cli`) only parses arguments, prints a report and maps it to an exit code;
//! the tests and the benchmark call these functions and read the reports.

pub mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::Error;
use crate::generate::{Generated, generate_unindexed};
use crate::layout;
use crate::output::{self, Changes, Kind, Tree};
pub use crate::pki::Progress;
use crate::pki::inspect::CertInfo;
use crate::pki::keys::KeySource;
use crate::pki::store::Store;
use crate::pki::{Origin, Policy};
use crate::sealed::Sealing;
use crate::spec::Cluster;
use report::{
    Action, CaLine, CaOrigin, CertLine, CheckReport, ClusterSummary, CsrReport, Expiry, FileChanges, Imported,
    RotationLine, RunReport, Upgrade,
};

/// What every command that reads a spec may be given.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The cluster spec; `None`: the embedded demo spec (fixtures/demo.yaml).
    pub spec: Option<PathBuf>,
    pub out: PathBuf,
    /// A fixed key source, for tests and demos only: never for a real cluster (the keys are then predictable).
    pub seed: Option<u64>,
    /// A fixed clock, for tests and demos.
    pub now: Option<OffsetDateTime>,
    /// An age identity file for a sealed store (else `$KUBEFORGE_AGE_IDENTITY`).
    pub identity: Option<PathBuf>,
}

impl Options {
    pub fn new(spec: Option<&Path>, out: &Path) -> Options {
        Options { spec: spec.map(Path::to_path_buf), out: out.to_path_buf(), ..Options::default() }
    }

    /// Reads and validates the spec, checks the clock, and sets up the key source.
    pub fn load(&self) -> Result<Context, Error> {
        large_blocks_back_to_the_system();
        crate::timing::mark("start");
        let cluster = load_spec(self.spec.as_deref())?;
        let keys = match self.seed {
            Some(s) => KeySource::seeded(s),
            None => KeySource::from_os().map_err(Error::new)?,
        };
        crate::timing::mark("spec");
        let now = self.now.unwrap_or_else(OffsetDateTime::now_utc).replace_nanosecond(0).expect("valid");
        Ok(Context { cluster, out: self.out.clone(), keys, now, identity: self.identity.clone(), progress: None })
    }
}

/// Reads and validates a spec (`None`: the embedded demo spec).
pub fn load_spec(spec: Option<&Path>) -> Result<Cluster, Error> {
    Ok(match spec {
        Some(path) => crate::spec::load(path)?,
        None => crate::spec::parse(Path::new("<embedded demo spec: fixtures/demo.yaml>"), crate::DEMO_SPEC)?,
    })
}

/// `images`: every image the nodes of `cluster` pull (kubeadm's `config images list`): the static pods'
/// images, the sandbox image, and the two add-ons kubeadm lists (kube-proxy, CoreDNS) that kubeforge does not
/// deploy. The static pods' images are read from the manifests as rendered, patches included.
pub fn images(cluster: &Cluster) -> Result<report::ImagesReport, Error> {
    use report::ImageLine;
    let node = cluster.nodes.iter().find(|n| n.is_control_plane()).expect("validated: a control-plane node");
    let pods = crate::render::manifests::pods(cluster, node, true)
        .map_err(|p| Error::new(format!("{}: {}", p.path, p.message)))?;
    let mut static_pods: Vec<(&'static str, String)> = Vec::new();
    for pod in &pods {
        let doc: serde_yaml::Value = serde_yaml::from_str(&pod.text).expect("kubeforge's own YAML");
        for ctr in doc["spec"]["containers"].as_sequence().into_iter().flatten() {
            if let Some(image) = ctr["image"].as_str() {
                static_pods.push((pod.name, image.to_string()));
            }
        }
    }
    // kubeadm's order: apiserver, controller-manager, scheduler, proxy, coredns, pause, etcd.
    let order = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
    let mut images: Vec<ImageLine> = Vec::new();
    let line = |image: String, component, source, nodes| ImageLine { image, component, source, nodes };
    for name in order {
        for (_, image) in static_pods.iter().filter(|(n, _)| *n == name) {
            images.push(line(image.clone(), name, "static-pod", "control-plane"));
        }
    }
    let version = cluster.version.to_string();
    images.push(line(cluster.image("kube-proxy", &version), "kube-proxy", "addon", "every-node"));
    // kubeadm keeps CoreDNS's own path under the default registry, and drops it under any other.
    let coredns = if cluster.image_repository == crate::spec::DEFAULT_REGISTRY {
        cluster.image("coredns/coredns", cluster.facts().coredns)
    } else {
        cluster.image("coredns", cluster.facts().coredns)
    };
    images.push(line(coredns, "coredns", "addon", "every-node"));
    images.push(line(crate::render::kubelet::pause_image(cluster), "pause", "sandbox", "every-node"));
    for (_, image) in static_pods.iter().filter(|(n, _)| *n == "etcd") {
        images.push(line(image.clone(), "etcd", "static-pod", "control-plane"));
    }
    Ok(report::ImagesReport {
        api_version: report::API_VERSION,
        kind: "ImagesReport",
        kubernetes_version: version,
        image_repository: cluster.image_repository.clone(),
        images,
    })
}

/// Everything an operation works from.
pub struct Context {
    pub cluster: Cluster,
    pub out: PathBuf,
    pub keys: KeySource,
    pub now: OffsetDateTime,
    pub identity: Option<PathBuf>,
    /// Told how many certificates are issued, one by one (the command line's progress bar); `None`: nothing is.
    pub progress: Option<Arc<dyn Progress>>,
}

/// `gen`'s own options.
#[derive(Debug, Clone, Default)]
pub struct GenOptions {
    /// Only say what would change (`gen --dry-run`, the same as `plan`).
    pub dry_run: bool,
    /// Also write plain copies of the secrets of this node (`all`: every node and the store) of a sealed store.
    pub materialize: Option<String>,
}

/// A run decided but not written.
struct Run {
    generated: Generated,
    changes: Changes,
    upgrade: Option<Upgrade>,
}

impl Context {
    /// Checks that certificates issued now fit in what X.509 can encode, CA validity included.
    fn check_clock(&self) -> Result<(), Error> {
        let (first, last) = crate::times::x509_range();
        let now = self.now;
        let fits = now - crate::pki::BACKDATE >= first
            && now.checked_add(time::Duration::seconds(self.cluster.ca_validity)).is_some_and(|end| end <= last);
        if !fits {
            return Err(Error::new(format!(
                "the clock says {}: certificates issued then (valid from 5 minutes before, CAs for pki.caValidity \
                 {}h) would not fit in the dates X.509 can write ({} to {}); check the system clock or --now",
                crate::times::rfc3339(now),
                self.cluster.ca_validity / 3600,
                crate::times::rfc3339(first),
                crate::times::rfc3339(last)
            )));
        }
        Ok(())
    }

    /// The store of OUT, decrypted in memory when the spec seals secrets and sealed files exist (which needs an
    /// identity), with what earlier runs proved about it, and the sealing to apply to this run's output.
    fn open_store(&self, materialize: Option<&str>) -> Result<(Store, Option<Sealing>), Error> {
        let (store, sealing) = self.open_store_plain(materialize)?;
        Ok((store.with_record(crate::pki::verified::Record::load(&self.out)), sealing))
    }

    fn open_store_plain(&self, materialize: Option<&str>) -> Result<(Store, Option<Sealing>), Error> {
        let pki = self.out.join(layout::STORE);
        let Some(recipients) = &self.cluster.sealed_to else {
            if let Some(m) = materialize {
                return Err(Error::new(format!(
                    "--materialize {m}: secrets are only sealed with pki.encryption.age in the spec; without it every \
                     file is already written in plain"
                )));
            }
            return Ok((Store::plain(&pki), None));
        };
        if let Some(m) = materialize
            && m != "all"
            && !self.cluster.nodes.iter().any(|n| n.name == m)
        {
            return Err(Error::new(format!("--materialize {m:?}: not a node of the spec (or `all`)")));
        }
        let recipients = recipients
            .iter()
            .map(|r| crate::sealed::parse_recipient(r).map_err(Error::new))
            .collect::<Result<Vec<_>, _>>()?;
        let sealed = crate::sealed::sealed_files(&self.out)?;
        if sealed.is_empty() {
            // A plain store being sealed for the first time (or nothing yet): read it from disk.
            let sealing = Sealing { recipients, previous: BTreeMap::new(), materialize: materialize.map(String::from) };
            return Ok((Store::plain(&pki), Some(sealing)));
        }
        let path = self.identity_path().ok_or_else(|| {
            Error::new(format!(
                "{}/{} holds sealed secrets: give the age identity that opens them with --identity FILE or ${}. \
                 (plan and check also work without one, from public files only.)",
                self.out.display(),
                crate::sealed::SECRETS_DIR,
                crate::sealed::IDENTITY_ENV
            ))
        })?;
        let ids = crate::sealed::load_identities(&path)?;
        let previous = crate::sealed::unseal_all(&self.out, &ids)?;
        let keys = previous
            .iter()
            .filter_map(|(p, (plain, _))| {
                let rel = p.strip_prefix(&format!("{}/", layout::STORE))?;
                Some((rel.to_string(), String::from_utf8_lossy(plain).into_owned()))
            })
            .collect();
        let sealing = Sealing { recipients, previous, materialize: materialize.map(String::from) };
        Ok((Store::sealed(&pki, keys), Some(sealing)))
    }

    fn identity_path(&self) -> Option<PathBuf> {
        crate::sealed::identity_path(self.identity.as_deref())
    }

    /// Why only a public-only plan can be made, if so: the secrets are sealed and no identity is given, or OUT
    /// holds certificates but no private key at all (a clone of its committed half).
    fn public_only(&self) -> Result<Option<String>, Error> {
        let store = Store::plain(&self.out.join(layout::STORE));
        if self.cluster.sealed_to.is_some() {
            let sealed = !crate::sealed::sealed_files(&self.out)?.is_empty();
            return Ok((sealed && self.identity_path().is_none()).then(|| "no age identity given".to_string()));
        }
        let has_certs = store.exists(&layout::store_crt("ca"));
        Ok((has_certs && !store.has_private_material())
            .then(|| "no private keys in OUT, as in a clone of its committed half".to_string()))
    }

    /// Generates the tree and compares it with OUT. With `staging` (a command that writes), every file that changes
    /// is staged as soon as it is compared; then every file's bytes are released before the index is rendered, so
    /// that a run holds the tree or the index, never both (at 10,000 nodes each is 100 to 150 MB).
    fn prepare(
        &self,
        store: &Store,
        sealing: Option<&Sealing>,
        policy: &Policy,
        staging: Option<&mut crate::txn::Staging>,
    ) -> Result<Run, Error> {
        self.check_clock()?;
        let upgrade = self.version_change()?;
        crate::timing::mark("previous version");
        let progress = self.progress.as_deref().map(|p| p as &dyn Progress);
        // Each node's files are compared, staged and released as soon as they are rendered.
        let staging = std::sync::Mutex::new(staging);
        let found = std::sync::Mutex::new(Changes::default());
        let settle = |t: &mut Tree| -> Result<(), Error> {
            let c = output::compare(t, &self.out, |_, _| true)?;
            crate::txn::Staging::stage_shared(&staging, t, &c.write)?;
            t.release_all();
            found.lock().expect("no comparer panics holding it").merge(c);
            Ok(())
        };
        let mut generated =
            generate_unindexed(&self.cluster, store, &self.keys, self.now, policy, sealing, progress, Some(&settle))?;
        let mut changes = found.into_inner().expect("no comparer panicked");
        changes.merge(output::compare(&generated.tree, &self.out, |_, e| !e.released())?);
        crate::timing::mark("compare with OUT");
        if let Some(staging) = staging.into_inner().expect("no stager panicked") {
            staging.stage(&generated.tree, &changes.write)?;
            crate::timing::mark("stage files");
        }
        generated.tree.release_all();
        crate::generate::index(&mut generated.tree, &self.cluster);
        let index = output::compare(&generated.tree, &self.out, |p, _| p == layout::INDEX)?;
        changes.write.extend(index.write);
        changes.unchanged += index.unchanged;
        output::removals(&generated.tree, &self.out, &mut changes)?;
        crate::timing::mark("compare the index");
        Ok(Run { generated, changes, upgrade })
    }

    /// Writes the run's changes as one transaction (what `prepare` staged, then the rest), then what it proved about
    /// the store for the next run (a cache: failing to write it costs the next run time, never correctness, so it
    /// is not an error).
    fn commit(&self, staging: crate::txn::Staging, run: &mut Run, store: &Store) -> Result<(), Error> {
        staging.commit(&run.generated.tree, &run.changes)?;
        // Written: the index's 10 MB per 1,000 nodes are not needed beyond its digest.
        if let Some(index) = run.generated.tree.files.get_mut(layout::INDEX) {
            index.release();
        }
        let _ = crate::pki::verified::save(&self.out, store.record(), &run.generated.pki.record_lines());
        crate::timing::mark("verification record");
        if run.changes.write.iter().any(|p| p == layout::INDEX) {
            let _ = output::save_paths(&self.out, &run.generated.tree);
            crate::timing::mark("path list");
        }
        Ok(())
    }

    /// The Kubernetes version OUT was last generated for (its index.json), if any.
    fn previous_version(&self) -> Result<Option<(u32, u32)>, Error> {
        let path = self.out.join(layout::INDEX);
        if !path.is_file() {
            return Ok(None);
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head {
            kubernetes_version: String,
        }
        // kubeforge writes the version before the file list: read just that head where the file is as written (at
        // 1,000 nodes the whole index is 10 MB of JSON), the whole document otherwise.
        let head = index_head(&path).and_then(|text| {
            let i = text.find("\n  \"files\": ")?;
            serde_json::from_str::<Head>(&format!("{}\n}}", text[..i].trim_end_matches(','))).ok()
        });
        let head = match head {
            Some(h) => h,
            None => {
                let text = crate::input::read_text(&path, "index.json", crate::input::FILE_LIMIT)?;
                serde_json::from_str(&text).map_err(|e| {
                    Error::new(format!("{}: not a kubeforge index ({e}); move it away to continue", path.display()))
                })?
            }
        };
        let v = &head.kubernetes_version;
        let parsed = v
            .strip_prefix("v1.")
            .and_then(|r| r.split_once('.'))
            .and_then(|(m, p)| Some((m.parse().ok()?, p.parse().ok()?)));
        parsed
            .map(Some)
            .ok_or_else(|| Error::new(format!("{}: kubernetesVersion {v:?} is not v1.MINOR.PATCH", path.display())))
    }

    /// A change of `kubernetesVersion` against what OUT holds: an upgrade of one minor (or a newer patch) is a
    /// plan like any other; a skipped minor or a downgrade is refused, as kubeadm refuses them.
    fn version_change(&self) -> Result<Option<Upgrade>, Error> {
        let Some((minor, patch)) = self.previous_version()? else { return Ok(None) };
        let v = self.cluster.version;
        let from = format!("v1.{minor}.{patch}");
        if (v.minor, v.patch) == (minor, patch) {
            return Ok(None);
        }
        if (v.minor, v.patch) < (minor, patch) {
            return Err(Error::new(format!(
                "kubernetesVersion {v} is older than {from}, which {} was generated for: downgrades are not supported \
                 (kubeadm refuses them too; etcd's data and the API objects may already be in the newer format). Set \
                 kubernetesVersion back to {from} or later.",
                self.out.display()
            )));
        }
        if v.minor > minor + 1 {
            return Err(Error::new(format!(
                "kubernetesVersion {v} skips v1.{} from {from}: the control plane is upgraded one minor at a time \
                 (kubeadm's rule and the version skew policy). Set kubernetesVersion to the newest v1.{}.x, roll \
                 that out, then move on to {v}.",
                minor + 1,
                minor + 1
            )));
        }
        Ok(Some(Upgrade { from, to: v.to_string() }))
    }

    /// What every run says: a version past upstream support, secure defaults the spec's customization turns off.
    fn warnings(&self) -> Vec<String> {
        self.cluster.facts().support_warning().into_iter().chain(self.cluster.warnings.iter().cloned()).collect()
    }

    /// `plan`: what `gen` would change and why; writes nothing and needs no private key.
    pub fn plan(&self) -> Result<RunReport, Error> {
        let _read = crate::txn::read_lock(&self.out)?;
        if let Some(reason) = self.public_only()? {
            return self.public_plan(reason);
        }
        let (store, sealing) = self.open_store(None)?;
        let run = self.prepare(&store, sealing.as_ref(), &Policy::default(), None)?;
        let r = self.report("plan", &run, false, None);
        dispose(run);
        Ok(r)
    }

    /// `gen`: generate (or, with `dry_run`, plan) and write.
    pub fn apply(&self, o: &GenOptions) -> Result<RunReport, Error> {
        if o.dry_run && o.materialize.is_none() {
            let mut r = self.plan()?;
            r.command = "gen";
            return Ok(r);
        }
        let lock = if o.dry_run { None } else { Some(crate::txn::lock(&self.out)?) };
        let (store, sealing) = self.open_store(o.materialize.as_deref())?;
        let mut staging = lock.as_ref().map(crate::txn::Staging::new);
        let mut run = self.prepare(&store, sealing.as_ref(), &Policy::default(), staging.as_mut())?;
        if let Some(staging) = staging {
            self.commit(staging, &mut run, &store)?;
        }
        let r = self.report("gen", &run, !o.dry_run, None);
        dispose(run);
        Ok(r)
    }

    /// `renew`: reissue the named leaves (profile names, store ids, or `all`), keeping the CAs.
    pub fn renew(&self, names: &[String], keep_keys: bool) -> Result<RunReport, Error> {
        if names.is_empty() {
            return Err(Error::new("renew: name the certificates to renew (profile names or store ids), or `all`"));
        }
        let requests = crate::pki::plan::requests(&self.cluster);
        let known: BTreeSet<&str> = requests
            .iter()
            .filter(|r| !r.profile.usage.is_ca())
            .flat_map(|r| [r.id.as_str(), r.profile.name])
            .collect();
        for name in names {
            if name != "all" && !known.contains(name.as_str()) {
                let ca = crate::pki::profile::Profile::by_name(name).is_some_and(|p| p.usage.is_ca());
                let why = if ca {
                    "is a CA; kubeforge renews leaves only (a CA is rotated in stages: pki.rotation.<name>: add, then switch, then remove)"
                        .to_string()
                } else {
                    format!(
                        "is not a leaf certificate of this cluster (known: {})",
                        known.iter().copied().collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(Error::new(format!("renew: {name:?} {why}")));
            }
        }
        let policy = Policy { renew: names.to_vec(), keep_keys };
        let lock = crate::txn::lock(&self.out)?;
        let (store, sealing) = self.open_store(None)?;
        let mut staging = crate::txn::Staging::new(&lock);
        let mut run = self.prepare(&store, sealing.as_ref(), &policy, Some(&mut staging))?;
        self.commit(staging, &mut run, &store)?;
        Ok(self.report("renew", &run, true, None))
    }

    /// `csr`: keys (into the store) and signing requests (into OUT/csr) for every certificate a CA given without
    /// its key must sign, and OUT/csr/SIGNING.md saying what the signer must put in.
    pub fn csr(&self) -> Result<CsrReport, Error> {
        use askama::Template;
        let requests = crate::pki::plan::requests(&self.cluster);
        let cas = crate::pki::external::keyless_cas(&self.cluster, &requests);
        let mut report = CsrReport {
            api_version: report::API_VERSION,
            kind: "CsrReport",
            out: self.out.display().to_string(),
            cas: cas.iter().map(|(id, _)| id.clone()).collect(),
            requests: Vec::new(),
            signing_guide: None,
        };
        if cas.is_empty() {
            return Ok(report);
        }
        let lock = crate::txn::lock(&self.out)?;
        let (store, _) = self.open_store(None)?;
        if store.is_sealed() {
            return Err(Error::new(
                "csr: works on a plain store; pki.encryption.age is not supported with external CAs",
            ));
        }
        let reqs = crate::pki::external::signing_requests(&self.cluster, &requests, &store, &self.keys, self.now)?;
        let mut tree = Tree::default();
        let mut rows = Vec::new();
        for r in &reqs {
            let id = &r.request.id;
            tree.add(layout::in_store(&layout::store_key(id)), r.key_pem.clone(), Kind::Key);
            tree.add(format!("{}/{id}.csr", layout::CSR_DIR), r.csr_pem.clone(), Kind::Csr);
            let signer = cas.iter().find(|(c, _)| Some(c) == r.request.signer.as_ref()).map(|(_, i)| i.subject.clone());
            let sans: Vec<String> = r.request.sans();
            rows.push((
                id.clone(),
                signer.unwrap_or_default(),
                r.request.subject(),
                if sans.is_empty() { "-".into() } else { sans.join(", ") },
                r.request.ext_key_usage().join(", "),
            ));
            report.requests.push(id.clone());
        }
        let list = crate::render::SigningList {
            cluster: &self.cluster.name,
            store: store.dir.display().to_string(),
            cas: report.cas.clone(),
            validity: format!("{}h", self.cluster.cert_validity / 3600),
            key_usage: crate::pki::key_usages(self.cluster.key_algorithm)
                .iter()
                .map(|u| u.0)
                .collect::<Vec<_>>()
                .join(", "),
            rows,
        };
        let guide = format!("{}/SIGNING.md", layout::CSR_DIR);
        tree.add(guide.clone(), crate::render::finish(list.render().expect("signing template")), Kind::Inventory);
        report.signing_guide = Some(guide);
        let mut changes = output::changes(&tree, &self.out)?;
        changes.remove.clear(); // a partial tree: never remove anything
        crate::txn::commit(&lock, &tree, &changes)?;
        Ok(report)
    }

    /// `import-signed`: check the certificates an external CA signed (`DIR/<id>.crt`), then generate with them,
    /// all in one run: nothing is imported unless everything is.
    pub fn import_signed(&self, dir: &Path) -> Result<RunReport, Error> {
        let requests = crate::pki::plan::requests(&self.cluster);
        let cas = crate::pki::external::keyless_cas(&self.cluster, &requests);
        let lock = crate::txn::lock(&self.out)?;
        let (store, sealing) = self.open_store(None)?;
        let found = crate::input::files_with_extension(dir, "crt")?;
        if found.is_empty() {
            return Err(Error::new(format!("import-signed: no .crt files under {}", dir.display())));
        }
        let mut problems = Vec::new();
        let mut overlay = BTreeMap::new();
        for p in &found {
            let id = p.strip_prefix(dir).expect("below dir").with_extension("").to_string_lossy().into_owned();
            let Some(req) = requests.iter().find(|r| r.id == id) else {
                problems.push(format!("{}: {id:?} is not a certificate of this cluster", p.display()));
                continue;
            };
            let Some((_, ca)) = cas.iter().find(|(c, _)| Some(c) == req.signer.as_ref()) else {
                problems.push(format!(
                    "{}: kubeforge signs {id} itself; it takes back only what csr asked for",
                    p.display()
                ));
                continue;
            };
            let key_rel = layout::store_key(&id);
            let key = if store.exists(&key_rel) {
                store.read_private(&key_rel).and_then(|k| crate::pki::keys::Key::from_pem(&k).map_err(Error::new))
            } else {
                Err(Error::new(format!("{}: no key for {id}; run `cargo xtask csr` first", store.show(&key_rel))))
            };
            let key = match key {
                Ok(k) => k,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            let pem = crate::input::read_text(p, "import-signed", crate::input::PEM_LIMIT)?;
            let why = crate::pki::external::check_signed(&self.cluster, req, &pem, &key, ca, self.now);
            if why.is_empty() {
                overlay.insert(layout::store_crt(&id), pem);
            } else {
                problems.push(format!("{}: {}", p.display(), why.join("; ")));
            }
        }
        if !problems.is_empty() {
            return Err(Error::new(format!("import-signed: nothing imported:\n  - {}", problems.join("\n  - "))));
        }
        let imported =
            Imported { source: dir.display().to_string(), node: None, files: overlay.keys().cloned().collect() };
        let store = store.with_overlay(overlay);
        let mut staging = crate::txn::Staging::new(&lock);
        let mut run = self.prepare(&store, sealing.as_ref(), &Policy::default(), Some(&mut staging))?;
        self.commit(staging, &mut run, &store)?;
        Ok(self.report("import-signed", &run, true, Some(imported)))
    }

    /// `import-kubeadm`: adopt a kubeadm node's /etc/kubernetes (CAs, keys, certificates, the kubeconfigs' client
    /// certificates) as node `node`, then generate, in one run.
    pub fn import_kubeadm(&self, dir: &Path, node: &str) -> Result<RunReport, Error> {
        let lock = crate::txn::lock(&self.out)?;
        let (store, sealing) = self.open_store(None)?;
        if store.is_sealed() {
            return Err(Error::new("import-kubeadm: works into an empty OUT without pki.encryption.age"));
        }
        let overlay = crate::import::kubeadm(&self.cluster, dir, node, &store)?;
        let imported = Imported {
            source: dir.display().to_string(),
            node: Some(node.to_string()),
            files: overlay.keys().cloned().collect(),
        };
        let store = store.with_overlay(overlay);
        let mut staging = crate::txn::Staging::new(&lock);
        let mut run = self.prepare(&store, sealing.as_ref(), &Policy::default(), Some(&mut staging))?;
        self.commit(staging, &mut run, &store)?;
        Ok(self.report("import-kubeadm", &run, true, Some(imported)))
    }

    fn summary(&self) -> ClusterSummary {
        let c = &self.cluster;
        let control_planes = c.nodes.iter().filter(|n| n.is_control_plane()).count();
        ClusterSummary {
            name: c.name.clone(),
            kubernetes_version: c.version.to_string(),
            control_planes,
            workers: c.nodes.len() - control_planes,
            key_algorithm: c.key_algorithm.name(),
        }
    }

    fn report(&self, command: &'static str, run: &Run, applied: bool, imported: Option<Imported>) -> RunReport {
        let c = &self.cluster;
        let pki = &run.generated.pki;
        let node_name = |m: &crate::pki::Material| m.request.node.map(|i| c.nodes[i].name.clone());
        let cas = pki
            .certs
            .values()
            .filter(|m| m.request.profile.usage.is_ca())
            .map(|m| CaLine {
                id: m.request.id.clone(),
                origin: match c.provided_cas.get(m.request.profile.name) {
                    Some(p) if p.key_pem.is_none() => CaOrigin::ProvidedKeyless,
                    Some(_) => CaOrigin::Provided,
                    None if m.origin == Origin::Kept => CaOrigin::Kept,
                    None => CaOrigin::Created,
                },
            })
            .collect();
        let mut certificates: Vec<CertLine> = pki
            .certs
            .values()
            .filter(|m| !m.request.profile.usage.is_ca())
            .map(|m| CertLine {
                id: m.request.id.clone(),
                profile: Some(m.request.profile.name.to_string()),
                node: node_name(m),
                action: match m.origin {
                    Origin::Kept => Action::Keep,
                    Origin::Issued => Action::Issue,
                    Origin::Reissued => Action::Reissue,
                },
                reasons: if m.origin == Origin::Issued && m.reasons.is_empty() {
                    Vec::new()
                } else {
                    m.reasons.clone()
                },
            })
            .collect();
        let removed = run.changes.remove.iter().filter_map(|p| p.strip_prefix("pki/")?.strip_suffix(".crt"));
        for id in removed.filter(|id| !crate::pki::rotation::is_rotation_id(id)) {
            let (node, profile) = split_id(id);
            certificates.push(CertLine {
                id: id.to_string(),
                profile: profile.map(String::from),
                node: node.map(String::from),
                action: Action::Remove,
                reasons: vec!["no longer in the spec".into()],
            });
        }
        RunReport {
            api_version: report::API_VERSION,
            kind: "RunReport",
            command,
            applied,
            public_only: false,
            public_only_reason: None,
            out: self.out.display().to_string(),
            cluster: self.summary(),
            cas,
            certificates,
            service_account_key: Some(if pki.sa.origin == Origin::Kept { "kept" } else { "created" }),
            files: Some(FileChanges {
                write: run.changes.write.clone(),
                remove: run.changes.remove.clone(),
                unchanged: run.changes.unchanged,
            }),
            imported,
            upgrade: run.upgrade.as_ref().map(|u| Upgrade { from: u.from.clone(), to: u.to.clone() }),
            rotations: pki
                .rotations
                .lines()
                .into_iter()
                .map(|(name, stage, entering)| RotationLine { name: name.into(), stage: stage.name(), entering })
                .collect(),
            warnings: self.warnings(),
        }
    }

    /// A plan from the public files alone: each certificate compared with what the spec asks (what would be kept,
    /// issued, reissued and why). File-level changes need the secrets and are not listed.
    fn public_plan(&self, reason: String) -> Result<RunReport, Error> {
        self.check_clock()?;
        let upgrade = self.version_change()?;
        let c = &self.cluster;
        let requests = crate::pki::plan::requests(c);
        let store = Store::plain(&self.out.join(layout::STORE));
        let read = |id: &str| {
            let rel = layout::store_crt(id);
            store.exists(&rel).then(|| store.read(&rel).ok().and_then(|p| CertInfo::from_pem(&p).ok())).flatten()
        };
        let mut cas = Vec::new();
        let mut certificates = Vec::new();
        let mut rotations = Vec::new();
        for name in crate::pki::rotation::NAMES {
            if let Some((stage, entering)) = crate::pki::rotation::public_line(c, name, &store)? {
                rotations.push(RotationLine { name: name.into(), stage: stage.name(), entering });
            }
        }
        let switching = |ca: &str| {
            rotations
                .iter()
                .any(|r| r.name == ca && r.stage == "switch" && r.entering && ca != crate::pki::rotation::SA)
        };
        for r in &requests {
            if r.profile.usage.is_ca() {
                let origin = match c.provided_cas.get(r.profile.name) {
                    Some(p) if p.key_pem.is_none() => CaOrigin::ProvidedKeyless,
                    Some(_) => CaOrigin::Provided,
                    None if read(&r.id).is_some() => CaOrigin::Kept,
                    None => CaOrigin::Created,
                };
                cas.push(CaLine { id: r.id.clone(), origin });
                continue;
            }
            let ca = match r.signer.as_deref() {
                Some(crate::pki::plan::EXTERNAL_ETCD_CA) => match &c.etcd {
                    crate::spec::Etcd::External(x) => {
                        x.client_ca.as_ref().and_then(|(pem, _)| CertInfo::from_pem(pem).ok())
                    }
                    _ => None,
                },
                Some(s) => match c.provided_cas.get(s) {
                    Some(p) => CertInfo::from_pem(&p.cert_pem).ok(),
                    None => read(s),
                },
                None => None,
            };
            let (action, reasons) = match (read(&r.id), ca) {
                (Some(_), Some(_)) if r.signer.as_deref().is_some_and(switching) => {
                    (Action::Reissue, vec![crate::pki::rotation::switch_reason(r.signer.as_deref().unwrap_or("CA"))])
                }
                (Some(info), Some(ca)) => {
                    let why = crate::pki::differences(c, r, &info, &ca, self.now);
                    (if why.is_empty() { Action::Keep } else { Action::Reissue }, why)
                }
                _ => (Action::Issue, Vec::new()),
            };
            let node = r.node.map(|i| c.nodes[i].name.clone());
            certificates.push(CertLine {
                id: r.id.clone(),
                profile: Some(r.profile.name.to_string()),
                node,
                action,
                reasons,
            });
        }
        Ok(RunReport {
            api_version: report::API_VERSION,
            kind: "RunReport",
            command: "plan",
            applied: false,
            public_only: true,
            public_only_reason: Some(reason),
            out: self.out.display().to_string(),
            cluster: self.summary(),
            cas,
            certificates,
            service_account_key: None,
            files: None,
            imported: None,
            upgrade,
            rotations,
            warnings: self.warnings(),
        })
    }
}

/// The first 4 KB of index.json, as text.
fn index_head(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path).ok()?.take(4096).read_to_end(&mut head).ok()?;
    // The cut may fall inside a character: keep what is whole.
    let valid = match std::str::from_utf8(&head) {
        Ok(s) => s.len(),
        Err(e) => e.valid_up_to(),
    };
    head.truncate(valid);
    String::from_utf8(head).ok()
}

/// glibc maps blocks above a threshold on their own (freeing one hands it back to the system) but raises that
/// threshold, up to 32 MB, whenever such a block is freed: later large blocks then come from the heap, which
/// keeps what is freed. A run builds several large texts (the index, 100 MB at 10,000 nodes, in pieces) and frees
/// them as it goes; a fixed threshold keeps each of them mapped, so that the peak is what is live. Set once per
/// process, by the first operation (the command line's, or the bench's child's).
fn large_blocks_back_to_the_system() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets one of the allocator's parameters; M_MMAP_THRESHOLD takes a size in bytes.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
    });
}

/// Frees a finished run off the critical path: at 1,000 nodes its tree and PKI are ~70 MB of small allocations,
/// 12 ms to free, and a command-line process exits without waiting for that thread.
fn dispose(run: Run) {
    std::thread::spawn(move || drop(run));
}

/// A store id's node and profile: `nodes/cp-1/apiserver` → (cp-1, apiserver); `admin` → (none, admin).
fn split_id(id: &str) -> (Option<&str>, Option<&str>) {
    match id.strip_prefix("nodes/").and_then(|r| r.split_once('/')) {
        Some((node, profile)) => (Some(node), Some(profile)),
        None => (None, Some(id)),
    }
}

/// `check`: every certificate kubeforge knows (the store's, plus CAs that only the index knows, such as an
/// external etcd's), with its expiry; reads only public files.
pub fn check(out: &Path, now: OffsetDateTime, within: i64) -> Result<CheckReport, Error> {
    let _read = crate::txn::read_lock(out)?;
    let store = Store::plain(&out.join(layout::STORE));
    if !store.dir.is_dir() {
        return Err(Error::new(format!(
            "{}: no PKI store here; run `cargo xtask gen --out {}` first",
            store.dir.display(),
            out.display()
        )));
    }
    let mut found = store.certificates()?;
    // CAs kubeforge installs but does not keep in its store (etcd.external.clientCA), from the index.
    let index_path = out.join(layout::INDEX);
    if index_path.exists() {
        let text = crate::input::read_text(&index_path, "index.json", crate::input::FILE_LIMIT)?;
        let index: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::new(format!("{}: {e}", index_path.display())))?;
        let mut seen = BTreeSet::new();
        for f in index["files"].as_array().into_iter().flatten() {
            if f["kind"] == "ca-cert" && f["certificate"]["profile"].is_null() {
                let path = out.join(f["path"].as_str().unwrap_or_default());
                if path.is_file() && seen.insert(f["sha256"].to_string()) {
                    found.push((
                        "external-etcd-ca".into(),
                        crate::input::read_text(&path, "index.json", crate::input::PEM_LIMIT)?,
                    ));
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (name, pem) in found {
        let info = CertInfo::from_pem(&pem).map_err(|e| Error::new(format!("{name}: {e}")))?;
        let residual = (info.not_after - now).whole_seconds();
        let (node, profile) = split_id(&name);
        let profile = profile.filter(|p| crate::pki::profile::Profile::by_name(p).is_some());
        rows.push(Expiry {
            profile: profile.map(String::from),
            node: node.map(String::from),
            name,
            is_ca: info.is_ca,
            signer: info.issuer.clone(),
            subject: info.subject.clone(),
            not_after: crate::times::rfc3339(info.not_after),
            not_after_unix: info.not_after.unix_timestamp(),
            residual_seconds: residual,
            expires_within_window: residual <= within,
        });
    }
    rows.sort_by(|a, b| (a.is_ca, &a.name).cmp(&(b.is_ca, &b.name)));
    Ok(CheckReport {
        api_version: report::API_VERSION,
        kind: "CheckReport",
        now: crate::times::rfc3339(now),
        now_unix: now.unix_timestamp(),
        within_seconds: within,
        expiring: rows.iter().filter(|r| r.expires_within_window).count(),
        certificates: rows,
    })
}
