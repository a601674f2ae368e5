//! Project automation (the cargo-xtask pattern): kubeforge's own commands (`cargo xtask gen|plan|renew|check|csr|
//! import-*`, the same as the `kubeforge` binary), plus `test` and `bench`.

mod bench;
mod tools;

use std::process::{Command, ExitCode};

use clap::{Arg, CommandFactory};

const TEST_ABOUT: &str = "Install or find the real tools the tests use, then run `cargo test --workspace --locked`";
const TEST_LONG: &str = "\
Install or find the real tools the tests use (etcd, etcdctl, kubectl, openssl, kubernetes-validate,
ansible-playbook, ansible-lint, terraform, actionlint, shellcheck, pkilint and a Python with prometheus-client and
PyJWT; pinned, cached under target/tools, see xtask/src/tools.rs), then run `cargo test --workspace --locked`
with them. Extra arguments go to cargo test (e.g. `cargo xtask test --test snapshots`,
`cargo xtask test -- --nocapture`).";
const BENCH_ABOUT: &str = "Time kubeforge against the hard way (openssl + kubectl config); see benches/README.md";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    match args.first().map(String::as_str) {
        // Their arguments belong to cargo test and the bench: not parsed here.
        Some("test") => return exit(test_cmd(rest)),
        Some("bench") => return exit(bench::run(rest)),
        _ => {}
    }
    let passthrough = |name: &'static str, about: &'static str, long: &'static str| {
        clap::Command::new(name)
            .about(about)
            .long_about(long)
            .arg(Arg::new("args").num_args(0..).trailing_var_arg(true).allow_hyphen_values(true).value_name("ARGS"))
    };
    let cmd = kubeforge::cli::Cli::command()
        .name("cargo xtask")
        .bin_name("cargo xtask")
        .subcommand(passthrough("test", TEST_ABOUT, TEST_LONG))
        .subcommand(passthrough("bench", BENCH_ABOUT, bench::USAGE));
    let matches = match cmd.try_get_matches_from(std::iter::once("cargo xtask".to_string()).chain(args.iter().cloned()))
    {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    match <kubeforge::cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => kubeforge::cli::finish(kubeforge::cli::run(cli.command)),
        Err(e) => e.exit(),
    }
}

fn exit(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn test_cmd(args: &[String]) -> Result<(), String> {
    let meta = cargo_metadata::MetadataCommand::new().no_deps().exec().map_err(|e| format!("cargo metadata: {e}"))?;
    let root = meta.workspace_root.as_std_path();
    let target = meta.target_directory.as_std_path();
    let tools = tools::ensure(target)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["test", "--workspace", "--locked"]);
    cmd.args(args);
    for (k, v) in tools.env() {
        cmd.env(k, v);
    }
    println!(
        "xtask test: running cargo test --workspace with etcd {}, kubectl {}",
        tools.etcd_version, tools.kubectl_version
    );
    let status = cmd.status().map_err(|e| format!("cannot run cargo test: {e}"))?;
    if !status.success() {
        return Err(format!("cargo test failed ({status})"));
    }
    Ok(())
}
