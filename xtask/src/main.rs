//! Project automation (the cargo-xtask pattern): `cargo xtask gen|plan|renew|check|csr|import-*|test|bench`.

mod bench;
mod tools;

use std::io::Write;
use std::process::{Command, ExitCode};

const TEST_USAGE: &str = "\
cargo xtask test [CARGO-TEST-ARGS...]
    Install or find the real tools the tests use (etcd, etcdctl, kubectl, openssl, kubernetes-validate,
    ansible-playbook; cached under target/tools), then run `cargo test --workspace --locked` with them; extra arguments go to cargo test
    (e.g. `cargo xtask test --test snapshots`, `cargo xtask test -- --nocapture`).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("gen") => kubeforge::cli::run_gen(rest).map(|s| (s, ExitCode::SUCCESS)),
        // Exit status 2 when gen would change something, so CI can gate on it.
        Some("plan") => kubeforge::cli::run_plan(rest).map(|(s, todo)| (s, ExitCode::from(if todo { 2 } else { 0 }))),
        Some("renew") => kubeforge::cli::run_renew(rest).map(|s| (s, ExitCode::SUCCESS)),
        Some("csr") => kubeforge::cli::run_csr(rest).map(|s| (s, ExitCode::SUCCESS)),
        Some("import-signed") => kubeforge::cli::run_import_signed(rest).map(|s| (s, ExitCode::SUCCESS)),
        Some("import-kubeadm") => kubeforge::cli::run_import_kubeadm(rest).map(|s| (s, ExitCode::SUCCESS)),
        Some("check") => kubeforge::cli::run_check(rest).map(|(s, soon)| (s, ExitCode::from(if soon { 1 } else { 0 }))),
        Some("test") => return exit(test_cmd(rest)),
        Some("bench") => return exit(bench::run(rest)),
        Some("help" | "-h" | "--help") | None => {
            println!("usage:\n{}\n{TEST_USAGE}", kubeforge::cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Some(other) => return exit(Err(format!("unknown command {other:?}; try `cargo xtask help`"))),
    };
    match result {
        Ok((text, code)) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout(), "{text}");
            code
        }
        Err(e) => exit(Err(e.to_string())),
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
