//! Whole-tree transactions on OUT, one writer at a time.
//!
//! A run either leaves the previous tree or the complete new one, file by file, whatever stops it (kill -9,
//! Ctrl-C, a full disk, a power cut), and the next run finishes or rolls back what an interrupted one left. The
//! design is git's: an exclusive lock, the new state written beside the old, one atomic rename to commit, batched
//! syncs.
//!
//! Everything lives in `OUT/.kubeforge/` (mode 0700, with a `.gitignore` of `*`, so git never sees it):
//! - `lock`: every command that writes holds an exclusive `flock` on it for its whole run (the kernel releases it
//!   when the process dies, so a lock is never stale); a second writer is refused with the holder's pid;
//! - `switch.lock`: held exclusively while the tree switches; read-only commands (`plan`, `check`) hold it shared
//!   while they read, so they never see a half-switched tree and never wait on a long run's key generation;
//! - `txn/new/<path>`: every file the run changes, written with its final mode (no sync per file), in directories
//!   each made once;
//! - `txn/journal`: the list of writes, removals, directory modes and directory moves, made durable with one
//!   `syncfs` of the staged files, then its own fsync and an atomic rename: **the commit point**.
//!
//! After the commit, the staged files are renamed into place, then files that are no longer needed are removed
//! (so removals happen only once the new tree is complete), directory modes set, one more `syncfs`, and the
//! journal deleted. A directory OUT does not have yet is staged whole and moved in with one rename (a first run
//! moves `nodes/` and `pki/`; adding a node moves that node's directories): before the commit an empty directory
//! of its name is made in OUT, and after it the staged one replaces it. A run that stops before the commit point
//! left OUT as it was (but for those empty directories): its `txn/` and the empty directories are removed by the
//! next run. A run that stops after it left a journal: the next run (any command) rolls it forward; every step of
//! that is idempotent. A full disk can only stop a run before the commit point: the staged files and every
//! directory entry the new tree needs are created first.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fault::point;
use crate::output::{Changes, Tree};

/// kubeforge's own directory in OUT.
pub const DIR: &str = ".kubeforge";
const WRITE_LOCK: &str = "lock";
const SWITCH_LOCK: &str = "switch.lock";
const TXN: &str = "txn";
const STAGED: &str = "new";
const JOURNAL: &str = "journal";
/// The directories of OUT a transaction creates before its commit point, so that a rollback removes them.
const MKDIRS: &str = "mkdirs";

/// The writer lock of OUT, held for a whole run; released when dropped or when the process dies.
pub struct WriteLock {
    out: PathBuf,
    _file: File,
}

/// A read-only command's hold on OUT: no tree switches while it is held.
pub struct ReadLock {
    _file: Option<File>,
}

/// What a committed transaction does, as recorded in `txn/journal`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Journal {
    /// Paths relative to OUT whose new content is staged in `txn/new/<path>`.
    write: Vec<String>,
    /// Paths relative to OUT to remove once every write is in place.
    remove: Vec<String>,
    /// Directories (relative to OUT) and their modes.
    dir_modes: Vec<(String, u32)>,
    /// Directories new to OUT, staged whole in `txn/new/<dir>`: each moves into place with one rename (the files
    /// of `write` below them are not renamed one by one).
    #[serde(default)]
    moves: Vec<String>,
}

fn io_err(what: &Path, e: io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) {
        return Error::new(format!(
            "{}: no space left on the device. Nothing in OUT changed (the previous tree is intact); free some space \
             and run again.",
            what.display()
        ));
    }
    Error::new(format!("{}: {e}", what.display()))
}

fn dir(out: &Path) -> PathBuf {
    out.join(DIR)
}

/// Creates OUT and `OUT/.kubeforge` (0700, ignored by git) if needed.
fn prepare_dir(out: &Path) -> Result<(), Error> {
    fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let d = dir(out);
    if !d.is_dir() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&d)
            .or_else(|e| if d.is_dir() { Ok(()) } else { Err(e) })
            .map_err(|e| io_err(&d, e))?;
    }
    let ignore = d.join(".gitignore");
    if !ignore.exists() {
        fs::write(&ignore, "# kubeforge's locks and transactions: never committed.\n*\n")
            .map_err(|e| io_err(&ignore, e))?;
    }
    Ok(())
}

fn open_lock(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, e))
}

/// Who holds the flock on `file`, from /proc/locks: "pid 1234 (kubeforge)".
fn holder(file: &File) -> Option<String> {
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let id = format!("{:02x}:{:02x}:{}", libc::major(dev), libc::minor(dev), meta.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str()))
            .then(|| f.get(4).map(|p| p.to_string()))
            .flatten()
    })?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(format!("pid {pid}{}", if comm.trim().is_empty() { String::new() } else { format!(" ({})", comm.trim()) }))
}

/// Takes the writer lock of OUT (creating OUT if needed), then finishes or rolls back what an interrupted run
/// left. Fails at once, naming the holder, if another run holds it.
pub fn lock(out: &Path) -> Result<WriteLock, Error> {
    prepare_dir(out)?;
    let path = dir(out).join(WRITE_LOCK);
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(Error::new(format!(
                "{} is being written by another kubeforge run ({}): one writer at a time. Wait for it to finish and \
                 run again.",
                out.display(),
                holder(&file).unwrap_or_else(|| "its pid is not known here".into())
            )));
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(&path, e)),
    }
    let lock = WriteLock { out: out.to_path_buf(), _file: file };
    recover(&lock)?;
    Ok(lock)
}

/// A read-only command's view of OUT: waits while a tree switches, and finishes a switch an interrupted run left.
/// Where OUT cannot be written at all (a read-only checkout), nothing can switch it either: no lock is needed.
pub fn read_lock(out: &Path) -> Result<ReadLock, Error> {
    if !out.is_dir() {
        return Ok(ReadLock { _file: None });
    }
    loop {
        if prepare_dir(out).is_err() {
            return Ok(ReadLock { _file: None });
        }
        let Ok(file) = open_lock(&dir(out).join(SWITCH_LOCK)) else { return Ok(ReadLock { _file: None }) };
        file.lock_shared().map_err(|e| io_err(&dir(out).join(SWITCH_LOCK), e))?;
        let txn = dir(out).join(TXN);
        if !txn.join(JOURNAL).exists() {
            if txn.exists() {
                // An uncommitted transaction: the tree is the old one. If no run is writing, tidy it up now.
                if let Ok(w) = open_lock(&dir(out).join(WRITE_LOCK))
                    && w.try_lock().is_ok()
                {
                    let _ = rollback(out);
                }
            }
            return Ok(ReadLock { _file: Some(file) });
        }
        // A committed journal and no switch in progress: a run stopped mid-switch. Finish it as a writer would.
        drop(file);
        let path = dir(out).join(WRITE_LOCK);
        let w = open_lock(&path)?;
        w.lock().map_err(|e| io_err(&path, e))?;
        recover(&WriteLock { out: out.to_path_buf(), _file: w })?;
    }
}

/// Finishes a committed transaction, or removes an uncommitted one.
fn recover(lock: &WriteLock) -> Result<(), Error> {
    let txn = dir(&lock.out).join(TXN);
    if !txn.exists() {
        return Ok(());
    }
    let journal = txn.join(JOURNAL);
    if journal.exists() {
        let text = crate::input::read_text(&journal, "an interrupted run's journal", crate::input::FILE_LIMIT)?;
        let j: Journal = serde_json::from_str(&text).map_err(|e| {
            Error::new(format!(
                "{}: not a kubeforge journal ({e}); look at OUT, then remove {} to continue",
                journal.display(),
                txn.display()
            ))
        })?;
        let switch = switch_lock(&lock.out)?;
        apply(&lock.out, &j)?;
        finish(&lock.out)?;
        drop(switch);
        return Ok(());
    }
    rollback(&lock.out)
}

/// Removes an uncommitted transaction: its staged files, and the directories it made in OUT (deepest first, and
/// only where still empty).
fn rollback(out: &Path) -> Result<(), Error> {
    let txn = dir(out).join(TXN);
    if let Ok(list) = fs::read_to_string(txn.join(MKDIRS)) {
        let safe = |d: &&str| !d.starts_with('/') && d.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        for d in list.lines().filter(safe).collect::<Vec<_>>().iter().rev() {
            let _ = fs::remove_dir(out.join(d));
        }
    }
    match fs::remove_dir_all(&txn) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&txn, e)),
        _ => Ok(()),
    }
}

fn switch_lock(out: &Path) -> Result<File, Error> {
    let path = dir(out).join(SWITCH_LOCK);
    let f = open_lock(&path)?;
    f.lock().map_err(|e| io_err(&path, e))?;
    Ok(f)
}

/// Checks the paths of OUT a transaction writes or removes: each relative, `/`-separated, no `.`/`..`, and every
/// existing ancestor a real directory (never a file or a symlink that would take a write elsewhere). Each directory
/// is looked at once, however many files it holds.
#[derive(Default)]
struct Targets {
    /// Directories of OUT (relative) known to be real directories, and those known not to exist.
    dirs: BTreeSet<String>,
    missing: BTreeSet<String>,
}

impl Targets {
    fn check(&mut self, out: &Path, rel: &str) -> Result<(), Error> {
        let safe = !rel.starts_with('/') && rel.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if !safe {
            return Err(Error::new(format!("refusing to write {rel:?}: not a plain path inside OUT")));
        }
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 0..parts.len() {
            let last = i + 1 == parts.len();
            let sub = parts[..=i].join("/");
            if !last && self.dirs.contains(&sub) {
                continue;
            }
            if self.missing.contains(&sub) {
                return Ok(());
            }
            let p = out.join(&sub);
            let Ok(m) = fs::symlink_metadata(&p) else {
                if !last {
                    self.missing.insert(sub);
                }
                return Ok(());
            };
            if !last && !m.is_dir() {
                let what = if m.file_type().is_symlink() { "a symbolic link" } else { "a file" };
                return Err(Error::new(format!(
                    "{} is {what} where kubeforge needs a directory (for {rel}); move it away and run again. \
                     Nothing was written.",
                    p.display()
                )));
            }
            if last && m.is_dir() {
                return Err(Error::new(format!(
                    "{} is a directory where kubeforge writes a file; move it away and run again. Nothing was \
                     written.",
                    p.display()
                )));
            }
            if !last {
                self.dirs.insert(sub);
            }
        }
        Ok(())
    }
}

/// The directories of `rel`'s path above it, shallowest first: `a/b/c` → `a`, `a/b`.
fn ancestors(rel: &str) -> impl Iterator<Item = &str> {
    rel.match_indices('/').map(move |(i, _)| &rel[..i])
}

/// Writes `changes` of `tree` into OUT as one transaction (see the module's documentation). `lock` proves the
/// caller is the one writer.
pub fn commit(lock: &WriteLock, tree: &Tree, changes: &Changes) -> Result<(), Error> {
    Staging::new(lock).commit(tree, changes)
}

/// A transaction being prepared: files staged under `txn/new`, in one round or several (a run stages the nodes'
/// files before it renders the index that lists them, so that it never holds both), then committed. Dropped
/// without [`Staging::commit`], what it staged is removed: OUT never saw any of it.
pub struct Staging<'a> {
    lock: &'a WriteLock,
    targets: Targets,
    /// Directories made under `txn/new` so far, relative to OUT.
    dirs: BTreeSet<String>,
    /// Files staged so far.
    staged: BTreeSet<String>,
    /// Whether `txn/new` has been made (at the first file: a run with nothing to write makes nothing).
    begun: bool,
    /// Whether the journal has been written (from then on, the transaction is OUT's, never rolled back).
    committed: bool,
}

impl<'a> Staging<'a> {
    pub fn new(lock: &'a WriteLock) -> Staging<'a> {
        Staging {
            lock,
            targets: Targets::default(),
            dirs: BTreeSet::new(),
            staged: BTreeSet::new(),
            begun: false,
            committed: false,
        }
    }

    /// Writes the staged copies of `paths` of `tree` (with their final modes, no sync: one `syncfs` follows).
    pub fn stage(&mut self, tree: &Tree, paths: &[String]) -> Result<(), Error> {
        let (paths, staged) = self.reserve(tree, paths)?;
        write_staged(tree, &paths, &staged)
    }

    /// [`Staging::stage`] from several threads at once: the bookkeeping and the directories under the lock, the
    /// files (most of the work) outside it.
    pub fn stage_shared(
        shared: &std::sync::Mutex<Option<&mut Staging<'_>>>,
        tree: &Tree,
        paths: &[String],
    ) -> Result<(), Error> {
        let reserved = match shared.lock().expect("no stager panics holding it").as_mut() {
            Some(staging) => staging.reserve(tree, paths)?,
            None => return Ok(()),
        };
        write_staged(tree, &reserved.0, &reserved.1)
    }

    /// Checks `paths`, makes the staged directories they need and counts them as staged; returns the ones not
    /// staged before, to be written by the caller, and the staging directory.
    fn reserve(&mut self, tree: &Tree, paths: &[String]) -> Result<(Vec<String>, PathBuf), Error> {
        let out = &self.lock.out;
        let staged = dir(out).join(TXN).join(STAGED);
        let paths: Vec<String> = paths.iter().filter(|p| !self.staged.contains(*p)).cloned().collect();
        if paths.is_empty() {
            return Ok((paths, staged));
        }
        for rel in &paths {
            self.targets.check(out, rel)?;
        }
        if !self.begun {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&staged).map_err(|e| io_err(&staged, e))?;
            self.begun = true;
        }
        // Each directory made once, parents first. One OUT does not have yet moves in whole after the commit, so it
        // gets the mode it will have there; the others only hold files on their way and stay private.
        let new_dirs: BTreeSet<&str> =
            paths.iter().flat_map(|w| ancestors(w)).filter(|d| !self.dirs.contains(*d)).collect();
        for d in new_dirs {
            let p = staged.join(d);
            let mode = if self.targets.missing.contains(d) { new_dir_mode(tree, d) } else { 0o700 };
            point("stage").map_err(|e| io_err(&p, e))?;
            fs::DirBuilder::new().mode(mode).create(&p).map_err(|e| io_err(&p, e))?;
            self.dirs.insert(d.to_string());
        }
        self.staged.extend(paths.iter().cloned());
        Ok((paths, staged))
    }

    /// Stages what `changes` writes and is not staged yet, then commits: the directories the new tree needs, one
    /// sync, the journal (the commit point), the switch, one more sync.
    pub fn commit(mut self, tree: &Tree, changes: &Changes) -> Result<(), Error> {
        let out = self.lock.out.clone();
        // Every directory that gets a file, for the modes below and for the moves.
        let written_dirs: BTreeSet<&str> = changes.write.iter().flat_map(|w| ancestors(w)).collect();
        let mut dir_modes: Vec<(String, u32)> = Vec::new();
        for (rel, mode) in &tree.dir_modes {
            let p = out.join(rel);
            // Only when it differs: a rerun with nothing to do changes nothing, not even a directory's ctime.
            let differs = fs::metadata(&p).map_or(true, |m| m.permissions().mode() & 0o7777 != *mode);
            let needed = differs && (p.is_dir() || written_dirs.contains(rel.as_str()));
            if needed {
                dir_modes.push((rel.clone(), *mode));
            }
        }
        if changes.write.is_empty() && changes.remove.is_empty() && dir_modes.is_empty() {
            return Ok(());
        }
        self.stage(tree, &changes.write)?;
        if !self.begun {
            // Removals or directory modes alone: the journal still needs its directory.
            let staged = dir(&out).join(TXN).join(STAGED);
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&staged).map_err(|e| io_err(&staged, e))?;
            self.begun = true;
        }
        for rel in &changes.remove {
            self.targets.check(&out, rel)?;
        }
        // Directories OUT does not have yet: the shallowest of each such subtree is staged whole and moved into
        // place with one rename, instead of one rename per file (a first run moves `nodes/` and `pki/`, adding a
        // node moves that node's directories).
        let missing = &self.targets.missing;
        let moves: Vec<String> = written_dirs
            .iter()
            .filter(|d| missing.contains(**d) && ancestors(d).all(|a| !missing.contains(a)))
            .map(|d| d.to_string())
            .collect();
        let journal = Journal { write: changes.write.clone(), remove: changes.remove.clone(), dir_modes, moves };
        let mut created = Vec::new();
        if let Err(e) = seal(&out, tree, &journal, &mut created) {
            // Before the commit point: the old tree stands. Take back what this run made.
            for d in created.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            return Err(e);
        }
        self.committed = true;
        // The journal is durable: from here on the new tree is what OUT holds, whatever happens.
        crate::timing::mark("journal (commit point)");
        let switch = switch_lock(&out)?;
        apply(&out, &journal)?;
        crate::timing::mark("switch");
        finish(&out)?;
        crate::timing::mark("sync and finish");
        drop(switch);
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if self.begun && !self.committed {
            // Before the commit point: nothing of it is OUT's.
            let _ = fs::remove_dir_all(dir(&self.lock.out).join(TXN));
        }
    }
}

/// The mode a directory of OUT gets when kubeforge creates it (before the umask, as `mkdir -m` does).
fn new_dir_mode(tree: &Tree, rel: &str) -> u32 {
    tree.dir_modes.get(rel).copied().unwrap_or(0o755)
}

/// Everything between the staged files and the commit point: the directories the new tree needs, one sync, the
/// journal. `created` collects the directories made in OUT, for a rollback.
fn seal(out: &Path, tree: &Tree, j: &Journal, created: &mut Vec<PathBuf>) -> Result<(), Error> {
    let txn = dir(out).join(TXN);
    crate::timing::mark("stage the rest");
    // The top directory of each moving subtree is made in OUT before the commit, empty (its entry in its parent is
    // the only new space the switch could need), and replaced by the staged one after it. They are listed first,
    // so that the rollback of a run killed here removes them.
    if !j.moves.is_empty() {
        let list = txn.join(MKDIRS);
        point("mkdirs").map_err(|e| io_err(&list, e))?;
        fs::write(&list, j.moves.join("\n")).map_err(|e| io_err(&list, e))?;
    }
    for d in &j.moves {
        let p = out.join(d);
        point("mkdir").map_err(|e| io_err(&p, e))?;
        fs::DirBuilder::new().mode(new_dir_mode(tree, d)).create(&p).map_err(|e| io_err(&p, e))?;
        created.push(p);
    }
    crate::timing::mark("make directories");
    sync(out)?;
    crate::timing::mark("sync staged");
    let tmp = txn.join(format!("{JOURNAL}.tmp"));
    let text = serde_json::to_string(j).expect("a journal serializes");
    point("journal").map_err(|e| io_err(&tmp, e))?;
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| io_err(&tmp, e))?;
    point("commit").map_err(|e| io_err(&tmp, e))?;
    fs::rename(&tmp, txn.join(JOURNAL)).map_err(|e| io_err(&tmp, e))?;
    File::open(&txn).and_then(|d| d.sync_all()).map_err(|e| io_err(&txn, e))?;
    Ok(())
}

/// The process's umask, from /proc (reading it with umask(2) would change it for every thread meanwhile).
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let v = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(v.trim(), 8).ok()
    })
}

/// Writes the staged copies into their (existing) directories, several at once (no sync per file: one `syncfs`
/// follows).
fn write_staged(tree: &Tree, paths: &[String], staged: &Path) -> Result<(), Error> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let errors: Mutex<Vec<(usize, Error)>> = Mutex::new(Vec::new());
    // A few files (one node's, as they are rendered) are written on the calling thread.
    let threads = if paths.len() < 64 {
        1
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8).min(paths.len())
    };
    let umask = umask();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !failed.load(Ordering::SeqCst) {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(rel) = paths.get(i) else { break };
                    let entry = &tree.files[rel];
                    let path = staged.join(rel);
                    let r = (|| {
                        point("stage")?;
                        let mut f = OpenOptions::new().write(true).create_new(true).mode(entry.mode).open(&path)?;
                        // The umask may have narrowed the mode given to open(); set it exactly.
                        if umask.is_none_or(|u| entry.mode & u != 0) {
                            f.set_permissions(fs::Permissions::from_mode(entry.mode))?;
                        }
                        f.write_all(&entry.bytes)
                    })();
                    if let Err(e) = r {
                        failed.store(true, Ordering::SeqCst);
                        errors.lock().expect("no writer panics holding it").push((i, io_err(&path, e)));
                    }
                }
            });
        }
    });
    match errors.into_inner().expect("no writer panics holding it").into_iter().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Puts the staged directory `from` in place of `to`: one rename over the empty directory made before the commit;
/// if something else appeared there meanwhile, file by file into it.
fn move_dir(from: &Path, to: &Path) -> Result<(), Error> {
    point("move").map_err(|e| io_err(to, e))?;
    match fs::rename(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !from.exists() => return Ok(()),
        Err(_) => {}
    }
    fs::create_dir_all(to).map_err(|e| io_err(to, e))?;
    for e in fs::read_dir(from).map_err(|e| io_err(from, e))? {
        let e = e.map_err(|e| io_err(from, e))?;
        let (f, t) = (e.path(), to.join(e.file_name()));
        if e.file_type().map_err(|e| io_err(&f, e))?.is_dir() {
            move_dir(&f, &t)?;
        } else {
            fs::rename(&f, &t).map_err(|e| io_err(&t, e))?;
        }
    }
    let _ = fs::remove_dir(from);
    Ok(())
}

/// After the commit point (also when rolling forward an interrupted run): every step idempotent.
fn apply(out: &Path, j: &Journal) -> Result<(), Error> {
    let staged = dir(out).join(TXN).join(STAGED);
    let moves: BTreeSet<&str> = j.moves.iter().map(String::as_str).collect();
    for d in &moves {
        let from = staged.join(d);
        if from.exists() {
            move_dir(&from, &out.join(d))?;
        }
    }
    for rel in &j.write {
        if ancestors(rel).any(|a| moves.contains(a)) {
            continue; // moved with its directory
        }
        let from = staged.join(rel);
        let to = out.join(rel);
        point("rename").map_err(|e| io_err(&to, e))?;
        match fs::rename(&from, &to) {
            Ok(()) => {}
            // Renamed by the run that was interrupted.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !from.exists() => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Its directory went missing since the staging (an older journal, or someone removed it).
                if let Some(d) = to.parent() {
                    fs::create_dir_all(d).map_err(|e| io_err(d, e))?;
                }
                fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
            }
            Err(e) => return Err(io_err(&to, e)),
        }
    }
    for rel in &j.remove {
        let path = out.join(rel);
        point("remove").map_err(|e| io_err(&path, e))?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, e)),
        }
        let mut d = path.parent();
        while let Some(p) = d.filter(|p| *p != out) {
            if fs::remove_dir(p).is_err() {
                break; // not empty
            }
            d = p.parent();
        }
    }
    for (rel, mode) in &j.dir_modes {
        let p = out.join(rel);
        if p.is_dir() {
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(|e| io_err(&p, e))?;
        }
    }
    Ok(())
}

/// Makes the switch durable, then forgets the transaction: the journal first (the commit record), then the rest.
fn finish(out: &Path) -> Result<(), Error> {
    sync(out)?;
    let txn = dir(out).join(TXN);
    point("finish").map_err(|e| io_err(&txn, e))?;
    fs::remove_file(txn.join(JOURNAL)).map_err(|e| io_err(&txn, e))?;
    fs::remove_dir_all(&txn).map_err(|e| io_err(&txn, e))
}

/// One `syncfs(2)` of OUT's file system: every file written so far is on disk (git's batched fsync, instead of
/// one fsync per file).
fn sync(out: &Path) -> Result<(), Error> {
    point("sync").map_err(|e| io_err(out, e))?;
    let f = File::open(out).map_err(|e| io_err(out, e))?;
    // SAFETY: syncfs takes a valid open file descriptor, which `f` holds for the duration of the call.
    let r = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    if r != 0 {
        return Err(io_err(out, io::Error::last_os_error()));
    }
    Ok(())
}

/// Replaces one file outside OUT (`check --output`) with `bytes` and `mode`, atomically: the bytes go to a
/// temporary file in the same directory, which is synced and renamed over `path`, then the directory is synced. A
/// reader (node_exporter's textfile collector) sees the old file or the new one, never half of one. The temporary
/// file is named `.<name>.<pid>-<n>.tmp`, which that collector ignores (it reads `*.prom`), and is removed if
/// anything fails.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let fail = |what: &Path, e: io::Error| Error::new(format!("{}: {e}", what.display()));
    let name = path.file_name().ok_or_else(|| Error::new(format!("{}: not a file name", path.display())))?;
    if path.is_dir() {
        return Err(Error::new(format!("{}: is a directory; name the file to write", path.display())));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}-{n}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have narrowed the mode given to open(); set it exactly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail(path, e));
    }
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| fail(dir, e))
}
