//! `OUT/index.json`: one entry per file kubeforge writes, for automation (Ansible loops over it, Terraform
//! `jsondecode`s it) so that nobody parses PEM or guesses modes. The schema is `schema/index.schema.json`.
//!
//! Field order is fixed by the structs below and entries are sorted by path, so the file's diff in a pull
//! request reads like the change. Private key contents never appear in it; a key's entry has its path, mode and
//! checksum only.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::output::{Kind, Tree};
use crate::pki::Pki;
use crate::pki::inspect::CertInfo;
use crate::spec::Cluster;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cluster: String,
    pub kubernetes_version: String,
    pub files: Vec<FileEntry>,
    /// Directories a node needs with their intended owner and mode (automation creates them before copying).
    pub directories: Vec<DirEntry>,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct DirEntry {
    pub node: String,
    pub dest: String,
    pub owner: String,
    pub group: String,
    pub mode: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Path in OUT, `/`-separated.
    pub path: String,
    /// The node whose bundle holds the file; `null` for the PKI store and the operator's files.
    pub node: Option<String>,
    /// Absolute destination on the node; `null` where `node` is.
    pub dest: Option<String>,
    pub owner: &'static str,
    pub group: &'static str,
    /// Octal, four digits, e.g. "0600".
    pub mode: String,
    pub kind: &'static str,
    pub secret: bool,
    pub sha256: String,
    /// Which component reads the file, and through which flag or setting.
    pub used_by: Vec<String>,
    /// For certificates, and for kubeconfigs the client certificate they embed.
    pub certificate: Option<CertEntry>,
    /// With `pki.encryption.age`: the encrypted copy of this secret file (relative to OUT). The plain file is in
    /// OUT only after `gen --materialize` (deliberately not recorded here: the index is part of the reviewed tree).
    pub sealed: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertEntry {
    /// The row of src/pki/certificates.md it was issued from; `null` for a CA kubeforge does not own.
    pub profile: Option<String>,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sans: Vec<String>,
    pub key_usage: Vec<&'static str>,
    pub ext_key_usage: Vec<&'static str>,
    pub is_ca: bool,
    pub key_algorithm: String,
    pub not_before: String,
    pub not_after: String,
    pub sha256_fingerprint: String,
}

pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::CaCert => "ca-cert",
        Kind::Cert => "cert",
        Kind::Key => "key",
        Kind::PublicKey => "public-key",
        Kind::Kubeconfig => "kubeconfig",
        Kind::Manifest => "manifest",
        Kind::Rbac => "rbac",
        Kind::Inventory => "inventory",
        Kind::Index => "index",
        Kind::Csr => "csr",
        Kind::KubeletConfig => "kubelet-config",
        Kind::AuditPolicy => "audit-policy",
        Kind::EncryptionConfig => "encryption-config",
        Kind::Sealed => "sealed",
        Kind::Gitignore => "gitignore",
    }
}

/// Uses that no static pod flag shows: the kubelet's and kube-proxy's files (destination → use).
const NODE_AGENT_USES: [(&str, &str); 6] = [
    ("/var/lib/kubelet/config.yaml", "kubelet --config"),
    ("/etc/kubernetes/kubelet.conf", "kubelet --kubeconfig"),
    ("/etc/kubernetes/kube-proxy.conf", "kube-proxy --kubeconfig"),
    ("/etc/kubernetes/pki/ca.crt", "kubelet --client-ca-file (authentication.x509.clientCAFile)"),
    ("/var/lib/kubelet/pki/kubelet.crt", "kubelet --tls-cert-file (tlsCertFile)"),
    ("/var/lib/kubelet/pki/kubelet.key", "kubelet --tls-private-key-file (tlsPrivateKeyFile)"),
];

pub fn rfc3339(t: time::OffsetDateTime) -> String {
    utc(t, 'T')
}

/// `YYYY-MM-DD<sep>HH:MM:SSZ` in UTC.
pub fn utc(t: time::OffsetDateTime, sep: char) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Builds the index of `tree`. `flag_uses` maps (node, destination path) to the static-pod flags that name it.
pub fn build(
    cluster: &Cluster,
    tree: &Tree,
    pki: &Pki,
    flag_uses: &BTreeMap<(String, String), Vec<String>>,
    directories: Vec<DirEntry>,
) -> Result<Index, String> {
    let profile_by_fingerprint: BTreeMap<Vec<u8>, &str> =
        pki.certs.values().map(|m| (Sha256::digest(&m.cert_der).to_vec(), m.request.profile.name)).collect();
    let cert_entry = |pem: &str| -> Result<CertEntry, String> {
        let info = CertInfo::from_pem(pem)?;
        Ok(CertEntry {
            profile: profile_by_fingerprint.get(&Sha256::digest(&info.der).to_vec()).map(|s| s.to_string()),
            subject: info.subject,
            issuer: info.issuer,
            serial: info.serial,
            sans: info.sans,
            key_usage: info.key_usage,
            ext_key_usage: info.ext_key_usage,
            is_ca: info.is_ca,
            key_algorithm: info.key_algorithm,
            not_before: rfc3339(info.not_before),
            not_after: rfc3339(info.not_after),
            sha256_fingerprint: info.fingerprint,
        })
    };
    let mut files = Vec::new();
    for (path, e) in &tree.files {
        let (node, dest) = match path.strip_prefix("nodes/").and_then(|r| r.split_once('/')) {
            Some((n, rest)) => (Some(n.to_string()), Some(format!("/{rest}"))),
            None => (None, None),
        };
        let text = std::str::from_utf8(&e.bytes).map_err(|_| format!("{path}: not UTF-8"))?;
        let certificate = match e.kind {
            Kind::Cert | Kind::CaCert => Some(cert_entry(text).map_err(|m| format!("{path}: {m}"))?),
            Kind::Kubeconfig => {
                let b64 = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
                    .ok_or_else(|| format!("{path}: no client-certificate-data"))?;
                let pem = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| format!("{path}: {e}"))?;
                Some(cert_entry(&String::from_utf8_lossy(&pem)).map_err(|m| format!("{path}: {m}"))?)
            }
            _ => None,
        };
        let mut used_by = Vec::new();
        if let (Some(n), Some(d)) = (&node, &dest) {
            if let Some(u) = flag_uses.get(&(n.clone(), d.clone())) {
                used_by.extend(u.iter().cloned());
            }
            used_by.extend(NODE_AGENT_USES.iter().filter(|(p, _)| p == d).map(|(_, u)| u.to_string()));
        } else if path == "admin.conf" {
            used_by.push("kubectl (the operator; group kubeadm:cluster-admins)".into());
        } else if path.starts_with("bootstrap/") {
            used_by.push("kubectl apply, once, with super-admin.conf".into());
        }
        files.push(FileEntry {
            path: path.clone(),
            node,
            dest,
            owner: "root",
            group: "root",
            mode: format!("{:04o}", e.mode),
            kind: kind_name(e.kind),
            secret: e.kind.secret(),
            sha256: Sha256::digest(&e.bytes).iter().map(|b| format!("{b:02x}")).collect(),
            used_by,
            certificate,
            sealed: e.sealed.clone(),
        });
    }
    Ok(Index {
        api_version: "kubeforge/v1alpha1",
        kind: "Index",
        cluster: cluster.name.clone(),
        kubernetes_version: cluster.version.to_string(),
        files,
        directories,
    })
}

pub fn to_json(index: &Index) -> String {
    let mut s = serde_json::to_string_pretty(index).expect("the index serializes");
    s.push('\n');
    s
}
