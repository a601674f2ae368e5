//! Adopting an existing kubeadm node: its `/etc/kubernetes` becomes kubeforge's store, so that the next plan on a
//! matching spec keeps everything and later renewals go through kubeforge.
//!
//! Which kubeadm file is which certificate comes from the certificate table itself (each profile's install path
//! or kubeconfig), not from a second list.

use std::path::Path;

use base64::Engine;

use crate::Error;
use crate::generate::{MODE_CERT, MODE_SECRET};
use crate::output::{Kind, Tree};
use crate::pki::inspect::CertInfo;
use crate::pki::keys::Key;
use crate::pki::plan::store_id;
use crate::pki::profile::{Install, PROFILES, Scope};
use crate::spec::Cluster;

/// The store files (relative to OUT) for a kubeadm directory `dir` (what is `/etc/kubernetes` on node `node`).
pub fn kubeadm(cluster: &Cluster, dir: &Path, node: &str, store: &Path) -> Result<Tree, Error> {
    let n = cluster
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| Error::new(format!("import-kubeadm: --node {node:?} is not a node of the spec")))?;
    if !n.is_control_plane() {
        return Err(Error::new(format!(
            "import-kubeadm: {node:?} is a worker; import a control-plane node's directory"
        )));
    }
    if store.join("ca.crt").exists() {
        return Err(Error::new(format!(
            "import-kubeadm: {} already holds a PKI; kubeforge never replaces a CA silently: import into an empty --out",
            store.display()
        )));
    }
    if !dir.join("pki/ca.crt").is_file() {
        return Err(Error::new(format!(
            "import-kubeadm: {} has no pki/ca.crt; is it a kubeadm /etc/kubernetes?",
            dir.display()
        )));
    }
    let mut tree = Tree::default();
    let mut add_pair = |id: &str, cert_pem: String, key_pem: String, what: &str| -> Result<(), Error> {
        let info = CertInfo::from_pem(&cert_pem).map_err(|e| Error::new(format!("{what}: {e}")))?;
        let key = Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{what}: the key: {e}")))?;
        if info.spki_der != key.spki_der() {
            return Err(Error::new(format!("{what}: the certificate does not match its key")));
        }
        let kind = if info.is_ca { Kind::CaCert } else { Kind::Cert };
        tree.add(format!("pki/{id}.crt"), cert_pem, MODE_CERT, kind);
        tree.add(format!("pki/{id}.key"), key_pem, MODE_SECRET, Kind::Key);
        Ok(())
    };
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::new(format!("{}: {e}", p.display())));
    for p in PROFILES {
        let id = store_id(p, (p.scope != Scope::Cluster).then_some(node));
        match p.install {
            Install::Files(dest) => {
                let Some(rel) = dest.strip_prefix("/etc/kubernetes/") else { continue };
                let (crt, key) = (dir.join(format!("{rel}.crt")), dir.join(format!("{rel}.key")));
                if crt.is_file() {
                    add_pair(&id, read(&crt)?, read(&key)?, &crt.display().to_string())?;
                }
            }
            Install::Kubeconfig(file) => {
                let path = dir.join(file);
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                let what = path.display().to_string();
                let conf: serde_yaml::Value =
                    serde_yaml::from_str(&text).map_err(|e| Error::new(format!("{what}: not a kubeconfig: {e}")))?;
                let user = &conf["users"][0]["user"];
                let data = |k: &str| -> Option<Result<String, Error>> {
                    let b64 = user[k].as_str()?;
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(b64.trim())
                            .map_err(|e| Error::new(format!("{what}: {k}: {e}")))
                            .map(|b| String::from_utf8_lossy(&b).into_owned()),
                    )
                };
                // kubelet.conf after kubeadm's kubelet-finalize points at files the kubelet rotates; those stay
                // the kubelet's, and kubeforge issues its own client certificate.
                if let (Some(cert), Some(key)) = (data("client-certificate-data"), data("client-key-data")) {
                    add_pair(&id, cert?, key?, &what)?;
                }
            }
        }
    }
    let sa = dir.join("pki/sa.key");
    if sa.is_file() {
        let pem = read(&sa)?;
        let key = Key::from_pem(&pem).map_err(|e| Error::new(format!("{}: {e}", sa.display())))?;
        tree.add("pki/sa.pub", key.public_key_pem(), MODE_SECRET, Kind::PublicKey);
        tree.add("pki/sa.key", pem, MODE_SECRET, Kind::Key);
    }
    Ok(tree)
}
