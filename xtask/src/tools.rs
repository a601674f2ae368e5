// TEMPORARY STUB (lead): helper-1 replaces this file with the real tool bootstrap.
use std::path::{Path, PathBuf};
pub struct Tools {
    pub etcd_version: String,
    pub kubectl_version: String,
}
pub fn ensure(_t: &Path) -> Result<Tools, String> {
    Err("stub".into())
}
impl Tools {
    pub fn env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let _ = PathBuf::new();
        vec![]
    }
}
