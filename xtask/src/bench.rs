//! `cargo xtask bench [--quick] [--large]`: kubeforge against the "hard way" (`benches/baseline.sh`: bash, the
//! openssl CLI and `kubectl config`) on clusters of 1 control plane + N workers, ECDSA-P256 and RSA-2048.
//!
//! What is measured is what users run. Every kubeforge run is `xtask gen --spec S --out D` in a child process:
//! this very binary (built by `cargo xtask`, so the dev profile, with the opt-level overrides of the workspace
//! Cargo.toml), copied into the bench directory first so that a concurrent `cargo build` cannot swap it mid-run,
//! and started as `bench --child gen ...`, which makes the same library call as `gen` and then reports its own
//! peak RSS (`VmHWM`; see [`CHILD`] for why rusage's figure will not do). Compilation is not measured (see
//! benches/README.md for the cold build). Each child is reaped with `wait4(2)`, which gives its CPU time (user +
//! system, all threads); for the baseline the same call covers bash and every openssl and kubectl process it ran.
//!
//! Per cluster size and algorithm:
//! - `clean`: gen into an empty OUT;
//! - `rerun`: the same spec again, no change. It must write nothing; the bench checks that no file under OUT
//!   changed (inode, mtime, ctime, mode, size) and times a plain read of the whole tree (every file, once, warm
//!   cache) for comparison: "beyond reading the tree" is the rerun's wall time minus that;
//! - `add 1 node`: the spec with one more worker, on the same OUT: only that node's certificates are issued;
//! - `renew kube-proxy` (N = 100 only): one leaf per node reissued, a check that reissues spread over every core;
//! - the baseline on the same cluster, from an empty directory. Where the baseline is not run (large N) its
//!   per-node cost is extrapolated from the largest N it ran at (it is linear in N: a fixed number of processes
//!   per node) and the ratio is marked `~`.
//!
//! Timings are wall clock on a machine that may be doing other things: the table records the load average.
//! Nothing here asserts a time; CI runs `--quick` as a smoke test of the whole path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const USAGE: &str = "\
cargo xtask bench [--quick] [--large]
    Time `cargo xtask gen` on clusters of 1 control plane + N workers (N = 3, 100, 1000; ECDSA-P256 and
    RSA-2048): from an empty OUT, as a no-change rerun, adding one node; and the same clusters through
    benches/baseline.sh (bash + openssl + kubectl config) at N = 3 and 100, side by side. Prints a table and
    writes it to target/bench/results.md. About 8 minutes on 2 cores. See benches/README.md.
    --quick  N = 3 only (a CI smoke run, well under a minute)
    --large  adds N = 5000 and runs the baseline at N = 1000 as well (over an hour on 2 cores)";

const ALGS: [&str; 2] = ["ECDSA-P256", "RSA-2048"];

/// `xtask bench --child gen|renew ARGS...`: what `xtask gen|renew ARGS...` does (the same library call, the same
/// output), followed by one line with the process's peak RSS. The kernel's rusage cannot give that number: a
/// child's `ru_maxrss` starts from its parent's RSS (the mm it replaced at exec), and the bench's own RSS grows
/// with the trees it inspects. `VmHWM` belongs to the child's own address space.
const CHILD: &str = "--child";
const PEAK: &str = "bench-child peak RSS kB: ";

fn child(args: &[String]) -> Result<(), String> {
    let mut args = args.to_vec();
    if !matches!(args.first().map(String::as_str), Some("gen" | "renew")) {
        return Err(format!("bench {CHILD}: expected gen or renew, not {:?}", args.first()));
    }
    // The report as JSON: the bench reads what the run did from it, never from prose.
    args.extend(["--format".to_string(), "json".to_string()]);
    let command = kubeforge::cli::parse_from("bench-child", &args).map_err(|e| e.to_string())?;
    let outcome = kubeforge::cli::run(command).map_err(|e| e.to_string())?;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).map(|v| v.trim().trim_end_matches(" kB"));
    println!("{}", outcome.text);
    if let Some(kb) = hwm {
        println!("{PEAK}{kb}");
    }
    Ok(())
}

struct Plan {
    sizes: Vec<usize>,
    /// Sizes at which the baseline runs.
    baseline: Vec<usize>,
}

pub fn run(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some(CHILD) {
        return child(&args[1..]);
    }
    let (mut quick, mut large) = (false, false);
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            "--large" => large = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("bench: unexpected argument {other:?}\n{USAGE}")),
        }
    }
    let plan = match (quick, large) {
        (true, true) => return Err("bench: --quick and --large exclude each other".into()),
        (true, false) => Plan { sizes: vec![3], baseline: vec![3] },
        (false, false) => Plan { sizes: vec![3, 100, 1000], baseline: vec![3, 100] },
        (false, true) => Plan { sizes: vec![3, 100, 1000, 5000], baseline: vec![3, 100, 1000] },
    };

    let meta = cargo_metadata::MetadataCommand::new().no_deps().exec().map_err(|e| format!("cargo metadata: {e}"))?;
    let root = meta.workspace_root.as_std_path().to_path_buf();
    let target = meta.target_directory.as_std_path().to_path_buf();
    let script = root.join("benches/baseline.sh");
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    let tools = crate::tools::ensure(&target)?;
    let work = target.join("bench");
    // One bench at a time per target directory: a second one would clear the first one's outputs mid-run.
    let _lock = Lock::take(&target.join("bench.lock"))?;
    // The previous run's outputs are set aside and removed at the end, for the reason given there.
    let previous = target.join("bench.previous");
    if previous.exists() {
        fs::remove_dir_all(&previous).map_err(|e| format!("cannot remove {}: {e}", previous.display()))?;
    }
    if work.exists() {
        fs::rename(&work, &previous).map_err(|e| format!("cannot move {} away: {e}", work.display()))?;
    }
    fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    // The binary under test: this one, frozen.
    let me = std::env::current_exe().map_err(|e| format!("cannot find the xtask binary: {e}"))?;
    let exe = work.join("kubeforge-xtask");
    fs::copy(&me, &exe).map_err(|e| format!("cannot copy {} to {}: {e}", me.display(), exe.display()))?;
    // baseline.sh calls `openssl` from PATH: make it the one the tools check found.
    let path = match (tools.openssl.parent(), std::env::var_os("PATH")) {
        (Some(dir), Some(p)) => {
            let mut dirs = vec![dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).map_err(|e| e.to_string())?
        }
        (_, p) => p.unwrap_or_default(),
    };

    let machine = Machine::now();
    eprintln!(
        "bench: {} ({} cores), load {}; kubeforge = {} ({} profile); baseline = {} + {}",
        machine.cpu,
        machine.cores,
        machine.load,
        me.display(),
        if cfg!(debug_assertions) { "dev" } else { "release" },
        tools.openssl_version,
        tools.kubectl_version
    );

    let mut rows: Vec<Row> = Vec::new();
    // Baseline wall time per node, by algorithm, from the largest N it ran at (for extrapolation).
    let mut baseline_per_node: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for alg in ALGS {
        for &n in &plan.sizes {
            let nodes = n + 1;
            let spec = work.join(format!("spec-{alg}-{n}.yaml"));
            let spec_plus = work.join(format!("spec-{alg}-{}.yaml", n + 1));
            fs::write(&spec, spec_yaml(alg, n)).map_err(|e| e.to_string())?;
            fs::write(&spec_plus, spec_yaml(alg, n + 1)).map_err(|e| e.to_string())?;
            let out = work.join(format!("kf-{alg}-{n}"));
            let kf_gen = |spec: &Path| {
                let mut c = Command::new(&exe);
                c.args(["bench", CHILD, "gen"]).arg("--spec").arg(spec).arg("--out").arg(&out);
                c
            };

            // Baseline first: its number goes into the clean row.
            let base = if plan.baseline.contains(&n) {
                let dir = work.join(format!("baseline-{alg}-{n}"));
                let mut c = Command::new("bash");
                c.arg(&script).arg(&dir).arg(n.to_string()).arg(alg).arg(&tools.kubectl).env("PATH", &path);
                let m = measure(&mut c, &work.join(format!("baseline-{alg}-{n}.stderr")))?;
                let files = walk(&dir)?.len().saturating_sub(2); // less openssl.cnf and openssl.log
                progress(&format!("baseline {alg} N={n}"), &m);
                let per_node = m.wall.as_secs_f64() / nodes as f64;
                if baseline_per_node.get(alg).is_none_or(|(at, _)| *at < n) {
                    baseline_per_node.insert(alg, (n, per_node));
                }
                Some(Baseline { wall: m.wall, cpu: m.cpu, files, estimated: false })
            } else {
                baseline_per_node.get(alg).map(|&(_, per_node)| Baseline {
                    wall: Duration::from_secs_f64(per_node * nodes as f64),
                    cpu: None,
                    files: 0,
                    estimated: true,
                })
            };

            // Clean.
            let m = measure(&mut kf_gen(&spec), &work.join("gen.stderr"))?;
            progress(&format!("kubeforge {alg} N={n} clean"), &m);
            let written = files_written(&m.stdout)?;
            rows.push(Row::new(alg, n, "clean", &m, written, nodes, base.as_ref(), String::new()));

            // No-change rerun.
            let before = snapshot(&out)?;
            let m = measure(&mut kf_gen(&spec), &work.join("gen.stderr"))?;
            progress(&format!("kubeforge {alg} N={n} rerun"), &m);
            let after = snapshot(&out)?;
            let touched = touched(&before, &after);
            let (files, bytes, read) = read_tree(&out)?;
            let beyond = m.wall.saturating_sub(read);
            let note = format!(
                "{touched} files touched; reading the tree ({files} files, {}) takes {}: {} beyond",
                mb(bytes),
                dur(read),
                dur(beyond)
            );
            rows.push(Row::new(alg, n, "rerun, no change", &m, files_written(&m.stdout)?, nodes, None, note));
            if touched != 0 {
                return Err(format!("a no-change rerun changed {touched} files under {}", out.display()));
            }

            // Add one node.
            let m = measure(&mut kf_gen(&spec_plus), &work.join("gen.stderr"))?;
            progress(&format!("kubeforge {alg} N={n} add 1 node"), &m);
            let issued = certs_issued(&m.stdout)?;
            // The baseline adds a node by running its per-node steps once.
            let one = baseline_per_node.get(alg).map(|&(_, per_node)| Baseline {
                wall: Duration::from_secs_f64(per_node),
                cpu: None,
                files: 0,
                estimated: true,
            });
            let note = format!("{issued} certificates issued");
            rows.push(Row::new(alg, n, "add 1 node", &m, files_written(&m.stdout)?, 1, one.as_ref(), note));

            // Reissue one leaf per node: are both cores busy?
            if n == 100 {
                let mut c = Command::new(&exe);
                c.args(["bench", CHILD, "renew", "kube-proxy"]).arg("--spec").arg(&spec_plus).arg("--out").arg(&out);
                let m = measure(&mut c, &work.join("gen.stderr"))?;
                progress(&format!("kubeforge {alg} N={n} renew kube-proxy"), &m);
                let note = format!("{} certificates reissued", certs_issued(&m.stdout)?);
                rows.push(Row::new(alg, n + 1, "renew kube-proxy", &m, files_written(&m.stdout)?, n + 2, None, note));
            }
        }
    }
    // Outputs are removed only now: on ext4, creating files just after deleting many is slower (the inode
    // allocator skips recently freed inodes), which would charge one case's cleanup to the next case.
    for e in fs::read_dir(&work).map_err(|e| format!("{}: {e}", work.display()))?.flatten() {
        if e.path().is_dir() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let _ = fs::remove_dir_all(&previous);

    let load_after = Machine::now().load;
    let table = render(&rows, &machine, &load_after, &tools);
    println!("{table}");
    let results = work.join("results.md");
    fs::write(&results, &table).map_err(|e| format!("{}: {e}", results.display()))?;
    eprintln!("bench: written to {}", results.display());
    Ok(())
}

/// `target/bench.lock`, holding the bench's pid; removed when dropped. A lock whose process is gone is taken over.
struct Lock(PathBuf);

impl Lock {
    fn take(path: &Path) -> Result<Lock, String> {
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    use std::io::Write as _;
                    let _ = write!(f, "{}", std::process::id());
                    return Ok(Lock(path.to_path_buf()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let pid = fs::read_to_string(path).unwrap_or_default();
                    let pid = pid.trim();
                    if !pid.is_empty() && Path::new("/proc").join(pid).exists() {
                        return Err(format!(
                            "another `cargo xtask bench` (pid {pid}) is running in this target directory; wait for \
                             it to finish (or remove {} if that process is not a bench)",
                            path.display()
                        ));
                    }
                    fs::remove_file(path).map_err(|e| format!("cannot remove the stale {}: {e}", path.display()))?;
                }
                Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// 1 control plane + `workers` workers; addresses as benches/baseline.sh assumes them.
fn spec_yaml(alg: &str, workers: usize) -> String {
    let mut s = format!(
        "apiVersion: kubeforge/v1alpha1\nkind: Cluster\nname: bench\nkubernetesVersion: v1.34.1\n\
         controlPlaneEndpoint: \"\"\nnetworking:\n  serviceSubnet: 10.96.0.0/12\n  podSubnet: 10.244.0.0/16\n  \
         dnsDomain: cluster.local\npki:\n  keyAlgorithm: {alg}\n  caValidity: 87600h\n  certificateValidity: 8760h\n\
         apiServer:\n  certSANs: []\nnodes:\n  - name: cp-1\n    role: control-plane\n    address: 10.0.0.11\n"
    );
    for i in 1..=workers {
        let _ = write!(s, "  - name: worker-{i}\n    role: worker\n    address: 10.1.{}.{}\n", i / 250, i % 250 + 1);
    }
    s
}

struct Measured {
    wall: Duration,
    cpu: Option<Duration>,
    max_rss_kb: Option<u64>,
    stdout: String,
}

/// Runs `cmd` to completion: wall time, and from `wait4` its CPU time and peak RSS (Linux).
fn measure(cmd: &mut Command, stderr_file: &Path) -> Result<Measured, String> {
    let err = fs::File::create(stderr_file).map_err(|e| format!("{}: {e}", stderr_file.display()))?;
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(err);
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {what}: {e}"))?;
    let mut stdout = String::new();
    child.stdout.take().expect("piped").read_to_string(&mut stdout).map_err(|e| e.to_string())?;
    let (ok, cpu, max_rss_kb) = reap(child)?;
    let wall = start.elapsed();
    if !ok {
        let stderr = fs::read_to_string(stderr_file).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(format!(
            "{what} failed:\n{}\n{}",
            stdout.trim_end(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    // A kubeforge child reports its own peak RSS (see CHILD); for others, rusage's figure is an upper bound.
    let own = stdout.lines().find_map(|l| l.strip_prefix(PEAK)).and_then(|kb| kb.trim().parse().ok());
    let max_rss_kb = if own.is_some() { own } else { max_rss_kb };
    Ok(Measured { wall, cpu, max_rss_kb, stdout })
}

#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn reap(child: std::process::Child) -> Result<(bool, Option<Duration>, Option<u64>), String> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data, and all zeroes is a valid value of it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: plain out-parameters; `pid` is our child, not yet reaped (std only reaps in wait/try_wait).
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4({pid}): {e}"));
        }
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    let exited_ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((exited_ok, Some(tv(ru.ru_utime) + tv(ru.ru_stime)), Some(ru.ru_maxrss as u64)))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
fn reap(mut child: std::process::Child) -> Result<(bool, Option<Duration>, Option<u64>), String> {
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok((status.success(), None, None))
}

fn progress(what: &str, m: &Measured) {
    eprintln!("bench: {what}: {} wall, {} CPU", dur(m.wall), m.cpu.map_or("?".into(), dur));
}

/// The run report a child printed (JSON, before its peak-RSS line).
fn report(stdout: &str) -> Result<serde_json::Value, String> {
    let json = stdout.split(PEAK).next().unwrap_or_default();
    serde_json::from_str(json).map_err(|e| format!("the child's report is not JSON ({e}):\n{stdout}"))
}

/// How many files the run wrote.
fn files_written(stdout: &str) -> Result<usize, String> {
    let r = report(stdout)?;
    r["files"]["write"].as_array().map(Vec::len).ok_or_else(|| format!("no files.write in the report:\n{stdout}"))
}

/// How many certificates the run issued or reissued.
fn certs_issued(stdout: &str) -> Result<usize, String> {
    let r = report(stdout)?;
    let certs = r["certificates"].as_array().ok_or_else(|| format!("no certificates in the report:\n{stdout}"))?;
    Ok(certs.iter().filter(|c| c["action"] == "issue" || c["action"] == "reissue").count())
}

/// Every file under `dir`, relative path to metadata.
fn walk(dir: &Path) -> Result<BTreeMap<PathBuf, fs::Metadata>, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))? {
            let e = e.map_err(|e| e.to_string())?;
            let meta = fs::symlink_metadata(e.path()).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                stack.push(e.path());
            } else {
                files.insert(e.path().strip_prefix(dir).expect("below dir").to_path_buf(), meta);
            }
        }
    }
    Ok(files)
}

type Stamp = (u64, i64, i64, i64, i64, u32, u64);

fn snapshot(dir: &Path) -> Result<BTreeMap<PathBuf, Stamp>, String> {
    Ok(walk(dir)?
        .into_iter()
        .map(|(p, m)| (p, (m.ino(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec(), m.mode(), m.len())))
        .collect())
}

fn touched(before: &BTreeMap<PathBuf, Stamp>, after: &BTreeMap<PathBuf, Stamp>) -> usize {
    let changed = after.iter().filter(|(p, s)| before.get(*p) != Some(s)).count();
    changed + before.keys().filter(|p| !after.contains_key(*p)).count()
}

/// Reads every file under `dir` once: (files, bytes, time).
fn read_tree(dir: &Path) -> Result<(usize, u64, Duration), String> {
    let start = Instant::now();
    let files = walk(dir)?;
    let mut bytes = 0;
    for p in files.keys() {
        bytes += fs::read(dir.join(p)).map_err(|e| format!("{}: {e}", p.display()))?.len() as u64;
    }
    Ok((files.len(), bytes, start.elapsed()))
}

#[derive(Clone)]
struct Baseline {
    wall: Duration,
    cpu: Option<Duration>,
    files: usize,
    /// Extrapolated from the per-node cost at a smaller N, not run.
    estimated: bool,
}

struct Row {
    alg: &'static str,
    workers: usize,
    case: &'static str,
    wall: Duration,
    cpu: Option<Duration>,
    max_rss_kb: Option<u64>,
    written: usize,
    /// Nodes the wall time is spread over for the per-node cost.
    nodes: usize,
    baseline: Option<Baseline>,
    note: String,
}

impl Row {
    #[allow(clippy::too_many_arguments)]
    fn new(
        alg: &'static str,
        workers: usize,
        case: &'static str,
        m: &Measured,
        written: usize,
        nodes: usize,
        b: Option<&Baseline>,
        note: String,
    ) -> Row {
        Row {
            alg,
            workers,
            case,
            wall: m.wall,
            cpu: m.cpu,
            max_rss_kb: m.max_rss_kb,
            written,
            nodes,
            baseline: b.cloned(),
            note,
        }
    }
}

fn render(rows: &[Row], machine: &Machine, load_after: &str, tools: &crate::tools::Tools) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "kubeforge bench, {}: {} ({} cores), load average {} before, {} after; kubeforge: `cargo xtask gen` \
         ({} profile), baseline: benches/baseline.sh with {} and kubectl {}.\n",
        machine.date,
        machine.cpu,
        machine.cores,
        machine.load,
        load_after,
        if cfg!(debug_assertions) { "dev" } else { "release" },
        tools.openssl_version,
        tools.kubectl_version
    );
    let head = [
        "cluster",
        "case",
        "wall",
        "CPU",
        "cores used",
        "peak RSS",
        "files written",
        "per node",
        "baseline wall",
        "baseline per node",
        "ratio",
        "notes",
    ];
    let mut table: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let per_node = r.wall / r.nodes as u32;
        let (bwall, bper, ratio, bnote) = match r.baseline {
            Some(Baseline { wall: w, cpu, files, estimated: est }) => {
                let t = if est { "~" } else { "" };
                let ratio = w.as_secs_f64() / r.wall.as_secs_f64();
                let note = if est {
                    String::new()
                } else {
                    format!("; baseline: {files} files, {} CPU", cpu.map_or("?".into(), dur))
                };
                (
                    format!("{t}{}", dur(w)),
                    format!("{t}{}", dur(w / r.nodes as u32)),
                    format!("{t}{}", times(ratio)),
                    note,
                )
            }
            None => ("-".into(), "-".into(), "-".into(), String::new()),
        };
        let cores = match r.cpu {
            Some(c) if r.wall > Duration::ZERO => format!("{:.2}", c.as_secs_f64() / r.wall.as_secs_f64()),
            _ => "?".into(),
        };
        let note = format!("{}{bnote}", r.note);
        table.push(vec![
            format!("{} 1+{}", r.alg, r.workers),
            r.case.to_string(),
            dur(r.wall),
            r.cpu.map_or("?".into(), dur),
            cores,
            r.max_rss_kb.map_or("?".into(), |k| mb(k * 1024)),
            r.written.to_string(),
            dur(per_node),
            bwall,
            bper,
            ratio,
            note.trim_start_matches("; ").to_string(),
        ]);
    }
    for (i, row) in table.iter().enumerate() {
        let _ = writeln!(s, "| {} |", row.join(" | "));
        if i == 0 {
            let _ = writeln!(s, "|{}", "---|".repeat(row.len()));
        }
    }
    s.push_str(
        "\nper node = wall / nodes (1 control plane + N workers; 1 for `add 1 node`); ratio = baseline wall / \
         kubeforge wall. `~`: the baseline was not run at this size; its time is its measured per-node cost at the \
         largest N it ran at, times the nodes (for `add 1 node`: one node's worth). cores used = CPU / wall.\n",
    );
    s
}

struct Machine {
    cpu: String,
    cores: usize,
    load: String,
    date: String,
}

impl Machine {
    fn now() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown CPU")
            .to_string();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let load = fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into());
        Machine { cpu, cores, load, date: today() }
    }
}

/// Today (UTC) as YYYY-MM-DD, from the system clock (days to civil date, H. Hinnant's algorithm).
fn today() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let z = secs.div_euclid(86400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{:.2} ms", s * 1e3)
    }
}

fn mb(bytes: u64) -> String {
    if bytes < 1024 * 1024 {
        format!("{} KB", bytes.div_ceil(1024))
    } else {
        format!("{:.0} MB", bytes as f64 / 1048576.0)
    }
}

fn times(r: f64) -> String {
    if r >= 10.0 { format!("{r:.0}×") } else { format!("{r:.1}×") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_run_reports() {
        let clean = r#"{"files":{"write":["a","b"],"remove":[],"unchanged":0},
            "certificates":[{"action":"issue"},{"action":"reissue"},{"action":"keep"}]}"#;
        let with_peak = format!("{clean}\n{PEAK}1234\n");
        assert_eq!(files_written(&with_peak).unwrap(), 2);
        assert_eq!(certs_issued(&with_peak).unwrap(), 2);
        assert!(files_written("kubeforge: cluster").is_err());
    }

    #[test]
    fn dates() {
        assert!(today().len() == 10 && today().starts_with("20"));
    }

    #[test]
    fn specs_match_the_baseline_addresses() {
        let s = spec_yaml("RSA-2048", 251);
        assert!(s.contains("name: worker-250\n    role: worker\n    address: 10.1.1.1\n"));
        assert!(s.contains("name: worker-249\n    role: worker\n    address: 10.1.0.250\n"));
        assert!(s.contains("keyAlgorithm: RSA-2048"));
    }
}
