//! The command line: argument parsing (clap, so help and usage come from the same definitions that parse),
//! printing a report as text or JSON, and the exit code. Everything a command does is in `crate::ops`.
//!
//! Exit codes: 0 success (for `plan`: nothing to do); 1 an error (for `check`: something expires within the
//! window); 2 a usage error, and for `plan` (and `gen --dry-run`): there are changes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::Error;
use crate::ops::{self, GenOptions, Options};

/// kubeforge: a Kubernetes cluster spec in, its control plane's PKI, kubeconfigs and static pod manifests out.
#[derive(Debug, Parser)]
#[command(name = "kubeforge", version, disable_help_subcommand = false, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate the PKI, kubeconfigs and static pod manifests of a cluster spec into OUT.
    ///
    /// On an existing OUT it keeps every CA, key and certificate that still matches the spec and reissues the
    /// rest, with reasons. Nothing is written unless everything could be made.
    Gen {
        #[command(flatten)]
        common: Common,
        /// Only print what would change (the same as `plan`); writes nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also write plain copies of the sealed secrets of NODE (`all`: every node and the store).
        #[arg(long, value_name = "NODE|all")]
        materialize: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// What gen would do, per certificate (keep, issue, reissue, remove, with the reason) and per file.
    ///
    /// Writes nothing and needs no private key: on the committed (public) half of OUT, or a sealed store without
    /// its identity, it compares the certificates and says it is public-only. Exit status 0: nothing to do;
    /// 2: gen would change something.
    Plan {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Reissue leaf certificates (never CAs); every kubeconfig that embeds one is rewritten.
    Renew {
        /// Profile names (apiserver), store ids (nodes/cp-1/apiserver), or `all`.
        #[arg(required = true, value_name = "all|NAME")]
        names: Vec<String>,
        /// Keep each renewed certificate's key instead of generating a new one.
        #[arg(long)]
        keep_keys: bool,
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Every certificate's expiry (CAs, kubeconfig client and kubelet certificates included).
    ///
    /// Reads only public files (certificates and index.json). Exit status 1 when any expires within the window.
    Check {
        #[arg(long, default_value = "out", value_name = "DIR")]
        out: PathBuf,
        /// The window: 30d, 720h, 90m, 0.
        #[arg(long, default_value = "30d", value_parser = parse_window, value_name = "DURATION")]
        within: i64,
        #[arg(long, value_parser = parse_now, value_name = "YYYY-MM-DDTHH:MM:SSZ")]
        now: Option<time::OffsetDateTime>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// For CAs given in pki.cas without their key (external CA mode): a key and a CSR for every certificate such a
    /// CA must sign, and OUT/csr/SIGNING.md with what the signer must put in.
    Csr {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Take certificates an external CA signed back (DIR/<id>.crt, ids as in SIGNING.md), check each (key, chain,
    /// subject, SANs, usages), then generate as gen does; all or nothing.
    ImportSigned {
        #[arg(value_name = "SIGNED-DIR")]
        dir: PathBuf,
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Adopt an existing kubeadm node's /etc/kubernetes (CAs, keys, certificates, kubeconfigs' client
    /// certificates) as node NAME, so that later plans and renewals go through kubeforge; then generate.
    ImportKubeadm {
        #[arg(value_name = "KUBERNETES-DIR")]
        dir: PathBuf,
        /// Which node of the spec the directory belongs to.
        #[arg(long, value_name = "NAME")]
        node: String,
        #[command(flatten)]
        common: Common,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Every image the cluster's nodes pull (kubeadm's `config images list`), one per line: what an air-gapped
    /// site mirrors into its registry. Reads only the spec.
    Images {
        /// The cluster spec (default: the embedded demo spec, fixtures/demo.yaml).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The options of every command that reads a spec.
#[derive(Debug, Args)]
pub struct Common {
    /// The cluster spec (default: the embedded demo spec, fixtures/demo.yaml).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// The output directory.
    #[arg(long, default_value = "out", value_name = "DIR")]
    pub out: PathBuf,
    /// A fixed key source: reproducible output for tests and demos, never for a real cluster (the keys are then
    /// predictable).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// A fixed clock, for tests and demos.
    #[arg(long, value_parser = parse_now, value_name = "YYYY-MM-DDTHH:MM:SSZ")]
    pub now: Option<time::OffsetDateTime>,
    /// The age identity that opens a sealed store (default: $KUBEFORGE_AGE_IDENTITY).
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

impl Common {
    fn options(&self) -> Options {
        Options {
            spec: self.spec.clone(),
            out: self.out.clone(),
            seed: self.seed,
            now: self.now,
            identity: self.identity.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

fn parse_now(s: &str) -> Result<time::OffsetDateTime, String> {
    crate::times::parse_instant(s).ok_or_else(|| format!("{s:?}: expected YYYY-MM-DDTHH:MM:SSZ"))
}

fn parse_window(s: &str) -> Result<i64, String> {
    crate::times::parse_window(s).ok_or_else(|| format!("{s:?}: expected a duration such as 30d, 720h or 90m"))
}

/// What a command printed and how it exits.
pub struct Outcome {
    pub text: String,
    pub code: u8,
}

fn print<R: serde::Serialize + std::fmt::Display>(r: &R, format: Format) -> String {
    match format {
        Format::Text => r.to_string(),
        Format::Json => serde_json::to_string_pretty(r).expect("reports serialize"),
    }
}

/// Runs a parsed command.
pub fn run(command: Command) -> Result<Outcome, Error> {
    let ok = |text: String| Outcome { text, code: 0 };
    Ok(match command {
        Command::Gen { common, dry_run, materialize, format } => {
            let r = common.options().load()?.apply(&GenOptions { dry_run, materialize })?;
            let code = if dry_run && r.has_changes() { 2 } else { 0 };
            Outcome { text: print(&r, format), code }
        }
        Command::Plan { common, format } => {
            let r = common.options().load()?.plan()?;
            Outcome { text: print(&r, format), code: if r.has_changes() { 2 } else { 0 } }
        }
        Command::Renew { names, keep_keys, common, format } => {
            ok(print(&common.options().load()?.renew(&names, keep_keys)?, format))
        }
        Command::Check { out, within, now, format } => {
            let r = ops::check(&out, now.unwrap_or_else(time::OffsetDateTime::now_utc), within)?;
            Outcome { text: print(&r, format), code: if r.expiring > 0 { 1 } else { 0 } }
        }
        Command::Csr { common, format } => ok(print(&common.options().load()?.csr()?, format)),
        Command::ImportSigned { dir, common, format } => {
            ok(print(&common.options().load()?.import_signed(&dir)?, format))
        }
        Command::ImportKubeadm { dir, node, common, format } => {
            ok(print(&common.options().load()?.import_kubeadm(&dir, &node)?, format))
        }
        Command::Images { spec, format } => ok(print(&ops::images(&ops::load_spec(spec.as_deref())?)?, format)),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kubeforge", &mut buf);
            ok(String::from_utf8_lossy(&buf).trim_end().to_string())
        }
    })
}

/// Prints an outcome or an error and gives the exit code.
pub fn finish(result: Result<Outcome, Error>) -> ExitCode {
    match result {
        Ok(o) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{}", o.text);
            ExitCode::from(o.code)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole command line of the `kubeforge` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    finish(run(cli.command))
}

/// Parses `args` (without the program name) as `name` would, for front ends that embed the commands (xtask).
pub fn parse_from(name: &'static str, args: &[String]) -> Result<Command, clap::Error> {
    let matches = Cli::command()
        .name(name)
        .bin_name(name)
        .try_get_matches_from(std::iter::once(name.to_string()).chain(args.iter().cloned()))?;
    Cli::from_arg_matches(&matches).map(|c| c.command)
}
