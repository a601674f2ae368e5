//! Fault injection for the tests: every step of a transaction that writes (`crate::txn`) passes a fault point
//! first. Compiled in only with the `fault-injection` feature, which `cargo test` turns on and `cargo xtask gen`
//! never does; without it a point is an inline no-op.
//!
//! `KUBEFORGE_FAULT` chooses the fault:
//! - `kill@N`: at its Nth point the process kills itself with SIGKILL, as `kill -9` would;
//! - `enospc@N`: the Nth point and every later one fail as a full disk does (ENOSPC);
//! - `count`: nothing fails; at exit every point reached is printed to stderr, one line each
//!   (`kubeforge-fault-point N NAME`), so that a test knows which ones there are to try.

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static REACHED: AtomicUsize = AtomicUsize::new(0);
    static NAMES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    #[derive(Clone, Copy)]
    enum Fault {
        Kill(usize),
        Enospc(usize),
        Count,
    }

    fn fault() -> Option<Fault> {
        static FAULT: OnceLock<Option<Fault>> = OnceLock::new();
        *FAULT.get_or_init(|| {
            let v = std::env::var("KUBEFORGE_FAULT").ok()?;
            if v == "count" {
                return Some(Fault::Count);
            }
            let (kind, n) = v.split_once('@')?;
            let n = n.parse().ok()?;
            match kind {
                "kill" => Some(Fault::Kill(n)),
                "enospc" => Some(Fault::Enospc(n)),
                _ => None,
            }
        })
    }

    pub fn point(what: &str) -> std::io::Result<()> {
        let n = REACHED.fetch_add(1, Ordering::SeqCst) + 1;
        match fault() {
            Some(Fault::Kill(k)) if n == k => {
                eprintln!("kubeforge-fault: kill -9 at point {n} ({what})");
                // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, so nothing runs after it.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                unreachable!("SIGKILL was delivered");
            }
            Some(Fault::Enospc(k)) if n >= k => Err(std::io::Error::from_raw_os_error(libc::ENOSPC)),
            Some(Fault::Count) => {
                NAMES.lock().unwrap_or_else(|p| p.into_inner()).push(what.to_string());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn report() {
        if matches!(fault(), Some(Fault::Count)) {
            for (i, name) in NAMES.lock().unwrap_or_else(|p| p.into_inner()).iter().enumerate() {
                eprintln!("kubeforge-fault-point {} {name}", i + 1);
            }
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
mod imp {
    #[inline(always)]
    pub fn point(_what: &str) -> std::io::Result<()> {
        Ok(())
    }

    #[inline(always)]
    pub fn report() {}
}

/// A step that may fail or kill the process under test (`what` names it in the kill message).
pub use imp::point;
/// For `KUBEFORGE_FAULT=count`: prints how many points the process passed.
pub use imp::report;
