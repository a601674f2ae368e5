//! The command line: argument parsing (clap, so help and usage come from the same definitions that parse),
//! printing a report as text or JSON, and the exit code. Everything a command does is in `crate::ops`.
//!
//! Exit codes: 0 success (for `plan`: nothing to do); 1 an error (for `check`: something expires within the
//! window); 2 a usage error, and for `plan` (and `gen --dry-run`): there are changes.
//!
//! The commands that issue certificates show a progress bar on stderr while they do, only when stderr is a
//! terminal and `--quiet` is not given; it is cleared before the report is printed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::Error;
use crate::ops::{self, Context, GenOptions, Options, Progress};

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
        #[command(flatten)]
        quiet: Quiet,
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
        #[command(flatten)]
        quiet: Quiet,
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
        #[command(flatten)]
        quiet: Quiet,
    },
    /// Every certificate's expiry (CAs, kubeconfig client and kubelet certificates included).
    ///
    /// Reads only public files (certificates and index.json). Exit status 1 when any expires within the window
    /// (with --output too: the file is written all the same).
    Check {
        #[arg(long, default_value = "out", value_name = "DIR")]
        out: PathBuf,
        /// The window: 30d, 720h, 90m, 0.
        #[arg(long, default_value = "30d", value_parser = parse_window, value_name = "DURATION")]
        within: i64,
        #[arg(long, value_parser = parse_now, value_name = "YYYY-MM-DDTHH:MM:SSZ")]
        now: Option<time::OffsetDateTime>,
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Write the report to FILE (mode 0644, replaced atomically: a reader never sees half of it) instead of
        /// stdout, e.g. node_exporter's textfile directory with --format prometheus.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
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
        #[command(flatten)]
        quiet: Quiet,
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
        #[command(flatten)]
        quiet: Quiet,
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
    /// What the operations need of these options.
    pub fn options(&self) -> Options {
        Options {
            spec: self.spec.clone(),
            out: self.out.clone(),
            seed: self.seed,
            now: self.now,
            identity: self.identity.clone(),
        }
    }
}

/// The option of the commands that issue certificates (in memory for `plan`).
#[derive(Debug, Args)]
pub struct Quiet {
    /// No progress bar. There is one only when stderr is a terminal, while certificates are issued.
    #[arg(long, short)]
    pub quiet: bool,
}

/// How a report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// How `check` prints its report: also for Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    /// Prometheus's text format, for node_exporter's textfile collector: a gauge with each certificate's notAfter.
    Prometheus,
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

/// The progress bar of a run that issues certificates: drawn on stderr from the moment the number to issue is
/// known (when there is at least one), with the count and an estimate of the time left.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn start(&self, total: usize) {
        if total == 0 {
            return;
        }
        let style = indicatif::ProgressStyle::with_template("issuing certificates [{bar:25}] {pos}/{len} ({eta} left)")
            .expect("a valid template")
            .progress_chars("=> ");
        self.0.set_style(style);
        self.0.set_length(total as u64);
        self.0.reset();
        self.0.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        // Drawn at once, not at the first certificate: an RSA-4096 key can take seconds.
        self.0.tick();
    }

    fn advance(&self) {
        self.0.inc(1);
    }
}

/// Loads the spec and runs `op` with a progress bar on stderr when `bar` (a terminal, no `--quiet`); the bar is
/// cleared when `op` returns, whatever it returns, so that nothing of it is left above the report or the error.
fn issuing<R>(common: &Common, bar: bool, op: impl FnOnce(&Context) -> Result<R, Error>) -> Result<R, Error> {
    let mut ctx = common.options().load()?;
    let bar = bar.then(|| Arc::new(Bar(indicatif::ProgressBar::hidden())));
    ctx.progress = bar.clone().map(|b| b as Arc<dyn Progress>);
    let r = op(&ctx);
    if let Some(b) = bar {
        b.0.finish_and_clear();
    }
    r
}

/// Runs a parsed command, with a progress bar while certificates are issued when stderr is a terminal.
pub fn run(command: Command) -> Result<Outcome, Error> {
    run_with(command, std::io::stderr().is_terminal())
}

/// [`run`], saying whether stderr may show a progress bar (`--quiet` still turns it off). The tests' in-process
/// runs say no: their stderr is the test runner's.
pub fn run_with(command: Command, terminal: bool) -> Result<Outcome, Error> {
    let ok = |text: String| Outcome { text, code: 0 };
    let bar = |q: &Quiet| terminal && !q.quiet;
    Ok(match command {
        Command::Gen { common, dry_run, materialize, format, quiet } => {
            let r = issuing(&common, bar(&quiet), |c| c.apply(&GenOptions { dry_run, materialize }))?;
            let code = if dry_run && r.has_changes() { 2 } else { 0 };
            Outcome { text: print(&r, format), code }
        }
        Command::Plan { common, format, quiet } => {
            let r = issuing(&common, bar(&quiet), |c| c.plan())?;
            Outcome { text: print(&r, format), code: if r.has_changes() { 2 } else { 0 } }
        }
        Command::Renew { names, keep_keys, common, format, quiet } => {
            ok(print(&issuing(&common, bar(&quiet), |c| c.renew(&names, keep_keys))?, format))
        }
        Command::Check { out, within, now, format, output } => {
            let r = ops::check(&out, now.unwrap_or_else(time::OffsetDateTime::now_utc), within)?;
            let code = if r.expiring > 0 { 1 } else { 0 };
            let text = match format {
                CheckFormat::Text => print(&r, Format::Text),
                CheckFormat::Json => print(&r, Format::Json),
                CheckFormat::Prometheus => r.prometheus().trim_end().to_string(),
            };
            match output {
                None => Outcome { text, code },
                Some(path) => {
                    crate::txn::replace_file(&path, format!("{text}\n").as_bytes(), 0o644)?;
                    Outcome { text: String::new(), code }
                }
            }
        }
        Command::Csr { common, format } => ok(print(&common.options().load()?.csr()?, format)),
        Command::ImportSigned { dir, common, format, quiet } => {
            ok(print(&issuing(&common, bar(&quiet), |c| c.import_signed(&dir))?, format))
        }
        Command::ImportKubeadm { dir, node, common, format, quiet } => {
            ok(print(&issuing(&common, bar(&quiet), |c| c.import_kubeadm(&dir, &node))?, format))
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
            // A closed pipe (`| head`) is not an error worth a panic. Nothing at all when the report went to a file.
            if !o.text.is_empty() {
                let _ = writeln!(std::io::stdout(), "{}", o.text);
            }
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
