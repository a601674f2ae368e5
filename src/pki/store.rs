//! The PKI store (`OUT/pki`) as the PKI stage reads it: certificates from disk, private keys from disk (refusing
//! keys others can read) or, with `pki.encryption.age`, from the decrypted sealed store in memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::Error;

pub struct Store {
    pub dir: PathBuf,
    /// Private files of a sealed store, decrypted, by path relative to `dir`.
    unsealed: Option<BTreeMap<String, String>>,
}

impl Store {
    pub fn plain(dir: &Path) -> Store {
        Store { dir: dir.to_path_buf(), unsealed: None }
    }

    /// A sealed store: `secrets` holds the private files, by path relative to `dir`.
    pub fn sealed(dir: &Path, secrets: BTreeMap<String, String>) -> Store {
        Store { dir: dir.to_path_buf(), unsealed: Some(secrets) }
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
        match &self.unsealed {
            Some(m) if is_private(rel) => m.contains_key(rel),
            _ => self.path(rel).exists(),
        }
    }

    /// A public file (a certificate).
    pub fn read(&self, rel: &str) -> Result<String, Error> {
        let p = self.path(rel);
        std::fs::read_to_string(&p).map_err(|e| Error::new(format!("{}: {e}", p.display())))
    }

    /// A private file: from the sealed store, or from disk if its mode keeps it private.
    pub fn read_private(&self, rel: &str) -> Result<String, Error> {
        match &self.unsealed {
            Some(m) => {
                m.get(rel).cloned().ok_or_else(|| Error::new(format!("{}: not in the sealed store", self.show(rel))))
            }
            None => super::read_private(&self.path(rel)),
        }
    }
}

/// Private files of the store: keys (certificates and `sa.pub` are public).
pub fn is_private(rel: &str) -> bool {
    rel.ends_with(".key")
}
