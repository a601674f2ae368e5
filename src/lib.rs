//! kubeforge: a declarative Kubernetes cluster spec in, everything its control plane needs to speak TLS out.
//!
//! The pipeline (see ARCHITECTURE.md): [`spec`] (parse and validate) → [`pki::plan`] (which certificates) →
//! [`pki`] (keys and certificates) → [`generate`] (every file with its metadata, then the inventory, sealing,
//! .gitignore and index passes) → [`output`] (what changes, written in one transaction). [`ops`] are the commands
//! as functions with typed reports; [`cli`] is the command line over them.

pub mod cli;
pub mod custom;
pub mod fault;
pub mod generate;
pub mod import;
pub mod index;
pub mod input;
pub mod layout;
pub mod net;
pub mod ops;
pub mod output;
pub mod par;
pub mod pki;
pub mod render;
pub mod sealed;
pub mod security;
pub mod spec;
pub mod times;
pub mod timing;
pub mod txn;
pub mod versions;

pub use generate::{Generated, generate};
pub use times::parse_instant;

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
