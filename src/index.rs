//! `OUT/index.json`: one entry per file kubeforge writes, for automation (Ansible loops over it, Terraform
//! `jsondecode`s it) so that nobody parses PEM or guesses modes. The schema is `schema/index.schema.json`.
//!
//! Field order is fixed by the structs below and entries are sorted by path, so the file's diff in a pull
//! request reads like the change. Private key contents never appear in it; a key's entry has its path, mode and
//! checksum only.

use serde::Serialize;

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
                sha256: crate::pki::verified::hex(&e.sha256()),
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

/// The index as serde_json's pretty printer writes it: the reference that [`render`] matches byte for byte.
pub fn to_json(index: &Index) -> String {
    let mut s = serde_json::to_string_pretty(index).expect("the index serializes");
    s.push('\n');
    s
}

/// The index of `tree` as JSON text: the same bytes as `to_json(&build(cluster, tree, directories))`, written
/// directly and on every core. At 1,000 nodes the index is 10 MB, and serde's generic serializer, built without
/// optimisation in the dev profile that `cargo xtask gen` uses, took longer than the rest of a rerun.
pub fn render(cluster: &Cluster, tree: &Tree, directories: &[DirEntry]) -> String {
    let entries: Vec<(&String, &crate::output::Entry)> = tree.files.iter().collect();
    // In pieces (several per thread), each freed as soon as it is copied into the whole: at 10,000 nodes the index
    // is 100 MB, and holding the pieces and the whole at once would double that (operations keep blocks this
    // large mapped on their own, so that freeing one hands it back: see `ops::Options::load`).
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = entries.len().div_ceil(threads * 8).max(1);
    let pieces: Vec<&[(&String, &crate::output::Entry)]> = entries.chunks(chunk).collect();
    let parts = crate::par::map(&pieces, |piece| file_entries(piece));
    let mut o = String::with_capacity(parts.iter().map(|p| p.len() + 2).sum::<usize>() + 4096);
    o.push_str("{\n  \"apiVersion\": \"kubeforge/v1alpha1\",\n  \"kind\": \"Index\",\n  \"cluster\": ");
    string(&mut o, &cluster.name);
    o.push_str(",\n  \"kubernetesVersion\": ");
    string(&mut o, &cluster.version.to_string());
    o.push_str(",\n  \"files\": ");
    if entries.is_empty() {
        o.push_str("[]");
    } else {
        o.push_str("[\n");
        for (i, p) in parts.into_iter().filter(|p| !p.is_empty()).enumerate() {
            if i > 0 {
                o.push_str(",\n");
            }
            o.push_str(&p);
        }
        o.push_str("\n  ]");
    }
    o.push_str(",\n  \"directories\": ");
    if directories.is_empty() {
        o.push_str("[]");
    } else {
        o.push_str("[\n");
        for (i, d) in directories.iter().enumerate() {
            if i > 0 {
                o.push_str(",\n");
            }
            o.push_str("    {\n      \"node\": ");
            string(&mut o, &d.node);
            o.push_str(",\n      \"dest\": ");
            string(&mut o, &d.dest);
            o.push_str(",\n      \"owner\": ");
            string(&mut o, &d.owner);
            o.push_str(",\n      \"group\": ");
            string(&mut o, &d.group);
            o.push_str(",\n      \"mode\": ");
            string(&mut o, &d.mode);
            o.push_str("\n    }");
        }
        o.push_str("\n  ]");
    }
    o.push_str("\n}\n");
    o
}

/// The `files` entries for `part`, joined by `,\n`, each at the indentation of the full document.
fn file_entries(part: &[(&String, &crate::output::Entry)]) -> String {
    use std::collections::HashMap;
    let mut o = String::with_capacity(part.len() * 1024);
    // A certificate shows up in many files (the cluster CA in every node's bundle and kubeconfigs): format its
    // dates once.
    let mut dates: HashMap<*const crate::pki::inspect::CertInfo, (String, String)> = HashMap::new();
    for (i, (path, e)) in part.iter().enumerate() {
        if i > 0 {
            o.push_str(",\n");
        }
        o.push_str("    {\n      \"path\": ");
        string(&mut o, path);
        let (node, dest) = match layout::node_of(path) {
            Some((n, d)) => (Some(n), Some(d)),
            None => (None, None),
        };
        o.push_str(",\n      \"node\": ");
        optional(&mut o, node);
        o.push_str(",\n      \"dest\": ");
        optional(&mut o, dest.as_deref());
        o.push_str(",\n      \"owner\": \"root\",\n      \"group\": \"root\",\n      \"mode\": ");
        match e.mode {
            0o644 => o.push_str("\"0644\""),
            0o600 => o.push_str("\"0600\""),
            m => string(&mut o, &format!("{m:04o}")),
        }
        o.push_str(",\n      \"kind\": ");
        string(&mut o, e.kind.name());
        o.push_str(if e.kind.secret() { ",\n      \"secret\": true" } else { ",\n      \"secret\": false" });
        o.push_str(",\n      \"sha256\": \"");
        o.push_str(&crate::pki::verified::hex(&e.sha256()));
        o.push_str("\",\n      \"usedBy\": ");
        strings(&mut o, &e.used_by, 6);
        o.push_str(",\n      \"certificate\": ");
        match &e.cert {
            None => o.push_str("null"),
            Some(c) => {
                let info = &c.info;
                let (nb, na) = dates
                    .entry(std::sync::Arc::as_ptr(info))
                    .or_insert_with(|| (rfc3339(info.not_before), rfc3339(info.not_after)));
                o.push_str("{\n        \"profile\": ");
                optional(&mut o, c.profile);
                o.push_str(",\n        \"subject\": ");
                string(&mut o, &info.subject);
                o.push_str(",\n        \"issuer\": ");
                string(&mut o, &info.issuer);
                o.push_str(",\n        \"serial\": ");
                string(&mut o, &info.serial);
                o.push_str(",\n        \"sans\": ");
                strings(&mut o, &info.sans, 8);
                o.push_str(",\n        \"keyUsage\": ");
                strings(&mut o, &info.key_usage, 8);
                o.push_str(",\n        \"extKeyUsage\": ");
                strings(&mut o, &info.ext_key_usage, 8);
                o.push_str(if info.is_ca { ",\n        \"isCa\": true" } else { ",\n        \"isCa\": false" });
                o.push_str(",\n        \"keyAlgorithm\": ");
                string(&mut o, &info.key_algorithm);
                o.push_str(",\n        \"notBefore\": ");
                string(&mut o, nb);
                o.push_str(",\n        \"notAfter\": ");
                string(&mut o, na);
                o.push_str(",\n        \"sha256Fingerprint\": ");
                string(&mut o, &info.fingerprint);
                o.push_str("\n      }");
            }
        }
        o.push_str(",\n      \"sealed\": ");
        optional(&mut o, e.sealed.as_deref());
        o.push_str("\n    }");
    }
    o
}

/// A JSON string as serde_json writes it: `"` and `\\` escaped, control characters as `\n`-style escapes or
/// `\u00XX`, everything else (non-ASCII included) as is.
fn string(o: &mut String, s: &str) {
    o.push('"');
    // A plain loop: in the unoptimised dev profile an iterator adaptor costs several times as much per byte.
    let b = s.as_bytes();
    let mut plain = true;
    let mut i = 0;
    while i < b.len() {
        if b[i] < 0x20 || b[i] == b'"' || b[i] == b'\\' {
            plain = false;
            break;
        }
        i += 1;
    }
    if plain {
        o.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                '\n' => o.push_str("\\n"),
                '\r' => o.push_str("\\r"),
                '\t' => o.push_str("\\t"),
                '\u{8}' => o.push_str("\\b"),
                '\u{c}' => o.push_str("\\f"),
                c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
    }
    o.push('"');
}

fn optional(o: &mut String, s: Option<&str>) {
    match s {
        Some(s) => string(o, s),
        None => o.push_str("null"),
    }
}

/// An array of strings whose `[` sits at `indent` spaces.
fn strings<S: AsRef<str>>(o: &mut String, items: &[S], indent: usize) {
    if items.is_empty() {
        o.push_str("[]");
        return;
    }
    o.push('[');
    for (i, s) in items.iter().enumerate() {
        o.push_str(if i > 0 { ",\n" } else { "\n" });
        for _ in 0..indent + 2 {
            o.push(' ');
        }
        string(o, s.as_ref());
    }
    o.push('\n');
    for _ in 0..indent {
        o.push(' ');
    }
    o.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Kind;

    #[test]
    fn render_writes_what_serde_json_writes() {
        let c = crate::spec::parse(std::path::Path::new("t.yaml"), crate::DEMO_SPEC).unwrap();
        let now = crate::times::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let keys = crate::pki::keys::KeySource::seeded(1);
        let g = crate::generate(&c, std::path::Path::new("/nonexistent/kubeforge-index-test"), &keys, now).unwrap();
        let mut tree = g.tree;
        // Every kind of string serde_json escapes, and some it does not.
        let tricky = "q\"b\\ n\n r\r t\t \u{8}\u{c}\u{1}\u{1f}\u{7f} é ✓ \u{2028} /".to_string();
        tree.add(format!("nodes/x/{tricky}"), "x", Kind::Rbac).used_by = vec![tricky.clone(), String::new()];
        tree.files.values_mut().find(|e| e.cert.is_some()).unwrap().sealed = Some(tricky.clone());
        let dirs = vec![DirEntry {
            node: tricky.clone(),
            dest: "/etc".into(),
            owner: "root".into(),
            group: "root".into(),
            mode: "0755".into(),
        }];
        assert_eq!(render(&c, &tree, &dirs), to_json(&build(&c, &tree, dirs.clone())));
        assert_eq!(render(&c, &Tree::default(), &[]), to_json(&build(&c, &Tree::default(), Vec::new())));
    }
}
