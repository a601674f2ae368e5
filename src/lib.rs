//! kubeforge: a declarative Kubernetes cluster spec in, everything its control plane needs to speak TLS out.
//!
//! The pipeline (see ARCHITECTURE.md): [`spec`] (parse and validate) → [`pki::plan`] (which certificates) →
//! [`pki`] (keys and certificates) → [`render`] (kubeconfigs, static pods, RBAC, inventory) → [`output`] (atomic
//! writes with modes).

pub mod cli;
pub mod generate;
pub mod import;
pub mod index;
pub mod net;
pub mod output;
pub mod pki;
pub mod render;
pub mod sealed;
pub mod security;
pub mod spec;

pub use generate::{Generated, generate};

use std::fmt;

/// kube-apiserver's default secure port (kubeadm's `bindPort`).
pub const API_SERVER_PORT: u16 = 6443;

/// An error for the user: what went wrong, where, and what to do.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Self {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<spec::SpecError> for Error {
    fn from(e: spec::SpecError) -> Self {
        Error(e.to_string())
    }
}

/// The demo spec that `cargo xtask gen` uses when no `--spec` is given.
pub const DEMO_SPEC: &str = include_str!("../fixtures/demo.yaml");

/// Parses a UTC instant written as `YYYY-MM-DDTHH:MM:SSZ` (for `--now` and tests).
pub fn parse_instant(s: &str) -> Option<time::OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let month = time::Month::try_from(n(5..7)? as u8).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(8..10)? as u8).ok()?;
    let t = time::Time::from_hms(n(11..13)? as u8, n(14..16)? as u8, n(17..19)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc())
}
