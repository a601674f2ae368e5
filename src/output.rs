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
    /// The bytes were read from this very path of OUT by this run (a certificate or key kept from the store), so
    /// they need no second read to be compared with it.
    pub read_from: bool,
    /// SHA-256 of the bytes, kept when they are released.
    digest: Option<[u8; 32]>,
}

impl Entry {
    /// SHA-256 of the file's bytes (what index.json lists).
    pub fn sha256(&self) -> [u8; 32] {
        self.digest.unwrap_or_else(|| crate::pki::verified::sha256(&self.bytes))
    }

    /// Frees the bytes of a file that is staged or known to be in OUT already, keeping their digest for the index:
    /// a run never holds the whole tree's bytes and the index at once.
    pub fn release(&mut self) {
        if self.digest.is_none() {
            self.digest = Some(crate::pki::verified::sha256(&self.bytes));
        }
        self.bytes = Vec::new();
    }

    pub fn released(&self) -> bool {
        self.digest.is_some()
    }
}

/// Files by path relative to OUT, `/`-separated, sorted.
#[derive(Default)]
pub struct Tree {
    pub files: BTreeMap<String, Entry>,
    /// Directories (relative to OUT) that must not be world-readable, and their mode.
    pub dir_modes: BTreeMap<String, u32>,
}

impl Tree {
    /// Releases every file's bytes (see [`Entry::release`]), on every core, and hands the memory back to the
    /// system where the allocator keeps it.
    pub fn release_all(&mut self) {
        let mut entries: Vec<&mut Entry> = self.files.values_mut().filter(|e| !e.released()).collect();
        if entries.len() < 64 {
            // One node's files: on the calling thread, and the allocator keeps the memory for the next node's.
            entries.iter_mut().for_each(|e| e.release());
            return;
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
        let chunk = entries.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for part in entries.chunks_mut(chunk) {
                s.spawn(move || part.iter_mut().for_each(|e| e.release()));
            }
        });
        // glibc keeps freed small blocks in its heap: at 10,000 nodes that is 150 MB the index would come on top of.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only returns free memory of the allocator's own heaps to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }

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
            read_from: false,
            digest: None,
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

    /// Adds what another comparison found (of other files).
    pub fn merge(&mut self, other: Changes) {
        self.write.extend(other.write);
        self.remove.extend(other.remove);
        self.unchanged += other.unchanged;
    }
}

/// What one file of the tree needs.
enum Check {
    Same,
    Write,
    Remove,
}

/// Compares `tree` with what is in `out`. Only files listed in the previous `index.json` are ever candidates for
/// removal: kubeforge never deletes a file it did not write.
///
/// A file whose bytes this run read from that very path ([`Entry::read_from`] set) is only checked for its type,
/// mode and size; every other file is read and compared. The checks run on every core; the first problem in path
/// order is the one reported.
pub fn changes(tree: &Tree, out: &Path) -> Result<Changes, Error> {
    let mut c = compare(tree, out, |_, _| true)?;
    removals(tree, out, &mut c)?;
    Ok(c)
}

/// The file-by-file part of [`changes`], for the files `which` selects (their bytes must not be released).
pub fn compare(tree: &Tree, out: &Path, which: impl Fn(&str, &Entry) -> bool) -> Result<Changes, Error> {
    let entries: Vec<(&String, &Entry)> = tree.files.iter().filter(|(p, e)| which(p, e)).collect();
    // A few files (one node's, as they are rendered) are compared on the calling thread.
    let threads =
        if entries.len() < 64 { 1 } else { std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8) };
    let chunk = entries.len().div_ceil(threads).max(1);
    let checked: Vec<Result<Vec<Check>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|(rel, e)| check(out, rel, e)).collect()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("checking thread panicked")).collect()
    });
    let mut c = Changes::default();
    let mut checks = Vec::with_capacity(entries.len());
    for part in checked {
        checks.extend(part?);
    }
    for ((rel, _), check) in entries.iter().zip(checks) {
        match check {
            Check::Same => c.unchanged += 1,
            Check::Write => c.write.push((*rel).clone()),
            Check::Remove => c.remove.push((*rel).clone()),
        }
    }
    Ok(c)
}

/// Adds to `c` (the comparison of every file of `tree`, its index included) the files the previous run wrote that
/// `tree` no longer has.
pub fn removals(tree: &Tree, out: &Path, c: &mut Changes) -> Result<(), Error> {
    let index = out.join(crate::layout::INDEX);
    // The index lists exactly the files of its tree: if it is unchanged, so is the list, and nothing is removed.
    let index_same =
        tree.files.contains_key(crate::layout::INDEX) && !c.write.iter().any(|p| p == crate::layout::INDEX);
    if !index_same && index.exists() {
        let bad = |e: String| {
            Error::new(format!("{}: not a kubeforge index ({e}); move it away to continue", index.display()))
        };
        let paths = match listed_paths(out, &index) {
            Some(paths) => paths,
            None => {
                let Ok(bytes) = fs::read(&index) else { return Ok(()) };
                let text = String::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
                previous_paths(&text).map_err(|e| bad(e.to_string()))?
            }
        };
        for rel in paths {
            let safe = !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
            if safe && !tree.files.contains_key(&rel) && out.join(&rel).is_file() {
                c.remove.push(rel);
            }
        }
    }
    c.write.sort();
    c.remove.sort();
    c.remove.dedup();
    Ok(())
}

fn check(out: &Path, rel: &str, entry: &Entry) -> Result<Check, Error> {
    assert!(!entry.released(), "{rel}: compared after its bytes were released");
    let path = out.join(rel);
    if !entry.write {
        return Ok(if path.is_file() { Check::Remove } else { Check::Same });
    }
    let Ok(m) = fs::symlink_metadata(&path) else { return Ok(Check::Write) };
    if !m.is_file() {
        return Ok(Check::Write);
    }
    let mode = m.permissions().mode();
    if entry.kind.secret() && mode & 0o077 != 0 {
        return Err(Error::new(format!(
            "{} has mode {:04o}: a secret (a private key or a kubeconfig with one) must not be readable by group or \
             others. If it may have been exposed, renew what it belongs to (`cargo xtask renew`); otherwise `chmod \
             600` it and run again.",
            path.display(),
            mode & 0o777
        )));
    }
    if mode & 0o7777 != entry.mode || m.len() != entry.bytes.len() as u64 {
        return Ok(Check::Write);
    }
    if entry.read_from {
        return Ok(Check::Same);
    }
    Ok(if same_content(&path, &entry.bytes) { Check::Same } else { Check::Write })
}

/// Whether the file at `path` holds exactly `expected`, read a piece at a time (the index is 100 MB at 10,000
/// nodes: it is never held twice).
fn same_content(path: &Path, expected: &[u8]) -> bool {
    use std::io::Read;
    let Ok(mut f) = fs::File::open(path) else { return false };
    let mut buf = vec![0u8; expected.len().clamp(1, 1 << 20) + 1];
    let mut at = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => return at == expected.len(),
            Ok(n) if expected.get(at..at + n) == Some(&buf[..n]) => at += n,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// `OUT/.kubeforge/paths`: the paths an index.json lists, with its SHA-256, so that the next run that changes the
/// tree finds what to remove without reading the whole previous index (10 MB at 1,000 nodes). Used only for the
/// index.json whose digest it names; written after a transaction that changed the index (a no-change run writes
/// nothing at all); missing or stale, the index itself is read.
pub const PATHS: &str = ".kubeforge/paths";
const PATHS_MAGIC: &str = "kubeforge-paths v1";

/// The paths of `tree` (what its index lists), recorded for the index `tree` holds.
pub fn save_paths(out: &Path, tree: &Tree) -> std::io::Result<()> {
    use std::io::Write;
    let Some(index) = tree.files.get(crate::layout::INDEX) else { return Ok(()) };
    if tree.files.keys().any(|p| has_any(p, b"\n\r")) {
        return Ok(());
    }
    let digest = crate::pki::verified::hex(&index.sha256());
    let mut text = format!("{PATHS_MAGIC} {digest}\n");
    for p in tree.files.keys() {
        text.push_str(p);
        text.push('\n');
    }
    let path = out.join(PATHS);
    let tmp = out.join(format!("{PATHS}.{}.tmp", std::process::id()));
    let r = (|| {
        crate::fault::point("paths")?;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        fs::rename(&tmp, &path)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// The paths `.kubeforge/paths` records, if it records them for exactly the index at `index` (hashed a piece at
/// a time: it is 100 MB at 10,000 nodes).
fn listed_paths(out: &Path, index: &Path) -> Option<Vec<String>> {
    use sha2::Digest;
    use std::io::Read;
    let text = fs::read_to_string(out.join(PATHS)).ok()?;
    let mut lines = text.split('\n');
    let digest = lines.next()?.strip_prefix(PATHS_MAGIC)?.strip_prefix(' ')?;
    let mut f = fs::File::open(index).ok()?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    if digest != crate::pki::verified::hex(&h.finalize()) {
        return None;
    }
    Some(lines.filter(|l| !l.is_empty()).map(str::to_string).collect())
}

/// The paths a previous index.json lists (`files[].path`). An index as kubeforge writes it is scanned line by
/// line (at 1,000 nodes it is 10 MB: parsing all of it took a tenth of a second in the dev profile); any other
/// shape of JSON is parsed in full.
fn previous_paths(text: &str) -> Result<Vec<String>, serde_json::Error> {
    if let Some(paths) = scan_paths(text) {
        return Ok(paths);
    }
    let old: OldIndex = serde_json::from_str(text)?;
    Ok(old.files.into_iter().map(|f| f.path).collect())
}

/// `files[].path` of an index in exactly the layout [`crate::index::render`] writes: one `    {` line opening each
/// entry of `files`, whose next line is its `"path"`. `None` for anything else.
fn scan_paths(text: &str) -> Option<Vec<String>> {
    let start = text.find("\n  \"files\": [\n")? + "\n  \"files\": [\n".len();
    let end = start + text[start..].find("\n  ],\n  \"directories\": ")?;
    // One pass over the lines: every `    {` opens an entry whose next line must be its `"path"`.
    let mut paths = Vec::new();
    let mut lines = text[start..end].split('\n');
    while let Some(line) = lines.next() {
        if line != "    {" {
            continue;
        }
        let value = lines.next()?.strip_prefix("      \"path\": ")?.strip_suffix(',')?;
        // A path without escapes is its text between the quotes; any other goes through the JSON parser.
        let plain = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).filter(|v| !has_any(v, b"\"\\"));
        paths.push(match plain {
            Some(v) => v.to_string(),
            None => serde_json::from_str::<String>(value).ok()?,
        });
    }
    Some(paths)
}

/// Whether `s` holds any of the ASCII bytes `set` (a plain loop: pattern searches are slow unoptimised).
fn has_any(s: &str, set: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let mut j = 0;
        while j < set.len() {
            if b[i] == set[j] {
                return true;
            }
            j += 1;
        }
        i += 1;
    }
    false
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
        let paths = previous_paths;
        let ok =
            r#"{"version":1,"files":[{"path":"a/b","kind":"cert","certificate":{"sans":["x"]}},{"path":"c"}],"x":{}}"#;
        assert_eq!(paths(ok).unwrap(), ["a/b", "c"]);
        for bad in
            ["", "{", "[]", "null", r#"{"files":3}"#, r#"{"files":[{"kind":"key"}]}"#, r#"{"files":[{"path":5}]}"#]
        {
            assert!(paths(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_recorded_paths_count_only_for_their_index() {
        let dir = std::env::temp_dir().join(format!("kubeforge-paths-{}", std::process::id()));
        fs::create_dir_all(dir.join(".kubeforge")).unwrap();
        let mut tree = Tree::default();
        tree.add("a/b", "x", Kind::Cert);
        tree.add("c", "y", Kind::Key);
        tree.add(crate::layout::INDEX, "{\"files\": []}\n", Kind::Index);
        save_paths(&dir, &tree).unwrap();
        let index = dir.join("index.json");
        fs::write(&index, &tree.files[crate::layout::INDEX].bytes).unwrap();
        assert_eq!(listed_paths(&dir, &index).unwrap(), ["a/b", "c", "index.json"]);
        fs::write(&index, b"{\"files\": [ ]}\n").unwrap();
        assert_eq!(listed_paths(&dir, &index), None, "another index");
        fs::write(&index, &tree.files[crate::layout::INDEX].bytes).unwrap();
        fs::remove_file(dir.join(PATHS)).unwrap();
        assert_eq!(listed_paths(&dir, &index), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_line_scan_finds_what_the_parser_finds_or_gives_way_to_it() {
        let c = crate::spec::parse(Path::new("t.yaml"), crate::DEMO_SPEC).unwrap();
        let now = crate::times::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let keys = crate::pki::keys::KeySource::seeded(1);
        let g = crate::generate(&c, Path::new("/nonexistent/kubeforge-output-test"), &keys, now).unwrap();
        let text = String::from_utf8(g.tree.files["index.json"].bytes.clone()).unwrap();
        let parsed: Vec<String> =
            serde_json::from_str::<OldIndex>(&text).unwrap().files.into_iter().map(|f| f.path).collect();
        assert!(parsed.len() > 20);
        assert_eq!(scan_paths(&text), Some(parsed.clone()));
        // The same JSON in another layout, or an entry whose first key is not its path: the parser decides.
        let compact = serde_json::to_string(&serde_json::from_str::<serde_json::Value>(&text).unwrap()).unwrap();
        assert_eq!(scan_paths(&compact), None);
        assert_eq!(previous_paths(&compact).unwrap(), parsed);
        let reordered = text.replacen("    {\n      \"path\": ", "    {\n      \"x\": 1,\n      \"path\": ", 1);
        assert_eq!(scan_paths(&reordered), None);
        assert_eq!(previous_paths(&reordered).unwrap(), parsed);
    }
}
