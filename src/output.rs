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

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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
        let old: OldPaths = serde_json::from_str(&text).map_err(|e| {
            Error::new(format!("{}: not a kubeforge index ({e}); move it away to continue", index.display()))
        })?;
        for rel in old.0.iter().map(String::as_str) {
            let safe = !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            if safe && !tree.files.contains_key(rel) && out.join(rel).is_file() {
                c.remove.push(rel.to_string());
            }
        }
    }
    Ok(c)
}

/// The paths a previous index.json lists (`files[].path`), read without building the whole document: at 1,000
/// nodes the index is 10 MB of JSON, which as a `serde_json::Value` takes 60 MB and half a second in a debug
/// build. As lenient as indexing a `Value`: any valid JSON is accepted, and a `files` that is not an array, an
/// entry that is not an object or a `path` that is not a string contribute nothing (the last of duplicate keys
/// wins, as in a `Value`).
struct OldPaths(Vec<String>);

/// `Visitor` methods that accept any JSON scalar and give `$none`.
macro_rules! scalars_give {
    ($none:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($none)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($none)
        }
    };
}

impl<'de> Deserialize<'de> for OldPaths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Doc;
        impl<'de> Visitor<'de> for Doc {
            type Value = OldPaths;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            scalars_give!(OldPaths(Vec::new()));
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<OldPaths, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(OldPaths(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<OldPaths, A::Error> {
                let mut paths = Vec::new();
                while let Some(key) = a.next_key::<String>()? {
                    if key == "files" {
                        paths = a.next_value::<Files>()?.0;
                    } else {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(OldPaths(paths))
            }
        }
        d.deserialize_any(Doc)
    }
}

/// `files`: the string `path` of each entry.
struct Files(Vec<String>);

impl<'de> Deserialize<'de> for Files {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Files;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            scalars_give!(Files(Vec::new()));
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Files, A::Error> {
                let mut paths = Vec::new();
                while let Some(FileEntry(path)) = a.next_element::<FileEntry>()? {
                    paths.extend(path);
                }
                Ok(Files(paths))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Files, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Files(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One entry of `files`: its `path` if that is a string.
struct FileEntry(Option<String>);

impl<'de> Deserialize<'de> for FileEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            scalars_give!(FileEntry(None));
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<FileEntry, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FileEntry(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<FileEntry, A::Error> {
                let mut path = None;
                while let Some(key) = a.next_key::<String>()? {
                    if key == "path" {
                        path = a.next_value::<serde_json::Value>()?.as_str().map(str::to_string);
                    } else {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(FileEntry(path))
            }
        }
        d.deserialize_any(V)
    }
}

/// Writes what `changes` lists, atomically per file, then removes stale files and empty directories they leave.
pub fn apply(tree: &Tree, changes: &Changes, out: &Path) -> Result<(), Error> {
    let io = |p: &Path, e: std::io::Error| Error::new(format!("{}: {e}", p.display()));
    fs::create_dir_all(out).map_err(|e| io(out, e))?;
    write_files(tree, &changes.write, out)?;
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
        // Only when it differs: a rerun with nothing to do changes nothing, not even a directory's ctime.
        if fs::metadata(&p).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o7777 != *mode) {
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(|e| io(&p, e))?;
        }
    }
    Ok(())
}

/// How many files [`write_files`] has in flight. Each write waits for the disk (fsync), not for a core, and the
/// file system commits concurrent syncs together: 11,000 files take ~20 s one at a time, ~1 s sixteen at a time.
const WRITERS: usize = 16;

/// Writes `paths` (of `tree`, below `out`), each on its own exactly as [`write_file`] does, several at once.
/// Files are taken in order; after a failure no new file is started, and the failure reported is the first in
/// `paths` order, which is the one a one-at-a-time loop would have stopped at.
fn write_files(tree: &Tree, paths: &[String], out: &Path) -> Result<(), Error> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let errors: Mutex<Vec<(usize, Error)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WRITERS.min(paths.len()) {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(rel) = paths.get(i) else { break };
                    if let Err(e) = write_file(&tree.files[rel], &out.join(rel)) {
                        failed.store(true, Ordering::SeqCst);
                        errors.lock().expect("no writer panics holding it").push((i, e));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().expect("no writer panics holding it");
    match errors.into_iter().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// One file: written to a temporary name in its directory with its final mode, synced, renamed over `path`.
fn write_file(entry: &Entry, path: &Path) -> Result<(), Error> {
    let io = |p: &Path, e: std::io::Error| Error::new(format!("{}: {e}", p.display()));
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
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

/// Writes `tree` into `out` (a convenience over [`changes`] and [`apply`]).
pub fn write(tree: &Tree, out: &Path) -> Result<Changes, Error> {
    let c = changes(tree, out)?;
    apply(tree, &c, out)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the previous implementation took from an index: `Value`, then `files[].path` strings.
    fn via_value(text: &str) -> Result<Vec<String>, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(v["files"].as_array().into_iter().flatten().filter_map(|f| f["path"].as_str().map(String::from)).collect())
    }

    #[test]
    fn old_paths_read_an_index_as_a_value_would() {
        for text in [
            r#"{"files":[{"path":"a/b","kind":"cert","certificate":{"sans":["x"],"profile":null}},{"path":"c"}]}"#,
            r#"{"version":1,"files":[{"kind":"key"},{"path":5},{"path":["x"]},7,null,"s",[1],{"path":"ok"}],"x":{}}"#,
            r#"{"files":[{"path":"a","path":"b"}],"files":[{"path":"c"}]}"#,
            r#"{"files":[{"path":"a"}],"files":3}"#,
            r#"{"files":{"path":"a"}}"#,
            r#"{"directories":[{"path":"d"}]}"#,
            "[]",
            "3.5",
            "null",
            r#""text""#,
            r#"{"files":[{"path":"é
/x"}]}"#,
        ] {
            let got = serde_json::from_str::<OldPaths>(text).map(|p| p.0).map_err(|e| e.to_string());
            assert_eq!(got, via_value(text), "{text}");
        }
        for bad in ["", "{", r#"{"files":[}"#, "{} x", r#"{"files":[{"path":"a"]}"#] {
            let got = serde_json::from_str::<OldPaths>(bad).map(|p| p.0).map_err(|e| e.to_string());
            assert_eq!(got, via_value(bad), "{bad}");
        }
    }
}

/// Every file below `dir` whose name ends in `.ext`, sorted; an absent `dir` has none.
pub fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| Error::new(format!("{}: {e}", d.display())))? {
            let p = e.map_err(|e| Error::new(format!("{}: {e}", d.display())))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}
