//! The output tree: every file with its bytes and mode, assembled in memory, then written atomically.
//!
//! Nothing is written until the whole tree has been built, so a problem anywhere (a bad spec, a CA that does not
//! match) leaves OUT as it was. Each file is written to a temporary name in its directory, with its final mode
//! from the start, then renamed over the target: a reader sees the old file or the new one, never half of one. A
//! file whose bytes and mode are already right is not touched at all.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::Error;

/// What a file is, for people and for automation.
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
}

/// Files by path relative to OUT, `/`-separated, sorted.
#[derive(Default)]
pub struct Tree {
    pub files: BTreeMap<String, Entry>,
    /// Directories (relative to OUT) that must not be world-readable, and their mode.
    pub dir_modes: BTreeMap<String, u32>,
}

impl Tree {
    pub fn add(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>, mode: u32, kind: Kind) {
        let path = path.into();
        let prev =
            self.files.insert(path.clone(), Entry { bytes: bytes.into(), mode, kind, write: true, sealed: None });
        assert!(prev.is_none(), "{path} is produced twice");
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
        let same = fs::symlink_metadata(&path).is_ok_and(|m| {
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
        let old: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::new(format!("{}: not a kubeforge index ({e}); move it away to continue", index.display()))
        })?;
        for f in old["files"].as_array().into_iter().flatten() {
            let Some(rel) = f["path"].as_str() else { continue };
            let safe = !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            if safe && !tree.files.contains_key(rel) && out.join(rel).is_file() {
                c.remove.push(rel.to_string());
            }
        }
    }
    Ok(c)
}

/// Writes what `changes` lists, atomically per file, then removes stale files and empty directories they leave.
pub fn apply(tree: &Tree, changes: &Changes, out: &Path) -> Result<(), Error> {
    let io = |p: &Path, e: std::io::Error| Error::new(format!("{}: {e}", p.display()));
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    for rel in &changes.write {
        let entry = &tree.files[rel];
        let path = out.join(rel);
        let dir = path.parent().expect("a file has a parent");
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp =
            dir.join(format!(".{}.kubeforge-{}.tmp", path.file_name().unwrap().to_string_lossy(), std::process::id()));
        let result = (|| {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(entry.mode).open(&tmp)?;
            // The umask may have narrowed the mode given to open(); set it exactly.
            f.set_permissions(fs::Permissions::from_mode(entry.mode))?;
            f.write_all(&entry.bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io(&path, e));
        }
    }
    for rel in &changes.remove {
        let path = out.join(rel);
        fs::remove_file(&path).map_err(|e| io(&path, e))?;
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != out) {
            if fs::remove_dir(d).is_err() {
                break; // not empty
            }
            dir = d.parent();
        }
    }
    for (rel, mode) in &tree.dir_modes {
        let p = out.join(rel);
        if p.is_dir() {
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(|e| io(&p, e))?;
        }
    }
    Ok(())
}

/// Writes `tree` into `out` (a convenience over [`changes`] and [`apply`]).
pub fn write(tree: &Tree, out: &Path) -> Result<Changes, Error> {
    let c = changes(tree, out)?;
    apply(tree, &c, out)?;
    Ok(c)
}
