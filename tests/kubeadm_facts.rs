//! kubeforge's output checked against kubeadm of the same minor, fact by fact, from
//! `/work/shared/reference/kubeadm-facts.md` (v1.33, v1.34; section numbers in the comments, `§1.3` etc.) and
//! `kubeadm-facts-v135-v137.md` (v1.35, v1.36, v1.37; cited as `[v135 §2.3]` etc.). One fixture per minor:
//! rsa-v1.33, ipv6 (v1.34), edge-v1.35, dual-stack (v1.36), demo (v1.37).
//!
//! These tests are deliberately independent of the generator: every expectation is written here by hand from the
//! reference and the fixture specs. Nothing reads `src/pki/certificates.md`, the profile table or any generator
//! constant; the output is generated through the library and then read back from disk the way a user would read
//! it (x509 parsing, RustCrypto signature checks, `openssl verify`, YAML parsing).
//!
//! kubeforge's deliberate differences from kubeadm, which the expectations include:
//! - the default key algorithm is ECDSA-P256 (kubeadm: RSA-2048);
//! - leaf certificates carry a SubjectKeyIdentifier (kubeadm's do not);
//! - a per-node kubelet serving certificate signed by the cluster CA (CN `system:node:<name>`, O `system:nodes`,
//!   serverAuth, SANs = node name + node address + node `sans`) at `/var/lib/kubelet/pki/kubelet.crt`;
//! - a kube-proxy client certificate (CN `system:kube-proxy`, no O) embedded in `kube-proxy.conf` on every node,
//!   whose server is the cluster endpoint;
//! - the apiserver certificate also carries the other control-plane nodes' addresses and the node's own `sans`;
//!   node `sans` also go on the etcd server and peer certificates;
//! - workers get only `pki/ca.crt` (no key), `kubelet.conf`, `kube-proxy.conf` and their kubelet serving cert;
//! - `OUT/admin.conf` is the operator's admin kubeconfig;
//! - keyEncipherment only on RSA keys (RFC 8813 §3 forbids it for EC keys; kubeadm sets it for both);
//! - apiserver-kubelet-client has no Organization in every version (kubeadm v1.37 and the 2026 patch releases of
//!   v1.33–v1.36 [v135 §4]), with the ClusterRoleBinding `kubeadm:apiserver-kubelet-client` in OUT/bootstrap;
//! - every kubelet config names the container runtime endpoint (`containerRuntimeEndpoint`, [v135 §5]).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use p256::pkcs8::EncodePublicKey;
use rsa::signature::Verifier;
use serde_yaml::Value;
use x509_parser::prelude::*;

// ---------------------------------------------------------------------------------------------------------------
// The fixtures, with every expected value written out by hand.
// ---------------------------------------------------------------------------------------------------------------

/// The issue time every test generates with.
const NOW: &str = "2026-01-01T00:00:00Z";
/// `NOW` as Unix seconds (`date -d 2026-01-01T00:00:00Z +%s`).
const NOW_UNIX: i64 = 1_767_225_600;
/// §1.5 `CertificateBackdate = time.Minute*5`.
const BACKDATE_SECS: i64 = 5 * 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
}

struct NodeExp {
    name: &'static str,
    control_plane: bool,
    /// kubeforge's kubelet serving cert SANs: node name + node `sans` (DNS, sorted), node address + node `sans` (IP).
    kubelet_dns: &'static [&'static str],
    kubelet_ips: &'static [&'static str],
}

struct Fixture {
    spec: &'static str,
    cluster: &'static str,
    alg: Alg,
    ca_hours: i64,
    cert_hours: i64,
    /// Exactly one control-plane node per fixture; it is listed first.
    nodes: &'static [NodeExp],
    /// §2.2 controlPlaneEndpoint rule (admin, super-admin, workers' kubelet.conf, kube-proxy.conf).
    endpoint_url: &'static str,
    /// §2.2 local endpoint of the control-plane node (controller-manager.conf, scheduler.conf).
    local_url: &'static str,
    /// §2.1 kubelet.conf on the control-plane node: local endpoint from v1.33 (ControlPlaneKubeletLocalMode).
    cp_kubelet_url: &'static str,
    /// §1.3 for the control-plane node: DNS sorted ascending, IPs in kubeadm's insertion order.
    apiserver_dns: &'static [&'static str],
    apiserver_ips: &'static [&'static str],
    /// §1.4 for the control-plane node.
    etcd_dns: &'static [&'static str],
    etcd_ips: &'static [&'static str],
    /// §3.0/§6: v1.34 names the probe port and drops `creationTimestamp: null`.
    v134: bool,
    /// §3.2: the controller-manager mounts flexvolume-dir; [v135 §2.3] removed from v1.36.
    flexvolume: bool,
    /// [v135 §5] the kubelet config's containerRuntimeEndpoint.
    cri_socket: &'static str,
    /// [v135 §5] /var/lib/kubelet/kubeadm-flags.env: `--pod-infra-container-image` up to v1.34, empty from v1.35.
    kubeadm_flags: &'static str,
    /// §4.3: the 10th address of the first service CIDR, and networking.dnsDomain.
    cluster_dns: &'static str,
    dns_domain: &'static str,
    kube_version: &'static str,
    /// §3.4 etcd image tag per Kubernetes version.
    etcd_image: &'static str,
    /// §3.1 `JoinHostPort(advertiseAddress, 6443)`.
    apiserver_endpoint_annotation: &'static str,
    /// §3.4 `https://<ADV>:2379`.
    etcd_client_url_annotation: &'static str,
    /// §3.1 probe host = advertise address.
    apiserver_probe_host: &'static str,
    /// §3.4 probe host = 127.0.0.1, or ::1 for an IPv6 advertise address.
    etcd_probe_host: &'static str,
    apiserver_cmd: &'static [&'static str],
    controller_manager_cmd: &'static [&'static str],
    etcd_cmd: &'static [&'static str],
}

/// §3.3: the same for every fixture (no extraArgs in kubeforge specs).
const SCHEDULER_CMD: &[&str] = &[
    "kube-scheduler",
    "--authentication-kubeconfig=/etc/kubernetes/scheduler.conf",
    "--authorization-kubeconfig=/etc/kubernetes/scheduler.conf",
    "--bind-address=127.0.0.1",
    "--kubeconfig=/etc/kubernetes/scheduler.conf",
    "--leader-elect=true",
];

/// fixtures/demo.yaml: one control plane (cp-1, 10.0.0.11) and two workers, ECDSA-P256, v1.37.1, no
/// controlPlaneEndpoint, default networking.
const DEMO: Fixture = Fixture {
    spec: "fixtures/demo.yaml",
    cluster: "demo",
    alg: Alg::EcdsaP256,
    ca_hours: 87600,
    cert_hours: 8760,
    nodes: &[
        NodeExp { name: "cp-1", control_plane: true, kubelet_dns: &["cp-1"], kubelet_ips: &["10.0.0.11"] },
        NodeExp { name: "worker-1", control_plane: false, kubelet_dns: &["worker-1"], kubelet_ips: &["10.0.0.21"] },
        NodeExp { name: "worker-2", control_plane: false, kubelet_dns: &["worker-2"], kubelet_ips: &["10.0.0.22"] },
    ],
    endpoint_url: "https://10.0.0.11:6443",
    local_url: "https://10.0.0.11:6443",
    cp_kubelet_url: "https://10.0.0.11:6443",
    apiserver_dns: &[
        "cp-1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ],
    apiserver_ips: &["10.96.0.1", "10.0.0.11"],
    etcd_dns: &["cp-1", "localhost"],
    etcd_ips: &["10.0.0.11", "127.0.0.1", "::1"],
    v134: true,
    flexvolume: false,
    cri_socket: "unix:///var/run/containerd/containerd.sock",
    kubeadm_flags: "KUBELET_KUBEADM_ARGS=\"\"\n",
    cluster_dns: "10.96.0.10",
    dns_domain: "cluster.local",
    kube_version: "v1.37.1",
    // [v135 §1]: v1.37 pins etcd 3.7.0-0.
    etcd_image: "registry.k8s.io/etcd:3.7.0-0",
    apiserver_endpoint_annotation: "10.0.0.11:6443",
    etcd_client_url_annotation: "https://10.0.0.11:2379",
    apiserver_probe_host: "10.0.0.11",
    etcd_probe_host: "127.0.0.1",
    // §3.1 with ADV = 10.0.0.11 and the demo's defaults.
    apiserver_cmd: &[
        "kube-apiserver",
        "--advertise-address=10.0.0.11",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        "--etcd-servers=https://127.0.0.1:2379",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ],
    // §3.2 with podSubnet 10.244.0.0/16, clusterName = spec name.
    controller_manager_cmd: &[
        "kube-controller-manager",
        "--allocate-node-cidrs=true",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--bind-address=127.0.0.1",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-cidr=10.244.0.0/16",
        "--cluster-name=demo",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--leader-elect=true",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--use-service-account-credentials=true",
    ],
    // §3.4, etcd >= 3.6 flags (always from v1.36 [v135 §2.5]; etcd 3.7 keeps --snapshot-count), the only member.
    etcd_cmd: &[
        "etcd",
        "--advertise-client-urls=https://10.0.0.11:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--feature-gates=InitialCorruptCheck=true",
        "--initial-advertise-peer-urls=https://10.0.0.11:2380",
        "--initial-cluster=cp-1=https://10.0.0.11:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.11:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=https://10.0.0.11:2380",
        "--name=cp-1",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--watch-progress-notify-interval=5s",
    ],
};

/// fixtures/rsa-v1.33.yaml: RSA-2048, v1.33.4, controlPlaneEndpoint api.prod-eu.example.com:8443, certSANs
/// [k8s.prod-eu.example.com, 192.0.2.10], cp-a (192.168.10.11) with sans [cp-a.prod-eu.example.com],
/// dnsDomain prod.local, serviceSubnet 10.112.0.0/16, podSubnet 10.128.0.0/14, certificateValidity 4380h.
const RSA_V133: Fixture = Fixture {
    spec: "fixtures/rsa-v1.33.yaml",
    cluster: "prod-eu",
    alg: Alg::Rsa2048,
    ca_hours: 87600,
    cert_hours: 4380,
    nodes: &[
        NodeExp {
            name: "cp-a",
            control_plane: true,
            kubelet_dns: &["cp-a", "cp-a.prod-eu.example.com"],
            kubelet_ips: &["192.168.10.11"],
        },
        NodeExp { name: "worker-a", control_plane: false, kubelet_dns: &["worker-a"], kubelet_ips: &["192.168.10.21"] },
        NodeExp { name: "worker-b", control_plane: false, kubelet_dns: &["worker-b"], kubelet_ips: &["192.168.10.22"] },
    ],
    endpoint_url: "https://api.prod-eu.example.com:8443",
    local_url: "https://192.168.10.11:6443",
    cp_kubelet_url: "https://192.168.10.11:6443",
    // §1.3: node name, kubernetes*, the CPE host (a DNS name), the DNS certSAN; plus the node's own sans
    // (kubeforge). Sorted ascending.
    apiserver_dns: &[
        "api.prod-eu.example.com",
        "cp-a",
        "cp-a.prod-eu.example.com",
        "k8s.prod-eu.example.com",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.prod.local",
    ],
    // §1.3 insertion order: service VIP (first IP of 10.112.0.0/16), advertise address, certSANs IPs.
    apiserver_ips: &["10.112.0.1", "192.168.10.11", "192.0.2.10"],
    etcd_dns: &["cp-a", "cp-a.prod-eu.example.com", "localhost"],
    etcd_ips: &["192.168.10.11", "127.0.0.1", "::1"],
    v134: false,
    flexvolume: true,
    cri_socket: "unix:///var/run/containerd/containerd.sock",
    kubeadm_flags: // UNVERIFIED: pause 3.10 for v1.33 (the sheets give 3.10 for v1.32 and 3.10.1 for v1.34).
    "KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.10\"\n",
    cluster_dns: "10.112.0.10",
    dns_domain: "prod.local",
    kube_version: "v1.33.4",
    etcd_image: "registry.k8s.io/etcd:3.5.21-0",
    apiserver_endpoint_annotation: "192.168.10.11:6443",
    etcd_client_url_annotation: "https://192.168.10.11:2379",
    apiserver_probe_host: "192.168.10.11",
    etcd_probe_host: "127.0.0.1",
    apiserver_cmd: &[
        "kube-apiserver",
        "--advertise-address=192.168.10.11",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        "--etcd-servers=https://127.0.0.1:2379",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.prod.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.112.0.0/16",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ],
    controller_manager_cmd: &[
        "kube-controller-manager",
        "--allocate-node-cidrs=true",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--bind-address=127.0.0.1",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-cidr=10.128.0.0/14",
        "--cluster-name=prod-eu",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--leader-elect=true",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.112.0.0/16",
        "--use-service-account-credentials=true",
    ],
    // §3.4 etcd < 3.6.0 (v1.33): the experimental flags, sorted right after --data-dir (O2).
    etcd_cmd: &[
        "etcd",
        "--advertise-client-urls=https://192.168.10.11:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        "--initial-advertise-peer-urls=https://192.168.10.11:2380",
        "--initial-cluster=cp-a=https://192.168.10.11:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        "--listen-client-urls=https://127.0.0.1:2379,https://192.168.10.11:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=https://192.168.10.11:2380",
        "--name=cp-a",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
    ],
};

/// fixtures/ipv6.yaml: IPv6-only, ECDSA-P384, v1.34.2, cp-1 fd00:1::11 and worker-1 fd00:1::21, serviceSubnet
/// fd00:10:96::/108, podSubnet fd00:10:244::/56, default dnsDomain and validities.
const IPV6: Fixture = Fixture {
    spec: "fixtures/ipv6.yaml",
    cluster: "v6",
    alg: Alg::EcdsaP384,
    ca_hours: 87600,
    cert_hours: 8760,
    nodes: &[
        NodeExp { name: "cp-1", control_plane: true, kubelet_dns: &["cp-1"], kubelet_ips: &["fd00:1::11"] },
        NodeExp { name: "worker-1", control_plane: false, kubelet_dns: &["worker-1"], kubelet_ips: &["fd00:1::21"] },
    ],
    endpoint_url: "https://[fd00:1::11]:6443",
    local_url: "https://[fd00:1::11]:6443",
    cp_kubelet_url: "https://[fd00:1::11]:6443",
    apiserver_dns: &[
        "cp-1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ],
    apiserver_ips: &["fd00:10:96::1", "fd00:1::11"],
    etcd_dns: &["cp-1", "localhost"],
    etcd_ips: &["fd00:1::11", "127.0.0.1", "::1"],
    v134: true,
    flexvolume: true,
    cri_socket: "unix:///var/run/containerd/containerd.sock",
    kubeadm_flags: "KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.10.1\"\n",
    cluster_dns: "'fd00:10:96::a'",
    dns_domain: "cluster.local",
    kube_version: "v1.34.2",
    // §3.4: later v1.34.z patches use 3.6.5-0.
    etcd_image: "registry.k8s.io/etcd:3.6.5-0",
    apiserver_endpoint_annotation: "[fd00:1::11]:6443",
    etcd_client_url_annotation: "https://[fd00:1::11]:2379",
    apiserver_probe_host: "fd00:1::11",
    etcd_probe_host: "::1",
    apiserver_cmd: &[
        "kube-apiserver",
        "--advertise-address=fd00:1::11",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        // §3.1: https://[::1]:2379 when the advertise address is IPv6.
        "--etcd-servers=https://[::1]:2379",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=fd00:10:96::/108",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ],
    controller_manager_cmd: &[
        "kube-controller-manager",
        "--allocate-node-cidrs=true",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--bind-address=127.0.0.1",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-cidr=fd00:10:244::/56",
        "--cluster-name=v6",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--leader-elect=true",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=fd00:10:96::/108",
        "--use-service-account-credentials=true",
    ],
    // §3.4 IPv6: ::1 as the localhost in the client and metrics URLs, bracketed addresses.
    etcd_cmd: &[
        "etcd",
        "--advertise-client-urls=https://[fd00:1::11]:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--feature-gates=InitialCorruptCheck=true",
        "--initial-advertise-peer-urls=https://[fd00:1::11]:2380",
        "--initial-cluster=cp-1=https://[fd00:1::11]:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        "--listen-client-urls=https://[::1]:2379,https://[fd00:1::11]:2379",
        "--listen-metrics-urls=http://[::1]:2381",
        "--listen-peer-urls=https://[fd00:1::11]:2380",
        "--name=cp-1",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--watch-progress-notify-interval=5s",
    ],
};

/// fixtures/edge-v1.35.yaml: v1.35.8, one control plane (edge-cp, 10.20.0.11) and a worker, ECDSA-P256,
/// controlPlaneEndpoint 10.20.0.100:443 (an IP), serviceSubnet 10.100.0.0/16, no podSubnet, CRI-O's socket.
const EDGE_V135: Fixture = Fixture {
    spec: "fixtures/edge-v1.35.yaml",
    cluster: "edge",
    alg: Alg::EcdsaP256,
    ca_hours: 87600,
    cert_hours: 8760,
    nodes: &[
        NodeExp { name: "edge-cp", control_plane: true, kubelet_dns: &["edge-cp"], kubelet_ips: &["10.20.0.11"] },
        NodeExp { name: "edge-w1", control_plane: false, kubelet_dns: &["edge-w1"], kubelet_ips: &["10.20.0.21"] },
    ],
    // §2.2: the CPE with its own port.
    endpoint_url: "https://10.20.0.100:443",
    local_url: "https://10.20.0.11:6443",
    cp_kubelet_url: "https://10.20.0.11:6443",
    apiserver_dns: &[
        "edge-cp",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ],
    // §1.3: service VIP, advertise address, then the CPE host because it is an IP.
    apiserver_ips: &["10.100.0.1", "10.20.0.11", "10.20.0.100"],
    etcd_dns: &["edge-cp", "localhost"],
    etcd_ips: &["10.20.0.11", "127.0.0.1", "::1"],
    v134: true,
    // [v135 §2.3]: v1.35 still mounts flexvolume-dir.
    flexvolume: true,
    cri_socket: "unix:///run/crio/crio.sock",
    kubeadm_flags: "KUBELET_KUBEADM_ARGS=\"\"\n",
    cluster_dns: "10.100.0.10",
    dns_domain: "cluster.local",
    kube_version: "v1.35.8",
    // [v135 §1]: v1.35 pins etcd 3.6.6-0.
    etcd_image: "registry.k8s.io/etcd:3.6.6-0",
    apiserver_endpoint_annotation: "10.20.0.11:6443",
    etcd_client_url_annotation: "https://10.20.0.11:2379",
    apiserver_probe_host: "10.20.0.11",
    etcd_probe_host: "127.0.0.1",
    apiserver_cmd: &[
        "kube-apiserver",
        "--advertise-address=10.20.0.11",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        "--etcd-servers=https://127.0.0.1:2379",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.100.0.0/16",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ],
    // §3.2 without podSubnet: no --allocate-node-cidrs, --cluster-cidr or --service-cluster-ip-range.
    controller_manager_cmd: &[
        "kube-controller-manager",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--bind-address=127.0.0.1",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-name=edge",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--leader-elect=true",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
        "--use-service-account-credentials=true",
    ],
    // §3.4 with etcd 3.6.6: the etcd 3.6 names ([v135 §2.5]: v1.35 picks them by the etcd image).
    etcd_cmd: &[
        "etcd",
        "--advertise-client-urls=https://10.20.0.11:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--feature-gates=InitialCorruptCheck=true",
        "--initial-advertise-peer-urls=https://10.20.0.11:2380",
        "--initial-cluster=edge-cp=https://10.20.0.11:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        "--listen-client-urls=https://127.0.0.1:2379,https://10.20.0.11:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=https://10.20.0.11:2380",
        "--name=edge-cp",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--watch-progress-notify-interval=5s",
    ],
};

/// fixtures/dual-stack.yaml: v1.36.2, ECDSA-P256, serviceSubnet 10.96.0.0/16,fd00:10:96::/112, podSubnet
/// 10.244.0.0/16,fd00:10:244::/56, certSANs [fd00:10:96::1], cp-1 10.0.0.11 with sans [fd00:1::11], worker-1
/// 10.0.0.21 with sans [fd00:1::21].
const DUAL_V136: Fixture = Fixture {
    spec: "fixtures/dual-stack.yaml",
    cluster: "dual",
    alg: Alg::EcdsaP256,
    ca_hours: 87600,
    cert_hours: 8760,
    nodes: &[
        NodeExp {
            name: "cp-1",
            control_plane: true,
            kubelet_dns: &["cp-1"],
            kubelet_ips: &["10.0.0.11", "fd00:1::11"],
        },
        NodeExp {
            name: "worker-1",
            control_plane: false,
            kubelet_dns: &["worker-1"],
            kubelet_ips: &["10.0.0.21", "fd00:1::21"],
        },
    ],
    endpoint_url: "https://10.0.0.11:6443",
    local_url: "https://10.0.0.11:6443",
    cp_kubelet_url: "https://10.0.0.11:6443",
    apiserver_dns: &[
        "cp-1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ],
    // §1.3: the VIP of the first family only, the advertise address, the certSAN, then (kubeforge) the node's sans.
    apiserver_ips: &["10.96.0.1", "10.0.0.11", "fd00:10:96::1", "fd00:1::11"],
    etcd_dns: &["cp-1", "localhost"],
    etcd_ips: &["10.0.0.11", "127.0.0.1", "::1", "fd00:1::11"],
    v134: true,
    // [v135 §2.3]: no flexvolume-dir from v1.36.
    flexvolume: false,
    cri_socket: "unix:///var/run/containerd/containerd.sock",
    kubeadm_flags: "KUBELET_KUBEADM_ARGS=\"\"\n",
    cluster_dns: "10.96.0.10",
    dns_domain: "cluster.local",
    kube_version: "v1.36.2",
    // [v135 §1]: v1.36 pins etcd 3.6.8-0.
    etcd_image: "registry.k8s.io/etcd:3.6.8-0",
    apiserver_endpoint_annotation: "10.0.0.11:6443",
    etcd_client_url_annotation: "https://10.0.0.11:2379",
    apiserver_probe_host: "10.0.0.11",
    etcd_probe_host: "127.0.0.1",
    apiserver_cmd: &[
        "kube-apiserver",
        "--advertise-address=10.0.0.11",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        "--etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        "--etcd-servers=https://127.0.0.1:2379",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        "--proxy-client-cert-file=/etc/kubernetes/pki/front-proxy-client.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--secure-port=6443",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/sa.pub",
        "--service-account-signing-key-file=/etc/kubernetes/pki/sa.key",
        // §3.1: the serviceSubnet verbatim, both families.
        "--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ],
    controller_manager_cmd: &[
        "kube-controller-manager",
        "--allocate-node-cidrs=true",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--bind-address=127.0.0.1",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-cidr=10.244.0.0/16,fd00:10:244::/56",
        "--cluster-name=dual",
        "--cluster-signing-cert-file=/etc/kubernetes/pki/ca.crt",
        "--cluster-signing-key-file=/etc/kubernetes/pki/ca.key",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--kubeconfig=/etc/kubernetes/controller-manager.conf",
        "--leader-elect=true",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/front-proxy-ca.crt",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/sa.key",
        "--service-cluster-ip-range=10.96.0.0/16,fd00:10:96::/112",
        "--use-service-account-credentials=true",
    ],
    // [v135 §2.5]: v1.36 always writes the etcd 3.6 names.
    etcd_cmd: &[
        "etcd",
        "--advertise-client-urls=https://10.0.0.11:2379",
        "--cert-file=/etc/kubernetes/pki/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--feature-gates=InitialCorruptCheck=true",
        "--initial-advertise-peer-urls=https://10.0.0.11:2380",
        "--initial-cluster=cp-1=https://10.0.0.11:2380",
        "--key-file=/etc/kubernetes/pki/etcd/server.key",
        "--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.11:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--listen-peer-urls=https://10.0.0.11:2380",
        "--name=cp-1",
        "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",
        "--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--snapshot-count=10000",
        "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
        "--watch-progress-notify-interval=5s",
    ],
};

impl Fixture {
    fn control_plane(&self) -> &NodeExp {
        let cps: Vec<&NodeExp> = self.nodes.iter().filter(|n| n.control_plane).collect();
        assert_eq!(cps.len(), 1, "these expectations are written for one control-plane node");
        cps[0]
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The kubeadm certificate table (§1.1) and kubeconfig table (§2.1), per node, by hand.
// ---------------------------------------------------------------------------------------------------------------

/// Paths inside a node bundle (relative to `OUT/nodes/<node>/`).
const CA: &str = "etc/kubernetes/pki/ca.crt";
const FRONT_PROXY_CA: &str = "etc/kubernetes/pki/front-proxy-ca.crt";
const ETCD_CA: &str = "etc/kubernetes/pki/etcd/ca.crt";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Usage {
    Ca,
    Server,
    Client,
    ServerClient,
}

impl Usage {
    /// The EKU OIDs in the order Go writes them (etcd: serverAuth, clientAuth; §1.4 O1).
    fn eku(self) -> Vec<&'static str> {
        match self {
            Usage::Ca => vec![],
            Usage::Server => vec![SERVER_AUTH],
            Usage::Client => vec![CLIENT_AUTH],
            Usage::ServerClient => vec![SERVER_AUTH, CLIENT_AUTH],
        }
    }
}

const SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
const CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";

/// One expected certificate.
#[derive(Clone, Debug)]
struct CertExp {
    cn: String,
    o: Option<&'static str>,
    usage: Usage,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

fn exp(cn: impl Into<String>, o: Option<&'static str>, usage: Usage, dns: &[&str], ips: &[&str]) -> CertExp {
    CertExp {
        cn: cn.into(),
        o,
        usage,
        dns: dns.iter().map(|s| s.to_string()).collect(),
        ips: ips.iter().map(|s| s.parse().unwrap_or_else(|e| panic!("bad IP {s} in the test: {e}"))).collect(),
    }
}

/// A certificate file in a node bundle: its path, the path of the CA that signs it (itself for a CA), and what
/// it must say.
struct CertFile {
    path: &'static str,
    signer: &'static str,
    exp: CertExp,
}

/// §1.1 (plus kubeforge's kubelet serving cert) for one node.
fn node_cert_files(f: &Fixture, n: &NodeExp) -> Vec<CertFile> {
    let file = |path, signer, exp| CertFile { path, signer, exp };
    let mut v = vec![file(CA, CA, exp("kubernetes", None, Usage::Ca, &["kubernetes"], &[]))];
    if n.control_plane {
        v.extend([
            file(FRONT_PROXY_CA, FRONT_PROXY_CA, exp("front-proxy-ca", None, Usage::Ca, &["front-proxy-ca"], &[])),
            file(ETCD_CA, ETCD_CA, exp("etcd-ca", None, Usage::Ca, &["etcd-ca"], &[])),
            file(
                "etc/kubernetes/pki/apiserver.crt",
                CA,
                exp("kube-apiserver", None, Usage::Server, f.apiserver_dns, f.apiserver_ips),
            ),
            file(
                "etc/kubernetes/pki/apiserver-kubelet-client.crt",
                CA,
                // [v135 §4]: no Organization; the kubelet API comes from a ClusterRoleBinding.
                exp("kube-apiserver-kubelet-client", None, Usage::Client, &[], &[]),
            ),
            file(
                "etc/kubernetes/pki/front-proxy-client.crt",
                FRONT_PROXY_CA,
                exp("front-proxy-client", None, Usage::Client, &[], &[]),
            ),
            file(
                "etc/kubernetes/pki/etcd/server.crt",
                ETCD_CA,
                exp(n.name, None, Usage::ServerClient, f.etcd_dns, f.etcd_ips),
            ),
            file(
                "etc/kubernetes/pki/etcd/peer.crt",
                ETCD_CA,
                exp(n.name, None, Usage::ServerClient, f.etcd_dns, f.etcd_ips),
            ),
            file(
                "etc/kubernetes/pki/etcd/healthcheck-client.crt",
                ETCD_CA,
                exp("kube-etcd-healthcheck-client", None, Usage::Client, &[], &[]),
            ),
            file(
                "etc/kubernetes/pki/apiserver-etcd-client.crt",
                ETCD_CA,
                exp("kube-apiserver-etcd-client", None, Usage::Client, &[], &[]),
            ),
        ]);
    }
    v.push(file(
        "var/lib/kubelet/pki/kubelet.crt",
        CA,
        exp(format!("system:node:{}", n.name), Some("system:nodes"), Usage::Server, n.kubelet_dns, n.kubelet_ips),
    ));
    v
}

/// One expected kubeconfig in a node bundle.
struct KubeconfigExp {
    path: &'static str,
    user: String,
    o: Option<&'static str>,
    server: &'static str,
}

/// §2.1 (plus kubeforge's kube-proxy.conf) for one node.
fn node_kubeconfigs(f: &Fixture, n: &NodeExp) -> Vec<KubeconfigExp> {
    let kc = |path, user: &str, o, server| KubeconfigExp { path, user: user.to_string(), o, server };
    let kubelet_user = format!("system:node:{}", n.name);
    let mut v = Vec::new();
    if n.control_plane {
        v.extend([
            kc("etc/kubernetes/admin.conf", "kubernetes-admin", Some("kubeadm:cluster-admins"), f.endpoint_url),
            kc("etc/kubernetes/super-admin.conf", "kubernetes-super-admin", Some("system:masters"), f.endpoint_url),
            kc("etc/kubernetes/controller-manager.conf", "system:kube-controller-manager", None, f.local_url),
            kc("etc/kubernetes/scheduler.conf", "system:kube-scheduler", None, f.local_url),
            kc("etc/kubernetes/kubelet.conf", &kubelet_user, Some("system:nodes"), f.cp_kubelet_url),
        ]);
    } else {
        v.push(kc("etc/kubernetes/kubelet.conf", &kubelet_user, Some("system:nodes"), f.endpoint_url));
    }
    v.push(kc("etc/kubernetes/kube-proxy.conf", "system:kube-proxy", None, f.endpoint_url));
    v
}

/// §3.0 files of a control-plane node bundle and of a worker's.
const CONTROL_PLANE_FILES: &[&str] = &[
    "etc/kubernetes/admin.conf",
    "etc/kubernetes/controller-manager.conf",
    "etc/kubernetes/kube-proxy.conf",
    "etc/kubernetes/kubelet.conf",
    "etc/kubernetes/manifests/etcd.yaml",
    "etc/kubernetes/manifests/kube-apiserver.yaml",
    "etc/kubernetes/manifests/kube-controller-manager.yaml",
    "etc/kubernetes/manifests/kube-scheduler.yaml",
    "etc/kubernetes/pki/apiserver-etcd-client.crt",
    "etc/kubernetes/pki/apiserver-etcd-client.key",
    "etc/kubernetes/pki/apiserver-kubelet-client.crt",
    "etc/kubernetes/pki/apiserver-kubelet-client.key",
    "etc/kubernetes/pki/apiserver.crt",
    "etc/kubernetes/pki/apiserver.key",
    "etc/kubernetes/pki/ca.crt",
    "etc/kubernetes/pki/ca.key",
    "etc/kubernetes/pki/etcd/ca.crt",
    "etc/kubernetes/pki/etcd/ca.key",
    "etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "etc/kubernetes/pki/etcd/healthcheck-client.key",
    "etc/kubernetes/pki/etcd/peer.crt",
    "etc/kubernetes/pki/etcd/peer.key",
    "etc/kubernetes/pki/etcd/server.crt",
    "etc/kubernetes/pki/etcd/server.key",
    "etc/kubernetes/pki/front-proxy-ca.crt",
    "etc/kubernetes/pki/front-proxy-ca.key",
    "etc/kubernetes/pki/front-proxy-client.crt",
    "etc/kubernetes/pki/front-proxy-client.key",
    "etc/kubernetes/pki/sa.key",
    "etc/kubernetes/pki/sa.pub",
    "etc/kubernetes/scheduler.conf",
    "etc/kubernetes/super-admin.conf",
    "var/lib/kubelet/pki/kubelet.crt",
    "var/lib/kubelet/pki/kubelet.key",
    // kubeforge's hardening (README, "Secure by default"): audit policy, encryption at rest, kubelet config.
    "etc/kubernetes/audit-policy.yaml",
    "etc/kubernetes/encryption-config.yaml",
    "var/lib/kubelet/config.yaml",
    "var/lib/kubelet/kubeadm-flags.env",
];

const WORKER_FILES: &[&str] = &[
    "etc/kubernetes/kube-proxy.conf",
    "etc/kubernetes/kubelet.conf",
    "etc/kubernetes/pki/ca.crt",
    "var/lib/kubelet/pki/kubelet.crt",
    "var/lib/kubelet/pki/kubelet.key",
    "var/lib/kubelet/config.yaml",
    "var/lib/kubelet/kubeadm-flags.env",
];

// ---------------------------------------------------------------------------------------------------------------
// Generating into a private temp dir.
// ---------------------------------------------------------------------------------------------------------------

/// A generated output directory, removed when dropped.
struct Out {
    _tmp: support::TempDir,
    dir: PathBuf,
}

impl Out {
    fn node(&self, name: &str) -> PathBuf {
        self.dir.join("nodes").join(name)
    }
}

/// Generates `f` exactly as the brief says (library API), then writes it like `cargo xtask gen` would.
fn generate(f: &Fixture, test: &str) -> Out {
    let tmp = support::temp_dir(&format!("facts-{}-{test}", f.cluster));
    let out = Out { dir: tmp.path().join("out"), _tmp: tmp };
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join(f.spec);
    support::generate_into(&spec, &out.dir, support::SEED, kubeforge::parse_instant(NOW));
    out
}

// ---------------------------------------------------------------------------------------------------------------
// Small readers.
// ---------------------------------------------------------------------------------------------------------------

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_str(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

fn b64(s: &Value, what: &str) -> Vec<u8> {
    let s = s.as_str().unwrap_or_else(|| panic!("{what}: not a string"));
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_else(|e| panic!("{what}: not base64: {e}"))
}

/// The keys of a YAML mapping, sorted.
fn keys(v: &Value, what: &str) -> Vec<String> {
    let m = v.as_mapping().unwrap_or_else(|| panic!("{what}: not a mapping: {v:?}"));
    let mut k: Vec<String> = m.keys().map(|k| k.as_str().expect("string key").to_string()).collect();
    k.sort();
    k
}

/// kubeforge's documented additions to kubeadm's flags (README, "Secure by default"), written out by hand from
/// the CIS 1.12 items they satisfy; the expected command is kubeadm's plus these, sorted as kubeadm sorts.
const CIPHERS: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,\
TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,\
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305";

fn hardened(kubeadm: &[&str]) -> Vec<String> {
    let tls = [format!("--tls-cipher-suites={CIPHERS}"), "--tls-min-version=VersionTLS12".to_string()];
    let extra: Vec<String> = match kubeadm[0] {
        "kube-apiserver" => [
            "--audit-log-maxage=30",
            "--audit-log-maxbackup=10",
            "--audit-log-maxsize=100",
            "--audit-log-path=/var/log/kubernetes/audit/audit.log",
            "--audit-policy-file=/etc/kubernetes/audit-policy.yaml",
            "--encryption-provider-config=/etc/kubernetes/encryption-config.yaml",
            "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt",
            "--profiling=false",
            "--service-account-extend-token-expiration=false",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(tls.clone())
        .collect(),
        "kube-controller-manager" | "kube-scheduler" => {
            std::iter::once("--profiling=false".to_string()).chain(tls.clone()).collect()
        }
        "etcd" => vec![format!("--cipher-suites={CIPHERS}")],
        other => panic!("unknown component {other}"),
    };
    let mut args: Vec<String> = kubeadm[1..].iter().map(|s| s.to_string()).chain(extra).collect();
    args.sort_by(|a, b| {
        let key = |s: &String| {
            s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((s.clone(), String::new()))
        };
        key(a).cmp(&key(b))
    });
    std::iter::once(kubeadm[0].to_string()).chain(args).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The PEM blocks of a text: (label, DER).
fn pem_blocks(text: &str, what: &str) -> Vec<(String, Vec<u8>)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let label = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .unwrap_or_else(|| panic!("{what}: unexpected line outside a PEM block: {line:?}"));
        let mut body = String::new();
        loop {
            let l = lines.next().unwrap_or_else(|| panic!("{what}: unterminated PEM block {label}"));
            if l.trim() == format!("-----END {label}-----") {
                break;
            }
            body.push_str(l.trim());
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap_or_else(|e| panic!("{what}: PEM body is not base64: {e}"));
        blocks.push((label.to_string(), der));
    }
    blocks
}

/// §1.6: a `.crt` holds exactly one `CERTIFICATE` block.
fn cert_der(pem: &[u8], what: &str) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap_or_else(|_| panic!("{what}: not UTF-8"));
    let mut blocks = pem_blocks(text, what);
    assert_eq!(blocks.len(), 1, "{what}: a certificate file holds exactly one PEM block (§1.6)");
    let (label, der) = blocks.remove(0);
    assert_eq!(label, "CERTIFICATE", "{what}: PEM block type (§1.6)");
    der
}

fn parse_cert<'a>(der: &'a [u8], what: &str) -> X509Certificate<'a> {
    let (rest, c) = parse_x509_certificate(der).unwrap_or_else(|e| panic!("{what}: not an X.509 certificate: {e}"));
    assert!(rest.is_empty(), "{what}: trailing bytes after the certificate");
    c
}

// ---------------------------------------------------------------------------------------------------------------
// Certificates: §1.1–§1.6.
// ---------------------------------------------------------------------------------------------------------------

const OID_CN: &str = "2.5.4.3";
const OID_O: &str = "2.5.4.10";
const OID_SKI: &str = "2.5.29.14";
const OID_KU: &str = "2.5.29.15";
const OID_SAN: &str = "2.5.29.17";
const OID_BC: &str = "2.5.29.19";
const OID_AKI: &str = "2.5.29.35";
const OID_EKU: &str = "2.5.29.37";

/// A distinguished name as (attribute OID, value) in certificate order, one attribute per RDN.
fn dn(name: &X509Name<'_>, what: &str) -> Vec<(String, String)> {
    name.iter_rdn()
        .map(|rdn| {
            let attrs: Vec<_> = rdn.iter().collect();
            assert_eq!(attrs.len(), 1, "{what}: one attribute per RDN");
            let a = attrs[0];
            (a.attr_type().to_id_string(), a.as_str().unwrap_or_else(|_| panic!("{what}: non-string DN value")).into())
        })
        .collect()
}

/// The OIDs of a DER `SEQUENCE OF OBJECT IDENTIFIER` (the EKU extension value), in order.
fn oid_sequence(der: &[u8], what: &str) -> Vec<String> {
    let (rest, seq) = x509_parser::der_parser::der::parse_der_sequence(der)
        .unwrap_or_else(|e| panic!("{what}: EKU is not a DER sequence: {e}"));
    assert!(rest.is_empty(), "{what}: trailing bytes in EKU");
    seq.as_sequence()
        .unwrap()
        .iter()
        .map(|o| o.as_oid().unwrap_or_else(|_| panic!("{what}: EKU entry is not an OID")).to_id_string())
        .collect()
}

/// The signature algorithm Go picks for the signer's key type (§1.2).
fn signature_oid(alg: Alg) -> &'static str {
    match alg {
        Alg::EcdsaP256 => "1.2.840.10045.4.3.2", // ecdsa-with-SHA256
        Alg::EcdsaP384 => "1.2.840.10045.4.3.3", // ecdsa-with-SHA384
        Alg::Rsa2048 => "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    }
}

/// §1.6: the key type and size of the spec's algorithm.
fn check_public_key(spki: &SubjectPublicKeyInfo<'_>, alg: Alg, what: &str) {
    let oid = spki.algorithm.algorithm.to_id_string();
    match alg {
        Alg::EcdsaP256 | Alg::EcdsaP384 => {
            assert_eq!(oid, "1.2.840.10045.2.1", "{what}: public key algorithm (id-ecPublicKey)");
            let curve = spki.algorithm.parameters.as_ref().map(|p| p.data.to_vec());
            let (want, point_len): (&[u8], usize) = match alg {
                // prime256v1 = 1.2.840.10045.3.1.7; secp384r1 = 1.3.132.0.34
                Alg::EcdsaP256 => (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07], 65),
                _ => (&[0x2b, 0x81, 0x04, 0x00, 0x22], 97),
            };
            assert_eq!(curve.as_deref(), Some(want), "{what}: named curve for {alg:?}");
            assert_eq!(spki.subject_public_key.data.len(), point_len, "{what}: uncompressed EC point length");
        }
        Alg::Rsa2048 => {
            assert_eq!(oid, "1.2.840.113549.1.1.1", "{what}: public key algorithm (rsaEncryption)");
            match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(k)) => {
                    assert_eq!(k.key_size(), 2048, "{what}: RSA modulus size");
                    assert_eq!(k.try_exponent().unwrap(), 65537, "{what}: RSA public exponent (O1)");
                }
                other => panic!("{what}: not an RSA public key: {other:?}"),
            }
        }
    }
}

/// Verifies `signature` over `msg` with the signer's public key, in RustCrypto.
fn verify_signature(signer: &SubjectPublicKeyInfo<'_>, alg: Alg, msg: &[u8], signature: &[u8]) -> Result<(), String> {
    let point = &signer.subject_public_key.data;
    match alg {
        Alg::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|e| format!("signer key: {e}"))?;
            let sig = p256::ecdsa::Signature::from_der(signature).map_err(|e| format!("signature: {e}"))?;
            vk.verify(msg, &sig).map_err(|e| format!("ECDSA P-256/SHA-256 verification failed: {e}"))
        }
        Alg::EcdsaP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(|e| format!("signer key: {e}"))?;
            let sig = p384::ecdsa::Signature::from_der(signature).map_err(|e| format!("signature: {e}"))?;
            vk.verify(msg, &sig).map_err(|e| format!("ECDSA P-384/SHA-384 verification failed: {e}"))
        }
        Alg::Rsa2048 => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            let pk = rsa::PublicKey::from_pkcs1_der(point).map_err(|e| format!("signer key: {e}"))?;
            let vk = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(pk);
            let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(|e| format!("signature: {e}"))?;
            vk.verify(msg, &sig).map_err(|e| format!("RSA PKCS#1 v1.5/SHA-256 verification failed: {e}"))
        }
    }
}

/// Whether `cert` is signed by `ca`'s key (issuer DN and signature).
fn signed_by(cert: &[u8], ca: &[u8], alg: Alg) -> Result<(), String> {
    let (c, ca) = (parse_cert(cert, "cert"), parse_cert(ca, "ca"));
    if c.issuer().as_raw() != ca.subject().as_raw() {
        return Err("issuer DN is not the CA's subject".into());
    }
    verify_signature(ca.public_key(), alg, c.tbs_certificate.as_ref(), &c.signature_value.data)
}

/// Every X.509 fact of §1.2/§1.5/§1.6 for one certificate, against the hand-written expectation and the CA that
/// must have signed it (`ca_der` = `der` for a self-signed CA).
fn check_cert(f: &Fixture, what: &str, der: &[u8], e: &CertExp, ca_der: &[u8]) {
    let c = parse_cert(der, what);
    let ca = parse_cert(ca_der, what);
    let is_ca = e.usage == Usage::Ca;

    assert_eq!(c.version(), X509Version::V3, "{what}: version (§1.2)");

    // Subject: O before CN, as Go writes it; issuer = the CA's subject (§1.1).
    let mut subject = Vec::new();
    if let Some(o) = e.o {
        subject.push((OID_O.to_string(), o.to_string()));
    }
    subject.push((OID_CN.to_string(), e.cn.clone()));
    assert_eq!(dn(c.subject(), what), subject, "{what}: subject DN");
    let ca_cn = dn(ca.subject(), what);
    assert_eq!(ca_cn.len(), 1, "{what}: a CA subject is CN only (§1.1)");
    assert_eq!(dn(c.issuer(), what), ca_cn, "{what}: issuer DN = the CA's subject");
    assert_eq!(c.issuer().as_raw(), ca.subject().as_raw(), "{what}: issuer DN bytes = the CA's subject bytes");

    // Serial: uniform in [1, 2^63-1), a positive minimal DER INTEGER (§1.2).
    let raw = c.raw_serial();
    assert!(!raw.is_empty() && raw[0] & 0x80 == 0, "{what}: serial must be positive");
    assert!(!(raw.len() > 1 && raw[0] == 0 && raw[1] & 0x80 == 0), "{what}: serial is not minimally encoded");
    assert!(raw.len() <= 9, "{what}: serial too large: {raw:02x?}");
    let serial = raw.iter().fold(0u128, |acc, b| (acc << 8) | *b as u128);
    assert!((1..(1u128 << 63) - 1).contains(&serial), "{what}: serial {serial} outside [1, 2^63-1)");

    // Validity: NotBefore = start - 5 min; NotAfter = start + validity, counted from start (§1.5).
    let hours = if is_ca { f.ca_hours } else { f.cert_hours };
    assert_eq!(c.validity().not_before.timestamp(), NOW_UNIX - BACKDATE_SECS, "{what}: NotBefore = now - 5m");
    assert_eq!(c.validity().not_after.timestamp(), NOW_UNIX + hours * 3600, "{what}: NotAfter = now + {hours}h");

    // Key and signature algorithms (§1.2, §1.6).
    check_public_key(c.public_key(), f.alg, what);
    let sig_oid = signature_oid(f.alg);
    assert_eq!(c.signature_algorithm.algorithm.to_id_string(), sig_oid, "{what}: signature algorithm");
    assert_eq!(c.tbs_certificate.signature.algorithm.to_id_string(), sig_oid, "{what}: TBS signature algorithm");
    if let Err(e) = verify_signature(ca.public_key(), f.alg, c.tbs_certificate.as_ref(), &c.signature_value.data) {
        panic!("{what}: not signed by its CA ({}): {e}", ca_cn[0].1);
    }

    // Exactly these extensions, each once.
    let mut oids: Vec<String> = c.extensions().iter().map(|x| x.oid.to_id_string()).collect();
    oids.sort();
    let mut want = vec![OID_SKI, OID_KU, OID_BC];
    if !is_ca {
        want.extend([OID_EKU, OID_AKI]);
    }
    if !e.dns.is_empty() || !e.ips.is_empty() {
        want.push(OID_SAN);
    }
    let mut want: Vec<String> = strs(&want);
    want.sort();
    assert_eq!(oids, want, "{what}: the set of extensions");

    // KeyUsage: critical; digitalSignature (+ keyEncipherment for RSA keys only: RFC 8813 §3 forbids it for EC keys,
    // where kubeadm sets it anyway), + keyCertSign on CAs (§1.2).
    let ku = c.key_usage().unwrap().unwrap_or_else(|| panic!("{what}: no KeyUsage"));
    assert!(ku.critical, "{what}: KeyUsage must be critical");
    let got = [
        ("digitalSignature", ku.value.digital_signature()),
        ("nonRepudiation", ku.value.non_repudiation()),
        ("keyEncipherment", ku.value.key_encipherment()),
        ("dataEncipherment", ku.value.data_encipherment()),
        ("keyAgreement", ku.value.key_agreement()),
        ("keyCertSign", ku.value.key_cert_sign()),
        ("cRLSign", ku.value.crl_sign()),
        ("encipherOnly", ku.value.encipher_only()),
        ("decipherOnly", ku.value.decipher_only()),
    ];
    let got: Vec<&str> = got.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    let mut want = vec!["digitalSignature"];
    if f.alg == Alg::Rsa2048 {
        want.push("keyEncipherment");
    }
    if is_ca {
        want.push("keyCertSign");
    }
    assert_eq!(got, want, "{what}: KeyUsage bits");

    // BasicConstraints: critical, CA:TRUE without pathlen, or CA:FALSE (§1.2).
    let bc = c.basic_constraints().unwrap().unwrap_or_else(|| panic!("{what}: no BasicConstraints"));
    assert!(bc.critical, "{what}: BasicConstraints must be critical");
    assert_eq!(bc.value.ca, is_ca, "{what}: BasicConstraints CA flag");
    assert_eq!(bc.value.path_len_constraint, None, "{what}: no pathlen");

    // ExtendedKeyUsage: none on CAs; exactly the table's usages, in Go's order, on leaves (§1.1).
    if let Some(x) = c.extensions().iter().find(|x| x.oid.to_id_string() == OID_EKU) {
        assert!(!x.critical, "{what}: EKU is not critical");
        assert_eq!(oid_sequence(x.value, what), strs(&e.usage.eku()), "{what}: ExtendedKeyUsage");
    }

    // SANs: DNS sorted ascending, then IPs in insertion order (§1.2, §1.3, §1.4); CA SAN = CN.
    let mut sans = Vec::new();
    if let Some(x) = c.extensions().iter().find(|x| x.oid.to_id_string() == OID_SAN) {
        assert!(!x.critical, "{what}: SAN is not critical (the subject is not empty)");
        let ParsedExtension::SubjectAlternativeName(san) = x.parsed_extension() else {
            panic!("{what}: unparsable SAN extension")
        };
        for g in &san.general_names {
            sans.push(match g {
                GeneralName::DNSName(d) => format!("DNS:{d}"),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                    16 => format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                    n => panic!("{what}: SAN IP of {n} bytes"),
                },
                other => panic!("{what}: unexpected SAN {other:?}"),
            });
        }
    }
    let want: Vec<String> =
        e.dns.iter().map(|d| format!("DNS:{d}")).chain(e.ips.iter().map(|ip| format!("IP:{ip}"))).collect();
    assert_eq!(sans, want, "{what}: subjectAltName (exact, in order)");

    // SKI on every cert (kubeadm: CAs only; kubeforge adds it to leaves); AKI on leaves = the CA's SKI.
    let ski = |c: &X509Certificate<'_>| -> Vec<u8> {
        c.extensions()
            .iter()
            .find_map(|x| match x.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{what}: no SubjectKeyIdentifier"))
    };
    assert!(!ski(&c).is_empty(), "{what}: empty SubjectKeyIdentifier");
    let aki = c.extensions().iter().find_map(|x| match x.parsed_extension() {
        ParsedExtension::AuthorityKeyIdentifier(a) => Some(a),
        _ => None,
    });
    if is_ca {
        assert!(aki.is_none(), "{what}: a CA has no AuthorityKeyIdentifier (§1.2)");
    } else {
        let aki = aki.unwrap_or_else(|| panic!("{what}: no AuthorityKeyIdentifier"));
        assert_eq!(aki.key_identifier.as_ref().map(|k| k.0.to_vec()), Some(ski(&ca)), "{what}: AKI = the CA's SKI");
        assert!(aki.authority_cert_issuer.is_none() && aki.authority_cert_serial.is_none(), "{what}: AKI keyid only");
    }
}

/// The SubjectPublicKeyInfo DER of a private key PEM, after checking its block type (§1.6).
fn key_spki(pem: &str, alg: Alg, what: &str) -> Vec<u8> {
    let blocks = pem_blocks(pem, what);
    assert_eq!(blocks.len(), 1, "{what}: a key file holds exactly one PEM block");
    let label = match alg {
        Alg::EcdsaP256 | Alg::EcdsaP384 => "EC PRIVATE KEY",
        Alg::Rsa2048 => "RSA PRIVATE KEY",
    };
    assert_eq!(blocks[0].0, label, "{what}: private key PEM block type (§1.6)");
    let bad = |e: String| -> ! { panic!("{what}: not a {alg:?} private key: {e}") };
    let der = match alg {
        Alg::EcdsaP256 => {
            p256::SecretKey::from_sec1_pem(pem).unwrap_or_else(|e| bad(e.to_string())).public_key().to_public_key_der()
        }
        Alg::EcdsaP384 => {
            p384::SecretKey::from_sec1_pem(pem).unwrap_or_else(|e| bad(e.to_string())).public_key().to_public_key_der()
        }
        Alg::Rsa2048 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let k = rsa::PrivateKey::from_pkcs1_pem(pem).unwrap_or_else(|e| bad(e.to_string()));
            assert_eq!(rsa::traits::PublicKeyParts::size(&k) * 8, 2048, "{what}: RSA key size");
            k.to_public_key().to_public_key_der()
        }
    };
    der.unwrap_or_else(|e| panic!("{what}: cannot encode the public key: {e}")).as_bytes().to_vec()
}

/// The private key matches the certificate (same public key).
fn check_key_matches(f: &Fixture, what: &str, key_pem: &str, cert: &[u8]) {
    let c = parse_cert(cert, what);
    assert_eq!(key_spki(key_pem, f.alg, what), c.public_key().raw, "{what}: private key does not match the cert");
}

/// Checks every certificate and key file of one node against the table.
fn check_node_certs(f: &Fixture, root: &Path, n: &NodeExp) {
    for cf in node_cert_files(f, n) {
        let what = format!("{}:{}", n.name, cf.path);
        let der = cert_der(&read(&root.join(cf.path)), &what);
        let ca = cert_der(&read(&root.join(cf.signer)), &what);
        check_cert(f, &what, &der, &cf.exp, &ca);
        // Workers get the cluster CA certificate without its key.
        let key = root.join(cf.path.replace(".crt", ".key"));
        if cf.exp.usage == Usage::Ca && !n.control_plane {
            assert!(!key.exists(), "{what}: a worker must not get the CA key");
        } else {
            check_key_matches(f, &format!("{}:{}", n.name, key.display()), &read_str(&key), &der);
        }
    }
}

fn check_certificates(f: &Fixture) {
    let out = generate(f, "certs");
    for n in f.nodes {
        check_node_certs(f, &out.node(n.name), n);
    }

    // sa.key / sa.pub (§1.6, §1.7): the spec's algorithm, sa.pub a PKIX `PUBLIC KEY` of sa.key.
    let pki = out.node(f.control_plane().name).join("etc/kubernetes/pki");
    let sa_key = read_str(&pki.join("sa.key"));
    let spki = key_spki(&sa_key, f.alg, "sa.key");
    let pub_blocks = pem_blocks(&read_str(&pki.join("sa.pub")), "sa.pub");
    assert_eq!(pub_blocks.len(), 1, "sa.pub: one PEM block");
    assert_eq!(pub_blocks[0].0, "PUBLIC KEY", "sa.pub: PEM block type (§1.6)");
    assert_eq!(pub_blocks[0].1, spki, "sa.pub is not the public half of sa.key");

    // The chain check is not vacuous: a leaf does not verify under another CA.
    let apiserver = cert_der(&read(&pki.join("apiserver.crt")), "apiserver.crt");
    let etcd_ca = cert_der(&read(&pki.join("etcd/ca.crt")), "etcd/ca.crt");
    assert!(signed_by(&apiserver, &etcd_ca, f.alg).is_err(), "apiserver.crt must not verify under etcd/ca.crt");
    let front_ca = cert_der(&read(&pki.join("front-proxy-ca.crt")), "front-proxy-ca.crt");
    let ca = cert_der(&read(&pki.join("ca.crt")), "ca.crt");
    let front_client = cert_der(&read(&pki.join("front-proxy-client.crt")), "front-proxy-client.crt");
    assert!(signed_by(&front_client, &ca, f.alg).is_err(), "front-proxy-client must not verify under ca.crt");
    assert!(signed_by(&front_client, &front_ca, f.alg).is_ok());
}

// ---------------------------------------------------------------------------------------------------------------
// openssl verify: an independent X.509 implementation checks every chain and purpose.
// ---------------------------------------------------------------------------------------------------------------

fn openssl() -> PathBuf {
    match std::env::var_os("KUBEFORGE_OPENSSL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("$KUBEFORGE_OPENSSL is not set: run the tests through `cargo xtask test`"),
    }
}

/// `openssl verify -x509_strict -purpose <purpose> -CAfile <ca> <cert>` at one hour after the issue time (the
/// certificates are issued at a fixed instant, so the wall clock would make this flaky).
fn openssl_verify(ca: &Path, cert: &Path, purpose: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(openssl());
    cmd.args(["verify", "-x509_strict", "-attime", &(NOW_UNIX + 3600).to_string()]);
    if let Some(p) = purpose {
        cmd.args(["-purpose", p]);
    }
    cmd.arg("-CAfile").arg(ca).arg(cert);
    let o = cmd.output().expect("run openssl");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success() && text.contains(": OK"), text)
}

/// Checks the purposes a leaf is good for, and that it is refused for the one it is not.
fn openssl_check_leaf(ca: &Path, cert: &Path, usage: Usage, what: &str) {
    let (server_ok, client_ok) = match usage {
        Usage::Server => (true, false),
        Usage::Client => (false, true),
        Usage::ServerClient => (true, true),
        Usage::Ca => unreachable!(),
    };
    for (purpose, ok) in [("sslserver", server_ok), ("sslclient", client_ok)] {
        let (got, text) = openssl_verify(ca, cert, Some(purpose));
        assert_eq!(
            got,
            ok,
            "{what}: openssl verify -purpose {purpose} should {}:\n{text}",
            if ok { "pass" } else { "fail" }
        );
    }
}

fn check_openssl(f: &Fixture) {
    openssl(); // fail fast without the tool
    let out = generate(f, "openssl");
    let scratch = out.dir.join("openssl-scratch");
    fs::create_dir_all(&scratch).unwrap();
    for n in f.nodes {
        let root = out.node(n.name);
        for cf in node_cert_files(f, n) {
            let what = format!("{}:{}", n.name, cf.path);
            let (cert, ca) = (root.join(cf.path), root.join(cf.signer));
            if cf.exp.usage == Usage::Ca {
                let (ok, text) = openssl_verify(&ca, &cert, None);
                assert!(ok, "{what}: openssl verify of the self-signed CA failed:\n{text}");
            } else {
                openssl_check_leaf(&ca, &cert, cf.exp.usage, &what);
            }
        }
        // The client certificates embedded in the kubeconfigs.
        for kc in node_kubeconfigs(f, n) {
            let what = format!("{}:{}", n.name, kc.path);
            let v = yaml(&read_str(&root.join(kc.path)));
            let pem = b64(&v["users"][0]["user"]["client-certificate-data"], &what);
            let file = scratch.join(format!("{}-{}.crt", n.name, kc.path.replace('/', "_")));
            fs::write(&file, pem).unwrap();
            openssl_check_leaf(&root.join(CA), &file, Usage::Client, &what);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kubeconfigs: §2.1–§2.3.
// ---------------------------------------------------------------------------------------------------------------

/// Checks one kubeconfig field by field, including its embedded client certificate and key.
fn check_kubeconfig(f: &Fixture, what: &str, path: &Path, ca_pem: &[u8], kc: &KubeconfigExp) {
    assert_eq!(mode(path), 0o600, "{what}: mode (§2.3)");
    let v = yaml(&read_str(path));
    // §2.3: v1.34.1's serializer writes exactly these keys (no `preferences: {}`).
    let top = strs(&["apiVersion", "clusters", "contexts", "current-context", "kind", "users"]);
    assert_eq!(keys(&v, what), top, "{what}: top-level fields");
    assert_eq!(v["apiVersion"].as_str(), Some("v1"), "{what}: apiVersion");
    assert_eq!(v["kind"].as_str(), Some("Config"), "{what}: kind");

    let clusters = v["clusters"].as_sequence().unwrap_or_else(|| panic!("{what}: clusters"));
    assert_eq!(clusters.len(), 1, "{what}: one cluster");
    assert_eq!(keys(&clusters[0], what), strs(&["cluster", "name"]), "{what}: clusters[0]");
    assert_eq!(clusters[0]["name"].as_str(), Some(f.cluster), "{what}: cluster name = clusterName");
    let cluster = &clusters[0]["cluster"];
    assert_eq!(keys(cluster, what), strs(&["certificate-authority-data", "server"]), "{what}: cluster fields");
    assert_eq!(cluster["server"].as_str(), Some(kc.server), "{what}: server (§2.1, §2.2)");
    assert_eq!(b64(&cluster["certificate-authority-data"], what), ca_pem, "{what}: embedded CA = ca.crt bytes");

    let context_name = format!("{}@{}", kc.user, f.cluster);
    let contexts = v["contexts"].as_sequence().unwrap_or_else(|| panic!("{what}: contexts"));
    assert_eq!(contexts.len(), 1, "{what}: one context");
    assert_eq!(contexts[0]["name"].as_str(), Some(context_name.as_str()), "{what}: context name <user>@<cluster>");
    assert_eq!(keys(&contexts[0]["context"], what), strs(&["cluster", "user"]), "{what}: context fields");
    assert_eq!(contexts[0]["context"]["cluster"].as_str(), Some(f.cluster), "{what}: context.cluster");
    assert_eq!(contexts[0]["context"]["user"].as_str(), Some(kc.user.as_str()), "{what}: context.user");
    assert_eq!(v["current-context"].as_str(), Some(context_name.as_str()), "{what}: current-context");

    let users = v["users"].as_sequence().unwrap_or_else(|| panic!("{what}: users"));
    assert_eq!(users.len(), 1, "{what}: one user");
    assert_eq!(users[0]["name"].as_str(), Some(kc.user.as_str()), "{what}: user name = cert CN");
    let user = &users[0]["user"];
    assert_eq!(keys(user, what), strs(&["client-certificate-data", "client-key-data"]), "{what}: all embedded");

    // The client certificate (§2.3): CN = user, O per table, clientAuth only, no SANs, signed by ca.
    let cert = cert_der(&b64(&user["client-certificate-data"], what), what);
    let ca = cert_der(ca_pem, what);
    check_cert(f, what, &cert, &exp(kc.user.clone(), kc.o, Usage::Client, &[], &[]), &ca);
    let key = String::from_utf8(b64(&user["client-key-data"], what)).expect("key PEM is UTF-8");
    check_key_matches(f, &format!("{what} client-key-data"), &key, &cert);
}

fn check_kubeconfigs(f: &Fixture) {
    let out = generate(f, "kubeconfigs");
    for n in f.nodes {
        let root = out.node(n.name);
        let ca_pem = read(&root.join(CA));
        let expected = node_kubeconfigs(f, n);
        for kc in &expected {
            check_kubeconfig(f, &format!("{}:{}", n.name, kc.path), &root.join(kc.path), &ca_pem, kc);
        }
        // No other kubeconfig on the node.
        let mut got: Vec<String> = fs::read_dir(root.join("etc/kubernetes"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".conf"))
            .map(|n| format!("etc/kubernetes/{n}"))
            .collect();
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|k| k.path.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{}: kubeconfig files", n.name);
    }
    // OUT/admin.conf: the operator's kubeconfig, to the cluster endpoint, CA = OUT/pki/ca.crt.
    let admin = KubeconfigExp {
        path: "admin.conf",
        user: "kubernetes-admin".into(),
        o: Some("kubeadm:cluster-admins"),
        server: f.endpoint_url,
    };
    let ca_pem = read(&out.dir.join("pki/ca.crt"));
    check_kubeconfig(f, "OUT/admin.conf", &out.dir.join("admin.conf"), &ca_pem, &admin);
}

// ---------------------------------------------------------------------------------------------------------------
// Static pod manifests: §3.0–§3.4, §6.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

/// §3.0: kubeadm's fixed probe timings; the port is named (`probe-port`) from v1.34, a number before (§6).
fn probe(f: &Fixture, kind: ProbeKind, host: &str, path: &str, port: u16, scheme: &str) -> Value {
    let port = if f.v134 { "probe-port".to_string() } else { port.to_string() };
    let timing = match kind {
        ProbeKind::Liveness => "failureThreshold: 8\ninitialDelaySeconds: 10\nperiodSeconds: 10\ntimeoutSeconds: 15",
        ProbeKind::Readiness => "failureThreshold: 3\nperiodSeconds: 1\ntimeoutSeconds: 15",
        ProbeKind::Startup => "failureThreshold: 24\ninitialDelaySeconds: 10\nperiodSeconds: 10\ntimeoutSeconds: 15",
    };
    yaml(&format!("httpGet:\n  host: '{host}'\n  path: {path}\n  port: {port}\n  scheme: {scheme}\n{timing}\n"))
}

struct PodExp {
    name: &'static str,
    image: String,
    command: Vec<String>,
    annotations: Option<Value>,
    liveness: Value,
    readiness: Option<Value>,
    startup: Value,
    probe_port: u16,
    resources: Value,
    mounts: Value,
    volumes: Value,
}

/// The CA directories a Debian/Ubuntu host has (§3.1 O1; kubeforge's default `hostCACertDirs`).
const CA_DIR_MOUNTS: &str = "
- {mountPath: /etc/ssl/certs, name: ca-certs, readOnly: true}
- {mountPath: /etc/ca-certificates, name: etc-ca-certificates, readOnly: true}
- {mountPath: /etc/kubernetes/pki, name: k8s-certs, readOnly: true}
- {mountPath: /usr/local/share/ca-certificates, name: usr-local-share-ca-certificates, readOnly: true}
- {mountPath: /usr/share/ca-certificates, name: usr-share-ca-certificates, readOnly: true}
";
const CA_DIR_VOLUMES: &str = "
- {hostPath: {path: /etc/ssl/certs, type: DirectoryOrCreate}, name: ca-certs}
- {hostPath: {path: /etc/ca-certificates, type: DirectoryOrCreate}, name: etc-ca-certificates}
- {hostPath: {path: /etc/kubernetes/pki, type: DirectoryOrCreate}, name: k8s-certs}
- {hostPath: {path: /usr/local/share/ca-certificates, type: DirectoryOrCreate}, name: usr-local-share-ca-certificates}
- {hostPath: {path: /usr/share/ca-certificates, type: DirectoryOrCreate}, name: usr-share-ca-certificates}
";

/// A YAML list of mappings, sorted by `name` (kubeadm's VolumeMapToSlice order).
fn sorted_by_name(text: &str) -> Value {
    let mut v: Vec<Value> = yaml(text).as_sequence().unwrap().clone();
    v.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Value::Sequence(v)
}

/// The controller-manager's mounts or volumes without flexvolume-dir where the version has none.
fn without_flexvolume(f: &Fixture, list: Value) -> Value {
    let mut items = list.as_sequence().unwrap().clone();
    if !f.flexvolume {
        items.retain(|v| v["name"] != "flexvolume-dir");
    }
    Value::Sequence(items)
}

/// §3.1–§3.4 for the fixture's control-plane node.
fn expected_pods(f: &Fixture) -> Vec<PodExp> {
    use ProbeKind::*;
    let image = |name: &str| format!("registry.k8s.io/{name}:{}", f.kube_version);
    let adv = f.apiserver_probe_host;
    let lo = f.etcd_probe_host;
    vec![
        PodExp {
            name: "kube-apiserver",
            image: image("kube-apiserver"),
            command: hardened(f.apiserver_cmd),
            annotations: Some(yaml(&format!(
                "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: '{}'",
                f.apiserver_endpoint_annotation
            ))),
            liveness: probe(f, Liveness, adv, "/livez", 6443, "HTTPS"),
            readiness: Some(probe(f, Readiness, adv, "/readyz", 6443, "HTTPS")),
            startup: probe(f, Startup, adv, "/livez", 6443, "HTTPS"),
            probe_port: 6443,
            resources: yaml("requests: {cpu: 250m}"),
            // kubeadm's CA mounts plus kubeforge's audit log (read-write), audit policy and encryption config.
            mounts: sorted_by_name(&format!(
                "{CA_DIR_MOUNTS}
- {{mountPath: /var/log/kubernetes/audit, name: audit-log}}
- {{mountPath: /etc/kubernetes/audit-policy.yaml, name: audit-policy, readOnly: true}}
- {{mountPath: /etc/kubernetes/encryption-config.yaml, name: encryption-config, readOnly: true}}
"
            )),
            volumes: sorted_by_name(&format!(
                "{CA_DIR_VOLUMES}
- {{hostPath: {{path: /var/log/kubernetes/audit, type: DirectoryOrCreate}}, name: audit-log}}
- {{hostPath: {{path: /etc/kubernetes/audit-policy.yaml, type: File}}, name: audit-policy}}
- {{hostPath: {{path: /etc/kubernetes/encryption-config.yaml, type: File}}, name: encryption-config}}
"
            )),
        },
        PodExp {
            name: "kube-controller-manager",
            image: image("kube-controller-manager"),
            command: hardened(f.controller_manager_cmd),
            annotations: None,
            // §3.2: /healthz for liveness and startup, no readiness probe, in every version.
            liveness: probe(f, Liveness, "127.0.0.1", "/healthz", 10257, "HTTPS"),
            readiness: None,
            startup: probe(f, Startup, "127.0.0.1", "/healthz", 10257, "HTTPS"),
            probe_port: 10257,
            resources: yaml("requests: {cpu: 200m}"),
            // [v135 §2.3]: no flexvolume-dir from v1.36.
            mounts: without_flexvolume(
                f,
                yaml(
                    "
- {mountPath: /etc/ssl/certs, name: ca-certs, readOnly: true}
- {mountPath: /etc/ca-certificates, name: etc-ca-certificates, readOnly: true}
- {mountPath: /usr/libexec/kubernetes/kubelet-plugins/volume/exec, name: flexvolume-dir}
- {mountPath: /etc/kubernetes/pki, name: k8s-certs, readOnly: true}
- {mountPath: /etc/kubernetes/controller-manager.conf, name: kubeconfig, readOnly: true}
- {mountPath: /usr/local/share/ca-certificates, name: usr-local-share-ca-certificates, readOnly: true}
- {mountPath: /usr/share/ca-certificates, name: usr-share-ca-certificates, readOnly: true}
",
                ),
            ),
            volumes: without_flexvolume(
                f,
                yaml(
                    "
- {hostPath: {path: /etc/ssl/certs, type: DirectoryOrCreate}, name: ca-certs}
- {hostPath: {path: /etc/ca-certificates, type: DirectoryOrCreate}, name: etc-ca-certificates}
- {hostPath: {path: /usr/libexec/kubernetes/kubelet-plugins/volume/exec, type: DirectoryOrCreate}, name: flexvolume-dir}
- {hostPath: {path: /etc/kubernetes/pki, type: DirectoryOrCreate}, name: k8s-certs}
- {hostPath: {path: /etc/kubernetes/controller-manager.conf, type: FileOrCreate}, name: kubeconfig}
- {hostPath: {path: /usr/local/share/ca-certificates, type: DirectoryOrCreate}, name: usr-local-share-ca-certificates}
- {hostPath: {path: /usr/share/ca-certificates, type: DirectoryOrCreate}, name: usr-share-ca-certificates}
",
                ),
            ),
        },
        PodExp {
            name: "kube-scheduler",
            image: image("kube-scheduler"),
            command: hardened(SCHEDULER_CMD),
            annotations: None,
            // §3.3, v1.32+: /livez (liveness, startup) and /readyz (readiness).
            liveness: probe(f, Liveness, "127.0.0.1", "/livez", 10259, "HTTPS"),
            readiness: Some(probe(f, Readiness, "127.0.0.1", "/readyz", 10259, "HTTPS")),
            startup: probe(f, Startup, "127.0.0.1", "/livez", 10259, "HTTPS"),
            probe_port: 10259,
            resources: yaml("requests: {cpu: 100m}"),
            mounts: yaml("- {mountPath: /etc/kubernetes/scheduler.conf, name: kubeconfig, readOnly: true}"),
            volumes: yaml("- {hostPath: {path: /etc/kubernetes/scheduler.conf, type: FileOrCreate}, name: kubeconfig}"),
        },
        PodExp {
            name: "etcd",
            image: f.etcd_image.to_string(),
            command: hardened(f.etcd_cmd),
            annotations: Some(yaml(&format!(
                "kubeadm.kubernetes.io/etcd.advertise-client-urls: '{}'",
                f.etcd_client_url_annotation
            ))),
            // §3.4: HTTP on the metrics port; /livez, /readyz, startup /readyz.
            liveness: probe(f, Liveness, lo, "/livez", 2381, "HTTP"),
            readiness: Some(probe(f, Readiness, lo, "/readyz", 2381, "HTTP")),
            startup: probe(f, Startup, lo, "/readyz", 2381, "HTTP"),
            probe_port: 2381,
            resources: yaml("requests: {cpu: 100m, memory: 100Mi}"),
            // Fixed order (data, then certs), both read-write.
            mounts: yaml(
                "
- {mountPath: /var/lib/etcd, name: etcd-data}
- {mountPath: /etc/kubernetes/pki/etcd, name: etcd-certs}
",
            ),
            volumes: yaml(
                "
- {hostPath: {path: /etc/kubernetes/pki/etcd, type: DirectoryOrCreate}, name: etcd-certs}
- {hostPath: {path: /var/lib/etcd, type: DirectoryOrCreate}, name: etcd-data}
",
            ),
        },
    ]
}

fn check_pod(f: &Fixture, root: &Path, e: &PodExp) {
    let path = root.join(format!("etc/kubernetes/manifests/{}.yaml", e.name));
    let what = e.name;
    assert_eq!(mode(&path), 0o600, "{what}: manifest mode (§3.0)");
    let v = yaml(&read_str(&path));

    assert_eq!(keys(&v, what), strs(&["apiVersion", "kind", "metadata", "spec", "status"]), "{what}: top level");
    assert_eq!(v["apiVersion"].as_str(), Some("v1"), "{what}: apiVersion");
    assert_eq!(v["kind"].as_str(), Some("Pod"), "{what}: kind");
    assert_eq!(v["status"], yaml("{}"), "{what}: status {{}}");

    // metadata (§3.0): creationTimestamp null before v1.34, absent in v1.34.
    let md = &v["metadata"];
    let mut want_md = vec!["labels", "name", "namespace"];
    if e.annotations.is_some() {
        want_md.push("annotations");
    }
    if !f.v134 {
        want_md.push("creationTimestamp");
    }
    want_md.sort();
    assert_eq!(keys(md, what), strs(&want_md), "{what}: metadata fields");
    if !f.v134 {
        assert!(md["creationTimestamp"].is_null(), "{what}: creationTimestamp: null (v1.33, O2)");
    }
    assert_eq!(md["name"].as_str(), Some(e.name), "{what}: metadata.name");
    assert_eq!(md["namespace"].as_str(), Some("kube-system"), "{what}: namespace");
    assert_eq!(md["labels"], yaml(&format!("{{component: {}, tier: control-plane}}", e.name)), "{what}: labels");
    if let Some(a) = &e.annotations {
        assert_eq!(&md["annotations"], a, "{what}: annotations");
    }

    // spec (§3.0).
    let spec = &v["spec"];
    assert_eq!(
        keys(spec, what),
        strs(&["containers", "hostNetwork", "priority", "priorityClassName", "securityContext", "volumes"]),
        "{what}: spec fields (no restartPolicy, dnsPolicy, ...)"
    );
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true), "{what}: hostNetwork");
    assert_eq!(spec["priority"].as_i64(), Some(2000001000), "{what}: priority");
    assert_eq!(spec["priorityClassName"].as_str(), Some("system-node-critical"), "{what}: priorityClassName");
    assert_eq!(spec["securityContext"], yaml("seccompProfile: {type: RuntimeDefault}"), "{what}: securityContext");
    assert_eq!(spec["volumes"], e.volumes, "{what}: volumes (sorted by name)");

    let containers = spec["containers"].as_sequence().unwrap_or_else(|| panic!("{what}: containers"));
    assert_eq!(containers.len(), 1, "{what}: exactly one container");
    let c = &containers[0];
    let mut want_c = vec![
        "command",
        "image",
        "imagePullPolicy",
        "livenessProbe",
        "name",
        "resources",
        "startupProbe",
        "volumeMounts",
    ];
    if e.readiness.is_some() {
        want_c.push("readinessProbe");
    }
    if f.v134 {
        want_c.push("ports");
    }
    want_c.sort();
    assert_eq!(keys(c, what), strs(&want_c), "{what}: container fields (no env, no limits, ...)");
    assert_eq!(c["name"].as_str(), Some(e.name), "{what}: container name");
    assert_eq!(c["image"].as_str(), Some(e.image.as_str()), "{what}: image");
    assert_eq!(c["imagePullPolicy"].as_str(), Some("IfNotPresent"), "{what}: imagePullPolicy");
    let command: Vec<String> = c["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: command"))
        .iter()
        .map(|a| a.as_str().expect("command entries are strings").to_string())
        .collect();
    assert_eq!(command, e.command, "{what}: command (sorted, §3.1–§3.4)");
    assert_eq!(c["livenessProbe"], e.liveness, "{what}: livenessProbe");
    assert_eq!(c["startupProbe"], e.startup, "{what}: startupProbe");
    if let Some(r) = &e.readiness {
        assert_eq!(&c["readinessProbe"], r, "{what}: readinessProbe");
    }
    if f.v134 {
        let ports = yaml(&format!("- {{containerPort: {}, name: probe-port, protocol: TCP}}", e.probe_port));
        assert_eq!(c["ports"], ports, "{what}: ports (v1.34 named probe port)");
    }
    assert_eq!(c["resources"], e.resources, "{what}: resources (requests only)");
    assert_eq!(c["volumeMounts"], e.mounts, "{what}: volumeMounts");

    // Every flag that names a file under /etc/kubernetes names a file this node's bundle has, and every
    // FileOrCreate hostPath under /etc/kubernetes exists (DirectoryOrCreate ones as directories).
    for arg in &command[1..] {
        let (flag, value) = arg.split_once('=').unwrap_or_else(|| panic!("{what}: {arg} is not --name=value"));
        if value.starts_with("/etc/kubernetes/") {
            let p = root.join(value.trim_start_matches('/'));
            assert!(p.is_file(), "{what}: {flag} names {value}, which the node bundle does not have");
        }
    }
    for vol in e.volumes.as_sequence().unwrap() {
        let host = vol["hostPath"]["path"].as_str().unwrap();
        if host.starts_with("/etc/kubernetes") {
            let p = root.join(host.trim_start_matches('/'));
            match vol["hostPath"]["type"].as_str().unwrap() {
                "FileOrCreate" | "File" => assert!(p.is_file(), "{what}: volume {host} is not a file in the bundle"),
                _ => assert!(p.is_dir(), "{what}: volume {host} is not a directory in the bundle"),
            }
        }
    }
}

/// The value of `--name=` in a command.
fn flag<'a>(command: &'a [&str], name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    command.iter().find_map(|a| a.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no --{name}"))
}

fn check_manifests(f: &Fixture) {
    let out = generate(f, "manifests");
    let cp = f.control_plane();
    let root = out.node(cp.name);
    for pod in expected_pods(f) {
        check_pod(f, &root, &pod);
    }
    let mut got: Vec<String> = fs::read_dir(root.join("etc/kubernetes/manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, strs(&["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"]));

    // The wiring between the flags: each cert flag's key flag is its key, each CA flag signs what it must trust.
    let file = |p: &str| root.join(p.trim_start_matches('/'));
    let cert = |p: &str| cert_der(&read(&file(p)), p);
    let key_matches = |c: &str, k: &str| check_key_matches(f, &format!("{c} / {k}"), &read_str(&file(k)), &cert(c));
    let signs = |ca: &str, leaf: &str| {
        if let Err(e) = signed_by(&cert(leaf), &cert(ca), f.alg) {
            panic!("{leaf} is not signed by {ca}: {e}")
        }
    };
    let api = f.apiserver_cmd;
    key_matches(flag(api, "tls-cert-file"), flag(api, "tls-private-key-file"));
    key_matches(flag(api, "kubelet-client-certificate"), flag(api, "kubelet-client-key"));
    key_matches(flag(api, "proxy-client-cert-file"), flag(api, "proxy-client-key-file"));
    key_matches(flag(api, "etcd-certfile"), flag(api, "etcd-keyfile"));
    signs(flag(api, "requestheader-client-ca-file"), flag(api, "proxy-client-cert-file"));
    let etcd = f.etcd_cmd;
    key_matches(flag(etcd, "cert-file"), flag(etcd, "key-file"));
    key_matches(flag(etcd, "peer-cert-file"), flag(etcd, "peer-key-file"));
    signs(flag(api, "etcd-cafile"), flag(etcd, "cert-file"));
    signs(flag(etcd, "trusted-ca-file"), flag(api, "etcd-certfile"));
    signs(flag(etcd, "peer-trusted-ca-file"), flag(etcd, "peer-cert-file"));
    let kcm = f.controller_manager_cmd;
    key_matches(flag(kcm, "cluster-signing-cert-file"), flag(kcm, "cluster-signing-key-file"));
    // --requestheader-allowed-names names the front-proxy client's CN.
    let proxy = cert(flag(api, "proxy-client-cert-file"));
    let cn = dn(parse_cert(&proxy, "front-proxy-client").subject(), "front-proxy-client");
    assert_eq!(cn, vec![(OID_CN.to_string(), flag(api, "requestheader-allowed-names").to_string())]);
}

// ---------------------------------------------------------------------------------------------------------------
// Node bundles, modes, shared material: §1.6, §2.3, §3.0, §5.2.
// ---------------------------------------------------------------------------------------------------------------

/// Every file below `dir`, relative, `/`-separated, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    support::Tree::of(dir).files().into_keys().collect()
}

/// §1.6/§2.3/§3.0 file modes by kind.
fn expected_mode(rel: &str) -> Option<u32> {
    if rel.ends_with(".crt") {
        Some(0o644)
    } else if rel.ends_with(".key")
        || rel.ends_with("sa.pub")
        || rel.ends_with(".conf")
        || rel.contains("/manifests/")
        || rel.ends_with(".yaml")
        || rel.ends_with(".env")
    {
        // The audit policy, encryption config and kubelet config too (CIS 1.1.x: 600 or stricter).
        Some(0o600)
    } else {
        None
    }
}

fn check_bundles(f: &Fixture) {
    let out = generate(f, "bundles");

    // OUT's layout (other top-level files, such as an index, are not this test's business).
    for entry in ["PKI.md", "admin.conf", "bootstrap", "nodes", "pki"] {
        assert!(out.dir.join(entry).exists(), "OUT/{entry} is missing");
    }
    let mut nodes: Vec<String> = fs::read_dir(out.dir.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    nodes.sort();
    let mut want_nodes: Vec<String> = f.nodes.iter().map(|n| n.name.to_string()).collect();
    want_nodes.sort();
    assert_eq!(nodes, want_nodes, "one bundle per node");
    assert_eq!(mode(&out.dir.join("admin.conf")), 0o600, "OUT/admin.conf mode");

    let store = out.dir.join("pki");
    let store_files: BTreeMap<Vec<u8>, String> =
        files_below(&store).into_iter().map(|rel| (read(&store.join(&rel)), rel)).collect();
    // Everything deployed (node files, embedded kubeconfig material, OUT/admin.conf), to check the converse.
    let mut deployed: BTreeSet<Vec<u8>> = BTreeSet::new();
    let admin = yaml(&read_str(&out.dir.join("admin.conf")));
    deployed.insert(b64(&admin["users"][0]["user"]["client-certificate-data"], "OUT/admin.conf"));
    deployed.insert(b64(&admin["users"][0]["user"]["client-key-data"], "OUT/admin.conf"));
    for rel in files_below(&store) {
        if let Some(m) = expected_mode(&rel) {
            assert_eq!(mode(&store.join(&rel)), m, "OUT/pki/{rel}: mode");
        }
    }

    // Private keys that belong to one identity on one node must not appear anywhere else.
    let mut per_node_keys: BTreeMap<String, String> = BTreeMap::new();
    let shared = ["ca.key", "front-proxy-ca.key", "etcd/ca.key", "sa.key"];

    for n in f.nodes {
        let root = out.node(n.name);
        let want = if n.control_plane { CONTROL_PLANE_FILES } else { WORKER_FILES };
        let mut want = strs(want);
        want.sort();
        assert_eq!(files_below(&root), want, "{}: the files of the node bundle", n.name);
        for rel in files_below(&root) {
            let m = expected_mode(&rel).unwrap_or_else(|| panic!("{}: unexpected file {rel}", n.name));
            assert_eq!(mode(&root.join(&rel)), m, "{}:{rel}: mode", n.name);
        }
        if n.control_plane {
            // §3.0: the manifests directory is created 0700.
            assert_eq!(mode(&root.join("etc/kubernetes/manifests")), 0o700, "{}: manifests dir mode", n.name);
        }

        // Shared CA material (§5.2) is byte-identical to the store's, on every node that has it.
        let same = |node_rel: &str, store_rel: &str| {
            assert_eq!(
                read(&root.join(node_rel)),
                read(&store.join(store_rel)),
                "{}:{node_rel} differs from OUT/pki/{store_rel}",
                n.name
            );
        };
        same(CA, "ca.crt");
        if n.control_plane {
            same("etc/kubernetes/pki/ca.key", "ca.key");
            same(FRONT_PROXY_CA, "front-proxy-ca.crt");
            same("etc/kubernetes/pki/front-proxy-ca.key", "front-proxy-ca.key");
            same(ETCD_CA, "etcd-ca.crt");
            same("etc/kubernetes/pki/etcd/ca.key", "etcd-ca.key");
            same("etc/kubernetes/pki/sa.key", "sa.key");
            same("etc/kubernetes/pki/sa.pub", "sa.pub");
        }

        // Every certificate and key on the node (files and embedded) is one the store holds.
        let mut material: Vec<(String, Vec<u8>)> = Vec::new();
        for rel in files_below(&root) {
            if rel.ends_with(".crt") || rel.ends_with(".key") {
                material.push((rel.clone(), read(&root.join(&rel))));
            }
        }
        for kc in node_kubeconfigs(f, n) {
            let v = yaml(&read_str(&root.join(kc.path)));
            let user = &v["users"][0]["user"];
            material.push((format!("{} client cert", kc.path), b64(&user["client-certificate-data"], kc.path)));
            material.push((format!("{} client key", kc.path), b64(&user["client-key-data"], kc.path)));
        }
        for (what, bytes) in &material {
            assert!(store_files.contains_key(bytes), "{}:{what} is not in the store OUT/pki", n.name);
            deployed.insert(bytes.clone());
            let is_key = what.ends_with(".key") || what.ends_with("client key");
            // The CA keys and sa.key are shared by the control plane; admin.conf and super-admin.conf are the
            // operator's identities, the same on every control-plane node.
            let is_shared = shared.iter().any(|s| what.ends_with(&format!("pki/{s}"))) || what.contains("admin.conf");
            if is_key && !is_shared {
                let key = String::from_utf8(bytes.clone()).unwrap();
                let here = format!("{}:{what}", n.name);
                if let Some(prev) = per_node_keys.insert(key, here.clone()) {
                    panic!("{here} has the same private key as {prev}");
                }
            }
        }
    }

    // Conversely, every certificate and key in the store is deployed somewhere, so every certificate of the tree
    // goes through the checks of the other tests.
    for (bytes, rel) in &store_files {
        if rel.starts_with("encryption/") {
            // An encryption-at-rest key is deployed inside the control plane's encryption-config.yaml.
            let secret = String::from_utf8(bytes.clone()).unwrap().trim().to_string();
            for n in f.nodes.iter().filter(|n| n.control_plane) {
                let config =
                    fs::read_to_string(out.node(n.name).join("etc/kubernetes/encryption-config.yaml")).unwrap();
                assert!(
                    config.contains(&format!("secret: {secret}")),
                    "{}: OUT/pki/{rel} is not in its encryption config",
                    n.name
                );
            }
            continue;
        }
        if rel.ends_with(".crt") || rel.ends_with(".key") {
            assert!(deployed.contains(bytes), "OUT/pki/{rel} is in the store but on no node");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bootstrap RBAC.
// ---------------------------------------------------------------------------------------------------------------

fn check_bootstrap(f: &Fixture) {
    use serde::Deserialize;
    let out = generate(f, "bootstrap");
    let text = read_str(&out.dir.join("bootstrap/cluster-role-bindings.yaml"));
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("cluster-role-bindings.yaml: {e}")))
        .collect();
    let crb = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ClusterRoleBinding") && d["metadata"]["name"] == "kubeadm:cluster-admins")
        .unwrap_or_else(|| panic!("no ClusterRoleBinding kubeadm:cluster-admins in:\n{text}"));
    assert_eq!(crb["apiVersion"].as_str(), Some("rbac.authorization.k8s.io/v1"));
    assert_eq!(crb["roleRef"], yaml("{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}"));
    let subject = yaml("{apiGroup: rbac.authorization.k8s.io, kind: Group, name: 'kubeadm:cluster-admins'}");
    assert!(
        crb["subjects"].as_sequence().is_some_and(|s| s.contains(&subject)),
        "kubeadm:cluster-admins must bind Group kubeadm:cluster-admins: {:?}",
        crb["subjects"]
    );
    // [v135 §4]: the apiserver's kubelet client gets the kubelet API, and nothing more, by this binding.
    let crb = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "kubeadm:apiserver-kubelet-client")
        .unwrap_or_else(|| panic!("no ClusterRoleBinding kubeadm:apiserver-kubelet-client in:\n{text}"));
    assert_eq!(crb["kind"].as_str(), Some("ClusterRoleBinding"));
    assert_eq!(
        crb["roleRef"],
        yaml("{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: 'system:kubelet-api-admin'}")
    );
    assert_eq!(
        crb["subjects"],
        yaml("[{apiGroup: rbac.authorization.k8s.io, kind: User, name: kube-apiserver-kubelet-client}]")
    );
}

// ---------------------------------------------------------------------------------------------------------------
// The kubelet configuration (§4.3, [v135 §5]).
// ---------------------------------------------------------------------------------------------------------------

/// Every field of KubeletConfiguration v1beta1 that kubeforge may write, by hand from the upstream type
/// (k8s.io/kubelet/config/v1beta1): a typo in a field name would otherwise go unnoticed by the kubelet, which only
/// warns about unknown fields.
const KUBELET_FIELDS: [&str; 23] = [
    "apiVersion",
    "kind",
    "authentication",
    "authorization",
    "cgroupDriver",
    "clusterDNS",
    "clusterDomain",
    "containerRuntimeEndpoint",
    "eventRecordQPS",
    "healthzBindAddress",
    "healthzPort",
    "makeIPTablesUtilChains",
    "protectKernelDefaults",
    "readOnlyPort",
    "rotateCertificates",
    "serverTLSBootstrap",
    "staticPodPath",
    "streamingConnectionIdleTimeout",
    "tlsCertFile",
    "tlsCipherSuites",
    "tlsMinVersion",
    "tlsPrivateKeyFile",
    "registerWithTaints",
];

fn check_kubelet_configs(f: &Fixture) {
    let out = generate(f, "kubelet");
    for n in f.nodes {
        let v = yaml(&read_str(&out.node(n.name).join("var/lib/kubelet/config.yaml")));
        let what = format!("{}: /var/lib/kubelet/config.yaml", n.name);
        assert_eq!(v["apiVersion"].as_str(), Some("kubelet.config.k8s.io/v1beta1"), "{what}");
        assert_eq!(v["kind"].as_str(), Some("KubeletConfiguration"), "{what}");
        for k in keys(&v, &what) {
            assert!(KUBELET_FIELDS.contains(&k.as_str()), "{what}: {k} is not a KubeletConfiguration field");
        }
        // kubeadm's enforced defaults (§4.3).
        assert_eq!(v["authentication"]["x509"]["clientCAFile"].as_str(), Some("/etc/kubernetes/pki/ca.crt"), "{what}");
        assert_eq!(v["authentication"]["anonymous"]["enabled"].as_bool(), Some(false), "{what}");
        assert_eq!(v["authentication"]["webhook"]["enabled"].as_bool(), Some(true), "{what}");
        assert_eq!(v["authorization"]["mode"].as_str(), Some("Webhook"), "{what}");
        assert_eq!(v["rotateCertificates"].as_bool(), Some(true), "{what}");
        assert_eq!(v["staticPodPath"].as_str(), Some("/etc/kubernetes/manifests"), "{what}");
        assert_eq!(v["clusterDNS"], yaml(&format!("[{}]", f.cluster_dns)), "{what}");
        assert_eq!(v["clusterDomain"].as_str(), Some(f.dns_domain), "{what}");
        assert_eq!((v["healthzBindAddress"].as_str(), v["healthzPort"].as_u64()), (Some("127.0.0.1"), Some(10248)));
        assert_eq!(v["cgroupDriver"].as_str(), Some("systemd"), "{what}");
        assert_eq!(v["readOnlyPort"].as_u64(), Some(0), "{what}");
        // [v135 §5]: the CRI socket lives in the kubelet configuration.
        assert_eq!(v["containerRuntimeEndpoint"].as_str(), Some(f.cri_socket), "{what}");
        // kubeforge: the serving certificate it issues.
        assert_eq!(v["tlsCertFile"].as_str(), Some("/var/lib/kubelet/pki/kubelet.crt"), "{what}");
        assert_eq!(v["tlsPrivateKeyFile"].as_str(), Some("/var/lib/kubelet/pki/kubelet.key"), "{what}");
        // kubeadm's default taint of a control-plane node (nodeRegistration.taints), none on a worker: kubeadm sets
        // it through the API, kubeforge has the kubelet register with it.
        let taints = if n.control_plane {
            yaml("[{effect: NoSchedule, key: node-role.kubernetes.io/control-plane}]")
        } else {
            Value::Null
        };
        assert_eq!(v["registerWithTaints"], taints, "{what}");
        let env = read_str(&out.node(n.name).join("var/lib/kubelet/kubeadm-flags.env"));
        assert_eq!(env, f.kubeadm_flags, "{}: /var/lib/kubelet/kubeadm-flags.env", n.name);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The tests: every check for every fixture.
// ---------------------------------------------------------------------------------------------------------------

macro_rules! fixture_tests {
    ($($module:ident => $fixture:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn certificates() {
                check_certificates(&$fixture);
            }

            #[test]
            fn openssl_verify() {
                check_openssl(&$fixture);
            }

            #[test]
            fn kubeconfigs() {
                check_kubeconfigs(&$fixture);
            }

            #[test]
            fn manifests() {
                check_manifests(&$fixture);
            }

            #[test]
            fn bundles() {
                check_bundles(&$fixture);
            }

            #[test]
            fn kubelet_configs() {
                check_kubelet_configs(&$fixture);
            }

            #[test]
            fn bootstrap_rbac() {
                check_bootstrap(&$fixture);
            }
        }
    )*};
}

fixture_tests! {
    demo => DEMO,
    rsa_v1_33 => RSA_V133,
    ipv6 => IPV6,
    edge_v1_35 => EDGE_V135,
    dual_v1_36 => DUAL_V136,
}
