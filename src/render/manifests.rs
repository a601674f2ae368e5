//! The four static pods of a control-plane node, as kubeadm of the cluster's minor writes them (kubeadm-facts §3;
//! what differs by version is in `crate::versions`).
//!
//! Flags are collected as (name, value) pairs and sorted by name, then value, exactly like kubeadm's
//! `ArgumentsToCommand`, so the written order is alphabetical and a flag change is a one-line diff; the spec's
//! extraArgs follow in the spec's order (`crate::custom::command_args`). A flag that names a file says so when it
//! is built ([`Flags::file`]): that is where the index's `usedBy` comes from, and such a flag, like every flag
//! built with [`Flags::owned`], cannot be overridden by extraArgs or patches.

use std::net::IpAddr;

use askama::Template;

use super::filters;

use crate::custom::{self, Component, Env};
use crate::layout::{self, AUDIT_LOG_DIR, AUDIT_POLICY, ENCRYPTION_CONFIG, ETCD_PKI_DIR, PKI_DIR};
use crate::net::{Host, join_host_port};
use crate::pki::profile::ProfileId;
use crate::spec::{Cluster, Etcd, Node, Problem};

pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
pub const ETCD_METRICS_PORT: u16 = 2381;
const KCM_PORT: u16 = 10257;
const SCHEDULER_PORT: u16 = 10259;

#[derive(Template)]
#[template(path = "static-pod.yml", escape = "none")]
pub struct StaticPod {
    pub component: Component,
    pub name: &'static str,
    /// Every file a flag names, with the use: (`/etc/kubernetes/pki/ca.crt`, `kube-apiserver --client-ca-file`),
    /// in command order.
    pub uses: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
    /// Serializers before v1.34 wrote `creationTimestamp: null` (kubeadm-facts §3.0).
    pub creation_timestamp_null: bool,
    pub command: Vec<String>,
    /// The command as kubeforge builds it, before extraArgs: what secure-default warnings compare against.
    pub base_command: Vec<String>,
    /// The flags extraArgs and patches must leave as they are: (flag, value, what controls it).
    pub owned: Vec<(&'static str, String, &'static str)>,
    /// `extraEnvs`.
    pub env: Vec<Env>,
    pub image: String,
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub startup: Option<Probe>,
    /// From v1.34 the probe port is a named container port.
    pub probe_port: Option<u16>,
    pub requests: Vec<(&'static str, &'static str)>,
    pub mounts: Vec<Mount>,
    pub volumes: Vec<Volume>,
    /// kubeforge's own mounts (name, mount path, host path), which patches must leave as they are.
    pub own_mounts: Vec<OwnMount>,
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
    /// The hostPath type; empty for none.
    pub kind: String,
}

/// A hostPath volume with its mount: (name, path on the host and in the container, type, read-only).
type HostMount = (String, String, &'static str, bool);
/// One of kubeforge's own mounts: (volume name, mount path, host path).
type OwnMount = (String, String, String);
/// A static pod's mounts, volumes and kubeforge's own among them.
type Volumes = (Vec<Mount>, Vec<Volume>, Vec<OwnMount>);

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

/// The etcd image tag: `etcd.local.imageTag`, else kubeadm's for the cluster's version (kubeadm-facts §3.4;
/// v1.35–v1.37 sheet §1).
pub fn etcd_tag(c: &Cluster) -> &str {
    c.etcd_image_tag.as_deref().unwrap_or_else(|| c.facts().etcd_tag(c.version.patch))
}

/// The etcd image: `etcd.local.imageRepository` (else `imageRepository`) and [`etcd_tag`].
pub fn etcd_image(c: &Cluster) -> String {
    format!("{}/etcd:{}", c.etcd_image_repository.as_deref().unwrap_or(&c.image_repository), etcd_tag(c))
}

/// etcd 3.6 renamed two experimental flags (kubeadm-facts §3.4, P3); kubeadm up to v1.35 picks the names by the
/// etcd image (a pinned `etcd.local.imageTag` included), from v1.36 always the new ones.
pub fn etcd_is_36(c: &Cluster) -> bool {
    !c.facts().etcd_flags_follow_image || crate::versions::etcd_at_least_36(etcd_tag(c))
}

/// `--tls-min-version` and `--tls-cipher-suites` for the Go components that serve HTTPS.
fn tls_flags(c: &Cluster, flags: &mut Flags) {
    flags.arg("tls-cipher-suites", c.security.cipher_suites.join(","));
    flags.arg("tls-min-version", c.security.tls_min_version.clone());
}

/// What controls a flag that names one of kubeforge's PKI files.
const PKI: &str = "kubeforge's PKI (pki: the certificates and keys it issues or is given)";

/// What decides `--etcd-servers`.
const ETCD_SERVERS: &str = "etcd.external.endpoints, or the stacked etcd member on each control-plane node";
/// What decides the controller-manager's empty signing flags.
const EXTERNAL_CA: &str = "pki.cas.ca given without its key (the CSR signer stays off)";

/// A component's flags as they are decided. Values are kept as given; [`Flags::command`] sorts them.
#[derive(Default)]
struct Flags {
    /// (name, value, names a file, what controls it if kubeforge owns it)
    list: Vec<(&'static str, String, bool, Option<&'static str>)>,
}

/// A component's command line with what it is made of.
struct Command {
    command: Vec<String>,
    base: Vec<String>,
    uses: Vec<(String, String)>,
    owned: Vec<(&'static str, String, &'static str)>,
}

impl Flags {
    /// A flag whose value is not a file (a URL, a directory, a setting); extraArgs may override it.
    fn arg(&mut self, name: &'static str, value: impl Into<String>) {
        self.list.push((name, value.into(), false, None));
    }

    /// A flag another spec field decides (`by`); extraArgs and patches may not change it.
    fn owned(&mut self, name: &'static str, value: impl Into<String>, by: &'static str) {
        self.list.push((name, value.into(), false, Some(by)));
    }

    /// A flag whose value names a file the component reads (comma-separated files for several): kubeforge's PKI
    /// or another file it writes, so extraArgs and patches may not change it.
    fn file(&mut self, name: &'static str, path: impl Into<String>) {
        self.file_by(name, path, PKI);
    }

    fn file_by(&mut self, name: &'static str, path: impl Into<String>, by: &'static str) {
        self.list.push((name, path.into(), true, Some(by)));
    }

    /// The command line: kubeforge's flags sorted by flag name, then value (kubeadm's `ArgumentsToCommand`),
    /// then the spec's extraArgs of `comp` (refused where they would override an owned flag); and the files it
    /// names with their uses, in the same order.
    fn command(mut self, c: &Cluster, comp: Component) -> Result<Command, Problem> {
        let binary = comp.binary();
        self.list.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let extra = &c.extras(comp).args;
        for (i, a) in extra.iter().enumerate() {
            if let Some((_, _, _, Some(by))) = self.list.iter().find(|f| f.0 == a.name && f.3.is_some()) {
                return Err(Problem {
                    path: format!("{}.extraArgs[{i}]", comp.field()),
                    message: format!(
                        "--{} is kubeforge's to set for {binary}: it comes from {by}; it cannot be overridden",
                        a.name
                    ),
                });
            }
        }
        let mut uses = Vec::new();
        for (name, value, is_file, _) in &self.list {
            if *is_file {
                uses.extend(
                    value.split(',').filter(|v| !v.is_empty()).map(|v| (v.to_string(), format!("{binary} --{name}"))),
                );
            }
        }
        let owned = self.list.iter().filter_map(|(n, v, _, by)| by.map(|by| (*n, v.clone(), by))).collect();
        let line = |args: Vec<(String, String)>| {
            std::iter::once(binary.to_string()).chain(args.into_iter().map(|(k, v)| format!("--{k}={v}"))).collect()
        };
        let base: Vec<(String, String)> = self.list.into_iter().map(|(k, v, _, _)| (k.to_string(), v)).collect();
        Ok(Command { command: line(custom::command_args(base.clone(), extra)), base: line(base), uses, owned })
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
fn ca_volumes(c: &Cluster) -> Vec<HostMount> {
    let mut v = vec![
        ("ca-certs".to_string(), "/etc/ssl/certs".to_string(), "DirectoryOrCreate", true),
        ("k8s-certs".to_string(), PKI_DIR.to_string(), "DirectoryOrCreate", true),
    ];
    for d in &c.host_ca_cert_dirs {
        v.push((d.trim_start_matches('/').replace('/', "-"), d.clone(), "DirectoryOrCreate", true));
    }
    v
}

/// Whether two paths are the same or one is inside the other.
fn overlaps(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

/// kubeforge's volumes of `comp` and the spec's extraVolumes: (mounts, volumes, kubeforge's own as (name, mount
/// path, host path)). An extraVolume may not reuse a name or a host path of kubeforge's, nor mount over, inside or
/// around one of its mount paths. `fixed_mounts`: mounts in kubeforge's order (etcd's), else sorted by name
/// like volumes (kubeadm's `VolumeMapToSlice`).
fn volumes(c: &Cluster, comp: Component, mut own: Vec<HostMount>, fixed_mounts: bool) -> Result<Volumes, Problem> {
    // The spec's validation keeps kubeforge's names unique; a duplicate here is a bug, never something to drop.
    let mut names: Vec<&String> = own.iter().map(|x| &x.0).collect();
    names.sort();
    assert!(names.windows(2).all(|w| w[0] != w[1]), "duplicate volume names: {names:?}");
    let own_list = own.iter().map(|(n, p, _, _)| (n.clone(), p.clone(), p.clone())).collect::<Vec<_>>();
    let at = |i: usize, f: &str| format!("{}.extraVolumes[{i}].{f}", comp.field());
    for (i, x) in c.extras(comp).volumes.iter().enumerate() {
        if let Some((n, _, _)) = own_list.iter().find(|(n, _, _)| *n == x.name) {
            return Err(Problem {
                path: at(i, "name"),
                message: format!("{n:?} is the name of one of kubeforge's volumes of {}", comp.binary()),
            });
        }
        if let Some((n, _, h)) = own_list.iter().find(|(_, _, h)| *h == x.host_path) {
            return Err(Problem {
                path: at(i, "hostPath"),
                message: format!("{h} is mounted by kubeforge already (volume {n:?}); use that mount"),
            });
        }
        if let Some((n, m, _)) = own_list.iter().find(|(_, m, _)| overlaps(m, &x.mount_path)) {
            return Err(Problem {
                path: at(i, "mountPath"),
                message: format!(
                    "{} collides with kubeforge's mount of {m} (volume {n:?}) in {}: mount elsewhere",
                    x.mount_path,
                    comp.binary()
                ),
            });
        }
    }
    let mut mounts: Vec<Mount> = Vec::new();
    if fixed_mounts {
        mounts.extend(own.iter().map(|(n, p, _, ro)| Mount { name: n.clone(), path: p.clone(), read_only: *ro }));
    }
    let mut extra: Vec<(String, String, String, String, bool)> = c
        .extras(comp)
        .volumes
        .iter()
        .map(|x| (x.name.clone(), x.host_path.clone(), x.mount_path.clone(), x.path_type.clone(), x.read_only))
        .collect();
    let mut all: Vec<(String, String, String, String, bool)> =
        own.drain(..).map(|(n, p, k, ro)| (n, p.clone(), p, k.to_string(), ro)).collect();
    if fixed_mounts {
        extra.sort();
        mounts.extend(extra.iter().map(|(n, _, m, _, ro)| Mount { name: n.clone(), path: m.clone(), read_only: *ro }));
    }
    all.append(&mut extra);
    all.sort();
    if !fixed_mounts {
        mounts =
            all.iter().map(|(n, _, m, _, ro)| Mount { name: n.clone(), path: m.clone(), read_only: *ro }).collect();
    }
    let vols = all.into_iter().map(|(name, path, _, kind, _)| Volume { name, path, kind }).collect();
    Ok((mounts, vols, own_list))
}

pub fn kube_apiserver(c: &Cluster, node: &Node) -> Result<StaticPod, Problem> {
    let adv = node.address;
    let mut f = Flags::default();
    f.owned("advertise-address", adv.to_string(), "nodes[].address");
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
    f.owned("requestheader-allowed-names", "front-proxy-client", "the front-proxy-client certificate's name (pki)");
    f.file("requestheader-client-ca-file", layout::crt(ProfileId::FrontProxyCa));
    f.arg("requestheader-extra-headers-prefix", "X-Remote-Extra-");
    f.arg("requestheader-group-headers", "X-Remote-Group");
    f.arg("requestheader-username-headers", "X-Remote-User");
    f.owned("secure-port", c.bind_port.to_string(), "apiServer.bindPort");
    f.arg("service-account-issuer", format!("https://kubernetes.default.svc.{}", c.dns_domain));
    f.file("service-account-key-file", layout::SA_PUB);
    f.file("service-account-signing-key-file", layout::SA_KEY);
    f.owned("service-cluster-ip-range", c.service_subnet.clone(), "networking.serviceSubnet");
    f.file("tls-cert-file", layout::crt(ProfileId::Apiserver));
    f.file("tls-private-key-file", layout::key(ProfileId::Apiserver));
    let mut vols = ca_volumes(c);
    match &c.etcd {
        // kube-apiserver talks to the etcd member on its own node, as kubeadm sets it up.
        Etcd::Stacked => {
            f.file("etcd-cafile", layout::crt(ProfileId::EtcdCa));
            f.file("etcd-certfile", layout::crt(ProfileId::ApiserverEtcdClient));
            f.file("etcd-keyfile", layout::key(ProfileId::ApiserverEtcdClient));
            f.owned("etcd-servers", url("https", localhost(node), ETCD_CLIENT_PORT), ETCD_SERVERS);
        }
        Etcd::External(x) => {
            f.owned("etcd-servers", x.endpoints.join(","), ETCD_SERVERS);
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
        f.file_by("audit-policy-file", AUDIT_POLICY, "security.auditLog");
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
        f.file_by("encryption-provider-config", ENCRYPTION_CONFIG, "security.encryptionAtRest");
        vols.push(("encryption-config".into(), ENCRYPTION_CONFIG.into(), "File", true));
    }
    let host = Some(adv.to_string());
    let port = c.bind_port;
    let (mounts, volumes, own_mounts) = volumes(c, Component::ApiServer, vols, false)?;
    let cmd = f.command(c, Component::ApiServer)?;
    Ok(StaticPod {
        component: Component::ApiServer,
        name: "kube-apiserver",
        uses: cmd.uses,
        annotations: vec![(
            "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint".into(),
            join_host_port(&Host::Ip(adv), port),
        )],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command: cmd.command,
        base_command: cmd.base,
        owned: cmd.owned,
        env: c.extras(Component::ApiServer).envs.clone(),
        image: c.image("kube-apiserver", &c.version.to_string()),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), "/livez", port, "HTTPS")),
        readiness: Some(probe(c, ProbeKind::Readiness, host.clone(), "/readyz", port, "HTTPS")),
        startup: Some(probe(c, ProbeKind::Startup, host, "/livez", port, "HTTPS")),
        probe_port: named_probe_port(c).then_some(port),
        requests: vec![("cpu", "250m")],
        mounts,
        volumes,
        own_mounts,
    })
}

/// `ca_key`: whether the cluster CA's key is on the node. Without it (external CA mode) kubeadm writes the
/// signing flags with empty values, which turns the controller-manager's CSR signer off (kubeadm-facts §5.2).
pub fn kube_controller_manager(c: &Cluster, ca_key: bool) -> Result<StaticPod, Problem> {
    let kubeconfig = layout::kubeconfig(ProfileId::ControllerManager);
    let mut f = Flags::default();
    f.file("authentication-kubeconfig", kubeconfig.clone());
    f.file("authorization-kubeconfig", kubeconfig.clone());
    f.arg("bind-address", "127.0.0.1");
    f.file("client-ca-file", layout::crt(ProfileId::Ca));
    f.owned("cluster-name", c.name.clone(), "name");
    if ca_key {
        f.file("cluster-signing-cert-file", crate::pki::rotation::signing_cert_file(c));
        f.file("cluster-signing-key-file", layout::key(ProfileId::Ca));
    } else {
        f.owned("cluster-signing-cert-file", "", EXTERNAL_CA);
        f.owned("cluster-signing-key-file", "", EXTERNAL_CA);
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
        f.owned("cluster-cidr", c.pod_subnet.clone(), "networking.podSubnet");
        f.owned("service-cluster-ip-range", c.service_subnet.clone(), "networking.serviceSubnet");
    }
    let mut vols = ca_volumes(c);
    vols.push(("kubeconfig".into(), kubeconfig, "FileOrCreate", true));
    if c.facts().flexvolume_dir {
        vols.push(("flexvolume-dir".into(), layout::FLEXVOLUME_DIR.into(), "DirectoryOrCreate", false));
    }
    let (mounts, volumes, own_mounts) = volumes(c, Component::ControllerManager, vols, false)?;
    let host = Some("127.0.0.1".to_string());
    let cmd = f.command(c, Component::ControllerManager)?;
    Ok(StaticPod {
        component: Component::ControllerManager,
        name: "kube-controller-manager",
        uses: cmd.uses,
        annotations: vec![],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command: cmd.command,
        base_command: cmd.base,
        owned: cmd.owned,
        env: c.extras(Component::ControllerManager).envs.clone(),
        image: c.image("kube-controller-manager", &c.version.to_string()),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), "/healthz", KCM_PORT, "HTTPS")),
        readiness: None,
        startup: Some(probe(c, ProbeKind::Startup, host, "/healthz", KCM_PORT, "HTTPS")),
        probe_port: named_probe_port(c).then_some(KCM_PORT),
        requests: vec![("cpu", "200m")],
        mounts,
        volumes,
        own_mounts,
    })
}

pub fn kube_scheduler(c: &Cluster) -> Result<StaticPod, Problem> {
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
    let (mounts, volumes, own_mounts) =
        volumes(c, Component::Scheduler, vec![("kubeconfig".into(), kubeconfig, "FileOrCreate", true)], false)?;
    let host = Some("127.0.0.1".to_string());
    // Since v1.32 (every supported version) the scheduler's probes are /livez and /readyz (kubeadm-facts §3.3, P1).
    let (live, ready) = ("/livez", Some("/readyz"));
    let cmd = f.command(c, Component::Scheduler)?;
    Ok(StaticPod {
        component: Component::Scheduler,
        name: "kube-scheduler",
        uses: cmd.uses,
        annotations: vec![],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command: cmd.command,
        base_command: cmd.base,
        owned: cmd.owned,
        env: c.extras(Component::Scheduler).envs.clone(),
        image: c.image("kube-scheduler", &c.version.to_string()),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), live, SCHEDULER_PORT, "HTTPS")),
        readiness: ready.map(|p| probe(c, ProbeKind::Readiness, host.clone(), p, SCHEDULER_PORT, "HTTPS")),
        startup: Some(probe(c, ProbeKind::Startup, host, live, SCHEDULER_PORT, "HTTPS")),
        probe_port: named_probe_port(c).then_some(SCHEDULER_PORT),
        requests: vec![("cpu", "100m")],
        mounts,
        volumes,
        own_mounts,
    })
}

/// The etcd member of `node`, stacked on the control plane (kubeadm-facts §3.4). Every control-plane node is a
/// member; `--initial-cluster` lists them all in spec order, and since a generated cluster starts all members
/// together, a multi-member cluster is `new` on every node.
pub fn etcd(c: &Cluster, node: &Node) -> Result<StaticPod, Problem> {
    let adv = node.address;
    let lo = localhost(node);
    let client = url("https", adv, ETCD_CLIENT_PORT);
    let peer = url("https", adv, ETCD_PEER_PORT);
    let members: Vec<&Node> = c.nodes.iter().filter(|n| n.is_control_plane()).collect();
    let initial_cluster =
        members.iter().map(|m| format!("{}={}", m.name, url("https", m.address, ETCD_PEER_PORT))).collect::<Vec<_>>();
    let mut f = Flags::default();
    f.owned("advertise-client-urls", client.clone(), "nodes[].address");
    f.file("cert-file", layout::crt(ProfileId::EtcdServer));
    f.arg("client-cert-auth", "true");
    f.owned("data-dir", c.etcd_data_dir.clone(), "etcd.local.dataDir");
    f.owned("initial-advertise-peer-urls", peer.clone(), "nodes[].address");
    f.owned("initial-cluster", initial_cluster.join(","), "the control-plane nodes (nodes[].name and address)");
    f.file("key-file", layout::key(ProfileId::EtcdServer));
    f.owned("listen-client-urls", format!("{},{client}", url("https", lo, ETCD_CLIENT_PORT)), "nodes[].address");
    f.owned("listen-metrics-urls", url("http", lo, ETCD_METRICS_PORT), "the probes (etcd's metrics port, 2381)");
    f.owned("listen-peer-urls", peer, "nodes[].address");
    f.owned("name", node.name.clone(), "nodes[].name");
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
    // etcd's mounts are in kubeadm's fixed order (data, then certs; extraVolumes after), not sorted; its volumes
    // are sorted.
    let own = vec![
        ("etcd-data".to_string(), c.etcd_data_dir.clone(), "DirectoryOrCreate", false),
        ("etcd-certs".to_string(), ETCD_PKI_DIR.to_string(), "DirectoryOrCreate", false),
    ];
    let (mounts, volumes, own_mounts) = volumes(c, Component::Etcd, own, true)?;
    let cmd = f.command(c, Component::Etcd)?;
    Ok(StaticPod {
        component: Component::Etcd,
        name: "etcd",
        uses: cmd.uses,
        annotations: vec![("kubeadm.kubernetes.io/etcd.advertise-client-urls".into(), client)],
        creation_timestamp_null: c.facts().creation_timestamp_null,
        command: cmd.command,
        base_command: cmd.base,
        owned: cmd.owned,
        env: c.extras(Component::Etcd).envs.clone(),
        image: etcd_image(c),
        liveness: Some(probe(c, ProbeKind::Liveness, host.clone(), "/livez", port, "HTTP")),
        readiness: Some(probe(c, ProbeKind::Readiness, host.clone(), "/readyz", port, "HTTP")),
        startup: Some(probe(c, ProbeKind::Startup, host, "/readyz", port, "HTTP")),
        probe_port: named_probe_port(c).then_some(port),
        requests: vec![("cpu", "100m"), ("memory", "100Mi")],
        mounts,
        volumes,
        own_mounts,
    })
}

/// A static pod as written: its text, the files it names with their uses, and the warnings it raises.
pub struct Rendered {
    pub name: &'static str,
    pub text: String,
    pub uses: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// Every static pod of a control-plane node (etcd first where stacked), customized, patched and checked.
/// `ca_key`: see [`kube_controller_manager`].
pub fn pods(c: &Cluster, node: &Node, ca_key: bool) -> Result<Vec<Rendered>, Problem> {
    let mut pods = vec![kube_apiserver(c, node)?, kube_controller_manager(c, ca_key)?, kube_scheduler(c)?];
    if c.stacked_etcd() {
        pods.insert(0, etcd(c, node)?);
    }
    pods.into_iter().map(|p| p.finish(c)).collect()
}

/// A problem with the patches directory.
pub fn patch_problem(message: String) -> Problem {
    Problem { path: "patches.directory".into(), message }
}

impl StaticPod {
    /// Renders the template, then applies the patches for this component (re-emitting the patched Pod with its
    /// keys sorted) and checks what they leave.
    fn finish(self, c: &Cluster) -> Result<Rendered, Problem> {
        let text = super::finish(self.render().expect("static pod template"));
        let target = self.component.binary();
        let (text, command) = if custom::patches::any_for(&c.patches, target) {
            let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("kubeforge's own YAML");
            custom::patches::apply(&c.patches, target, &mut doc).map_err(patch_problem)?;
            let files: Vec<&str> = c.patches.iter().filter(|p| p.target == target).map(|p| p.file.as_str()).collect();
            let command = check_pod(&doc, &self)
                .map_err(|m| patch_problem(format!("the patches for {target} ({}) {m}", files.join(", "))))?;
            (super::yaml::document(&doc), command)
        } else {
            (text, self.command.clone())
        };
        let warnings = custom::secure::pod_warnings(self.component, &self.base_command, &command);
        Ok(Rendered { name: self.name, text, uses: self.uses, warnings })
    }
}

/// What a patched Pod must still be: a Pod of the same name whose containers have names and images, whose
/// mounts name its volumes, and whose component container keeps kubeforge's owned flags and mounts. Returns the
/// component's command.
fn check_pod(doc: &serde_yaml::Value, pod: &StaticPod) -> Result<Vec<String>, String> {
    use serde_yaml::Value;
    let str_at = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    if str_at(doc, "apiVersion").as_deref() != Some("v1") || str_at(doc, "kind").as_deref() != Some("Pod") {
        return Err("leave a document that is not a Pod (apiVersion v1, kind Pod)".into());
    }
    if doc.get("metadata").and_then(|m| str_at(m, "name")).as_deref() != Some(pod.name) {
        return Err(format!("rename the Pod; its name is {}", pod.name));
    }
    let spec = doc.get("spec").filter(|s| s.is_mapping()).ok_or("remove the Pod's spec")?;
    let empty = Vec::new();
    let volumes = match spec.get("volumes") {
        None => &empty,
        Some(v) => v.as_sequence().ok_or("make spec.volumes something other than a list")?,
    };
    let mut names = std::collections::BTreeMap::new();
    for v in volumes {
        let name = str_at(v, "name").ok_or("leave a volume without a name")?;
        let host = v.get("hostPath").map(|h| str_at(h, "path"));
        if let Some(h) = &host {
            match h {
                Some(p) if crate::net::is_clean_abs_path(p) => {}
                _ => return Err(format!("give volume {name:?} a hostPath path that is not a clean absolute path")),
            }
        }
        if names.insert(name.clone(), host.flatten()).is_some() {
            return Err(format!("leave two volumes named {name:?}"));
        }
    }
    let containers = spec.get("containers").and_then(Value::as_sequence).filter(|c| !c.is_empty());
    let containers = containers.ok_or("leave the Pod without containers")?;
    let mut main = None;
    for ctr in containers {
        let name = str_at(ctr, "name").ok_or("leave a container without a name")?;
        if str_at(ctr, "image").is_none_or(|i| i.is_empty()) {
            return Err(format!("leave container {name:?} without an image"));
        }
        let mut paths = std::collections::BTreeSet::new();
        for m in ctr.get("volumeMounts").and_then(Value::as_sequence).unwrap_or(&empty) {
            let (Some(vol), Some(path)) = (str_at(m, "name"), str_at(m, "mountPath")) else {
                return Err(format!("leave a volume mount of {name:?} without a name or mountPath"));
            };
            if !names.contains_key(&vol) {
                return Err(format!("mount volume {vol:?} in {name:?}, but the Pod has no such volume"));
            }
            if !paths.insert(path.clone()) {
                return Err(format!("mount two volumes at {path} in {name:?}"));
            }
        }
        if name == pod.name {
            main = Some(ctr);
        }
    }
    let main = main.ok_or_else(|| format!("remove the container {}", pod.name))?;
    let command: Vec<String> = match main.get("command") {
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("make the command something other than a list of strings")?,
        _ => return Err(format!("remove the command of {}", pod.name)),
    };
    for (flag, value, by) in &pod.owned {
        if custom::secure::flag_value(&command, flag) != Some(value.as_str()) {
            return Err(format!("change --{flag}, which is kubeforge's to set: it comes from {by}"));
        }
    }
    let mounts = main.get("volumeMounts").and_then(Value::as_sequence).unwrap_or(&empty);
    for (name, path, host) in &pod.own_mounts {
        let mounted = mounts
            .iter()
            .any(|m| str_at(m, "name").as_ref() == Some(name) && str_at(m, "mountPath").as_ref() == Some(path));
        if !mounted || names.get(name) != Some(&Some(host.clone())) {
            return Err(format!("change kubeforge's volume {name:?} ({host} at {path}), which the component needs"));
        }
    }
    Ok(command)
}
