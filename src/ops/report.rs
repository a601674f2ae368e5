//! What the operations return: typed reports that serialize to JSON (`--format json`, schema in
//! `schema/report.schema.json`) and display as the text users read.

use std::fmt;

use serde::Serialize;

/// The `apiVersion` of every report; bumped when a field changes meaning or disappears.
pub const API_VERSION: &str = "kubeforge/v1alpha1";

/// What `gen`, `plan`, `renew` and the imports did or would do.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub api_version: &'static str,
    /// `RunReport`.
    pub kind: &'static str,
    /// `gen`, `plan`, `renew`, `import-signed` or `import-kubeadm`.
    pub command: &'static str,
    /// False for `plan` and `gen --dry-run`: nothing was written.
    pub applied: bool,
    /// True when the private keys were not available (a clone of the committed half of OUT, or a sealed store
    /// without its identity): certificates are compared from the public files, files are not compared.
    pub public_only: bool,
    /// Why the plan is public-only.
    pub public_only_reason: Option<String>,
    /// OUT, as given.
    pub out: String,
    pub cluster: ClusterSummary,
    pub cas: Vec<CaLine>,
    /// Every certificate, CAs excluded, in store order; with `keep` for the ones that stay.
    pub certificates: Vec<CertLine>,
    /// `kept` or `created`; `null` in a public-only plan.
    pub service_account_key: Option<&'static str>,
    /// File by file; `null` in a public-only plan.
    pub files: Option<FileChanges>,
    /// What an import took in (store ids, or files of a kubeadm directory).
    pub imported: Option<Imported>,
    /// The Kubernetes version OUT was generated for, when the spec moves it (an upgrade).
    pub upgrade: Option<Upgrade>,
    /// Each CA (or the service-account key) being rotated (`pki.rotation`), and its stage.
    pub rotations: Vec<RotationLine>,
    /// Things the operator should know (e.g. a version past upstream support).
    pub warnings: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    pub name: String,
    pub kubernetes_version: String,
    pub control_planes: usize,
    pub workers: usize,
    pub key_algorithm: &'static str,
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CaOrigin {
    Created,
    Kept,
    Provided,
    /// Given in `pki.cas` without its key: an external CA signs under it.
    ProvidedKeyless,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CaLine {
    pub id: String,
    pub origin: CaOrigin,
}

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Issue,
    Reissue,
    Remove,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertLine {
    /// The store id: `apiserver` for one per cluster, `nodes/cp-1/apiserver` per node.
    pub id: String,
    /// The row of the certificate table; `null` for a certificate being removed whose profile is gone.
    pub profile: Option<String>,
    pub node: Option<String>,
    pub action: Action,
    /// Why it is (re)issued: `SAN added: IP:10.0.0.5`, `renewal requested`, `new`...
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct FileChanges {
    /// Paths in OUT whose bytes or mode change, or that are new.
    pub write: Vec<String>,
    /// Paths a previous run wrote that the spec no longer needs.
    pub remove: Vec<String>,
    pub unchanged: usize,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Upgrade {
    pub from: String,
    pub to: String,
}

/// A rotation's stage (`pki.rotation.<name>`).
#[derive(Debug, Serialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RotationLine {
    /// `ca`, `front-proxy-ca`, `etcd-ca` or `sa`.
    pub name: String,
    /// `add`, `switch` or `remove`: the stage the store is at after the run.
    pub stage: &'static str,
    /// True when the run moves the store into `stage`; false for a rerun at it (nothing of the rotation changes).
    pub entering: bool,
}

impl RotationLine {
    fn describe(&self) -> &'static str {
        match (self.name == "sa", self.stage) {
            (false, "add") => "the incoming CA is beside the current one at every trust point; the current one signs",
            (false, "switch") => "the incoming CA signs (every certificate under it reissued); both stay trusted",
            (false, _) => "the outgoing CA has left every trust point; its certificate is archived",
            (true, "add") => "sa.pub holds the new public key beside the current one, which signs",
            (true, "switch") => "the new key signs; sa.pub keeps both public keys",
            (true, _) => "sa.pub holds only the new public key; the old one is archived",
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Imported {
    /// Where from (the signed certificates' directory, the kubeadm directory).
    pub source: String,
    /// For import-kubeadm, the node it is.
    pub node: Option<String>,
    /// What was taken into the store, relative to it.
    pub files: Vec<String>,
}

impl RunReport {
    /// Whether the run changes (or changed) anything: `plan` exits 2 then.
    pub fn has_changes(&self) -> bool {
        match &self.files {
            Some(f) => !f.write.is_empty() || !f.remove.is_empty(),
            None => self.certificates.iter().any(|c| c.action != Action::Keep),
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.certificates.iter().filter(|c| c.action == action).count()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cluster;
        if let Some(i) = &self.imported {
            match &i.node {
                Some(node) => writeln!(f, "adopted {} files of {} as node {node}", i.files.len(), i.source)?,
                None => writeln!(f, "imported {} signed certificate{}", i.files.len(), plural(i.files.len()))?,
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if let Some(u) = &self.upgrade {
            writeln!(
                f,
                "upgrade: Kubernetes {} -> {}: roll the control-plane nodes one at a time, then the kubelets",
                u.from, u.to
            )?;
        }
        let dry = !self.applied;
        if self.public_only {
            let kept = self.count(Action::Keep);
            let todo: Vec<&CertLine> = self.certificates.iter().filter(|l| l.action != Action::Keep).collect();
            writeln!(
                f,
                "kubeforge plan (public files only: {}): cluster {:?} ({})",
                self.public_only_reason.as_deref().unwrap_or("no private keys"),
                c.name,
                c.kubernetes_version
            )?;
            writeln!(f, "  certificates: {kept} kept, {} to be issued", todo.len())?;
            for l in todo {
                let verb = if l.action == Action::Reissue { "reissue" } else { "issue" };
                let why = if l.reasons.is_empty() { "new".to_string() } else { l.reasons.join("; ") };
                writeln!(f, "    {verb:<8} {} — {why}", l.id)?;
            }
            return write!(
                f,
                "  files: not compared (the private keys are not here; with them, plan shows every file)"
            );
        }
        writeln!(
            f,
            "kubeforge{}: cluster {:?} ({}), {} nodes ({} control plane, {} worker{}), {}",
            if dry { " plan" } else { "" },
            c.name,
            c.kubernetes_version,
            c.control_planes + c.workers,
            c.control_planes,
            c.workers,
            plural(c.workers),
            c.key_algorithm
        )?;
        let cas: Vec<String> = self
            .cas
            .iter()
            .map(|ca| {
                let how = match ca.origin {
                    CaOrigin::ProvidedKeyless => "provided, external: no key",
                    CaOrigin::Provided => "provided",
                    CaOrigin::Kept => "kept",
                    CaOrigin::Created => "created",
                };
                format!("{} ({how})", ca.id)
            })
            .collect();
        writeln!(f, "  CAs: {}", cas.join(", "))?;
        for r in &self.rotations {
            let how = if r.entering { format!("-> {}", r.stage) } else { format!("at {} (no change)", r.stage) };
            writeln!(f, "  rotation: {} {how}: {}", r.name, r.describe())?;
        }
        let kept = self.count(Action::Keep);
        let fresh: Vec<&CertLine> =
            self.certificates.iter().filter(|l| matches!(l.action, Action::Issue | Action::Reissue)).collect();
        writeln!(f, "  certificates: {kept} kept, {} {}issued", fresh.len(), if dry { "to be " } else { "" })?;
        // New certificates are listed one by one up to a screenful, then counted by profile (a first run of a
        // large cluster); a reissue always gets its own line, with its reasons.
        let new: Vec<&&CertLine> = fresh.iter().filter(|l| l.action == Action::Issue && l.reasons.is_empty()).collect();
        let by_profile = new.len() > 20;
        if by_profile {
            let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
            for l in &new {
                *counts.entry(l.profile.as_deref().unwrap_or("?")).or_default() += 1;
            }
            for (profile, n) in counts {
                writeln!(f, "    {:<8} {profile} x{n} — new", if dry { "issue" } else { "issued" })?;
            }
        }
        for l in fresh.iter().filter(|l| !(by_profile && l.action == Action::Issue && l.reasons.is_empty())) {
            let verb = match (l.action, dry) {
                (Action::Issue, true) => "issue",
                (Action::Issue, false) => "issued",
                (_, true) => "reissue",
                (_, false) => "reissued",
            };
            let why = if l.reasons.is_empty() { "new".to_string() } else { l.reasons.join("; ") };
            writeln!(f, "    {verb:<8} {} — {why}", l.id)?;
        }
        for l in self.certificates.iter().filter(|l| l.action == Action::Remove) {
            writeln!(f, "    {:<8} {} — no longer in the spec", if dry { "remove" } else { "removed" }, l.id)?;
        }
        writeln!(f, "  service-account key: {}", self.service_account_key.unwrap_or("kept"))?;
        let files = self.files.as_ref().expect("a full report compares files");
        if files.write.is_empty() && files.remove.is_empty() {
            write!(f, "  {}: nothing to do: all {} files are up to date", self.out, files.unchanged)?;
        } else {
            let to_be = if dry { "to be " } else { "" };
            write!(
                f,
                "  {}: {} file{} {to_be}written, {} {to_be}removed, {} unchanged",
                self.out,
                files.write.len(),
                plural(files.write.len()),
                files.remove.len(),
                files.unchanged
            )?;
            if dry {
                for p in &files.write {
                    write!(f, "\n    write   {p}")?;
                }
                for p in &files.remove {
                    write!(f, "\n    remove  {p}")?;
                }
            }
        }
        if !dry {
            write!(
                f,
                "\n  next: copy {0}/nodes/<node>/ onto each node's /, then apply {0}/bootstrap/ once with super-admin.conf",
                self.out
            )?;
        }
        Ok(())
    }
}

/// What `check` found: every certificate's expiry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub api_version: &'static str,
    /// `CheckReport`.
    pub kind: &'static str,
    pub now: String,
    /// `now` as a Unix time.
    #[serde(skip)]
    pub now_unix: i64,
    pub within_seconds: i64,
    /// How many certificates expire within the window (`check` exits 1 when this is not 0).
    pub expiring: usize,
    /// Leaves first, then CAs, each by name.
    pub certificates: Vec<Expiry>,
}

/// One certificate's expiry.
#[derive(Debug, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Expiry {
    /// The store id (`nodes/cp-1/apiserver`), or `external-etcd-ca`.
    pub name: String,
    /// The row of the certificate table, when the id names one.
    pub profile: Option<String>,
    pub node: Option<String>,
    pub is_ca: bool,
    pub subject: String,
    pub signer: String,
    pub not_after: String,
    /// `not_after` as a Unix time.
    #[serde(skip)]
    pub not_after_unix: i64,
    pub residual_seconds: i64,
    pub expires_within_window: bool,
}

/// The gauge `check --format prometheus` writes, one sample per certificate.
pub const EXPIRY_METRIC: &str = "kubeforge_certificate_expiry_timestamp_seconds";
/// The gauge that says when `check` ran (its clock), so that a stale file can be told from a fresh one.
pub const CHECK_METRIC: &str = "kubeforge_check_timestamp_seconds";

impl CheckReport {
    /// The report in Prometheus's text exposition format, as node_exporter's textfile collector reads it:
    /// [`EXPIRY_METRIC`], a gauge with every certificate's notAfter as a Unix time (labels `certificate`, the store
    /// id; `profile`, the row of the certificate table; `node`, empty for a certificate of the whole cluster;
    /// `signer`, the issuer as `check` prints it; `is_ca`), in the report's order, then [`CHECK_METRIC`]. No
    /// timestamps (the collector refuses them); ends with a newline.
    pub fn prometheus(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP {EXPIRY_METRIC} When the certificate expires (its notAfter), as a Unix time: every certificate and \
             CA of a kubeforge OUT."
        );
        let _ = writeln!(s, "# TYPE {EXPIRY_METRIC} gauge");
        for r in &self.certificates {
            let labels = [
                ("certificate", r.name.as_str()),
                ("profile", r.profile.as_deref().unwrap_or("")),
                ("node", r.node.as_deref().unwrap_or("")),
                ("signer", r.signer.as_str()),
                ("is_ca", if r.is_ca { "true" } else { "false" }),
            ];
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect();
            let _ = writeln!(s, "{EXPIRY_METRIC}{{{}}} {}", labels.join(","), r.not_after_unix);
        }
        let _ = writeln!(s, "# HELP {CHECK_METRIC} When kubeforge check last ran (its clock), as a Unix time.");
        let _ = writeln!(s, "# TYPE {CHECK_METRIC} gauge");
        let _ = writeln!(s, "{CHECK_METRIC} {}", self.now_unix);
        s
    }
}

/// A label value as the exposition format writes it: backslash, double quote and line feed escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::times::residual;
        for (title, ca) in [("CERTIFICATE", false), ("CERTIFICATE AUTHORITY", true)] {
            let part: Vec<&Expiry> = self.certificates.iter().filter(|r| r.is_ca == ca).collect();
            if part.is_empty() {
                continue;
            }
            let w = part.iter().map(|r| r.name.len()).max().unwrap_or(0).max(title.len());
            writeln!(f, "{title:<w$}  {:<20}  {:<13}  SIGNER", "EXPIRES", "RESIDUAL TIME")?;
            for r in part {
                writeln!(
                    f,
                    "{:<w$}  {:<20}  {:<13}  {}{}",
                    r.name,
                    r.not_after,
                    residual(r.residual_seconds),
                    r.signer,
                    if r.expires_within_window { "  <- expires within the window" } else { "" }
                )?;
            }
            writeln!(f)?;
        }
        let n = self.expiring;
        let total = self.certificates.len();
        if n == 0 {
            write!(f, "all {total} certificates are valid for more than {}", residual(self.within_seconds))
        } else {
            write!(
                f,
                "{n} of {total} certificates expire within {}: run `cargo xtask renew`",
                residual(self.within_seconds)
            )
        }
    }
}

/// What `csr` wrote.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CsrReport {
    pub api_version: &'static str,
    /// `CsrReport`.
    pub kind: &'static str,
    pub out: String,
    /// The CAs without a key, whose signer must sign the requests.
    pub cas: Vec<String>,
    /// Store ids of the certificates requested.
    pub requests: Vec<String>,
    /// What the signer must put in each certificate.
    pub signing_guide: Option<String>,
}

impl fmt::Display for CsrReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cas.is_empty() {
            return write!(
                f,
                "csr: every CA's key is available (no pki.cas entry without key): kubeforge signs everything itself"
            );
        }
        write!(
            f,
            "csr: {} signing request{} in {}/csr for {}; what the signer must add: {}/csr/SIGNING.md",
            self.requests.len(),
            plural(self.requests.len()),
            self.out,
            self.cas.join(", "),
            self.out
        )
    }
}

/// What `images` lists: every image the cluster's nodes pull, for mirroring into a private registry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagesReport {
    pub api_version: &'static str,
    /// `ImagesReport`.
    pub kind: &'static str,
    pub kubernetes_version: String,
    pub image_repository: String,
    /// In kubeadm's `config images list` order.
    pub images: Vec<ImageLine>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageLine {
    pub image: String,
    /// What runs it: `kube-apiserver`, `etcd`, `pause`, `kube-proxy`, `coredns`, ...
    pub component: &'static str,
    /// `static-pod` (written by kubeforge), `sandbox` (every pod's sandbox, set in the container runtime; from
    /// v1.35 the kubelet does not name it) or `addon` (kubeforge does not deploy it; whoever does pulls it).
    pub source: &'static str,
    /// `control-plane` or `every-node`.
    pub nodes: &'static str,
}

impl fmt::Display for ImagesReport {
    /// One image per line, as `kubeadm config images list` prints them (so `| xargs -n1 crane copy` works).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self.images.iter().map(|i| i.image.as_str()).collect();
        write!(f, "{}", lines.join("\n"))
    }
}
