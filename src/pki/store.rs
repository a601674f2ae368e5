//! The PKI store (`OUT/pki`): the only way kubeforge reads it. Certificates come from disk; private keys from disk
//! (refusing keys others can read) or, with `pki.encryption.age`, from the sealed store decrypted in memory.
//! Every read is size-bounded (see `crate::input`).
//!
//! An overlay lets a command put files into the store for the run in memory (the certificates an external CA
//! signed, a kubeadm node being adopted) so that they are checked and written in the same transaction as
//! everything they imply.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::input::{PEM_LIMIT, read_text};

pub struct Store {
    pub dir: PathBuf,
    /// Private files of a sealed store, decrypted, by path relative to `dir`.
    unsealed: Option<BTreeMap<String, String>>,
    /// Files this run adds, by path relative to `dir`; they hide what is on disk.
    overlay: BTreeMap<String, String>,
    /// What earlier runs proved about the leaves here (see `crate::pki::verified`).
    record: Option<crate::pki::verified::Record>,
}

impl Store {
    pub fn plain(dir: &Path) -> Store {
        Store { dir: dir.to_path_buf(), unsealed: None, overlay: BTreeMap::new(), record: None }
    }

    /// A sealed store: `secrets` holds the private files, by path relative to `dir`.
    pub fn sealed(dir: &Path, secrets: BTreeMap<String, String>) -> Store {
        Store { dir: dir.to_path_buf(), unsealed: Some(secrets), overlay: BTreeMap::new(), record: None }
    }

    /// Adds files (path relative to the store, content) that this run reads as if they were on disk.
    pub fn with_overlay(mut self, files: BTreeMap<String, String>) -> Store {
        self.overlay = files;
        self
    }

    /// Lets the run skip the checks an earlier run proved for the same bytes.
    pub fn with_record(mut self, record: crate::pki::verified::Record) -> Store {
        self.record = Some(record);
        self
    }

    pub fn record(&self) -> Option<&crate::pki::verified::Record> {
        self.record.as_ref()
    }

    pub fn is_sealed(&self) -> bool {
        self.unsealed.is_some()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// For messages: where the file is, or where its sealed copy is.
    pub fn show(&self, rel: &str) -> String {
        match &self.unsealed {
            Some(_) if is_private(rel) => format!("{} (sealed)", self.path(rel).display()),
            _ => self.path(rel).display().to_string(),
        }
    }

    pub fn exists(&self, rel: &str) -> bool {
        if self.overlay.contains_key(rel) {
            return true;
        }
        match &self.unsealed {
            Some(m) if is_private(rel) => m.contains_key(rel),
            _ => self.path(rel).exists(),
        }
    }

    /// Whether reading `rel` reads the file of that name on disk (not this run's overlay or the sealed store).
    pub fn read_from_disk(&self, rel: &str) -> bool {
        !(self.overlay.contains_key(rel) || self.unsealed.is_some() && is_private(rel))
    }

    /// A public file (a certificate).
    pub fn read(&self, rel: &str) -> Result<String, Error> {
        if let Some(t) = self.overlay.get(rel) {
            return Ok(t.clone());
        }
        read_text(&self.path(rel), "the PKI store", PEM_LIMIT)
    }

    /// [`Store::read`] for a file that may be absent.
    pub fn read_if_exists(&self, rel: &str) -> Result<Option<String>, Error> {
        if let Some(t) = self.overlay.get(rel) {
            return Ok(Some(t.clone()));
        }
        let path = self.path(rel);
        let fail = |why: String| Error::new(format!("the PKI store: {}: {why}", path.display()));
        match crate::input::bytes_if_exists(&path, PEM_LIMIT).map_err(fail)? {
            None => Ok(None),
            Some((bytes, _)) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|_| fail("not UTF-8 text (a PEM or YAML file was expected)".into())),
        }
    }

    /// [`Store::read_private`] for a file that may be absent.
    pub fn read_private_if_exists(&self, rel: &str) -> Result<Option<String>, Error> {
        if let Some(t) = self.overlay.get(rel) {
            return Ok(Some(t.clone()));
        }
        if let Some(m) = &self.unsealed {
            return Ok(m.get(rel).cloned());
        }
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(rel);
        let fail = |why: String| Error::new(format!("a private key: {}: {why}", path.display()));
        let Some((bytes, meta)) = crate::input::bytes_if_exists(&path, PEM_LIMIT).map_err(fail)? else {
            return Ok(None);
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(exposed(&path, mode));
        }
        String::from_utf8(bytes).map(Some).map_err(|_| fail("not UTF-8 text (a PEM or YAML file was expected)".into()))
    }

    /// A private file: from the sealed store, or from disk if its mode keeps it private.
    pub fn read_private(&self, rel: &str) -> Result<String, Error> {
        if let Some(t) = self.overlay.get(rel) {
            return Ok(t.clone());
        }
        match &self.unsealed {
            Some(m) => {
                m.get(rel).cloned().ok_or_else(|| Error::new(format!("{}: not in the sealed store", self.show(rel))))
            }
            None => read_private(&self.path(rel)),
        }
    }

    /// Whether any private key of the store can be read: false for a clone of the committed (public) half of OUT
    /// and for a sealed store opened without its identity.
    pub fn has_private_material(&self) -> bool {
        match &self.unsealed {
            Some(m) => !m.is_empty(),
            None => has_file_with_extension(&self.dir, "key"),
        }
    }

    /// Every certificate in the store, as (id, PEM): `nodes/cp-1/apiserver`, and during a rotation the other CA
    /// (`ca.next`, `ca.prev`). What a rotation archived is trusted nowhere and is left out.
    pub fn certificates(&self) -> Result<Vec<(String, String)>, Error> {
        let mut found = Vec::new();
        for p in crate::input::files_with_extension(&self.dir, "crt")? {
            let rel = p.strip_prefix(&self.dir).expect("below the store").to_string_lossy().into_owned();
            if rel.starts_with(&format!("{}/", crate::layout::STORE_ARCHIVE)) {
                continue;
            }
            let pem = self.read(&rel)?;
            found.push((rel.trim_end_matches(".crt").to_string(), pem));
        }
        Ok(found)
    }
}

/// Whether any file below `dir` ends in `.ext`: stops at the first (the CAs' keys are at the top of the store), and
/// reads entry types from the directory listing rather than one stat per entry.
fn has_file_with_extension(dir: &Path, ext: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut dirs = Vec::new();
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            dirs.push(e.path());
        } else if Path::new(&e.file_name()).extension().is_some_and(|x| x == ext) {
            return true;
        }
    }
    dirs.iter().any(|d| has_file_with_extension(d, ext))
}

/// Private files of the store: keys (certificates and `sa.pub` are public).
pub fn is_private(rel: &str) -> bool {
    rel.ends_with(".key")
}

/// Reads a private key from disk, refusing one that group or others can read: a key that was exposed is not
/// silently used (and kubeforge always writes 0600, so someone changed it).
pub fn read_private(path: &Path) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(exposed(path, mode));
    }
    read_text(path, "a private key", PEM_LIMIT)
}

fn exposed(path: &Path, mode: u32) -> Error {
    Error::new(format!(
        "{} has mode {mode:04o}: a private key must not be readable by group or others. If it may have been \
         exposed, remove it and renew what it belongs to; otherwise `chmod 600 {}` and run again.",
        path.display(),
        path.display()
    ))
}
