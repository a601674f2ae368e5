//! The output tree: every file with its bytes, mode and metadata, assembled in memory, and what writing it would
//! change in OUT. Nothing is written until the whole tree has been built, so a problem anywhere (a bad spec, a CA
//! that does not match) leaves OUT as it was; `crate::txn` then writes the changes as one transaction. A file whose
//! bytes and mode are already right is not touched at all.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::Error;
use crate::pki::inspect::CertInfo;

/// What a file is, for people and for automation. The kind decides the mode and whether the file is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CaCert,
    Cert,
    Key,
    PublicKey,
    Kubeconfig,
    Manifest,
    Rbac,
    Inventory,
    Index,
    /// A certificate signing request for an external CA.
    Csr,
    KubeletConfig,
    /// kubeadm's `/var/lib/kubelet/kubeadm-flags.env`: the kubelet's flags that have no configuration field.
    KubeletFlags,
    AuditPolicy,
    /// The EncryptionConfiguration: it holds the keys that encrypt Secrets at rest.
    EncryptionConfig,
    /// A secret file encrypted to the spec's age recipients (`secrets/<path>.age`): safe to commit.
    Sealed,
    /// OUT/.gitignore: the secret files, so that `git add OUT` commits only the public half.
    Gitignore,
}

impl Kind {
    /// Private material: keys and kubeconfigs that embed a client key.
    pub fn secret(self) -> bool {
        matches!(self, Kind::Key | Kind::Kubeconfig | Kind::EncryptionConfig)
    }

    /// The file mode (kubeadm-facts §1.6, §2.3, §3.0): certificates and what people read 0644, the rest 0600.
    /// kubeadm writes sa.pub 0600 too (it goes through keyutil.WriteKey), and manifests 0600 (CIS 1.1.1).
    pub fn mode(self) -> u32 {
        match self {
            Kind::CaCert | Kind::Cert | Kind::Rbac | Kind::Inventory | Kind::Index | Kind::Sealed | Kind::Gitignore => {
                0o644
            }
            Kind::Key
            | Kind::PublicKey
            | Kind::Kubeconfig
            | Kind::Manifest
            | Kind::Csr
            | Kind::KubeletConfig
            | Kind::KubeletFlags
            | Kind::AuditPolicy
            | Kind::EncryptionConfig => 0o600,
        }
    }

    /// The name in index.json.
    pub fn name(self) -> &'static str {
        match self {
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
            Kind::KubeletFlags => "kubelet-flags",
            Kind::AuditPolicy => "audit-policy",
            Kind::EncryptionConfig => "encryption-config",
            Kind::Sealed => "sealed",
            Kind::Gitignore => "gitignore",
        }
    }
}

/// The certificate a file holds (or, for a kubeconfig, the client certificate it embeds), read back once.
#[derive(Clone)]
pub struct CertRef {
    /// The row of the certificate table it was issued from; `None` for a CA kubeforge does not own.
    pub profile: Option<&'static str>,
    pub info: Arc<CertInfo>,
}

pub struct Entry {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub kind: Kind,
    /// False for a secret that is kept only sealed (not materialized): it is described, not written, and a plain
    /// copy left by an earlier `--materialize` is removed.
    pub write: bool,
    /// Where its sealed copy is, relative to OUT.
    pub sealed: Option<String>,
    /// Which component reads the file, and through which flag or setting (recorded where that flag is built).
    pub used_by: Vec<String>,
    pub cert: Option<CertRef>,
}

/// Files by path relative to OUT, `/`-separated, sorted.
#[derive(Default)]
pub struct Tree {
    pub files: BTreeMap<String, Entry>,
    /// Directories (relative to OUT) that must not be world-readable, and their mode.
    pub dir_modes: BTreeMap<String, u32>,
}

impl Tree {
    /// Adds a file with its kind's mode; the returned entry takes what else is known of it.
    pub fn add(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>, kind: Kind) -> &mut Entry {
        let path = path.into();
        let entry = Entry {
            bytes: bytes.into(),
            mode: kind.mode(),
            kind,
            write: true,
            sealed: None,
            used_by: Vec::new(),
            cert: None,
        };
        match self.files.entry(path) {
            std::collections::btree_map::Entry::Vacant(v) => v.insert(entry),
            std::collections::btree_map::Entry::Occupied(o) => panic!("{} is produced twice", o.key()),
        }
    }
}

/// What writing a tree would change in OUT.
#[derive(Debug, Default)]
pub struct Changes {
    /// Files whose bytes or mode differ, or that do not exist yet.
    pub write: Vec<String>,
    /// Files the previous run wrote (its index.json lists them) that the new tree no longer has.
    pub remove: Vec<String>,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.write.is_empty() && self.remove.is_empty()
    }
}

/// Compares `tree` with what is in `out`. Only files listed in the previous `index.json` are ever candidates for
/// removal: kubeforge never deletes a file it did not write.
pub fn changes(tree: &Tree, out: &Path) -> Result<Changes, Error> {
    let mut c = Changes::default();
    for (rel, entry) in &tree.files {
        let path = out.join(rel);
        if !entry.write {
            if path.is_file() {
                c.remove.push(rel.clone());
            }
            continue;
        }
        let meta = fs::symlink_metadata(&path).ok();
        if let Some(m) = meta.as_ref().filter(|m| m.is_file() && entry.kind.secret()) {
            let mode = m.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::new(format!(
                    "{} has mode {mode:04o}: a secret (a private key or a kubeconfig with one) must not be readable \
                     by group or others. If it may have been exposed, renew what it belongs to \
                     (`cargo xtask renew`); otherwise `chmod 600` it and run again.",
                    path.display()
                )));
            }
        }
        let same = meta.is_some_and(|m| {
            m.is_file()
                && m.permissions().mode() & 0o7777 == entry.mode
                && fs::read(&path).is_ok_and(|b| b == entry.bytes)
        });
        if same {
            c.unchanged += 1;
        } else {
            c.write.push(rel.clone());
        }
    }
    let index = out.join("index.json");
    if let Ok(text) = fs::read_to_string(&index) {
        let old: OldIndex = serde_json::from_str(&text).map_err(|e| {
            Error::new(format!("{}: not a kubeforge index ({e}); move it away to continue", index.display()))
        })?;
        for rel in old.files.iter().map(|f| f.path.as_str()) {
            let safe = !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            if safe && !tree.files.contains_key(rel) && out.join(rel).is_file() {
                c.remove.push(rel.to_string());
            }
        }
    }
    Ok(c)
}

/// What a previous index.json says: the paths kubeforge wrote (`files[].path`). Everything else in it is
/// skipped without being built (at 1,000 nodes the index is 10 MB of JSON).
#[derive(Deserialize)]
struct OldIndex {
    files: Vec<OldFile>,
}

#[derive(Deserialize)]
struct OldFile {
    path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_previous_index_gives_its_paths_or_a_clear_error() {
        let paths = |text: &str| {
            serde_json::from_str::<OldIndex>(text).map(|i| i.files.into_iter().map(|f| f.path).collect::<Vec<_>>())
        };
        let ok =
            r#"{"version":1,"files":[{"path":"a/b","kind":"cert","certificate":{"sans":["x"]}},{"path":"c"}],"x":{}}"#;
        assert_eq!(paths(ok).unwrap(), ["a/b", "c"]);
        for bad in
            ["", "{", "[]", "null", r#"{"files":3}"#, r#"{"files":[{"kind":"key"}]}"#, r#"{"files":[{"path":5}]}"#]
        {
            assert!(paths(bad).is_err(), "{bad}");
        }
    }
}
