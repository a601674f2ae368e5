//! Project automation (the cargo-xtask pattern): `cargo xtask gen` and `cargo xtask test`.

mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use kubeforge::pki::Origin;
use kubeforge::pki::keys::KeySource;

const USAGE: &str = "\
usage:
  cargo xtask gen [--spec FILE] [--out DIR] [--seed N] [--now YYYY-MM-DDTHH:MM:SSZ]
      Generate the PKI, kubeconfigs and static pod manifests for a cluster spec (default: the embedded demo
      spec) into DIR (default: ./out). --seed and --now make the output reproducible: for tests and demos only,
      never for a real cluster (the keys are then predictable).
  cargo xtask test [-- CARGO-TEST-ARGS]
      Install or find the real tools the tests use (etcd, etcdctl, kubectl, openssl, kubernetes-validate; cached
      under target/tools), then run the whole test suite with them.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen") => gen_cmd(&args[1..]),
        Some("test") => test_cmd(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flag_value<'a>(args: &'a [String], i: &mut usize) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i).map(String::as_str).ok_or_else(|| format!("{} needs a value\n{USAGE}", args[*i - 1]))
}

fn gen_cmd(args: &[String]) -> Result<(), String> {
    let (mut spec, mut out, mut seed, mut now) = (None, PathBuf::from("out"), None, None);
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--spec" => spec = Some(PathBuf::from(flag_value(args, &mut i)?)),
            "--out" => out = PathBuf::from(flag_value(args, &mut i)?),
            "--seed" => {
                let v = flag_value(args, &mut i)?;
                seed = Some(v.parse::<u64>().map_err(|_| format!("--seed {v:?}: expected a whole number"))?);
            }
            "--now" => {
                let v = flag_value(args, &mut i)?;
                now = Some(
                    kubeforge::parse_instant(v).ok_or_else(|| format!("--now {v:?}: expected YYYY-MM-DDTHH:MM:SSZ"))?,
                );
            }
            other => return Err(format!("gen: unknown argument {other:?}\n{USAGE}")),
        }
        i += 1;
    }
    let cluster = match &spec {
        Some(path) => kubeforge::spec::load(path),
        None => kubeforge::spec::parse(Path::new("<embedded demo spec: fixtures/demo.yaml>"), kubeforge::DEMO_SPEC),
    }
    .map_err(|e| e.to_string())?;
    let keys = match seed {
        Some(s) => KeySource::seeded(s),
        None => KeySource::from_os()?,
    };
    let now = now.unwrap_or_else(time_now);
    let generated = kubeforge::generate(&cluster, &out.join("pki"), &keys, now).map_err(|e| e.to_string())?;
    let report = kubeforge::output::write(&generated.tree, &out).map_err(|e| e.to_string())?;

    let cps = cluster.nodes.iter().filter(|n| n.is_control_plane()).count();
    println!(
        "kubeforge: cluster {:?} ({}), {} nodes ({cps} control plane, {} workers), {}",
        cluster.name,
        cluster.version,
        cluster.nodes.len(),
        cluster.nodes.len() - cps,
        cluster.key_algorithm.name()
    );
    let certs = &generated.pki.certs;
    let cas: Vec<String> = certs
        .values()
        .filter(|m| m.request.profile.usage.is_ca())
        .map(|m| format!("{} ({})", m.request.id, if m.origin == Origin::Kept { "kept" } else { "created" }))
        .collect();
    println!("  CAs: {}", cas.join(", "));
    let mut per_profile: Vec<(&str, usize)> = Vec::new();
    for m in certs.values().filter(|m| !m.request.profile.usage.is_ca()) {
        match per_profile.iter_mut().find(|(n, _)| *n == m.request.profile.name) {
            Some((_, c)) => *c += 1,
            None => per_profile.push((m.request.profile.name, 1)),
        }
    }
    per_profile.sort();
    let leaves: usize = per_profile.iter().map(|(_, c)| c).sum();
    let list: Vec<String> = per_profile.iter().map(|(n, c)| format!("{n} x{c}")).collect();
    println!("  issued {leaves} certificates: {}", list.join(", "));
    println!("  service-account key: {}", if generated.pki.sa.origin == Origin::Kept { "kept" } else { "created" });
    if report.written.is_empty() {
        println!("  {}: nothing changed ({} files already up to date)", out.display(), report.unchanged);
    } else {
        println!("  wrote {} files to {} ({} unchanged)", report.written.len(), out.display(), report.unchanged);
    }
    println!(
        "  next: copy {0}/nodes/<node>/ onto each node's /, then apply {0}/bootstrap/ once with super-admin.conf",
        out.display()
    );
    Ok(())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn test_cmd(args: &[String]) -> Result<(), String> {
    let meta = cargo_metadata::MetadataCommand::new().no_deps().exec().map_err(|e| format!("cargo metadata: {e}"))?;
    let root = meta.workspace_root.as_std_path();
    let target = meta.target_directory.as_std_path();
    let tools = tools::ensure(target)?;
    let extra: Vec<&String> = match args.first().map(String::as_str) {
        Some("--") => args[1..].iter().collect(),
        Some(other) => return Err(format!("test: unknown argument {other:?}\n{USAGE}")),
        None => Vec::new(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["test", "--workspace", "--locked"]);
    if !extra.is_empty() {
        cmd.arg("--").args(extra);
    }
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
