//! `cargo xtask gen`, as a library function so that tests drive exactly what users run.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::pki::Origin;
use crate::pki::keys::KeySource;

pub const GEN_USAGE: &str = "\
cargo xtask gen [--spec FILE] [--out DIR] [--seed N] [--now YYYY-MM-DDTHH:MM:SSZ]
    Generate the PKI, kubeconfigs and static pod manifests for a cluster spec (default: the embedded demo spec,
    fixtures/demo.yaml) into DIR (default: ./out). Existing CAs and the service-account key in DIR/pki are kept.
    --seed and --now make the output reproducible, for tests and demos only: never for a real cluster (the keys
    are then predictable).";

/// Runs `gen` with its command-line arguments and returns the summary to print.
pub fn run_gen(args: &[String]) -> Result<String, Error> {
    let (mut spec, mut out, mut seed, mut now) = (None, PathBuf::from("out"), None, None);
    let mut i = 0;
    let value = |i: &mut usize| -> Result<&String, Error> {
        *i += 1;
        args.get(*i).ok_or_else(|| Error::new(format!("{} needs a value\nusage: {GEN_USAGE}", args[*i - 1])))
    };
    while i < args.len() {
        match args[i].as_str() {
            "--spec" => spec = Some(PathBuf::from(value(&mut i)?)),
            "--out" => out = PathBuf::from(value(&mut i)?),
            "--seed" => {
                let v = value(&mut i)?;
                seed =
                    Some(v.parse::<u64>().map_err(|_| Error::new(format!("--seed {v:?}: expected a whole number")))?);
            }
            "--now" => {
                let v = value(&mut i)?;
                now = Some(
                    crate::parse_instant(v)
                        .ok_or_else(|| Error::new(format!("--now {v:?}: expected YYYY-MM-DDTHH:MM:SSZ")))?,
                );
            }
            other => return Err(Error::new(format!("gen: unknown argument {other:?}\nusage: {GEN_USAGE}"))),
        }
        i += 1;
    }
    let cluster = match &spec {
        Some(path) => crate::spec::load(path)?,
        None => crate::spec::parse(Path::new("<embedded demo spec: fixtures/demo.yaml>"), crate::DEMO_SPEC)?,
    };
    let keys = match seed {
        Some(s) => KeySource::seeded(s),
        None => KeySource::from_os().map_err(Error::new)?,
    };
    let now = now.unwrap_or_else(time::OffsetDateTime::now_utc);
    let generated = crate::generate(&cluster, &out.join("pki"), &keys, now)?;
    let report = crate::output::write(&generated.tree, &out)?;

    let mut s = String::new();
    let cps = cluster.nodes.iter().filter(|n| n.is_control_plane()).count();
    s += &format!(
        "kubeforge: cluster {:?} ({}), {} nodes ({cps} control plane, {} worker{}), {}\n",
        cluster.name,
        cluster.version,
        cluster.nodes.len(),
        cluster.nodes.len() - cps,
        if cluster.nodes.len() - cps == 1 { "" } else { "s" },
        cluster.key_algorithm.name()
    );
    let certs = &generated.pki.certs;
    let origin = |o: Origin| if o == Origin::Kept { "kept" } else { "created" };
    let cas: Vec<String> = certs
        .values()
        .filter(|m| m.request.profile.usage.is_ca())
        .map(|m| format!("{} ({})", m.request.id, origin(m.origin)))
        .collect();
    s += &format!("  CAs: {}\n", cas.join(", "));
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
    s += &format!("  certificates: {leaves} ({})\n", list.join(", "));
    s += &format!("  service-account key: {}\n", origin(generated.pki.sa.origin));
    if report.written.is_empty() {
        s += &format!("  {}: nothing changed ({} files already up to date)\n", out.display(), report.unchanged);
    } else {
        s += &format!("  wrote {} files to {} ({} unchanged)\n", report.written.len(), out.display(), report.unchanged);
    }
    s += &format!(
        "  next: copy {0}/nodes/<node>/ onto each node's /, then apply {0}/bootstrap/ once with super-admin.conf",
        out.display()
    );
    Ok(s)
}
