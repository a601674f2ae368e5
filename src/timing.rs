//! Phase timings for the benchmark: with `KUBEFORGE_TIMINGS` set, each phase of a run prints to stderr how far into
//! the run it ended, in wall-clock and process CPU time (all threads), and the memory resident then, so that
//! `cargo xtask bench` can say what bounds each figure. Unset (always, outside the bench), a mark is one check of a cached flag.

use std::sync::OnceLock;
use std::time::Instant;

/// The prefix of each line, for the bench to find them.
pub const PREFIX: &str = "kubeforge-timing";

fn start() -> Option<&'static Instant> {
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    START.get_or_init(|| std::env::var_os("KUBEFORGE_TIMINGS").map(|_| Instant::now())).as_ref()
}

/// The process's CPU time so far (user + system, every thread), in milliseconds.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec, which `ts` is, and reads nothing else.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// The process's resident memory now, in MB (`VmRSS`).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok());
    kb.unwrap_or(0.0) / 1024.0
}

/// Ends the phase `what`: `kubeforge-timing WALL_MS CPU_MS RSS_MB what`.
pub fn mark(what: &str) {
    if let Some(s) = start() {
        eprintln!("{PREFIX} {:.1} {:.1} {:.0} {what}", s.elapsed().as_secs_f64() * 1e3, cpu_ms(), rss_mb());
    }
}
