//! Project automation (the cargo-xtask pattern): `cargo xtask gen` and `cargo xtask test`.

mod tools;

use std::process::{Command, ExitCode};

const TEST_USAGE: &str = "\
cargo xtask test [CARGO-TEST-ARGS...]
    Install or find the real tools the tests use (etcd, etcdctl, kubectl, openssl, kubernetes-validate; cached
    under target/tools), then run `cargo test --workspace --locked` with them; extra arguments go to cargo test
    (e.g. `cargo xtask test --test snapshots`, `cargo xtask test -- --nocapture`).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => gen_cmd(&args[1..]),
        Some("test") => test_cmd(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("usage:\n{}\n{TEST_USAGE}", kubeforge::cli::GEN_USAGE);
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn gen_cmd(args: &[String]) -> Result<(), String> {
    let summary = kubeforge::cli::run_gen(args).map_err(|e| e.to_string())?;
    println!("{summary}");
    Ok(())
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
