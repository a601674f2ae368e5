//! The four static pods of a control-plane node, as kubeadm of the cluster's minor writes them (kubeadm-facts §3;
//! what differs by version is in `crate::versions`).
//!
//! Flags are collected as (name, value) pairs and sorted by name, then value, exactly like kubeadm's
//! `ArgumentsToCommand`, so the written order is alphabetical and a flag change is a one-line diff. A flag that
//! names a file says so when it is built ([`Flags::file`]): that is where the index's `usedBy` comes from.

use std::net::IpAddr;

use askama::Template;

use super::filters;

use crate::layout::{self, AUDIT_LOG_DIR, AUDIT_POLICY, ENCRYPTION_CONFIG, ETCD_DATA_DIR, ETCD_PKI_DIR, PKI_DIR};
use crate::net::{Host, join_host_port};
use crate::pki::profile::ProfileId;
use crate::spec::{Cluster, Etcd, Node};

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const ETCD_METRICS_PORT: u16 = 2381;
const KCM_PORT: u16 = 10257;
const SCHEDULER_PORT: u16 = 10259;

#[derive(Template)]
#[template(path = "static-pod.yml", escape = "none")]
pub struct StaticPod {
    pub name: &'static str,
    /// Every file a flag names, with the use: (`/etc/kubernetes/pki/ca.crt`, `kube-apiserver --client-ca-file`),
    /// in command order.
    pub uses: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// Serializers before v1.34 wrote `creationTimestamp: null` (kubeadm-facts §3.0).
    pub creation_timestamp_null: bool,
    pub command: Vec<String>,
    pub image: String,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub startup: Option<Probe>,
    /// From v1.34 the probe port is a named container port.
    pub probe_port: Option<u16>,
    pub requests: Vec<(&'static str, &'static str)>,
    pub mounts: Vec<Mount>,
    pub volumes: Vec<Volume>,
}

pub struct Probe {
    pub host: Option<String>,
    pub path: &'static str,
    pub port: String,
    pub scheme: &'static str,
    pub initial_delay: Option<u32>,
    pub period: u32,
    pub timeout: u32,
    pub failure_threshold: u32,
}

pub struct Mount {
    pub name: String,
    pub path: String,
    pub read_only: bool,
}

pub struct Volume {
    pub name: String,
    pub path: String,
    pub kind: &'static str,
}

#[derive(Clone, Copy)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// A probe with kubeadm's fixed timings (kubeadm-facts §3.0); startup's failureThreshold is
/// ceil(4m0s / 10s) = 24 for the default `controlPlaneComponentHealthCheck`.
fn probe(
    c: &Cluster,
    kind: ProbeKind,
    host: Option<String>,
    path: &'static str,
    port: u16,
    scheme: &'static str,
) -> Probe {
    let port = if named_probe_port(c) { "probe-port".to_string() } else { port.to_string() };
    let (initial_delay, period, failure_threshold) = match kind {
        ProbeKind::Liveness => (Some(10), 10, 8),
        ProbeKind::Readiness => (None, 1, 3),
        ProbeKind::Startup => (Some(10), 10, 24),
    };
    Probe { host, path, port, scheme, initial_delay, period, timeout: 15, failure_threshold }
}

fn named_probe_port(c: &Cluster) -> bool {
    c.facts().named_probe_port
}

/// The etcd image tag: kubeadm's for the cluster's version (kubeadm-facts §3.4; v1.35–v1.37 sheet §1).
pub fn etcd_tag(c: &Cluster) -> &'static str {
    c.facts().etcd_tag(c.version.patch)
}

/// etcd 3.6 renamed two experimental flags (kubeadm-facts §3.4, P3); kubeadm up to v1.35 picks the names by the
/// etcd image, from v1.36 always the new ones.
pub fn etcd_is_36(c: &Cluster) -> bool {
    !c.facts().etcd_flags_follow_image || crate::versions::etcd_at_least_36(etcd_tag(c))
}

/// `--tls-min-version` and `--tls-cipher-suites` for the Go components that serve HTTPS.
fn tls_flags(c: &Cluster, flags: &mut Flags) {
    flags.arg("tls-cipher-suites", c.security.cipher_suites.join(","));
    flags.arg("tls-min-version", c.security.tls_min_version.clone());
}

fn image(name: &str, tag: &str) -> String {
    format!("registry.k8s.io/{name}:{tag}")
}

/// A component's flags as they are decided. Values are kept as given; [`Flags::command`] sorts them.
#[derive(Default)]
struct Flags {
    list: Vec<(&'static str, String, bool)>,
}

impl Flags {
    /// A flag whose value is not a file (a URL, a directory, a setting).
    fn arg(&mut self, name: &'static str, value: impl Into<String>) {
        self.list.push((name, value.into(), false));
    }

    /// A flag whose value names a file the component reads (comma-separated files for several).
    fn file(&mut self, name: &'static str, path: impl Into<String>) {
        self.list.push((name, path.into(), true));
    }

    /// The command line, sorted by flag name, then value (kubeadm's `ArgumentsToCommand`), and the files it
    /// names with their uses, in the same order.
    fn command(mut self, binary: &str) -> (Vec<String>, Vec<(String, String)>) {
        self.list.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut uses = Vec::new();
        for (name, value, is_file) in &self.list {
            if *is_file {
                uses.extend(
                    value.split(',').filter(|v| !v.is_empty()).map(|v| (v.to_string(), format!("{binary} --{name}"))),
                );
            }
        }
        let cmd = std::iter::once(binary.to_string())
            .chain(self.list.into_iter().map(|(k, v, _)| format!("--{k}={v}")))
            .collect();
        (cmd, uses)
    }
}

fn localhost(node: &Node) -> IpAddr {
    if node.address.is_ipv4() { IpAddr::from([127, 0, 0, 1]) } else { IpAddr::from(std::net::Ipv6Addr::LOCALHOST) }
}

fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", join_host_port(&Host::Ip(ip), port))
}

/// Read-only hostPath mounts for `ca-certs`, `k8s-certs` and the spec's CA directories; shared by the apiserver
/// and the controller-manager (kubeadm-facts §3.1, §3.2).
fn ca_volumes(c: &Cluster) -> Vec<(String, String, &'static str, bool)> {
    let mut v = vec![
        ("ca-certs".to_string(), "/etc/ssl/certs".to_string(), "DirectoryOrCreate", true),
        ("k8s-certs".to_string(), PKI_DIR.to_string(), "DirectoryOrCreate", true),
    ];
    for d in &c.host_ca_cert_dirs {
        v.push((d.trim_start_matches('/').replace('/', "-"), d.clone(), "DirectoryOrCreate", true));
    }
    v
}

/// Volumes and mounts, both sorted by name (kubeadm's `VolumeMapToSlice`).
fn volumes(mut v: Vec<(String, String, &'static str, bool)>) -> (Vec<Mount>, Vec<Volume>) {
    v.sort();
    // The spec's validation keeps names unique; a duplicate here is a bug, never something to drop silently.
    assert!(
        v.windows(2).all(|w| w[0].0 != w[1].0),
        "duplicate volume names: {:?}",
        v.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    let mounts = v.iter().map(|(n, p, _, ro)| Mount { name: n.clone(), path: p.clone(), read_only: *ro }).collect();
    let vols = v.into_iter().map(|(name, path, kind, _)| Volume { name, path, kind }).collect();
    (mounts, vols)
}

pub fn kube_apiserver(c: &Cluster, node: &Node) -> StaticPod {
    let adv = node.address;
    let mut f = Flags::default();
    f.arg("advertise-address", adv.to_string());
    f.arg("allow-privileged", "true");
    f.arg("authorization-mode", "Node,RBAC");
    f.file("client-ca-file", layout::crt(ProfileId::Ca));
    f.arg("enable-admission-plugins", "NodeRestriction");
    f.arg("enable-bootstrap-token-auth", "true");
    f.file("kubelet-client-certificate", layout::crt(ProfileId::ApiserverKubeletClient));
    f.file("kubelet-client-key", layout::key(ProfileId::ApiserverKubeletClient));
    f.arg("kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname");
    f.file("proxy-client-cert-file", layout::crt(ProfileId::FrontProxyClient));
    f.file("proxy-client-key-file", layout::key(ProfileId::FrontProxyClient));
    f.arg("requestheader-allowed-names", "front-proxy-client");
    f.file("requestheader-client-ca-file", layout::crt(ProfileId::FrontProxyCa));
    f.arg("requestheader-extra-headers-prefix", "X-Remote-Extra-");
    f.arg("requestheader-group-headers", "X-Remote-Group");
    f.arg("requestheader-username-headers", "X-Remote-User");
    f.arg("secure-port", crate::API_SERVER_PORT.to_string());
    f.arg("service-account-issuer", format!("https://kubernetes.default.svc.{}", c.dns_domain));
    f.file("service-account-key-file", layout::SA_PUB);
    f.file("service-account-signing-key-file", layout::SA_KEY);
    f.arg("service-cluster-ip-range", c.service_subnet.clone());
    f.file("tls-cert-file", layout::crt(ProfileId::Apiserver));
    f.file("tls-private-key-file", layout::key(ProfileId::Apiserver));
    let mut vols = ca_volumes(c);
    match &c.etcd {
        // kube-apiserver talks to the etcd member on its own node, as kubeadm sets it up.
        Etcd::Stacked => {
            f.file("etcd-cafile", layout::crt(ProfileId::EtcdCa));
            f.file("etcd-certfile", layout::crt(ProfileId::ApiserverEtcdClient));
            f.file("etcd-keyfile", layout::key(ProfileId::ApiserverEtcdClient));
            f.arg("etcd-servers", url("https", localhost(node), ETCD_CLIENT_PORT));
        }
        Etcd::External(x) => {
            f.arg("etcd-servers", x.endpoints.join(","));
            let (ca, cert, key) = if x.client_ca.is_some() {
                (
                    Some(layout::EXTERNAL_ETCD_CA.to_string()),
                    Some(layout::crt(ProfileId::ApiserverEtcdClient)),
                    Some(layout::key(ProfileId::ApiserverEtcdClient)),
                )
            } else {
                (x.ca_file.clone(), x.cert_file.clone(), x.key_file.clone())
            };
            // kubeadm: --etcd-cafile only if set; cert and key only together.
            if let Some(ca) = &ca {
                f.file("etcd-cafile", ca.clone());
            }
            if let (Some(cert), Some(key)) = (&cert, &key) {
                f.file("etcd-certfile", cert.clone());
                f.file("etcd-keyfile", key.clone());
            }
            // Each directory holding those files that no other volume covers gets a read-only mount
            // etcd-certs-<i>, as kubeadm does.
            let mut dirs: Vec<String> = Vec::new();
            for file in [ca, cert, key].into_iter().flatten() {
                let dir = file.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d }).to_string();
                let covered = vols.iter().any(|(_, p, _, _)| dir == *p || dir.starts_with(&format!("{p}/")));
                if !covered && !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
            for (i, d) in dirs.into_iter().enumerate() {
                vols.push((format!("etcd-certs-{i}"), d, "DirectoryOrCreate", true));
            }
        }
    }
    // kubeforge's hardening (src/security.rs): every flag kubeadm leaves out that CIS 1.12 checks for.
    let sec = &c.security;
    if !sec.profiling {
        f.arg("profiling", "false");
    }
    if let Some(a) = sec.audit {
        f.file("audit-policy-file", AUDIT_POLICY);
        f.arg("audit-log-path", format!("{AUDIT_LOG_DIR}/audit.log"));
        f.arg("audit-log-maxage", a.max_age.to_string());
        f.arg("audit-log-maxbackup", a.max_backup.to_string());
        f.arg("audit-log-maxsize", a.max_size.to_string());
        vols.push(("audit-policy".into(), AUDIT_POLICY.into(), "File", true));
        vols.push(("audit-log".into(), AUDIT_LOG_DIR.into(), "DirectoryOrCreate", false));
    }
    if sec.verify_kubelets {
        // Possible because kubeforge signs every kubelet's serving certificate with the cluster CA, with the node's
        // name and address as SANs (what --kubelet-preferred-address-types dials), so logs/exec keep working.
        f.file("kubelet-certificate-authority", layout::crt(ProfileId::Ca));
    }
    if !sec.extend_token_expiration {
        f.arg("service-account-extend-token-expiration", "false");
    }
    tls_flags(c, &mut f);
    if !matches!(sec.encryption, crate::security::Encryption::None) {
        f.file("encryption-provider-config", ENCRYPTION_CONFIG);
        vols.push(("encryption-config".into(), ENCRYPTION_CONFIG.into(), "File", true));
    }
    let host = Some(adv.to_string());
    let port = crate::API_SERVER_PORT;
    let (mounts, volumes) = volumes(vols);
    let (command, uses) = f.command("kube-apiserver");
    StaticPod {
        name: "kube-apiserver",
        uses,
        annotations: vec![(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint".into(),
            join_host_port(&Host::Ip(adv), port),
        )],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command,
        image: image("kube-apiserver", &c.version.to_string()),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), "/livez", port, "HTTPS")),
        readiness: Some(probe(c, ProbeKind::Readiness, host.clone(), "/readyz", port, "HTTPS")),
        startup: Some(probe(c, ProbeKind::Startup, host, "/livez", port, "HTTPS")),
        probe_port: named_probe_port(c).then_some(port),
        requests: vec![("cpu", "250m")],
        mounts,
        volumes,
    }
}

/// `ca_key`: whether the cluster CA's key is on the node. Without it (external CA mode) kubeadm writes the
/// signing flags with empty values, which turns the controller-manager's CSR signer off (kubeadm-facts §5.2).
pub fn kube_controller_manager(c: &Cluster, ca_key: bool) -> StaticPod {
    let kubeconfig = layout::kubeconfig(ProfileId::ControllerManager);
    let mut f = Flags::default();
    f.file("authentication-kubeconfig", kubeconfig.clone());
    f.file("authorization-kubeconfig", kubeconfig.clone());
    f.arg("bind-address", "127.0.0.1");
    f.file("client-ca-file", layout::crt(ProfileId::Ca));
    f.arg("cluster-name", c.name.clone());
    if ca_key {
        f.file("cluster-signing-cert-file", layout::crt(ProfileId::Ca));
        f.file("cluster-signing-key-file", layout::key(ProfileId::Ca));
    } else {
        f.arg("cluster-signing-cert-file", "");
        f.arg("cluster-signing-key-file", "");
    }
    f.arg("controllers", "*,bootstrapsigner,tokencleaner");
    f.file("kubeconfig", kubeconfig.clone());
    f.arg("leader-elect", "true");
    f.file("requestheader-client-ca-file", layout::crt(ProfileId::FrontProxyCa));
    f.file("root-ca-file", layout::crt(ProfileId::Ca));
    f.file("service-account-private-key-file", layout::SA_KEY);
    f.arg("use-service-account-credentials", "true");
    if !c.security.profiling {
        f.arg("profiling", "false");
    }
    tls_flags(c, &mut f);
    if !c.pod_subnet.is_empty() {
        f.arg("allocate-node-cidrs", "true");
        f.arg("cluster-cidr", c.pod_subnet.clone());
        f.arg("service-cluster-ip-range", c.service_subnet.clone());
    }
    let mut vols = ca_volumes(c);
    vols.push(("kubeconfig".into(), kubeconfig, "FileOrCreate", true));
    if c.facts().flexvolume_dir {
        vols.push(("flexvolume-dir".into(), layout::FLEXVOLUME_DIR.into(), "DirectoryOrCreate", false));
    }
    let (mounts, volumes) = volumes(vols);
    let host = Some("127.0.0.1".to_string());
    let (command, uses) = f.command("kube-controller-manager");
    StaticPod {
        name: "kube-controller-manager",
        uses,
        annotations: vec![],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command,
        image: image("kube-controller-manager", &c.version.to_string()),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), "/healthz", KCM_PORT, "HTTPS")),
        readiness: None,
        startup: Some(probe(c, ProbeKind::Startup, host, "/healthz", KCM_PORT, "HTTPS")),
        probe_port: named_probe_port(c).then_some(KCM_PORT),
        requests: vec![("cpu", "200m")],
        mounts,
        volumes,
    }
}

pub fn kube_scheduler(c: &Cluster) -> StaticPod {
    let kubeconfig = layout::kubeconfig(ProfileId::Scheduler);
    let mut f = Flags::default();
    f.file("authentication-kubeconfig", kubeconfig.clone());
    f.file("authorization-kubeconfig", kubeconfig.clone());
    f.arg("bind-address", "127.0.0.1");
    f.file("kubeconfig", kubeconfig.clone());
    f.arg("leader-elect", "true");
    if !c.security.profiling {
        f.arg("profiling", "false");
    }
    tls_flags(c, &mut f);
    let (mounts, volumes) = volumes(vec![("kubeconfig".into(), kubeconfig, "FileOrCreate", true)]);
    let host = Some("127.0.0.1".to_string());
    // Since v1.32 (every supported version) the scheduler's probes are /livez and /readyz (kubeadm-facts §3.3, P1).
    let (live, ready) = ("/livez", Some("/readyz"));
    let (command, uses) = f.command("kube-scheduler");
    StaticPod {
        name: "kube-scheduler",
        uses,
        annotations: vec![],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command,
        image: image("kube-scheduler", &c.version.to_string()),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), live, SCHEDULER_PORT, "HTTPS")),
        readiness: ready.map(|p| probe(c, ProbeKind::Readiness, host.clone(), p, SCHEDULER_PORT, "HTTPS")),
        startup: Some(probe(c, ProbeKind::Startup, host, live, SCHEDULER_PORT, "HTTPS")),
        probe_port: named_probe_port(c).then_some(SCHEDULER_PORT),
        requests: vec![("cpu", "100m")],
        mounts,
        volumes,
    }
}

/// The etcd member of `node`, stacked on the control plane (kubeadm-facts §3.4). Every control-plane node is a
/// member; `--initial-cluster` lists them all in spec order, and since a generated cluster starts all members
/// together, a multi-member cluster is `new` on every node.
pub fn etcd(c: &Cluster, node: &Node) -> StaticPod {
    let adv = node.address;
    let lo = localhost(node);
    let client = url("https", adv, ETCD_CLIENT_PORT);
    let peer = url("https", adv, ETCD_PEER_PORT);
    let members: Vec<&Node> = c.nodes.iter().filter(|n| n.is_control_plane()).collect();
    let initial_cluster =
        members.iter().map(|m| format!("{}={}", m.name, url("https", m.address, ETCD_PEER_PORT))).collect::<Vec<_>>();
    let mut f = Flags::default();
    f.arg("advertise-client-urls", client.clone());
    f.file("cert-file", layout::crt(ProfileId::EtcdServer));
    f.arg("client-cert-auth", "true");
    f.arg("data-dir", ETCD_DATA_DIR);
    f.arg("initial-advertise-peer-urls", peer.clone());
    f.arg("initial-cluster", initial_cluster.join(","));
    f.file("key-file", layout::key(ProfileId::EtcdServer));
    f.arg("listen-client-urls", format!("{},{client}", url("https", lo, ETCD_CLIENT_PORT)));
    f.arg("listen-metrics-urls", url("http", lo, ETCD_METRICS_PORT));
    f.arg("listen-peer-urls", peer);
    f.arg("name", node.name.clone());
    f.file("peer-cert-file", layout::crt(ProfileId::EtcdPeer));
    f.arg("peer-client-cert-auth", "true");
    f.file("peer-key-file", layout::key(ProfileId::EtcdPeer));
    f.file("peer-trusted-ca-file", layout::crt(ProfileId::EtcdCa));
    f.arg("snapshot-count", "10000");
    f.file("trusted-ca-file", layout::crt(ProfileId::EtcdCa));
    if etcd_is_36(c) {
        f.arg("feature-gates", "InitialCorruptCheck=true");
        f.arg("watch-progress-notify-interval", "5s");
    } else {
        f.arg("experimental-initial-corrupt-check", "true");
        f.arg("experimental-watch-progress-notify-interval", "5s");
    }
    if members.len() > 1 {
        f.arg("initial-cluster-state", "new");
    }
    // etcd 3.5 has no --tls-min-version. The AEAD suites of --cipher-suites exist only in TLS 1.2, so with them
    // a TLS 1.0/1.1 handshake finds no common suite: the effective minimum is TLS 1.2 (TLS 1.3 is always on).
    f.arg("cipher-suites", c.security.cipher_suites.join(","));
    let host = Some(lo.to_string());
    let port = ETCD_METRICS_PORT;
    // etcd's mounts are in kubeadm's fixed order (data, then certs), not sorted; its volumes are sorted.
    let mounts = vec![
        Mount { name: "etcd-data".into(), path: ETCD_DATA_DIR.into(), read_only: false },
        Mount { name: "etcd-certs".into(), path: ETCD_PKI_DIR.into(), read_only: false },
    ];
    let volumes = vec![
        Volume { name: "etcd-certs".into(), path: ETCD_PKI_DIR.into(), kind: "DirectoryOrCreate" },
        Volume { name: "etcd-data".into(), path: ETCD_DATA_DIR.into(), kind: "DirectoryOrCreate" },
    ];
    let (command, uses) = f.command("etcd");
    StaticPod {
        name: "etcd",
        uses,
        annotations: vec![("kubeadm.kubernetes.io/etcd.advertise-client-urls".into(), client)],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command,
        image: image("etcd", etcd_tag(c)),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), "/livez", port, "HTTP")),
        readiness: Some(probe(c, ProbeKind::Readiness, host.clone(), "/readyz", port, "HTTP")),
        startup: Some(probe(c, ProbeKind::Startup, host, "/readyz", port, "HTTP")),
        probe_port: named_probe_port(c).then_some(port),
        requests: vec![("cpu", "100m"), ("memory", "100Mi")],
        mounts,
        volumes,
    }
}
