//! Every path kubeforge writes: in OUT (the store, the node bundles, the operator's files) and on a node (kubeadm's
//! layout of `/etc/kubernetes` and `/var/lib/kubelet`).
//!
//! Where a certificate lands is not written here but derived from its row of `src/pki/certificates.md` (the
//! `install` column): a new certificate is one row, and rendering, the node bundles, the index and adoption of a
//! kubeadm node all find its files through the functions below.

use crate::pki::profile::{Install, PROFILES, Profile, ProfileId, Server};

/// kubeadm's `KubernetesDir`.
pub const K8S_DIR: &str = "/etc/kubernetes";
/// kubeadm's default `certificatesDir`.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// The kubelet's `staticPodPath`.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
pub const KUBELET_DIR: &str = "/var/lib/kubelet";
pub const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki";
/// The KubeletConfiguration kubeadm writes (`kubelet --config`).
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// kubeadm's environment file for the kubelet's flags (`KUBELET_KUBEADM_ARGS`).
pub const KUBELET_FLAGS: &str = "/var/lib/kubelet/kubeadm-flags.env";
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
pub const ETCD_PKI_DIR: &str = "/etc/kubernetes/pki/etcd";
pub const AUDIT_POLICY: &str = "/etc/kubernetes/audit-policy.yaml";
pub const AUDIT_LOG_DIR: &str = "/var/log/kubernetes/audit";
pub const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/encryption-config.yaml";
pub const FLEXVOLUME_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec";
/// The service-account key pair (kubeadm-facts §1.7).
pub const SA_KEY: &str = "/etc/kubernetes/pki/sa.key";
pub const SA_PUB: &str = "/etc/kubernetes/pki/sa.pub";
/// The external etcd's CA when kubeforge issues the apiserver's etcd client certificate from it.
pub const EXTERNAL_ETCD_CA: &str = "/etc/kubernetes/pki/etcd/ca.crt";

/// The PKI store, relative to OUT: every CA, key and certificate, the source of truth for later runs.
pub const STORE: &str = "pki";
/// The operator's kubeconfig, relative to OUT.
pub const OPERATOR_KUBECONFIG: &str = "admin.conf";
pub const BOOTSTRAP_RBAC: &str = "bootstrap/cluster-role-bindings.yaml";
pub const INVENTORY: &str = "PKI.md";
pub const INDEX: &str = "index.json";
pub const GITIGNORE: &str = ".gitignore";
/// Certificate signing requests for an external CA, relative to OUT.
pub const CSR_DIR: &str = "csr";

/// A store file, relative to the store (`nodes/cp-1/apiserver.crt`).
pub fn store_crt(id: &str) -> String {
    format!("{id}.crt")
}

pub fn store_key(id: &str) -> String {
    format!("{id}.key")
}

pub const STORE_SA_KEY: &str = "sa.key";
pub const STORE_SA_PUB: &str = "sa.pub";

/// A CA rotation in the store (`crate::pki::rotation`): the incoming CA beside the current one during `add`
/// (`ca.next.crt|key`), the outgoing CA's certificate during `switch` (`ca.prev.crt`; its key is gone). A store id
/// of a leaf never has a dot, so these cannot collide with one.
pub fn store_next(id: &str, ext: &str) -> String {
    format!("{id}.next.{ext}")
}

pub fn store_prev(id: &str, ext: &str) -> String {
    format!("{id}.prev.{ext}")
}

/// Where `remove` puts what a rotation retired: the outgoing CA's certificate (`archive/ca-<serial>.crt`) or
/// service-account public key (`archive/sa-<fingerprint>.pub`). Public files only: the keys are deleted.
pub const STORE_ARCHIVE: &str = "archive";

pub fn store_archived(name: &str, tag: &str, ext: &str) -> String {
    format!("{STORE_ARCHIVE}/{name}-{tag}.{ext}")
}

/// On a control-plane node during a rotation of the cluster CA: the certificate of the pair the controller-manager
/// signs with (`--cluster-signing-cert-file` takes exactly one certificate, and `ca.crt` then holds two).
pub const CA_SIGNING_CRT: &str = "/etc/kubernetes/pki/ca-signing.crt";

/// An encryption-at-rest key in the store.
pub fn store_encryption_key(name: &str) -> String {
    format!("encryption/{name}.key")
}

/// A store path made relative to OUT.
pub fn in_store(rel: &str) -> String {
    format!("{STORE}/{rel}")
}

/// A file of a node's bundle, relative to OUT: `nodes/<node><dest>`.
pub fn node_file(node: &str, dest: &str) -> String {
    format!("nodes/{node}{dest}")
}

/// The inverse of [`node_file`]: the node and the destination of a path of OUT, if it is in a node bundle.
pub fn node_of(path: &str) -> Option<(&str, String)> {
    let (node, rest) = path.strip_prefix("nodes/")?.split_once('/')?;
    Some((node, format!("/{rest}")))
}

/// A static pod's manifest on a node.
pub fn manifest(component: &str) -> String {
    format!("{MANIFESTS_DIR}/{component}.yaml")
}

/// Where a profile's certificate and key land on a node, for a profile installed as files.
pub fn cert_files(p: ProfileId) -> Option<(String, String)> {
    match p.profile().install {
        Install::Files(base) => Some((format!("{base}.crt"), format!("{base}.key"))),
        Install::Kubeconfig(..) => None,
    }
}

/// The certificate of a profile installed as files (`/etc/kubernetes/pki/apiserver.crt`).
pub fn crt(p: ProfileId) -> String {
    cert_files(p).unwrap_or_else(|| panic!("{} is embedded in a kubeconfig, not a file", p.profile().name)).0
}

pub fn key(p: ProfileId) -> String {
    cert_files(p).unwrap_or_else(|| panic!("{} is embedded in a kubeconfig, not a file", p.profile().name)).1
}

/// One kubeconfig kind, from a `kubeconfig:<file>` row of the certificate table.
#[derive(Clone, Copy, Debug)]
pub struct KubeconfigKind {
    /// The file name under /etc/kubernetes.
    pub file: &'static str,
    /// Its path on a node.
    pub profile: &'static Profile,
    pub server: Server,
}

impl KubeconfigKind {
    pub fn dest(&self) -> String {
        format!("{K8S_DIR}/{}", self.file)
    }

    /// Workers get only the kubeconfigs of per-node identities (kubelet, kube-proxy).
    pub fn on_workers(&self) -> bool {
        self.profile.on_every_node()
    }
}

/// Every kubeconfig, in table order.
pub fn kubeconfigs() -> impl Iterator<Item = KubeconfigKind> {
    PROFILES.iter().filter_map(|p| match p.install {
        Install::Kubeconfig(file, server) => Some(KubeconfigKind { file, profile: p, server }),
        Install::Files(_) => None,
    })
}

/// The kubeconfig a profile's certificate is embedded in (`/etc/kubernetes/controller-manager.conf`).
pub fn kubeconfig(p: ProfileId) -> String {
    kubeconfigs()
        .find(|k| k.profile.id == p)
        .unwrap_or_else(|| panic!("{} is installed as files, not in a kubeconfig", p.profile().name))
        .dest()
}

/// Uses of node files by programs whose configuration kubeforge does not write (the kubelet's and kube-proxy's
/// systemd units, as kubeadm's drop-in sets their flags): destination → use, for the index's `usedBy`.
pub fn agent_uses(dest: &str) -> Option<&'static str> {
    const USES: [(&str, &str); 3] = [
        (KUBELET_CONFIG, "kubelet --config"),
        ("/etc/kubernetes/kubelet.conf", "kubelet --kubeconfig"),
        ("/etc/kubernetes/kube-proxy.conf", "kube-proxy --kubeconfig"),
    ];
    USES.iter().find(|(d, _)| *d == dest).map(|(_, u)| *u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_the_table() {
        assert_eq!(crt(ProfileId::Apiserver), "/etc/kubernetes/pki/apiserver.crt");
        assert_eq!(key(ProfileId::EtcdServer), "/etc/kubernetes/pki/etcd/server.key");
        assert_eq!(crt(ProfileId::KubeletServing), "/var/lib/kubelet/pki/kubelet.crt");
        assert_eq!(kubeconfig(ProfileId::ControllerManager), "/etc/kubernetes/controller-manager.conf");
        let files: Vec<&str> = kubeconfigs().map(|k| k.file).collect();
        assert_eq!(
            files,
            [
                "admin.conf",
                "super-admin.conf",
                "controller-manager.conf",
                "scheduler.conf",
                "kubelet.conf",
                "kube-proxy.conf"
            ]
        );
        let workers: Vec<&str> = kubeconfigs().filter(|k| k.on_workers()).map(|k| k.file).collect();
        assert_eq!(workers, ["kubelet.conf", "kube-proxy.conf"]);
        assert_eq!(
            node_of("nodes/cp-1/etc/kubernetes/pki/ca.crt"),
            Some(("cp-1", "/etc/kubernetes/pki/ca.crt".into()))
        );
        assert_eq!(node_of("pki/ca.crt"), None);
    }
}
