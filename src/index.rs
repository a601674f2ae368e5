//! `OUT/index.json`: one entry per file kubeforge writes, for automation (Ansible loops over it, Terraform
//! `jsondecode`s it) so that nobody parses PEM or guesses modes. The schema is `schema/index.schema.json`.
//!
//! Field order is fixed by the structs below and entries are sorted by path, so the file's diff in a pull
//! request reads like the change. Private key contents never appear in it; a key's entry has its path, mode and
//! checksum only.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::layout;
use crate::output::{CertRef, Tree};
use crate::spec::Cluster;
use crate::times::rfc3339;

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

impl CertEntry {
    fn new(c: &CertRef) -> CertEntry {
        let info = &c.info;
        CertEntry {
            profile: c.profile.map(str::to_string),
            subject: info.subject.clone(),
            issuer: info.issuer.clone(),
            serial: info.serial.clone(),
            sans: info.sans.clone(),
            key_usage: info.key_usage.clone(),
            ext_key_usage: info.ext_key_usage.clone(),
            is_ca: info.is_ca,
            key_algorithm: info.key_algorithm.clone(),
            not_before: rfc3339(info.not_before),
            not_after: rfc3339(info.not_after),
            sha256_fingerprint: info.fingerprint.clone(),
        }
    }
}

/// The index of `tree`: every file with the metadata it was made with, and the directories nodes need.
pub fn build(cluster: &Cluster, tree: &Tree, directories: Vec<DirEntry>) -> Index {
    let files = tree
        .files
        .iter()
        .map(|(path, e)| {
            let (node, dest) = match layout::node_of(path) {
                Some((n, d)) => (Some(n.to_string()), Some(d)),
                None => (None, None),
            };
            FileEntry {
                path: path.clone(),
                node,
                dest,
                owner: "root",
                group: "root",
                mode: format!("{:04o}", e.mode),
                kind: e.kind.name(),
                secret: e.kind.secret(),
                sha256: Sha256::digest(&e.bytes).iter().map(|b| format!("{b:02x}")).collect(),
                used_by: e.used_by.clone(),
                certificate: e.cert.as_ref().map(CertEntry::new),
                sealed: e.sealed.clone(),
            }
        })
        .collect();
    Index {
        api_version: "kubeforge/v1alpha1",
        kind: "Index",
        cluster: cluster.name.clone(),
        kubernetes_version: cluster.version.to_string(),
        files,
        directories,
    }
}

pub fn to_json(index: &Index) -> String {
    let mut s = serde_json::to_string_pretty(index).expect("the index serializes");
    s.push('\n');
    s
}
