//! Reruns against an existing OUT: CAs and the service-account key are kept, a broken or mismatching CA stops the
//! run before anything is written, and a rerun with nothing changed touches nothing.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kubeforge::ops::Options;
use kubeforge::ops::report::{Action, CaOrigin, RunReport};
use support::Tree;

/// The demo spec into `out`, seeded (`fixed`) or as a user runs it.
fn run_gen(out: &Path, fixed: bool) -> Result<RunReport, String> {
    let o = Options::new(None, out);
    support::try_apply(&if fixed { Options { seed: Some(3), now: Some(support::now()), ..o } } else { o })
}

#[test]
fn rerun_with_nothing_changed_touches_nothing() {
    let tmp = support::temp_dir("store-rerun");
    let out = tmp.path().join("out");
    run_gen(&out, true).unwrap();
    let before = Tree::of(&out);
    let summary = run_gen(&out, true).unwrap();
    assert!(!summary.has_changes(), "{summary}");
    assert!(summary.cas.iter().all(|c| c.origin == CaOrigin::Kept), "{summary}");
    assert_eq!(summary.service_account_key, Some("kept"));
    assert_eq!(before.touched(&Tree::of(&out)), Vec::<String>::new(), "a rerun must not touch any file");
}

#[test]
fn later_runs_with_os_keys_keep_everything_that_still_matches() {
    let tmp = support::temp_dir("store-keep");
    let out = tmp.path().join("out");
    run_gen(&out, true).unwrap();
    let before = Tree::of(&out).files();
    // A real run: operating-system keys and the real clock.
    let summary = run_gen(&out, false).unwrap();
    assert!(summary.to_string().contains("ca (kept), etcd-ca (kept), front-proxy-ca (kept)"), "{summary}");
    let after = Tree::of(&out).files();
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
        assert_eq!(before[f], after[f], "{f} must be kept");
    }
    // The leaves still match the spec, so they are kept too: a real rerun changes nothing at all.
    assert_eq!(before, after);
    assert_eq!(summary.count(Action::Keep), 20, "{summary}");
}

/// Runs `gen` on an OUT whose store was damaged by `damage`; expects an error containing `expect` and no change.
fn refuses(name: &str, damage: impl FnOnce(&Path), expect: &[&str]) {
    let tmp = support::temp_dir(name);
    let out = tmp.path().join("out");
    run_gen(&out, true).unwrap();
    damage(&out.join("pki"));
    let before = Tree::of(&out);
    let err = run_gen(&out, false).expect_err("a damaged CA must stop the run");
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    assert_eq!(before.touched(&Tree::of(&out)), Vec::<String>::new(), "a refused run must not change any file");
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
    let o = Options::new(Some(&spec), &out);
    support::apply(&Options { seed: Some(1), now: Some(support::now()), ..o.clone() });
    let err = support::try_apply(&Options { now: kubeforge::parse_instant("2026-01-01T03:00:00Z"), ..o }).unwrap_err();
    assert!(err.contains("expired at"), "{err}");
}

#[test]
fn modes_are_exact() {
    let tmp = support::temp_dir("store-modes");
    let out = tmp.path().join("out");
    run_gen(&out, true).unwrap();
    let kubeforge_dir = fs::metadata(out.join(".kubeforge")).unwrap().permissions().mode() & 0o777;
    assert_eq!(kubeforge_dir, 0o700, "kubeforge's own directory (locks, staged files) is private");
    for (path, node) in Tree::output(&out).0.iter().filter(|(_, n)| n.bytes.is_some()) {
        let mode = node.mode;
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
