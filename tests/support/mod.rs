//! Helpers shared by the integration tests (`mod support;` in each test file). std only.
//!
//! The real tools (etcd, etcdctl, kubectl, openssl, kubernetes-validate) are installed by
//! `cargo xtask test`, which hands their paths to the tests in `KUBEFORGE_*` env vars.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::net::{IpAddr, TcpListener};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long `run` waits for a command before killing it.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The path of a tool from its env var, e.g. `tool("KUBEFORGE_ETCD")`.
pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => {
            let p = PathBuf::from(v);
            assert!(p.is_file(), "${var} points to {}, which does not exist; rerun `cargo xtask test`", p.display());
            p
        }
        _ => panic!(
            "${var} is not set: run the tests through `cargo xtask test`, which installs etcd/kubectl/openssl \
             (and kubernetes-validate) and passes their paths to the tests"
        ),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// A TCP port on `ip` (`"127.0.0.1"`, `"::1"` or `"[::1]"`) that was free a moment ago. A port is
/// never handed out twice in one test binary, so parallel tests in it do not collide.
pub fn free_port_on(ip: &str) -> u16 {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let addr: IpAddr = ip
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap_or_else(|e| panic!("free_port_on({ip:?}): not an IP address: {e}"));
    for _ in 0..100 {
        let l = TcpListener::bind((addr, 0)).unwrap_or_else(|e| panic!("cannot bind {addr} port 0: {e}"));
        let port = l.local_addr().expect("local_addr").port();
        let mut set = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if set.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("no free port found on {addr}");
}

/// A process started by a test. Dropping it kills the process and reaps it, so it is stopped
/// even when the test panics. Declare it after the `TempDir` it writes into, so that it is
/// dropped (killed) first.
pub struct Proc {
    child: Child,
    name: String,
    log: PathBuf,
}

/// Starts `cmd` with stdin closed and stdout and stderr both appended to the file `log`
/// (created, with its parent dirs).
pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
    if let Some(dir) = log.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    }
    let out = fs::File::create(log).unwrap_or_else(|e| panic!("cannot create log {}: {e}", log.display()));
    let err = out.try_clone().expect("clone log file handle");
    let name = format!("{cmd:?}");
    let child =
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    Proc { child, name, log: log.to_path_buf() }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Like [`wait_until`], but fails at once if the process exits, and puts its log in the panic.
    pub fn wait_until(&mut self, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if f() {
                return;
            }
            if let Some(status) = self.exited() {
                panic!("{} exited ({status}) while waiting for {what}; its log:\n{}", self.name, self.log());
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; log of {}:\n{}", self.name, self.log());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Kills the process now and waits for it; returns its log.
    pub fn stop(mut self) -> String {
        self.kill_and_wait();
        self.log()
    }

    fn kill_and_wait(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_and_wait();
    }
}

/// Calls `f` until it returns true; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if f() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// A fresh directory under the system temp dir, removed on drop unless `KUBEFORGE_KEEP_TMP` is set.
pub struct TempDir {
    pub path: PathBuf,
}

/// Creates `<tmp>/kubeforge-<pid>-<n>-<name>`.
pub fn temp_dir(name: &str) -> TempDir {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let path = std::env::temp_dir().join(format!("kubeforge-{}-{n}-{clean}", std::process::id()));
    if path.exists() {
        // Left over by an earlier process with the same pid.
        let _ = fs::remove_dir_all(&path);
    }
    fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    TempDir { path }
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("KUBEFORGE_KEEP_TMP").is_some() {
            eprintln!("keeping {} (KUBEFORGE_KEEP_TMP is set)", self.path.display());
        } else {
            if std::thread::panicking() {
                eprintln!("removing {}; set KUBEFORGE_KEEP_TMP=1 to keep it", self.path.display());
            }
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs `cmd` (stdin closed, output captured) and returns its output; panics, showing the command
/// line, its status, stdout and stderr, if it cannot start, fails, or runs past `RUN_TIMEOUT`.
pub fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    if !out.status.success() {
        panic!("command failed ({}): {cmd:?}{}", out.status, show(&out));
    }
    out
}

/// Runs `cmd` and returns its output, and panics (showing the command line) if it succeeds.
pub fn run_fail(cmd: &mut Command) -> Output {
    let out = output(cmd);
    if out.status.success() {
        panic!("command succeeded but was expected to fail: {cmd:?}{}", show(&out));
    }
    out
}

/// Runs `cmd` and returns its output whatever its exit status; panics (showing the command line)
/// only if it cannot start or runs past `RUN_TIMEOUT`.
pub fn output(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (out, timed_out) = collect(child, cmd, RUN_TIMEOUT);
    if timed_out {
        panic!("timed out after {RUN_TIMEOUT:?}: {cmd:?}{}", show(&out));
    }
    out
}

/// Reads a started child's stdout and stderr to the end (on threads, so neither pipe can fill up and block it)
/// and waits for it, killing it after `timeout`; says whether it had to.
fn collect(mut child: std::process::Child, cmd: &Command, timeout: Duration) -> (Output, bool) {
    let pipe = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_t = pipe(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err_t = pipe(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap_or_else(|e| panic!("wait for {cmd:?}: {e}")) {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            timed_out = true;
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    (Output { status, stdout: out_t.join().unwrap_or_default(), stderr: err_t.join().unwrap_or_default() }, timed_out)
}

/// stdout and stderr of `out` as text, for panic messages.
pub fn show(out: &Output) -> String {
    format!(
        "\n--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// stdout of `out` as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`output`], but writes `input` to the command's stdin (then closes it) and kills it after `timeout`
/// (returning what it wrote so far, with a non-success status) instead of panicking.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8], timeout: Duration) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let in_t = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let (out, _) = collect(child, cmd, timeout);
    let _ = in_t.join();
    out
}

// ---------------------------------------------------------------------------------------------------------------
// The cluster under test: fixtures, one seed and one clock, the commands as the library runs them, tree snapshots.
// ---------------------------------------------------------------------------------------------------------------

use std::collections::BTreeMap;

use kubeforge::ops::report::RunReport;
use kubeforge::ops::{GenOptions, Options};

/// The clock of every seeded run: certificates issued "now" are valid from 2025-12-31T23:55:00Z.
pub const NOW: &str = "2026-01-01T00:00:00Z";
/// The key source of every seeded run.
pub const SEED: u64 = 42;

pub fn now() -> time::OffsetDateTime {
    kubeforge::parse_instant(NOW).expect("NOW is an instant")
}

/// `fixtures/<name>.yaml`.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(format!("{name}.yaml"))
}

/// The text of `fixtures/<name>.yaml`.
pub fn fixture(name: &str) -> String {
    let p = fixture_path(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// A fixture generated in memory from an empty store, with [`SEED`] and [`NOW`]: nothing is written.
pub fn generate_fixture(name: &str) -> kubeforge::Generated {
    let cluster = kubeforge::spec::load(&fixture_path(name)).unwrap_or_else(|e| panic!("{e}"));
    let empty_store = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/does-not-exist");
    kubeforge::generate(&cluster, &empty_store, &kubeforge::pki::keys::KeySource::seeded(SEED), now())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Generates the spec at `spec` into `out` as `gen` does, with `seed` and `now` (`None`: the real clock, for TLS
/// peers that check validity against the wall clock); returns the cluster.
pub fn generate_into(
    spec: &Path,
    out: &Path,
    seed: u64,
    now: Option<time::OffsetDateTime>,
) -> kubeforge::spec::Cluster {
    let o = Options { seed: Some(seed), now, ..Options::new(Some(spec), out) };
    let ctx = o.load().unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
    ctx.apply(&GenOptions::default()).unwrap_or_else(|e| panic!("gen {}: {e}", spec.display()));
    ctx.cluster
}

/// [`generate_into`] for a spec given as text (written to `<out>.yaml`).
pub fn generate_text(text: &str, out: &Path, seed: u64, now: Option<time::OffsetDateTime>) -> kubeforge::spec::Cluster {
    let spec = out.with_extension("yaml");
    if let Some(dir) = spec.parent() {
        fs::create_dir_all(dir).unwrap();
    }
    fs::write(&spec, text).unwrap();
    generate_into(&spec, out, seed, now)
}

/// What a command line printed and its exit code (0 ok, 1 error, 2 usage error or `plan` with changes).
#[derive(Debug)]
pub struct Outcome {
    pub text: String,
    pub code: u8,
}

/// Runs `kubeforge ARGS` in-process, exactly as the binary parses and runs it (but never with a progress bar: the
/// test runner's stderr may be a terminal); an error's message is the text.
pub fn kubeforge(args: &[&str]) -> Outcome {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    match kubeforge::cli::parse_from("kubeforge", &args) {
        Err(e) => Outcome { text: e.to_string(), code: e.exit_code() as u8 },
        Ok(cmd) => match kubeforge::cli::run_with(cmd, false) {
            Ok(o) => Outcome { text: o.text, code: o.code },
            Err(e) => Outcome { text: e.to_string(), code: 1 },
        },
    }
}

/// A spec file and an OUT in a temp dir of their own.
pub struct Cluster {
    pub tmp: TempDir,
    pub spec: PathBuf,
    pub out: PathBuf,
}

impl Cluster {
    pub fn new(name: &str, spec_text: &str) -> Cluster {
        let tmp = temp_dir(name);
        let spec = tmp.path().join("cluster.yaml");
        fs::write(&spec, spec_text).unwrap();
        let out = tmp.path().join("out");
        Cluster { tmp, spec, out }
    }

    /// Options as a user runs them: keys from the operating system, the real clock.
    pub fn options(&self) -> Options {
        Options::new(Some(&self.spec), &self.out)
    }

    /// Options with [`SEED`] and [`NOW`].
    pub fn seeded(&self) -> Options {
        Options { seed: Some(SEED), now: Some(now()), ..self.options() }
    }

    /// `gen` with [`Cluster::options`].
    pub fn generate(&self) -> RunReport {
        apply(&self.options())
    }

    /// `gen` with [`Cluster::seeded`].
    pub fn generate_seeded(&self) -> RunReport {
        apply(&self.seeded())
    }

    pub fn plan(&self) -> RunReport {
        self.options().load().and_then(|c| c.plan()).unwrap_or_else(|e| panic!("plan: {e}"))
    }

    /// Replaces the first `from` of the spec with `to`.
    pub fn edit(&self, from: &str, to: &str) {
        let text = fs::read_to_string(&self.spec).unwrap();
        assert!(text.contains(from), "spec lacks {from:?}");
        fs::write(&self.spec, text.replacen(from, to, 1)).unwrap();
    }

    /// OUT as a consumer sees it ([`Tree::output`]).
    pub fn tree(&self) -> Tree {
        Tree::output(&self.out)
    }
}

/// `gen` with `o`; panics with the error.
pub fn apply(o: &Options) -> RunReport {
    try_apply(o).unwrap_or_else(|e| panic!("gen: {e}"))
}

/// `gen` with `o`, the error as text.
pub fn try_apply(o: &Options) -> Result<RunReport, String> {
    o.load().and_then(|c| c.apply(&GenOptions::default())).map_err(|e| e.to_string())
}

/// The store ids a report (re)issues, with the reasons: `nodes/cp-1/apiserver — SAN added: IP:10.0.0.5`.
pub fn reissued(r: &RunReport) -> Vec<String> {
    use kubeforge::ops::report::Action;
    r.certificates
        .iter()
        .filter(|c| matches!(c.action, Action::Issue | Action::Reissue))
        .map(|c| format!("{} — {}", c.id, c.reasons.join("; ")))
        .collect()
}

/// One path below a snapshot's root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// `None` for a directory.
    pub bytes: Option<Vec<u8>>,
    pub mode: u32,
    pub ino: u64,
    /// Modification and change times, in nanoseconds.
    pub mtime: i128,
    pub ctime: i128,
}

/// Every file and directory below a root, by relative path (directories end in `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree(pub BTreeMap<String, Node>);

impl Tree {
    pub fn of(dir: &Path) -> Tree {
        use std::os::unix::fs::MetadataExt;
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else { continue };
            for e in entries {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                let node = |bytes| Node {
                    bytes,
                    mode: m.mode() & 0o7777,
                    ino: m.ino(),
                    mtime: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                    ctime: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
                };
                if m.is_dir() {
                    out.insert(format!("{rel}/"), node(None));
                    stack.push(p);
                } else if m.file_type().is_symlink() {
                    // Never followed: recorded as where it points.
                    let target = fs::read_link(&p).unwrap();
                    out.insert(rel, node(Some(format!("symlink -> {}", target.display()).into_bytes())));
                } else {
                    out.insert(rel, node(Some(fs::read(&p).unwrap())));
                }
            }
        }
        Tree(out)
    }

    /// OUT as a consumer sees it: [`Tree::of`] without kubeforge's own `.kubeforge/` (its locks, transactions and
    /// caches, which git ignores and a clone does not have).
    pub fn output(dir: &Path) -> Tree {
        let mut t = Tree::of(dir);
        t.0.retain(|p, _| !p.starts_with(".kubeforge/"));
        t
    }

    /// Regular files only, with their bytes.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        self.0.iter().filter_map(|(p, n)| Some((p.clone(), n.bytes.clone()?))).collect()
    }

    /// Regular files with their bytes and mode.
    pub fn files_and_modes(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        self.0.iter().filter_map(|(p, n)| Some((p.clone(), (n.bytes.clone()?, n.mode)))).collect()
    }

    /// The text of a file.
    pub fn text(&self, path: &str) -> String {
        let n = self.0.get(path).unwrap_or_else(|| panic!("{path} is not in the tree"));
        String::from_utf8(n.bytes.clone().expect("a file")).unwrap()
    }

    /// Paths whose bytes or mode differ, or that exist on one side only (directories included), with what
    /// changed: `pki/ca.crt: bytes changed`.
    pub fn diff(&self, other: &Tree) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter()
            .filter_map(|k| match (self.0.get(k), other.0.get(k)) {
                (None, Some(_)) => Some(format!("{k}: created")),
                (Some(_), None) => Some(format!("{k}: removed")),
                (Some(a), Some(b)) if a.mode != b.mode => Some(format!("{k}: mode {:o} -> {:o}", a.mode, b.mode)),
                (Some(a), Some(b)) if a.bytes != b.bytes => Some(format!("{k}: bytes changed")),
                _ => None,
            })
            .collect()
    }

    /// Files (not directories) whose bytes differ or that exist on one side only.
    pub fn changed_files(&self, other: &Tree) -> Vec<String> {
        let (a, b) = (self.files(), other.files());
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
    }

    /// Paths whose inode, times, mode or bytes differ at all: what a run "touched".
    pub fn touched(&self, other: &Tree) -> Vec<String> {
        let keys: std::collections::BTreeSet<&String> = self.0.keys().chain(other.0.keys()).collect();
        keys.into_iter().filter(|k| self.0.get(*k) != other.0.get(*k)).cloned().collect()
    }
}

/// Every way `instance` breaks `schema/<schema>` (a JSON Schema of this repository), as (JSON pointer, message),
/// the innermost reasons of an `anyOf`/`oneOf` rather than the summary; formats (`date-time`) are checked.
pub fn schema_errors(schema: &str, instance: &serde_json::Value) -> Vec<(String, String)> {
    use jsonschema::error::ValidationErrorKind;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema").join(schema);
    let schema: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid JSON Schema: {e}", path.display()));
    fn leaves(e: &jsonschema::ValidationError<'_>, out: &mut Vec<(String, String)>) {
        match e.kind() {
            ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
                for branch in context {
                    for inner in branch {
                        leaves(inner, out);
                    }
                }
            }
            _ => out.push((e.instance_path().to_string(), e.to_string())),
        }
    }
    let mut out = Vec::new();
    for e in validator.iter_errors(instance) {
        leaves(&e, &mut out);
    }
    out
}
