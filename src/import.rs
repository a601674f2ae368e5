//! Adopting an existing kubeadm node: its `/etc/kubernetes` becomes kubeforge's store, so that the next plan on a
//! matching spec keeps everything and later renewals go through kubeforge.
//!
//! Which kubeadm file is which certificate comes from the certificate table itself (each profile's install path
//! or kubeconfig), not from a second list.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;

use crate::Error;
use crate::layout;
use crate::pki::inspect::CertInfo;
use crate::pki::keys::Key;
use crate::pki::plan::store_id;
use crate::pki::profile::{Install, PROFILES, Scope};
use crate::pki::store::Store;
use crate::spec::Cluster;

/// The store files (path relative to the store, content) for a kubeadm directory `dir` (what is
/// `/etc/kubernetes` on node `node`): an overlay for the run that adopts it.
pub fn kubeadm(cluster: &Cluster, dir: &Path, node: &str, store: &Store) -> Result<BTreeMap<String, String>, Error> {
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
    if store.exists(&layout::store_crt("ca")) {
        return Err(Error::new(format!(
            "import-kubeadm: {} already holds a PKI; kubeforge never replaces a CA silently: import into an empty --out",
            store.dir.display()
        )));
    }
    if !dir.join("pki/ca.crt").is_file() {
        return Err(Error::new(format!(
            "import-kubeadm: {} has no pki/ca.crt; is it a kubeadm /etc/kubernetes?",
            dir.display()
        )));
    }
    let mut files = BTreeMap::new();
    let mut add_pair = |id: &str, cert_pem: String, key_pem: String, what: &str| -> Result<(), Error> {
        let info = CertInfo::from_pem(&cert_pem).map_err(|e| Error::new(format!("{what}: {e}")))?;
        let key = Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{what}: the key: {e}")))?;
        if info.spki_der != key.spki_der() {
            return Err(Error::new(format!("{what}: the certificate does not match its key")));
        }
        files.insert(layout::store_crt(id), cert_pem);
        files.insert(layout::store_key(id), key_pem);
        Ok(())
    };
    let read = |p: &Path| crate::input::read_text(p, "import-kubeadm", crate::input::PEM_LIMIT);
    for p in PROFILES {
        let id = store_id(p, (p.scope != Scope::Cluster).then_some(node));
        match p.install {
            Install::Files(dest) => {
                let Some(rel) = dest.strip_prefix(layout::K8S_DIR).and_then(|r| r.strip_prefix('/')) else { continue };
                let (crt, key) = (dir.join(format!("{rel}.crt")), dir.join(format!("{rel}.key")));
                if crt.is_file() {
                    add_pair(&id, read(&crt)?, read(&key)?, &crt.display().to_string())?;
                }
            }
            Install::Kubeconfig(file, _) => {
                let path = dir.join(file);
                if !path.exists() {
                    continue;
                }
                let text = crate::input::read_text(&path, "import-kubeadm", crate::input::PEM_LIMIT)?;
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
        files.insert(layout::STORE_SA_PUB.to_string(), key.public_key_pem());
        files.insert(layout::STORE_SA_KEY.to_string(), pem);
    }
    Ok(files)
}
