//! Reruns against an existing OUT: CAs and the service-account key are kept, a broken or mismatching CA stops the
//! run before anything is written, and a rerun with nothing changed touches nothing.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn run_gen(out: &Path, extra: &[&str]) -> Result<String, String> {
    let mut args: Vec<String> = vec!["--out".into(), out.to_str().unwrap().into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    kubeforge::cli::run_gen(&args).map_err(|e| e.to_string())
}

/// Every file under `dir` with its bytes, mode and modification time.
fn state(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, (fs::read(&p).unwrap(), m.permissions().mode() & 0o7777, m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

const FIXED: [&str; 4] = ["--seed", "3", "--now", "2026-01-01T00:00:00Z"];

#[test]
fn rerun_with_nothing_changed_touches_nothing() {
    let tmp = support::temp_dir("store-rerun");
    let out = tmp.path().join("out");
    run_gen(&out, &FIXED).unwrap();
    let before = state(&out);
    let summary = run_gen(&out, &FIXED).unwrap();
    assert!(summary.contains("nothing to do"), "{summary}");
    assert!(summary.contains("ca (kept)") && summary.contains("service-account key: kept"), "{summary}");
    assert_eq!(before, state(&out), "a rerun with the same spec, keys and clock must not touch any file");
}

#[test]
fn later_runs_with_os_keys_keep_everything_that_still_matches() {
    let tmp = support::temp_dir("store-keep");
    let out = tmp.path().join("out");
    run_gen(&out, &FIXED).unwrap();
    let before = state(&out);
    // A real run: operating-system keys and the real clock.
    let summary = run_gen(&out, &[]).unwrap();
    assert!(summary.contains("ca (kept), etcd-ca (kept), front-proxy-ca (kept)"), "{summary}");
    let after = state(&out);
    for f in [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/etcd-ca.crt",
        "pki/etcd-ca.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
        "pki/sa.key",
        "pki/sa.pub",
        "nodes/cp-1/etc/kubernetes/pki/ca.crt",
        "nodes/worker-1/etc/kubernetes/pki/ca.crt",
    ] {
        assert_eq!(before[f].0, after[f].0, "{f} must be kept");
    }
    // The leaves still match the spec, so they are kept too: a real rerun changes nothing at all.
    assert_eq!(before, after);
    assert!(summary.contains("20 kept, 0 issued"), "{summary}");
}

/// Runs `gen` on an OUT whose store was damaged by `damage`; expects an error containing `expect` and no change.
fn refuses(name: &str, damage: impl FnOnce(&Path), expect: &[&str]) {
    let tmp = support::temp_dir(name);
    let out = tmp.path().join("out");
    run_gen(&out, &FIXED).unwrap();
    damage(&out.join("pki"));
    let before = state(&out);
    let err = run_gen(&out, &[]).expect_err("a damaged CA must stop the run");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert_eq!(before, state(&out), "a refused run must not change any file");
}

#[test]
fn a_ca_without_its_key_is_never_replaced() {
    refuses(
        "store-nokey",
        |pki| fs::remove_file(pki.join("ca.key")).unwrap(),
        &["ca.key", "does not", "never replaces a CA silently", "move"],
    );
}

#[test]
fn a_ca_key_without_its_certificate_is_never_replaced() {
    refuses(
        "store-nocrt",
        |pki| fs::remove_file(pki.join("etcd-ca.crt")).unwrap(),
        &["etcd-ca.crt", "never replaces a CA silently"],
    );
}

#[test]
fn a_ca_that_does_not_match_its_key_is_refused() {
    refuses(
        "store-mismatch",
        |pki| fs::copy(pki.join("etcd-ca.key"), pki.join("ca.key")).map(drop).unwrap(),
        &["does not match its key"],
    );
}

#[test]
fn a_ca_with_another_subject_is_refused() {
    refuses(
        "store-subject",
        |pki| {
            fs::copy(pki.join("front-proxy-ca.crt"), pki.join("ca.crt")).unwrap();
            fs::copy(pki.join("front-proxy-ca.key"), pki.join("ca.key")).unwrap();
        },
        &["CN = front-proxy-ca", "CN = kubernetes"],
    );
}

#[test]
fn a_truncated_ca_key_is_refused() {
    refuses(
        "store-truncated",
        |pki| {
            let k = fs::read(pki.join("ca.key")).unwrap();
            fs::write(pki.join("ca.key"), &k[..k.len() / 2]).unwrap();
        },
        &["ca.key"],
    );
}

#[test]
fn an_expired_ca_is_refused() {
    let tmp = support::temp_dir("store-expired");
    let spec = tmp.path().join("short.yaml");
    let text = kubeforge::DEMO_SPEC
        .replace("caValidity: 87600h", "caValidity: 2h")
        .replace("certificateValidity: 8760h", "certificateValidity: 1h\n  renewBefore: 10m");
    fs::write(&spec, text).unwrap();
    let out = tmp.path().join("out");
    let spec = spec.to_str().unwrap();
    run_gen(&out, &["--spec", spec, "--seed", "1", "--now", "2026-01-01T00:00:00Z"]).unwrap();
    let err = run_gen(&out, &["--spec", spec, "--now", "2026-01-01T03:00:00Z"]).unwrap_err();
    assert!(err.contains("expired at"), "{err}");
}

#[test]
fn modes_are_exact() {
    let tmp = support::temp_dir("store-modes");
    let out = tmp.path().join("out");
    run_gen(&out, &FIXED).unwrap();
    for (path, (_, mode, ..)) in state(&out) {
        let want = if path.ends_with(".crt")
            || path == "PKI.md"
            || path == "index.json"
            || path == ".gitignore"
            || path.starts_with("bootstrap/")
        {
            0o644
        } else {
            0o600
        };
        assert_eq!(mode, want, "{path}: mode {mode:o}, want {want:o}");
    }
    let pki_dir = fs::metadata(out.join("pki")).unwrap().permissions().mode() & 0o777;
    assert_eq!(pki_dir, 0o700, "OUT/pki holds every key of the cluster");
    let manifests = fs::metadata(out.join("nodes/cp-1/etc/kubernetes/manifests")).unwrap().permissions().mode() & 0o777;
    assert_eq!(manifests, 0o700);
}
