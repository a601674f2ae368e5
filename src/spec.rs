//! The cluster spec: what the user writes (`RawSpec`, serde) and what the rest of the pipeline uses (`Cluster`,
//! validated and resolved).
//!
//! Every problem is reported with the file, the field path (`nodes[2].address`), the bad value and what would be
//! valid. All problems of a spec are collected, not just the first, so one run shows everything to fix.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::net::{Cidr, Host, San};

/// The spec as written. Field names are the YAML keys; unknown keys are errors. Every default is stated once, in
/// the `Default` impl of its section (serde fills a missing field from it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSpec {
    pub api_version: String,
    pub kind: String,
    #[serde(default = "default_name")]
    pub name: String,
    pub kubernetes_version: String,
    #[serde(default)]
    pub control_plane_endpoint: String,
    /// Where the control-plane images, etcd and the sandbox (pause) image come from (kubeadm's `imageRepository`).
    #[serde(default = "default_registry")]
    pub image_repository: String,
    #[serde(default)]
    pub networking: RawNetworking,
    #[serde(default)]
    pub pki: RawPki,
    #[serde(default)]
    pub api_server: RawApiServer,
    #[serde(default)]
    pub controller_manager: crate::custom::RawExtras,
    #[serde(default)]
    pub scheduler: crate::custom::RawExtras,
    #[serde(default)]
    pub etcd: RawEtcd,
    /// Host directories with CA bundles that the apiserver and controller-manager mount read-only (kubeadm mounts
    /// the ones that exist on the host it runs on; kubeforge runs elsewhere, so the spec says).
    #[serde(default = "default_ca_dirs", rename = "hostCACertDirs")]
    pub host_ca_cert_dirs: Vec<String>,
    #[serde(default)]
    pub security: crate::security::RawSecurity,
    /// Kubelet settings for every node: a partial KubeletConfiguration (`nodes[].kubelet` for one node), see
    /// `crate::custom::kubelet`.
    #[serde(default)]
    pub kubelet: serde_yaml::Mapping,
    /// A kubeadm `--patches` directory, relative to the spec (see `crate::custom::patches`).
    #[serde(default)]
    pub patches: Option<RawPatches>,
    pub nodes: Vec<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPatches {
    pub directory: String,
}

/// kubeadm's default `imageRepository`.
pub const DEFAULT_REGISTRY: &str = "registry.k8s.io";

fn default_registry() -> String {
    DEFAULT_REGISTRY.into()
}

/// containerd's socket, kubeadm's default `criSocket` when containerd is found.
pub const DEFAULT_CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";

/// kubeadm's default `clusterName`.
fn default_name() -> String {
    "kubernetes".into()
}

/// kubeadm's conditional CA directories as found on a Debian or Ubuntu host (kubeadm-facts §3.1, O1).
pub const DEBIAN_CA_DIRS: [&str; 3] =
    ["/etc/ca-certificates", "/usr/local/share/ca-certificates", "/usr/share/ca-certificates"];

fn default_ca_dirs() -> Vec<String> {
    DEBIAN_CA_DIRS.iter().map(|s| s.to_string()).collect()
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNetworking {
    pub service_subnet: String,
    pub pod_subnet: String,
    pub dns_domain: String,
}

/// kubeadm's defaults (kubeadm-facts §1.3, §4.3); no pod subnet.
impl Default for RawNetworking {
    fn default() -> Self {
        Self { service_subnet: "10.96.0.0/12".into(), pod_subnet: String::new(), dns_domain: "cluster.local".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPki {
    pub key_algorithm: String,
    pub ca_validity: String,
    pub certificate_validity: String,
    /// A leaf that expires within this window is reissued by the next run.
    pub renew_before: String,
    /// CAs the operator brings instead of letting kubeforge create them, by name (ca, front-proxy-ca, etcd-ca).
    pub cas: std::collections::BTreeMap<String, RawProvidedCa>,
    /// Keep every secret file encrypted in OUT/secrets (see src/sealed.rs).
    pub encryption: Option<RawStoreEncryption>,
    /// A CA or the service-account key being rotated, by name (ca, front-proxy-ca, etcd-ca, sa), and its stage
    /// (add, switch, remove): see src/pki/rotation.rs.
    pub rotation: std::collections::BTreeMap<String, String>,
}

/// kubeadm's validities (kubeadm-facts §1.5); ECDSA-P256 where kubeadm defaults to RSA-2048 (see the README's
/// differences); a 30-day renewal window, so that a monthly scheduled run renews everything before it expires.
impl Default for RawPki {
    fn default() -> Self {
        Self {
            key_algorithm: "ECDSA-P256".into(),
            ca_validity: "87600h".into(),
            certificate_validity: "8760h".into(),
            renew_before: "720h".into(),
            cas: Default::default(),
            encryption: None,
            rotation: Default::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawStoreEncryption {
    pub age: RawAge,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAge {
    /// age X25519 recipients (`age1...`), e.g. the deploy machine's and each operator's.
    pub recipients: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawProvidedCa {
    /// PEM certificate of the CA, relative to the spec file.
    pub cert: String,
    /// Its PEM private key. Without it kubeforge issues nothing under this CA: `cargo xtask csr` writes keys and
    /// certificate signing requests for an external signer, `cargo xtask import-signed` takes the results back.
    #[serde(default)]
    pub key: Option<String>,
    /// PEM certificates above it (intermediates up to the root), appended to the kubeconfigs' CA data.
    #[serde(default)]
    pub chain: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawApiServer {
    #[serde(rename = "certSANs")]
    pub cert_sans: Vec<String>,
    /// kube-apiserver's secure port (kubeadm's `localAPIEndpoint.bindPort`): the flag, the probes, the
    /// kubeconfigs that talk to a node's own apiserver, and `controlPlaneEndpoint` when it names no port.
    pub bind_port: u16,
    pub extra_args: Vec<crate::custom::RawArg>,
    pub extra_volumes: Vec<crate::custom::RawVolume>,
    pub extra_envs: Vec<crate::custom::RawEnv>,
}

impl Default for RawApiServer {
    fn default() -> Self {
        Self {
            cert_sans: Vec::new(),
            bind_port: crate::API_SERVER_PORT,
            extra_args: Vec::new(),
            extra_volumes: Vec::new(),
            extra_envs: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEtcd {
    /// The stacked etcd's settings (kubeadm's `etcd.local`).
    pub local: Option<RawLocalEtcd>,
    /// An etcd cluster that kubeforge does not run; absent = stacked etcd on every control-plane node.
    pub external: Option<RawExternalEtcd>,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawLocalEtcd {
    /// etcd's image repository, when not `imageRepository`.
    pub image_repository: String,
    /// etcd's image tag, when not kubeadm's for the cluster's version.
    pub image_tag: String,
    /// The member's data directory on the node (mounted as `etcd-data`).
    pub data_dir: String,
    pub extra_args: Vec<crate::custom::RawArg>,
    pub extra_volumes: Vec<crate::custom::RawVolume>,
    pub extra_envs: Vec<crate::custom::RawEnv>,
}

impl Default for RawLocalEtcd {
    fn default() -> Self {
        Self {
            image_repository: String::new(),
            image_tag: String::new(),
            data_dir: crate::layout::ETCD_DATA_DIR.into(),
            extra_args: Vec::new(),
            extra_volumes: Vec::new(),
            extra_envs: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExternalEtcd {
    pub endpoints: Vec<String>,
    /// Paths on the control-plane nodes (kubeadm's `etcd.external.caFile/certFile/keyFile`).
    #[serde(default)]
    pub ca_file: String,
    #[serde(default)]
    pub cert_file: String,
    #[serde(default)]
    pub key_file: String,
    /// The external etcd's CA, on the machine running kubeforge: kubeforge then issues kube-apiserver's etcd
    /// client certificate from it and installs both under /etc/kubernetes/pki (instead of caFile/certFile/keyFile).
    #[serde(default, rename = "clientCA")]
    pub client_ca: Option<RawCaFiles>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCaFiles {
    /// PEM certificate, relative to the spec file.
    pub cert: String,
    /// PEM private key (SEC 1, PKCS#1 or PKCS#8), relative to the spec file.
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawNode {
    pub name: String,
    pub role: String,
    pub address: String,
    #[serde(default)]
    pub sans: Vec<String>,
    /// This node's kubelet settings, merged over `kubelet:`.
    #[serde(default)]
    pub kubelet: serde_yaml::Mapping,
    /// Labels the kubelet registers the node with (`--node-labels`).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Taints the kubelet registers the node with (`registerWithTaints`). Absent: kubeadm's default, the
    /// control-plane taint on control-plane nodes and none on workers; `[]`: none.
    #[serde(default)]
    pub taints: Option<Vec<RawTaint>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawTaint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

/// A validated cluster: every value parsed, every default applied.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub version: Version,
    /// `controlPlaneEndpoint`, if set.
    pub endpoint: Option<Endpoint>,
    /// `networking.serviceSubnet` as written (it goes verbatim into `--service-cluster-ip-range`).
    pub service_subnet: String,
    pub service_cidrs: Vec<Cidr>,
    pub pod_subnet: String,
    pub dns_domain: String,
    pub key_algorithm: KeyAlgorithm,
    /// Seconds.
    pub ca_validity: i64,
    /// Seconds.
    pub cert_validity: i64,
    /// Seconds: leaves expiring within this window are reissued.
    pub renew_before: i64,
    pub cert_sans: Vec<San>,
    pub host_ca_cert_dirs: Vec<String>,
    pub etcd: Etcd,
    pub security: crate::security::Security,
    /// `pki.encryption.age.recipients`: when set, secrets are kept sealed in OUT/secrets.
    pub sealed_to: Option<Vec<String>>,
    /// CAs given in `pki.cas`, by profile name.
    pub provided_cas: std::collections::BTreeMap<String, ProvidedCa>,
    /// `imageRepository`.
    pub image_repository: String,
    /// `apiServer.bindPort`.
    pub bind_port: u16,
    /// `etcd.local.imageRepository` and `imageTag`, if set.
    pub etcd_image_repository: Option<String>,
    pub etcd_image_tag: Option<String>,
    /// `etcd.local.dataDir`.
    pub etcd_data_dir: String,
    /// Each component's extraArgs, extraVolumes and extraEnvs.
    pub extras: std::collections::BTreeMap<crate::custom::Component, crate::custom::Extras>,
    /// `kubelet:` settings for every node.
    pub kubelet: serde_yaml::Mapping,
    /// The patches of `patches.directory`, in the order they apply.
    pub patches: Vec<crate::custom::patches::Patch>,
    /// What every run says about this spec: secure defaults turned off by customization (see
    /// `crate::custom::secure`).
    pub warnings: Vec<String>,
    pub nodes: Vec<Node>,
    /// `pki.rotation`: the stage of each CA (or `sa`) being rotated.
    pub rotation: std::collections::BTreeMap<String, crate::pki::rotation::Stage>,
}

/// A CA from `pki.cas`: its certificate, and its key and chain if given.
#[derive(Debug, Clone)]
pub struct ProvidedCa {
    pub cert_pem: String,
    pub key_pem: Option<String>,
    pub chain_pem: Option<String>,
    /// Where the certificate came from, for messages.
    pub source: String,
}

/// Where the cluster's etcd runs.
#[derive(Debug, Clone)]
pub enum Etcd {
    /// One member per control-plane node, as static pods (kubeadm's default).
    Stacked,
    External(ExternalEtcd),
}

#[derive(Debug, Clone)]
pub struct ExternalEtcd {
    pub endpoints: Vec<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// PEM certificate and key of the CA kubeforge signs kube-apiserver's etcd client certificate with.
    pub client_ca: Option<(String, String)>,
}

impl Cluster {
    pub fn stacked_etcd(&self) -> bool {
        matches!(self.etcd, Etcd::Stacked)
    }

    /// What kubeadm of this cluster's minor writes differently from the others.
    pub fn facts(&self) -> &'static crate::versions::Facts {
        crate::versions::facts(self.version.minor).expect("validated: a supported minor")
    }

    /// A component's extras (empty when the spec has none).
    pub fn extras(&self, c: crate::custom::Component) -> &crate::custom::Extras {
        static NONE: std::sync::OnceLock<crate::custom::Extras> = std::sync::OnceLock::new();
        self.extras.get(&c).unwrap_or_else(|| NONE.get_or_init(Default::default))
    }

    /// An image of `imageRepository`.
    pub fn image(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.image_repository)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}", self.minor, self.patch)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ControlPlane,
    Worker,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub address: IpAddr,
    pub sans: Vec<San>,
    /// `nodes[].kubelet`: this node's kubelet settings over the cluster's.
    pub kubelet: serde_yaml::Mapping,
    /// `nodes[].labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `nodes[].taints`, or kubeadm's default for the node's role.
    pub taints: Vec<Taint>,
}

/// A taint the kubelet registers its node with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// kubeadm's default taint of a control-plane node (`nodeRegistration.taints` when unset).
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

impl Node {
    pub fn is_control_plane(&self) -> bool {
        self.role == Role::ControlPlane
    }
}

/// kubeadm's `encryptionAlgorithm` values; kubeforge's default is ECDSA-P256 (kubeadm's is RSA-2048).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa2048,
    Rsa3072,
    Rsa4096,
    EcdsaP256,
    EcdsaP384,
}

impl KeyAlgorithm {
    pub const ALL: [(&'static str, KeyAlgorithm); 5] = [
        ("RSA-2048", KeyAlgorithm::Rsa2048),
        ("RSA-3072", KeyAlgorithm::Rsa3072),
        ("RSA-4096", KeyAlgorithm::Rsa4096),
        ("ECDSA-P256", KeyAlgorithm::EcdsaP256),
        ("ECDSA-P384", KeyAlgorithm::EcdsaP384),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map(|(n, _)| *n).unwrap()
    }
}

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path, e.g. `nodes[2].address`; empty for the document itself.
    pub path: String,
    pub message: String,
}

/// A spec that cannot be used: the file and every problem found in it.
#[derive(Debug)]
pub struct SpecError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: invalid cluster spec ({n} problem{}):", self.file.display(), if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            if p.path.is_empty() {
                write!(f, "\n  - {}", p.message)?;
            } else {
                write!(f, "\n  - {}: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Parses and validates a spec. `file` is only used in messages.
///
/// A message never quotes the document's text: a private key or an age identity given as the spec by mistake
/// is named for what it is, and the YAML reader's messages are stripped of the values they would echo.
pub fn parse(file: &Path, text: &str) -> Result<Cluster, SpecError> {
    let err = |problems| SpecError { file: file.to_path_buf(), problems };
    if crate::input::looks_secret(text) {
        return Err(err(vec![Problem {
            path: String::new(),
            message: "this file holds private key material (a PEM private key or an age identity), not a cluster \
                      spec; nothing of it is shown here. Check the path given to --spec."
                .into(),
        }]));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawSpec = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        // The YAML library prefixes its own (coarser) location, e.g. "nodes[1]: unknown field"; the path above
        // already says where, so keep only the message and its line and column.
        let message = e.into_inner().to_string();
        let message = match message.split_once(": ") {
            Some((loc, rest)) if !loc.contains(' ') && !loc.is_empty() => rest.to_string(),
            _ => message,
        };
        err(vec![Problem { path, message: without_values(&message) }])
    })?;
    let mut cluster = validate(file, &raw).map_err(err)?;
    cluster.warnings = crate::render::check(&cluster).map_err(err)?;
    Ok(cluster)
}

/// A YAML reader's message without the scalar values it quotes (`invalid type: string "…", expected …`): the
/// field path and the expected type say enough, and the value could be anything, a secret included.
fn without_values(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i] as char;
        out.push_str(&rest[..i]);
        match rest[i + 1..].find(quote) {
            // Field names (`apiVersion`) are short identifiers; anything else is a value and is left out.
            Some(j)
                if quote == '`'
                    && j <= 64
                    && rest[i + 1..i + 1 + j].bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                out.push_str(&rest[i..i + 2 + j]);
                rest = &rest[i + 2 + j..];
            }
            Some(j) => {
                out.push_str("(value not shown)");
                rest = &rest[i + 2 + j..];
            }
            None => {
                out.push_str("(value not shown)");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads, parses and validates a spec file (a regular file of at most `input::SPEC_LIMIT` bytes).
pub fn load(file: &Path) -> Result<Cluster, SpecError> {
    let text = crate::input::text(file, crate::input::SPEC_LIMIT).map_err(|why| SpecError {
        file: file.to_path_buf(),
        problems: vec![Problem { path: String::new(), message: format!("cannot read the file: {why}") }],
    })?;
    parse(file, &text)
}

struct Check {
    problems: Vec<Problem>,
}

impl Check {
    fn fail(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem { path: path.into(), message: message.into() });
    }

    /// A file the spec names, relative to the spec: its text, or a problem at `path`.
    fn read(&mut self, file: &Path, path: &str, rel: &str) -> Option<String> {
        let full = file.parent().unwrap_or(Path::new(".")).join(rel);
        match crate::input::text(&full, crate::input::PEM_LIMIT) {
            Ok(t) => Some(t),
            Err(why) => {
                self.fail(path, format!("{rel:?}: cannot read {}: {why}", full.display()));
                None
            }
        }
    }
}

fn validate(file: &Path, raw: &RawSpec) -> Result<Cluster, Vec<Problem>> {
    let mut c = Check { problems: Vec::new() };
    if raw.api_version != "kubeforge/v1alpha1" {
        c.fail("apiVersion", format!("{:?} is not supported; use \"kubeforge/v1alpha1\"", raw.api_version));
    }
    if raw.kind != "Cluster" {
        c.fail("kind", format!("{:?} is not supported; use \"Cluster\"", raw.kind));
    }
    if !crate::net::is_dns_label(&raw.name) {
        c.fail(
            "name",
            format!(
                "{:?} is not a valid cluster name (a DNS-1123 label: lowercase letters, digits and '-', at most 63)",
                raw.name
            ),
        );
    }
    let version = parse_version(&raw.kubernetes_version).unwrap_or_else(|m| {
        c.fail("kubernetesVersion", m);
        Version { minor: crate::versions::minors().last().expect("a supported minor"), patch: 0 }
    });
    let endpoint = if raw.control_plane_endpoint.is_empty() {
        None
    } else {
        match crate::net::parse_host_port(&raw.control_plane_endpoint) {
            Ok((host, port)) => Some(Endpoint { host, port: port.unwrap_or(raw.api_server.bind_port) }),
            Err(m) => {
                c.fail("controlPlaneEndpoint", format!("{:?}: {m}", raw.control_plane_endpoint));
                None
            }
        }
    };
    let service_cidrs = subnets(&mut c, "networking.serviceSubnet", &raw.networking.service_subnet, true);
    if !raw.networking.pod_subnet.is_empty() {
        subnets(&mut c, "networking.podSubnet", &raw.networking.pod_subnet, false);
    }
    if !crate::net::is_dns_subdomain(&raw.networking.dns_domain) {
        c.fail(
            "networking.dnsDomain",
            format!("{:?} is not a valid DNS domain (RFC 1123 subdomain)", raw.networking.dns_domain),
        );
    }
    let pki = validate_pki(&mut c, file, raw);
    let cert_sans = sans(&mut c, "apiServer.certSANs", &raw.api_server.cert_sans);
    let host_ca_cert_dirs = validate_ca_dirs(&mut c, &raw.host_ca_cert_dirs);
    let security = crate::security::validate(&raw.security, &mut |p, m| c.fail(p, m));
    let etcd = match &raw.etcd.external {
        None => Etcd::Stacked,
        Some(x) => Etcd::External(external_etcd(&mut c, file, x)),
    };
    let nodes = validate_nodes(&mut c, &raw.nodes);
    let facts = crate::versions::facts(version.minor).expect("a supported minor");
    let custom = validate_custom(&mut c, file, raw, facts);

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    Ok(Cluster {
        name: raw.name.clone(),
        version,
        endpoint,
        service_subnet: raw.networking.service_subnet.clone(),
        service_cidrs,
        pod_subnet: raw.networking.pod_subnet.clone(),
        dns_domain: raw.networking.dns_domain.clone(),
        key_algorithm: pki.key_algorithm,
        ca_validity: pki.ca_validity,
        cert_validity: pki.cert_validity,
        renew_before: pki.renew_before,
        cert_sans,
        host_ca_cert_dirs,
        etcd,
        security,
        sealed_to: pki.sealed_to,
        provided_cas: pki.provided_cas,
        image_repository: raw.image_repository.clone(),
        bind_port: raw.api_server.bind_port,
        etcd_image_repository: custom.etcd_image_repository,
        etcd_image_tag: custom.etcd_image_tag,
        etcd_data_dir: custom.etcd_data_dir,
        extras: custom.extras,
        kubelet: raw.kubelet.clone(),
        patches: custom.patches,
        warnings: Vec::new(),
        nodes,
        rotation: pki.rotation,
    })
}

/// The customization of the spec, validated (see `crate::custom`).
struct Custom {
    etcd_image_repository: Option<String>,
    etcd_image_tag: Option<String>,
    etcd_data_dir: String,
    extras: std::collections::BTreeMap<crate::custom::Component, crate::custom::Extras>,
    patches: Vec<crate::custom::patches::Patch>,
}

fn validate_custom(c: &mut Check, file: &Path, raw: &RawSpec, facts: &crate::versions::Facts) -> Custom {
    use crate::custom::{self, Component, RawExtras};
    if let Err(m) = image_repository(&raw.image_repository) {
        c.fail("imageRepository", m);
    }
    if raw.api_server.bind_port == 0 {
        c.fail("apiServer.bindPort", "0 is not a port; use 1 to 65535 (kubeadm's default is 6443)");
    }
    let local = raw.etcd.local.as_ref();
    if local.is_some() && raw.etcd.external.is_some() {
        c.fail("etcd", "set etcd.local (kubeforge runs etcd) or etcd.external (etcd runs elsewhere), not both");
    }
    let defaults = RawLocalEtcd::default();
    let local = local.unwrap_or(&defaults);
    let etcd_image_repository = (!local.image_repository.is_empty()).then(|| {
        if let Err(m) = image_repository(&local.image_repository) {
            c.fail("etcd.local.imageRepository", m);
        }
        local.image_repository.clone()
    });
    let etcd_image_tag = (!local.image_tag.is_empty()).then(|| {
        let t = &local.image_tag;
        let ok = t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            c.fail(
                "etcd.local.imageTag",
                format!(
                    "{:?} is not an image tag (letters, digits, '_', '.', '-', at most 128, e.g. \"3.6.8-0\")",
                    t.chars().take(80).collect::<String>()
                ),
            );
        }
        t.clone()
    });
    if !crate::net::is_clean_abs_path(&local.data_dir) || local.data_dir == "/" {
        let shown: String = local.data_dir.chars().take(80).collect();
        c.fail("etcd.local.dataDir", format!("{shown:?} is not a clean absolute path of a directory"));
    } else if local.data_dir == crate::layout::K8S_DIR
        || local.data_dir.starts_with(&format!("{}/", crate::layout::K8S_DIR))
    {
        c.fail(
            "etcd.local.dataDir",
            format!("{:?} is inside {}, where kubeforge's files are installed", local.data_dir, crate::layout::K8S_DIR),
        );
    }
    let api = &raw.api_server;
    let raws: [(Component, RawExtras); 4] = [
        (
            Component::ApiServer,
            RawExtras {
                extra_args: api.extra_args.clone(),
                extra_volumes: api.extra_volumes.clone(),
                extra_envs: api.extra_envs.clone(),
            },
        ),
        (
            Component::ControllerManager,
            RawExtras {
                extra_args: raw.controller_manager.extra_args.clone(),
                extra_volumes: raw.controller_manager.extra_volumes.clone(),
                extra_envs: raw.controller_manager.extra_envs.clone(),
            },
        ),
        (
            Component::Scheduler,
            RawExtras {
                extra_args: raw.scheduler.extra_args.clone(),
                extra_volumes: raw.scheduler.extra_volumes.clone(),
                extra_envs: raw.scheduler.extra_envs.clone(),
            },
        ),
        (
            Component::Etcd,
            RawExtras {
                extra_args: local.extra_args.clone(),
                extra_volumes: local.extra_volumes.clone(),
                extra_envs: local.extra_envs.clone(),
            },
        ),
    ];
    let mut extras = std::collections::BTreeMap::new();
    for (comp, r) in &raws {
        let x = custom::validate(*comp, r, facts, &mut |p, m| c.fail(p, m));
        if !x.is_empty() {
            extras.insert(*comp, x);
        }
    }
    custom::kubelet::validate(&raw.kubelet, "kubelet", &mut |p, m| c.fail(p, m));
    let patches = match &raw.patches {
        None => Vec::new(),
        Some(p) => {
            let dir = file.parent().unwrap_or(Path::new(".")).join(&p.directory);
            custom::patches::load(&dir, &mut |m| c.fail("patches.directory", m))
        }
    };
    Custom { etcd_image_repository, etcd_image_tag, etcd_data_dir: local.data_dir.clone(), extras, patches }
}

/// An image repository: a registry host (with an optional port) and optional path components, as container
/// image references spell them (`registry.example.com:5000/k8s`), no scheme, no tag.
fn image_repository(r: &str) -> Result<(), String> {
    let mut parts = r.split('/');
    let host = parts.next().unwrap_or("");
    let (name, port) = host.split_once(':').map_or((host, None), |(h, p)| (h, Some(p)));
    let host_ok = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
        && !name.starts_with(['.', '-'])
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let path_ok = parts.all(|c| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    });
    if r.len() <= 255 && host_ok && path_ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an image repository: a registry host with an optional port and path, without scheme or tag \
             (e.g. {DEFAULT_REGISTRY} or registry.example.com:5000/k8s)",
            r.chars().take(80).collect::<String>()
        ))
    }
}

/// `pki:` validated.
struct Pki {
    key_algorithm: KeyAlgorithm,
    ca_validity: i64,
    cert_validity: i64,
    renew_before: i64,
    sealed_to: Option<Vec<String>>,
    provided_cas: std::collections::BTreeMap<String, ProvidedCa>,
    rotation: std::collections::BTreeMap<String, crate::pki::rotation::Stage>,
}

fn validate_pki(c: &mut Check, file: &Path, raw: &RawSpec) -> Pki {
    let p = &raw.pki;
    let key_algorithm =
        KeyAlgorithm::ALL.iter().find(|(n, _)| *n == p.key_algorithm).map(|(_, a)| *a).unwrap_or_else(|| {
            let names: Vec<&str> = KeyAlgorithm::ALL.iter().map(|(n, _)| *n).collect();
            c.fail("pki.keyAlgorithm", format!("{:?} is not one of {}", p.key_algorithm, names.join(", ")));
            KeyAlgorithm::EcdsaP256
        });
    let ca_validity = duration(c, "pki.caValidity", &p.ca_validity);
    let cert_validity = duration(c, "pki.certificateValidity", &p.certificate_validity);
    let renew_before = duration(c, "pki.renewBefore", &p.renew_before);
    if renew_before > 0 && cert_validity > 0 && renew_before >= cert_validity {
        c.fail(
            "pki.renewBefore",
            format!(
                "{:?} is not shorter than pki.certificateValidity {:?}: every run would reissue every certificate",
                p.renew_before, p.certificate_validity
            ),
        );
    }
    if ca_validity > 0 && cert_validity > ca_validity {
        c.fail(
            "pki.certificateValidity",
            format!(
                "{:?} is longer than pki.caValidity {:?}: a certificate cannot outlive the CA that signs it",
                p.certificate_validity, p.ca_validity
            ),
        );
    }
    let mut provided_cas = std::collections::BTreeMap::new();
    for (name, ca) in &p.cas {
        let at = |f: &str| format!("pki.cas.{name}.{f}");
        let allowed = ["ca", "front-proxy-ca", "etcd-ca"];
        if !allowed.contains(&name.as_str()) {
            c.fail(format!("pki.cas.{name}"), format!("{name:?} is not one of {}", allowed.join(", ")));
            continue;
        }
        if name == "etcd-ca" && raw.etcd.external.is_some() {
            c.fail(format!("pki.cas.{name}"), "with etcd.external there is no etcd CA (use etcd.external.clientCA)");
            continue;
        }
        let cert_pem = c.read(file, &at("cert"), &ca.cert);
        let key_pem = ca.key.as_ref().map(|k| c.read(file, &at("key"), k));
        let chain_pem = ca.chain.as_ref().map(|k| c.read(file, &at("chain"), k));
        if let Some(cert) = &cert_pem
            && crate::input::looks_secret(cert)
        {
            c.fail(at("cert"), format!("{:?} holds a private key, not the CA's certificate", ca.cert));
            continue;
        }
        if let Some(Some(chain)) = &chain_pem
            && crate::input::looks_secret(chain)
        {
            c.fail(
                at("chain"),
                format!(
                    "{:?} holds a private key; the chain holds only certificates",
                    ca.chain.as_deref().unwrap_or("")
                ),
            );
            continue;
        }
        if let (Some(cert_pem), Some(key_pem), Some(chain_pem)) =
            (cert_pem, key_pem.map_or(Some(None), |k| k.map(Some)), chain_pem.map_or(Some(None), |k| k.map(Some)))
        {
            let source = file.parent().unwrap_or(Path::new(".")).join(&ca.cert).display().to_string();
            provided_cas.insert(name.clone(), ProvidedCa { cert_pem, key_pem, chain_pem, source });
        }
    }
    let sealed_to = p.encryption.as_ref().map(|e| {
        if e.age.recipients.is_empty() {
            c.fail("pki.encryption.age.recipients", "list at least one age recipient (age1...)");
        }
        for (i, r) in e.age.recipients.iter().enumerate() {
            if let Err(m) = crate::sealed::parse_recipient(r) {
                c.fail(format!("pki.encryption.age.recipients[{i}]"), m);
            }
        }
        e.age.recipients.clone()
    });
    let rotation = crate::pki::rotation::validate(
        &p.rotation,
        raw.etcd.external.is_some(),
        &|name| p.cas.contains_key(name),
        &mut |path, m| c.fail(path, m),
    );
    Pki { key_algorithm, ca_validity, cert_validity, renew_before, sealed_to, provided_cas, rotation }
}

/// Each directory becomes a hostPath volume named after its path (kubeadm's rule: "/etc/pki/ca-trust" ->
/// "etc-pki-ca-trust"), so the name must be a valid volume name, unique, and not shadow a fixed mount.
fn validate_ca_dirs(c: &mut Check, dirs: &[String]) -> Vec<String> {
    let mut host_ca_cert_dirs = Vec::new();
    let mut volume_names = BTreeSet::new();
    for (i, d) in dirs.iter().enumerate() {
        let at = format!("hostCACertDirs[{i}]");
        let name = d.trim_start_matches('/').replace('/', "-");
        let fixed = ["/etc/ssl/certs", "/etc/kubernetes", "/usr/libexec/kubernetes"];
        if !crate::net::is_clean_abs_path(d) || d == "/" {
            c.fail(at, format!("{d:?} is not a clean absolute path of a directory"));
        } else if !crate::net::is_dns_label(&name) {
            c.fail(
                at,
                format!(
                    "{d:?} would be mounted as volume {name:?}, which is not a valid volume name: use lowercase \
                     letters, digits, '-' and '/', at most 63 characters"
                ),
            );
        } else if fixed.iter().any(|f| d == f || d.starts_with(&format!("{f}/")) || f.starts_with(&format!("{d}/"))) {
            c.fail(at, format!("{d:?} overlaps a directory the control plane already mounts ({})", fixed.join(", ")));
        } else if !volume_names.insert(name.clone()) {
            c.fail(at, format!("{d:?} gives the same volume name {name:?} as another entry"));
        } else {
            host_ca_cert_dirs.push(d.clone());
        }
    }
    host_ca_cert_dirs
}

fn validate_nodes(c: &mut Check, raw: &[RawNode]) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut names = BTreeSet::new();
    let mut addresses = BTreeSet::new();
    for (i, n) in raw.iter().enumerate() {
        let at = |f: &str| format!("nodes[{i}].{f}");
        if !crate::net::is_dns_subdomain(&n.name) {
            c.fail(
                at("name"),
                format!(
                    "{:?} is not a valid node name: a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', \
                     labels of at most 63 characters starting and ending with a letter or digit)",
                    n.name
                ),
            );
        } else if !names.insert(n.name.as_str()) {
            c.fail(at("name"), format!("{:?} is used by another node; node names are unique", n.name));
        }
        let role = match n.role.as_str() {
            "control-plane" => Role::ControlPlane,
            "worker" => Role::Worker,
            other => {
                c.fail(at("role"), format!("{other:?} is not one of control-plane, worker"));
                Role::Worker
            }
        };
        let address = match n.address.parse::<IpAddr>() {
            Ok(a) if a.is_unspecified() || a.is_multicast() => {
                c.fail(at("address"), format!("{:?} cannot be a node address (unspecified or multicast)", n.address));
                a
            }
            Ok(a) => {
                if !addresses.insert(a) {
                    c.fail(at("address"), format!("{:?} is used by another node; addresses are unique", n.address));
                }
                a
            }
            Err(_) => {
                c.fail(at("address"), format!("{:?} is not an IPv4 or IPv6 address", n.address));
                IpAddr::from([127, 0, 0, 1])
            }
        };
        let node_sans = sans(c, &at("sans"), &n.sans);
        crate::custom::kubelet::validate(&n.kubelet, &at("kubelet"), &mut |p, m| c.fail(p, m));
        for (k, v) in &n.labels {
            if let Err(m) = node_label(k, v) {
                c.fail(format!("nodes[{i}].labels{}", key_path(k)), m);
            }
        }
        let taints = match &n.taints {
            None if role == Role::ControlPlane => {
                vec![Taint { key: CONTROL_PLANE_TAINT.into(), value: String::new(), effect: "NoSchedule".into() }]
            }
            None => Vec::new(),
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (j, t) in list.iter().enumerate() {
                    let at = format!("nodes[{i}].taints[{j}]");
                    if let Err(m) = qualified_name(&t.key) {
                        c.fail(format!("{at}.key"), format!("{:?} {m}", t.key.chars().take(80).collect::<String>()));
                    }
                    if !label_value(&t.value) {
                        c.fail(format!("{at}.value"), LABEL_VALUE_RULE);
                    }
                    if !TAINT_EFFECTS.contains(&t.effect.as_str()) {
                        c.fail(format!("{at}.effect"), format!("must be one of {}", TAINT_EFFECTS.join(", ")));
                    }
                    if !seen.insert((t.key.as_str(), t.effect.as_str())) {
                        c.fail(at, format!("{} with effect {} is listed twice", t.key, t.effect));
                    }
                }
                list.iter()
                    .map(|t| Taint { key: t.key.clone(), value: t.value.clone(), effect: t.effect.clone() })
                    .collect()
            }
        };
        nodes.push(Node {
            name: n.name.clone(),
            role,
            address,
            sans: node_sans,
            kubelet: n.kubelet.clone(),
            labels: n.labels.clone(),
            taints,
        });
    }
    if raw.is_empty() {
        c.fail("nodes", "the cluster has no nodes; list at least one node with role control-plane");
    } else if !nodes.iter().any(Node::is_control_plane) {
        c.fail("nodes", "no node has role control-plane; a cluster needs at least one");
    }
    nodes
}

/// `.key` for a plain key, `["key"]` (escaped) for anything else, so that a path never carries a raw newline.
fn key_path(k: &str) -> String {
    if !k.is_empty() && k.len() <= 253 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)) {
        format!(".{k}")
    } else {
        format!("[{:?}]", k.chars().take(80).collect::<String>())
    }
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const LABEL_VALUE_RULE: &str =
    "must be empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";

/// A label or taint key: an optional DNS-subdomain prefix and `/`, then a name of at most 63 characters.
fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = key.rsplit_once('/').map_or((None, key), |(p, n)| (Some(p), n));
    if let Some(p) = prefix
        && !crate::net::is_dns_subdomain(p)
    {
        return Err("has a prefix that is not a DNS subdomain (e.g. example.com/name)".into());
    }
    if name.is_empty() || !label_value(name) {
        return Err(
            "is not a label key: an optional prefix/ and a name of at most 63 letters, digits, '-', '_' and '.', \
             starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

fn label_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.is_empty()
        || (b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}

/// A label the kubelet may register its node with: kubelets may set labels in the kubernetes.io and k8s.io
/// namespaces only from a fixed list (the kubelet refuses to start otherwise, and NodeRestriction would refuse
/// the update), so `node-role.kubernetes.io/*` is applied with kubectl after the node joins.
fn node_label(k: &str, v: &str) -> Result<(), String> {
    const ALLOWED: [&str; 11] = [
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    ];
    qualified_name(k).map_err(|m| format!("the key {m}"))?;
    if !label_value(v) {
        return Err(format!("the value {LABEL_VALUE_RULE}"));
    }
    let ns = k.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
    let restricted = ["kubernetes.io", "k8s.io"].iter().any(|d| ns == *d || ns.ends_with(&format!(".{d}")));
    let allowed_ns =
        ["kubelet.kubernetes.io", "node.kubernetes.io"].iter().any(|d| ns == *d || ns.ends_with(&format!(".{d}")));
    if restricted && !allowed_ns && !ALLOWED.contains(&k) {
        return Err(format!(
            "a kubelet may not set {k:?}: labels under kubernetes.io and k8s.io are limited to {} and the \
             kubelet.kubernetes.io and node.kubernetes.io namespaces (the kubelet refuses to start). Apply it with \
             kubectl label once the node has joined",
            ALLOWED.join(", ")
        ));
    }
    Ok(())
}

fn external_etcd(c: &mut Check, file: &Path, x: &RawExternalEtcd) -> ExternalEtcd {
    if x.endpoints.is_empty() {
        c.fail("etcd.external.endpoints", "list at least one etcd client URL, e.g. https://10.0.0.5:2379");
    }
    for (i, e) in x.endpoints.iter().enumerate() {
        let ok = e
            .strip_prefix("https://")
            .or_else(|| e.strip_prefix("http://"))
            .is_some_and(|hp| crate::net::parse_host_port(hp).is_ok_and(|(_, port)| port.is_some()));
        if !ok {
            c.fail(
                format!("etcd.external.endpoints[{i}]"),
                format!("{e:?} is not a URL of the form https://HOST:PORT"),
            );
        }
    }
    let path = |c: &mut Check, field: &str, v: &str| -> Option<String> {
        if v.is_empty() {
            return None;
        }
        if !crate::net::is_clean_abs_path(v) {
            c.fail(format!("etcd.external.{field}"), format!("{v:?} is not a clean absolute path on the nodes"));
        }
        Some(v.to_string())
    };
    let (ca_file, cert_file, key_file) =
        (path(c, "caFile", &x.ca_file), path(c, "certFile", &x.cert_file), path(c, "keyFile", &x.key_file));
    if cert_file.is_some() != key_file.is_some() {
        c.fail("etcd.external", "set both certFile and keyFile, or neither");
    }
    let client_ca = x.client_ca.as_ref().and_then(|ca| {
        if ca_file.is_some() || cert_file.is_some() {
            c.fail(
                "etcd.external.clientCA",
                "kubeforge installs the CA and the client certificate it issues itself; leave caFile, certFile and keyFile empty",
            );
        }
        let cert = c.read(file, "etcd.external.clientCA.cert", &ca.cert);
        let key = c.read(file, "etcd.external.clientCA.key", &ca.key);
        Some((cert?, key?))
    });
    ExternalEtcd { endpoints: x.endpoints.clone(), ca_file, cert_file, key_file, client_ca }
}

fn parse_version(s: &str) -> Result<Version, String> {
    let minors: Vec<u32> = crate::versions::minors().collect();
    let (first, last) = (minors[0], minors[minors.len() - 1]);
    let bad = || {
        format!("{s:?} is not a Kubernetes version of the form v1.MINOR.PATCH (supported: v1.{first}.x to v1.{last}.x)")
    };
    let rest = s.strip_prefix("v1.").ok_or_else(bad)?;
    let (minor, patch) = rest.split_once('.').ok_or_else(bad)?;
    let num = |x: &str| {
        if !x.is_empty() && x.len() <= 4 && x.bytes().all(|b| b.is_ascii_digit()) && (x == "0" || !x.starts_with('0')) {
            x.parse::<u32>().ok()
        } else {
            None
        }
    };
    let (minor, patch) = (num(minor).ok_or_else(bad)?, num(patch).ok_or_else(bad)?);
    if crate::versions::facts(minor).is_none() {
        return Err(format!(
            "{s:?} is not supported: kubeforge knows kubeadm's output for v1.{first}.x to v1.{last}.x{}",
            if minor < first {
                format!(" (upgrade the cluster with kubeadm to v1.{first} first, then adopt it)")
            } else {
                String::new()
            }
        ));
    }
    Ok(Version { minor, patch })
}

/// A comma-separated list of one CIDR, or two of different families (dual-stack).
fn subnets(c: &mut Check, path: &str, value: &str, service: bool) -> Vec<Cidr> {
    let mut out = Vec::new();
    for part in value.split(',') {
        match part.parse::<Cidr>() {
            Ok(cidr) => out.push(cidr),
            Err(m) if part == value => {
                c.fail(path, format!("{value:?} {m}"));
                return out;
            }
            Err(m) => {
                c.fail(path, format!("{value:?}: {part:?} {m}"));
                return out;
            }
        }
    }
    if out.len() > 2 || (out.len() == 2 && out[0].addr.is_ipv4() == out[1].addr.is_ipv4()) {
        c.fail(path, format!("{value:?}: use one CIDR, or two of different families (IPv4,IPv6) for dual-stack"));
    }
    if service {
        for cidr in &out {
            // The apiserver's service VIP (index 1) and the DNS service (index 10) must fit.
            if cidr.host_bits() < 4 {
                c.fail(
                    path,
                    format!(
                        "{value:?}: {cidr} is too small for the service VIP and cluster DNS (/28 at most for IPv4)"
                    ),
                );
            }
            if !cidr.addr.is_ipv4() && cidr.prefix < 108 {
                c.fail(
                    path,
                    format!("{value:?}: an IPv6 service subnet must be /108 or smaller (kube-apiserver's limit)"),
                );
            }
        }
    }
    out
}

/// A Go duration of whole hours, minutes and seconds (`87600h`, `8760h0m0s`, `90m`), in seconds.
fn duration(c: &mut Check, path: &str, value: &str) -> i64 {
    match crate::times::parse_duration(value) {
        Some(s) if s > 0 => s,
        _ => {
            c.fail(path, format!("{value:?} is not a positive duration such as \"8760h\" or \"720h30m\""));
            0
        }
    }
}

fn sans(c: &mut Check, path: &str, values: &[String]) -> Vec<San> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        match v.parse::<San>() {
            Ok(s) => out.push(s),
            Err(m) => c.fail(format!("{path}[{i}]"), format!("{v:?} {m}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_v1_minor_patch_of_a_supported_minor() {
        let v = |s: &str| parse_version(s);
        let first = crate::versions::minors().next().unwrap();
        assert_eq!(v(&format!("v1.{first}.0")), Ok(Version { minor: first, patch: 0 }));
        assert_eq!(v(&format!("v1.{first}.12")), Ok(Version { minor: first, patch: 12 }));
        for bad in
            ["1.34.1", "v1.34", "v1.34.1.2", "v2.34.1", "v1.034.1", "v1.34.01", "v1.34.x", "v1.34.-1", "", "v1..1"]
        {
            let e = v(bad).unwrap_err();
            assert!(e.contains("is not a Kubernetes version of the form v1.MINOR.PATCH"), "{bad}: {e}");
        }
        let e = v("v1.99.0").unwrap_err();
        assert!(e.contains("is not supported"), "{e}");
    }

    #[test]
    fn yaml_messages_never_echo_values() {
        let m =
            without_values("invalid type: string \"-----BEGIN EC PRIVATE KEY-----\\nMHc\", expected struct RawSpec");
        assert_eq!(m, "invalid type: string (value not shown), expected struct RawSpec");
        let m = without_values("unknown field `nodez`, expected one of `apiVersion`, `kind`");
        assert_eq!(m, "unknown field `nodez`, expected one of `apiVersion`, `kind`");
        assert_eq!(without_values("unknown variant `a b c`, x"), "unknown variant (value not shown), x");
        let spec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\n";
        let e = parse(Path::new("k.key"), spec).unwrap_err().to_string();
        assert!(e.contains("private key material") && !e.contains("MHc"), "{e}");
        let e = parse(Path::new("x.yaml"), "just some words").unwrap_err().to_string();
        assert!(!e.contains("just some words"), "{e}");
    }
}
