//! `cargo xtask bench [--quick] [--large]`: kubeforge against the "hard way" (`benches/baseline.sh`: bash, the
//! openssl CLI and `kubectl config`) on clusters of 1 control plane + N workers, ECDSA-P256 and RSA-2048, then each
//! target of the performance issue with its measured value and "met" or "missed by X".
//!
//! What is measured is what users run. Every kubeforge run is `xtask gen|plan|renew --spec S --out D` in a child
//! process: this very binary (built by `cargo xtask`, so the dev profile, with the opt-level overrides of the
//! workspace Cargo.toml), copied into the bench directory first so that a concurrent `cargo build` cannot swap it
//! mid-run, and started as `bench --child gen ...`, which makes the same library calls as `gen` and prints the same
//! text, then one line of what it did and its own peak RSS (`VmHWM`; see [`CHILD`] for why rusage's figure will
//! not do). Each child is reaped with `wait4(2)`, which gives its CPU time (user + system, all threads); for the
//! baseline the same call covers bash and every openssl and kubectl process it ran. Children run with
//! `KUBEFORGE_TIMINGS` set: the phase timings they print (src/timing.rs) say where the time went.
//!
//! Per cluster size and algorithm:
//! - `clean`: gen into an empty OUT;
//! - `rerun, no change`: the same spec again, three times (the median is reported). It must write nothing; the
//!   bench checks that no file under OUT changed (inode, mtime, ctime, mode, size). A plain read of every file of
//!   the tree (warm cache), taken just before each run so that both see the same load, is the yardstick of the
//!   rerun targets (the median of the three reads);
//! - `plan`: the same, read-only, three times;
//! - `add 1 node`: the spec with one more worker, three times in a row (N+1, N+2, N+3 workers): only that node's
//!   certificates are issued;
//! - `renew kube-proxy` (N = 100 only): one leaf per node reissued, a check that reissues spread over every core;
//! - the baseline on the same cluster, from an empty directory. Where the baseline is not run (large N) its
//!   per-node cost is extrapolated from the largest N it ran at (it is linear in N: a fixed number of processes
//!   per node) and the ratio is marked `~`; the ratio targets use its per-node cost at N = 30;
//! - the cold build: `cargo xtask gen` in a fresh clone of HEAD with an empty target directory (not in `--quick`).
//!
//! Timings are wall clock on a machine that may be doing other things: the report records the load average.
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
    Time `cargo xtask gen` on clusters of 1 control plane + N workers (N = 3, 30, 100, 1000; ECDSA-P256 and
    RSA-2048): from an empty OUT, as a no-change rerun and plan, adding one node; the same clusters through
    benches/baseline.sh (bash + openssl + kubectl config) at N = 3 and 30, side by side; and a cold build.
    Prints a table and each target with its measured value and \"met\" or \"missed by X\", and writes them to
    target/bench/results.md. About 8 minutes on 2 cores. See benches/README.md.
    --quick  N = 3 only, no cold build (a CI smoke run, well under a minute)
    --large  adds N = 10,000 (ECDSA-P256) and runs the baseline at N = 1000 (ECDSA-P256) too (~20 minutes)";

const ALGS: [&str; 2] = ["ECDSA-P256", "RSA-2048"];
/// The size at which the baseline's per-node cost is taken for the ratio targets.
const BASE_N: usize = 30;
/// How many times the quick cases (rerun, plan, add one node) run; the median is reported.
const REPEATS: usize = 3;

/// `xtask bench --child gen|plan|renew ARGS...`: what `xtask gen|plan|renew ARGS...` does (the same library calls,
/// the same text output), followed by one line saying what the run did and one with the process's peak RSS. The
/// kernel's rusage cannot give that number: a child's `ru_maxrss` starts from its parent's RSS (the mm it replaced
/// at exec), and the bench's own RSS grows with the trees it inspects. `VmHWM` belongs to the child's own address
/// space.
const CHILD: &str = "--child";
const PEAK: &str = "bench-child peak RSS kB: ";
const DID: &str = "bench-child did: ";

fn child(args: &[String]) -> Result<(), String> {
    use kubeforge::cli::Command as Cmd;
    use kubeforge::ops::GenOptions;
    let command = kubeforge::cli::parse_from("bench-child", args).map_err(|e| e.to_string())?;
    let load = |c: &kubeforge::cli::Common| c.options().load();
    let report = match &command {
        Cmd::Gen { common, dry_run: false, materialize: None, .. } => {
            load(common).and_then(|c| c.apply(&GenOptions::default()))
        }
        Cmd::Plan { common, .. } => load(common).and_then(|c| c.plan()),
        Cmd::Renew { names, keep_keys, common, .. } => load(common).and_then(|c| c.renew(names, *keep_keys)),
        _ => return Err(format!("bench {CHILD}: expected gen, plan or renew, not {args:?}")),
    }
    .map_err(|e| e.to_string())?;
    // What a user sees (the text format), then what the bench reads.
    println!("{report}");
    let issued = report
        .certificates
        .iter()
        .filter(|c| matches!(c.action, kubeforge::ops::report::Action::Issue | kubeforge::ops::report::Action::Reissue))
        .count();
    let (written, removed) = report.files.as_ref().map_or((0, 0), |f| (f.write.len(), f.remove.len()));
    println!("{DID}written={written} removed={removed} issued={issued}");
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).map(|v| v.trim().trim_end_matches(" kB"));
    if let Some(kb) = hwm {
        println!("{PEAK}{kb}");
    }
    Ok(())
}

struct Plan {
    /// (algorithm, workers), in the order they run.
    sizes: Vec<(&'static str, usize)>,
    /// Where the baseline runs.
    baseline: Vec<(&'static str, usize)>,
    cold_build: bool,
    repeats: usize,
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
    let each = |sizes: &[usize]| -> Vec<(&'static str, usize)> {
        ALGS.iter().flat_map(|a| sizes.iter().map(move |n| (*a, *n))).collect()
    };
    let plan = match (quick, large) {
        (true, true) => return Err("bench: --quick and --large exclude each other".into()),
        (true, false) => Plan { sizes: each(&[3]), baseline: each(&[3]), cold_build: false, repeats: 1 },
        (false, false) => {
            Plan { sizes: each(&[3, 30, 100, 1000]), baseline: each(&[3, 30]), cold_build: true, repeats: REPEATS }
        }
        (false, true) => {
            let mut sizes = each(&[3, 30, 100, 1000]);
            sizes.insert(4, ("ECDSA-P256", 10_000));
            let mut baseline = each(&[3, 30]);
            baseline.push(("ECDSA-P256", 1000));
            Plan { sizes, baseline, cold_build: true, repeats: REPEATS }
        }
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
    // Baseline wall time per node, by algorithm and N.
    let mut baseline_per_node: BTreeMap<(&str, usize), f64> = BTreeMap::new();
    // The yardstick of the rerun targets: a plain read of the tree, by algorithm and N.
    let mut reads: BTreeMap<(&str, usize, &str), Duration> = BTreeMap::new();
    let mut phases: Vec<(String, Vec<(String, Duration)>)> = Vec::new();
    for &(alg, n) in &plan.sizes {
        let nodes = n + 1;
        let spec_for = |workers: usize| -> Result<PathBuf, String> {
            let p = work.join(format!("spec-{alg}-{workers}.yaml"));
            if !p.exists() {
                fs::write(&p, spec_yaml(alg, workers)).map_err(|e| e.to_string())?;
            }
            Ok(p)
        };
        let spec = spec_for(n)?;
        let out = work.join(format!("kf-{alg}-{n}"));
        let stderr = work.join(format!("kf-{alg}-{n}.stderr"));
        let kf = |cmd: &str, spec: &Path| {
            let mut c = Command::new(&exe);
            c.args(["bench", CHILD, cmd]).arg("--spec").arg(spec).arg("--out").arg(&out);
            c.env("KUBEFORGE_TIMINGS", "1");
            c
        };

        // Baseline first: its number goes into the clean row.
        let base = if plan.baseline.contains(&(alg, n)) {
            let dir = work.join(format!("baseline-{alg}-{n}"));
            let mut c = Command::new("bash");
            c.arg(&script).arg(&dir).arg(n.to_string()).arg(alg).arg(&tools.kubectl).env("PATH", &path);
            let m = measure(&mut c, &work.join(format!("baseline-{alg}-{n}.stderr")))?;
            let files = walk(&dir)?.len().saturating_sub(2); // less openssl.cnf and openssl.log
            progress(&format!("baseline {alg} N={n}"), &m);
            baseline_per_node.insert((alg, n), m.wall.as_secs_f64() / nodes as f64);
            Some(Baseline { wall: m.wall, cpu: m.cpu, files, estimated: false })
        } else {
            largest_base(&baseline_per_node, alg).map(|(_, per_node)| Baseline {
                wall: Duration::from_secs_f64(per_node * nodes as f64),
                cpu: None,
                files: 0,
                estimated: true,
            })
        };

        // Clean.
        let m = measure(&mut kf("gen", &spec), &stderr)?;
        progress(&format!("kubeforge {alg} N={n} clean"), &m);
        let written = did(&m.stdout)?.written;
        phases.push((format!("{alg} 1+{n} clean"), phase_times(&stderr, m.wall)));
        rows.push(Row::new(alg, n, "clean", &m, written, nodes, base.as_ref(), String::new()));

        // No-change rerun and plan: nothing may change, not even a timestamp.
        for (case, cmd) in [("rerun, no change", "gen"), ("plan", "plan")] {
            let mut runs = Vec::new();
            // Each run right after a read of the tree: on a shared machine both then see the same load.
            let mut reads_here: Vec<(usize, u64, Duration)> = Vec::new();
            for _ in 0..plan.repeats {
                reads_here.push(read_tree(&out)?);
                let before = snapshot(&out)?;
                let m = measure(&mut kf(cmd, &spec), &stderr)?;
                let touched = touched(&before, &snapshot(&out)?);
                if touched != 0 {
                    return Err(format!("a no-change {cmd} changed {touched} files under {}", out.display()));
                }
                if did(&m.stdout)?.written != 0 {
                    return Err(format!("a no-change {cmd} found files to write under {}", out.display()));
                }
                runs.push((m, phase_times(&stderr, Duration::ZERO)));
            }
            let (files, bytes, _) = reads_here[0];
            let read = median(reads_here.iter().map(|r| r.2).collect());
            reads.insert((alg, n, case), read);
            let (ms, phase_list): (Vec<Measured>, Vec<_>) = runs.into_iter().unzip();
            let mid = median_index(&ms);
            let m = &ms[mid];
            progress(&format!("kubeforge {alg} N={n} {case} (median of {})", ms.len()), m);
            phases.push((format!("{alg} 1+{n} {case}"), with_rest(phase_list[mid].clone(), m.wall)));
            let note = format!(
                "0 files touched; reading the tree ({files} files, {}) takes {}: {} beyond{}",
                mb(bytes),
                dur(read),
                dur(m.wall.saturating_sub(read)),
                spread(&ms)
            );
            rows.push(Row::new(alg, n, case, m, 0, nodes, None, note));
        }

        // Add one node, three times in a row (each after a read of the tree, the yardstick).
        let mut runs = Vec::new();
        let mut add_reads = Vec::new();
        for k in 1..=plan.repeats {
            add_reads.push(read_tree(&out)?.2);
            let m = measure(&mut kf("gen", &spec_for(n + k)?), &stderr)?;
            runs.push((did(&m.stdout)?, phase_times(&stderr, m.wall), m));
        }
        reads.insert((alg, n, "add 1 node"), median(add_reads));
        runs.sort_by_key(|r| r.2.wall);
        let (d, ph, m) = runs.swap_remove(runs.len() / 2);
        progress(&format!("kubeforge {alg} N={n} add 1 node"), &m);
        phases.push((format!("{alg} 1+{n} add 1 node"), ph));
        let one = largest_base(&baseline_per_node, alg).map(|(_, per_node)| Baseline {
            wall: Duration::from_secs_f64(per_node),
            cpu: None,
            files: 0,
            estimated: true,
        });
        let all: Vec<Measured> = std::iter::once(m).chain(runs.into_iter().map(|r| r.2)).collect();
        let note = format!("{} certificates issued{}", d.issued, spread(&all));
        rows.push(Row::new(alg, n, "add 1 node", &all[0], d.written, 1, one.as_ref(), note));

        // Reissue one leaf per node: are both cores busy?
        if n == 100 {
            let mut c = kf("renew", &spec_for(n + plan.repeats)?);
            c.arg("kube-proxy");
            let m = measure(&mut c, &stderr)?;
            progress(&format!("kubeforge {alg} N={n} renew kube-proxy"), &m);
            let d = did(&m.stdout)?;
            let note = format!("{} certificates reissued", d.issued);
            let workers = n + plan.repeats;
            rows.push(Row::new(alg, workers, "renew kube-proxy", &m, d.written, workers + 1, None, note));
        }
        // Done with this tree: its space back before the next (outputs of earlier sizes stay, see below).
        let _ = fs::remove_file(&stderr);
    }

    let cold = if plan.cold_build { Some(cold_build(&root, &work)?) } else { None };

    // Outputs are removed only now: on ext4, creating files just after deleting many is slower (the inode
    // allocator skips recently freed inodes), which would charge one case's cleanup to the next case.
    for e in fs::read_dir(&work).map_err(|e| format!("{}: {e}", work.display()))?.flatten() {
        if e.path().is_dir() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
    let _ = fs::remove_dir_all(&previous);

    let load_after = Machine::now().load;
    let targets = targets(&rows, &reads, &baseline_per_node, cold.as_ref());
    let mut report = render(&rows, &machine, &load_after, &tools);
    report.push_str(&render_targets(&targets));
    report.push_str(&render_phases(&phases));
    if let Some(c) = &cold {
        let _ = writeln!(
            report,
            "\nCold build: `cargo xtask gen` in a fresh clone of HEAD ({}), empty target directory, crates already \
             downloaded: {} wall, {} CPU (cargo, rustc and the run; load average {} before).",
            c.commit,
            dur(c.measured.wall),
            c.measured.cpu.map_or("?".into(), dur),
            c.load
        );
    }
    println!("{report}");
    let results = work.join("results.md");
    fs::write(&results, &report).map_err(|e| format!("{}: {e}", results.display()))?;
    eprintln!("bench: written to {}", results.display());
    Ok(())
}

/// The baseline's per-node wall time at the largest N it ran at for `alg`, with that N.
fn largest_base(base: &BTreeMap<(&str, usize), f64>, alg: &str) -> Option<(usize, f64)> {
    base.iter().filter(|((a, _), _)| *a == alg).max_by_key(|((_, n), _)| *n).map(|(k, v)| (k.1, *v))
}

/// What a kubeforge child said it did.
struct Did {
    written: usize,
    issued: usize,
}

fn did(stdout: &str) -> Result<Did, String> {
    let line =
        stdout.lines().find_map(|l| l.strip_prefix(DID)).ok_or_else(|| format!("no {DID:?} line in:\n{stdout}"))?;
    let field = |name: &str| -> Result<usize, String> {
        line.split(' ')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in {line:?}"))
    };
    Ok(Did { written: field("written")?, issued: field("issued")? })
}

/// The phases a child printed (src/timing.rs) in its stderr file, as (phase, duration); with a `total` (the wall
/// time the bench measured), also what the marks do not cover.
fn phase_times(stderr: &Path, total: Duration) -> Vec<(String, Duration)> {
    let text = fs::read_to_string(stderr).unwrap_or_default();
    let mut out = Vec::new();
    let mut last = 0.0;
    for l in text.lines() {
        let Some(rest) = l.strip_prefix(kubeforge::timing::PREFIX) else { continue };
        let mut f = rest.trim().splitn(4, ' ');
        let (Some(wall), Some(_cpu), Some(_rss), Some(what)) = (f.next(), f.next(), f.next(), f.next()) else {
            continue;
        };
        let Ok(wall) = wall.parse::<f64>() else { continue };
        if what != "start" {
            out.push((what.to_string(), Duration::from_secs_f64((wall - last).max(0.0) / 1e3)));
        }
        last = wall;
    }
    with_rest(out, total)
}

/// `phases` with what the marks do not cover: process start, printing the report, exit.
fn with_rest(mut phases: Vec<(String, Duration)>, total: Duration) -> Vec<(String, Duration)> {
    phases.retain(|(w, _)| w != "outside the phases");
    let covered: Duration = phases.iter().map(|(_, d)| *d).sum();
    if !total.is_zero() {
        phases.push(("outside the phases".into(), total.saturating_sub(covered)));
    }
    phases
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The index of the run with the median wall time.
fn median_index(ms: &[Measured]) -> usize {
    let mut order: Vec<usize> = (0..ms.len()).collect();
    order.sort_by_key(|&i| ms[i].wall);
    order[order.len() / 2]
}

/// `; median of 3: 0.41–0.52 s` for repeated runs, nothing for one.
fn spread(ms: &[Measured]) -> String {
    if ms.len() < 2 {
        return String::new();
    }
    let (lo, hi) = (ms.iter().map(|m| m.wall).min().unwrap(), ms.iter().map(|m| m.wall).max().unwrap());
    format!("; median of {}: {}–{}", ms.len(), dur(lo), dur(hi))
}

struct Cold {
    measured: Measured,
    commit: String,
    load: String,
}

/// `cargo xtask gen` in a fresh clone of HEAD with an empty target directory: what a new user waits for the first
/// time (the crates are already downloaded: `--offline`).
fn cold_build(root: &Path, work: &Path) -> Result<Cold, String> {
    let dir = work.join("cold");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("src");
    let o = Command::new("git").arg("clone").arg("--quiet").arg(root).arg(&src).output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("git clone {}: {}", root.display(), String::from_utf8_lossy(&o.stderr)));
    }
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&src)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.args(["--offline", "xtask", "gen", "--out"]).arg(dir.join("out")).current_dir(&src);
    c.env("CARGO_TARGET_DIR", dir.join("target")).env_remove("KUBEFORGE_TIMINGS");
    let load = Machine::now().load;
    let m = measure(&mut c, &dir.join("build.stderr"))?;
    progress("cold build (cargo xtask gen, fresh clone)", &m);
    let _ = fs::remove_dir_all(&dir);
    Ok(Cold { measured: m, commit, load })
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

/// One target of the performance issue, as measured.
struct Target {
    name: String,
    goal: String,
    measured: String,
    /// `met`, `missed by X`, or `not measured`.
    result: String,
    bound: String,
}

/// `met`, or by what factor `measured` misses `goal` (for a lower bound when `higher` is true).
fn verdict(measured: f64, goal: f64, higher: bool) -> String {
    let ok = if higher { measured >= goal } else { measured <= goal };
    if ok {
        return "met".into();
    }
    let by = if higher { goal / measured } else { measured / goal };
    format!("missed by {}", times(by))
}

fn targets(
    rows: &[Row],
    reads: &BTreeMap<(&str, usize, &str), Duration>,
    base: &BTreeMap<(&str, usize), f64>,
    cold: Option<&Cold>,
) -> Vec<Target> {
    let row = |alg: &str, n: usize, case: &str| rows.iter().find(|r| r.alg == alg && r.workers == n && r.case == case);
    let unmeasured = |name: String, goal: &str, bound: &str| Target {
        name,
        goal: goal.into(),
        measured: "-".into(),
        result: "not measured".into(),
        bound: bound.into(),
    };
    // (goal, measured, result) of "at most 2x a plain read of OUT taken just before the run".
    let against_read = |alg: &str, n: usize, case: &str| {
        let (r, read) = (row(alg, n, case)?, reads.get(&(alg, n, case))?);
        let ratio = r.wall.as_secs_f64() / read.as_secs_f64();
        Some((
            format!("≤ 2× a plain read of OUT ({})", dur(*read)),
            format!("{} ({ratio:.2}× the read)", dur(r.wall)),
            verdict(ratio, 2.0, false),
        ))
    };
    let mut out = Vec::new();
    for (n, bound) in [
        (
            1000,
            "reading every file once: OUT is compared byte for byte; with the verification record nothing is parsed or verified (phases below)",
        ),
        (10_000, "as at N = 1000, ten times the files"),
    ] {
        for (case, what) in [("rerun, no change", "no-change rerun"), ("plan", "plan")] {
            for alg in ALGS {
                if n == 10_000 && alg != "ECDSA-P256" {
                    continue;
                }
                let name = format!("{what}, N = {n}, {alg}");
                match against_read(alg, n, case) {
                    Some((goal, measured, result)) => {
                        out.push(Target { name, goal, measured, result, bound: bound.into() })
                    }
                    None if n == 10_000 => {}
                    None => out.push(unmeasured(name, "≤ 2× a plain read of OUT", bound)),
                }
            }
        }
    }
    for alg in ALGS {
        let name = format!("add one worker, N = 1000, {alg}");
        let bound = if alg == "RSA-2048" {
            "the rerun's work, plus 3 RSA-2048 keys (~80 ms of CPU each), 15 files and the 10 MB index written, two syncfs"
        } else {
            "the rerun's work, plus 15 files and the 10 MB index written, two syncfs"
        };
        match against_read(alg, 1000, "add 1 node") {
            Some((goal, measured, result)) => out.push(Target { name, goal, measured, result, bound: bound.into() }),
            None => out.push(unmeasured(name, "≤ 2× a plain read of OUT", bound)),
        }
    }
    for (alg, goal, bound) in [
        (
            "ECDSA-P256",
            300.0,
            "the file system (12,000 files created, written, moved into place and synced; kernel time) and P-256 \
             key generation and signing, on 2 cores",
        ),
        ("RSA-2048", 12.0, "RSA-2048 key generation: ~3,000 keys, both cores busy"),
    ] {
        let name = format!("clean run, N = 1000, {alg}, per node against the hard way at N = {BASE_N}");
        match (row(alg, 1000, "clean"), base.get(&(alg, BASE_N))) {
            (Some(r), Some(b)) => {
                let per_node = r.wall.as_secs_f64() / 1001.0;
                let ratio = b / per_node;
                out.push(Target {
                    name,
                    goal: format!("≥ {goal:.0}×"),
                    measured: format!(
                        "{} ({} per node against {} per node)",
                        times(ratio),
                        dur(Duration::from_secs_f64(per_node)),
                        dur(Duration::from_secs_f64(*b))
                    ),
                    result: verdict(ratio, goal, true),
                    bound: bound.into(),
                });
            }
            _ => out.push(unmeasured(name, &format!("≥ {goal:.0}×"), bound)),
        }
    }
    if let Some(big) = row("ECDSA-P256", 10_000, "clean") {
        let name = "clean run, N = 10,000, ECDSA-P256, against N = 1000".to_string();
        let bound = "linear work (10× the files and keys)";
        match row("ECDSA-P256", 1000, "clean") {
            Some(small) => {
                let ratio = big.wall.as_secs_f64() / small.wall.as_secs_f64();
                out.push(Target {
                    name,
                    goal: "≤ 12× the N = 1000 clean run".into(),
                    measured: format!("{} ({ratio:.1}× {})", dur(big.wall), dur(small.wall)),
                    result: verdict(ratio, 12.0, false),
                    bound: bound.into(),
                });
            }
            None => out.push(unmeasured(name, "≤ 12× the N = 1000 clean run", bound)),
        }
        let peak =
            rows.iter().filter(|r| r.alg == "ECDSA-P256" && r.workers >= 10_000).filter_map(|r| r.max_rss_kb).max();
        let name = "peak memory, N = 10,000, ECDSA-P256 (any case)".to_string();
        let bound = "the whole tree's metadata, the certificates and keys, and the index text, held until written";
        match peak {
            Some(kb) => out.push(Target {
                name,
                goal: "≤ 400 MB".into(),
                measured: mb(kb * 1024),
                result: verdict(kb as f64 / 1024.0, 400.0, false),
                bound: bound.into(),
            }),
            None => out.push(unmeasured(name, "≤ 400 MB", bound)),
        }
    }
    let name = "cold `cargo xtask gen` on a fresh clone".to_string();
    let bound = "compiling the dependency tree on 2 cores (age brings a second RustCrypto generation)";
    match cold {
        Some(c) => out.push(Target {
            name,
            goal: "< 90 s".into(),
            measured: format!("{} ({} CPU)", dur(c.measured.wall), c.measured.cpu.map_or("?".into(), dur)),
            result: verdict(c.measured.wall.as_secs_f64(), 90.0, false),
            bound: bound.into(),
        }),
        None => out.push(unmeasured(name, "< 90 s", bound)),
    }
    out
}

fn render_targets(targets: &[Target]) -> String {
    let mut s =
        String::from("\n## Targets\n\n| target | goal | measured | result | what bounds it |\n|---|---|---|---|---|\n");
    for t in targets {
        let _ = writeln!(s, "| {} | {} | {} | {} | {} |", t.name, t.goal, t.measured, t.result, t.bound);
    }
    s
}

/// Where the time goes at N = 1000 and above: each case's phases (src/timing.rs), largest first.
fn render_phases(phases: &[(String, Vec<(String, Duration)>)]) -> String {
    let mut s = String::from(
        "\n## Where the time goes (N ≥ 1000; the median run of each case; phases of src/timing.rs)\n\n| case | phases |\n|---|---|\n",
    );
    for (case, list) in phases.iter().filter(|(c, _)| c.contains("1+1000 ") || c.contains("1+10000 ")) {
        let total: Duration = list.iter().map(|(_, d)| *d).sum();
        let mut sorted = list.clone();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.1));
        let shown: Vec<String> = sorted
            .iter()
            .filter(|(_, d)| d.as_secs_f64() >= total.as_secs_f64() * 0.03)
            .map(|(w, d)| format!("{w} {}", dur(*d)))
            .collect();
        let _ = writeln!(s, "| {case} ({}) | {} |", dur(total), shown.join(", "));
    }
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
    fn reads_what_a_child_did() {
        let out = format!("kubeforge: cluster ...\n{DID}written=15 removed=0 issued=3\n{PEAK}1234\n");
        let d = did(&out).unwrap();
        assert_eq!((d.written, d.issued), (15, 3));
        assert!(did("kubeforge: cluster").is_err());
    }

    #[test]
    fn targets_say_met_or_by_how_much_they_are_missed() {
        let t = |measured: f64, goal: f64, higher: bool| Target {
            name: "x".into(),
            goal: String::new(),
            measured: String::new(),
            result: verdict(measured, goal, higher),
            bound: String::new(),
        };
        assert_eq!(t(1.5, 2.0, false).result, "met");
        assert_eq!(t(3.0, 2.0, false).result, "missed by 1.5×");
        assert_eq!(t(350.0, 300.0, true).result, "met");
        assert_eq!(t(250.0, 300.0, true).result, "missed by 1.2×");
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
