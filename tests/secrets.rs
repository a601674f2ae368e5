//! Secrets out of review: OUT/.gitignore keeps every secret out of git, and with `pki.encryption.age` the secrets
//! live only sealed in OUT/secrets, so the whole tree can be committed and a fresh clone with the identity carries
//! on where the last run stopped.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn git(dir: &Path, a: &[&str]) -> String {
    let out = support::run(
        Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "init.defaultBranch=main"])
            .args(a),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file below `dir` (not .git), with bytes and mode.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let m = fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                out.insert(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), (fs::read(&p).unwrap(), m));
            }
        }
    }
    out
}

fn has_key_material(bytes: &[u8]) -> bool {
    let t = String::from_utf8_lossy(bytes);
    t.contains("PRIVATE KEY") || t.contains("client-key-data") || t.contains("secretbox:")
}

#[test]
fn git_add_commits_exactly_the_public_half() {
    let tmp = support::temp_dir("secrets-gitignore");
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    let out = repo.join("out");
    kubeforge::cli::run_gen(&args(&["--out", out.to_str().unwrap()])).unwrap();
    git(&repo, &["add", "-A"]);
    let tracked = git(&repo, &["ls-files"]);
    let all = tree(&out);
    let index: serde_json::Value = serde_json::from_slice(&all["index.json"].0).unwrap();
    let secret: std::collections::BTreeSet<&str> = index["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["secret"] == true)
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(secret.len() > 30, "the demo has many secret files ({})", secret.len());
    for (path, (bytes, _)) in &all {
        let is_tracked = tracked.lines().any(|l| l == format!("out/{path}"));
        assert_eq!(is_tracked, !secret.contains(path.as_str()), "{path}: committed exactly when public");
        if is_tracked {
            assert!(!has_key_material(bytes), "{path} holds key material but git would commit it");
        }
    }
}

struct Sealed {
    _tmp: support::TempDir,
    root: PathBuf,
    identity: PathBuf,
    spec: PathBuf,
}

impl Sealed {
    fn new(name: &str) -> Self {
        let tmp = support::temp_dir(name);
        let root = tmp.path().to_path_buf();
        let id = age::x25519::Identity::generate();
        let identity = root.join("identity.txt");
        use age::secrecy::ExposeSecret;
        fs::write(&identity, format!("# test identity\n{}\n", id.to_string().expose_secret())).unwrap();
        let spec = root.join("cluster.yaml");
        let text = kubeforge::DEMO_SPEC.replace(
            "  certificateValidity: 8760h\n",
            &format!("  certificateValidity: 8760h\n  encryption:\n    age:\n      recipients: [{}]\n", id.to_public()),
        );
        fs::write(&spec, text).unwrap();
        Sealed { _tmp: tmp, root, identity, spec }
    }

    fn opts(&self, out: &Path, extra: &[&str]) -> Vec<String> {
        let mut a = args(&["--spec", self.spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
        a.extend(args(extra));
        a
    }
}

#[test]
fn sealed_store_round_trip_through_git() {
    let s = Sealed::new("secrets-roundtrip");
    let repo = s.root.join("repo");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    let out = repo.join("out");
    // The first run needs no identity: there is nothing to decrypt yet.
    kubeforge::cli::run_gen(&s.opts(&out, &[])).unwrap();
    let first = tree(&out);
    for (path, (bytes, _)) in &first {
        assert!(!has_key_material(bytes), "{path}: no plain secret in a sealed OUT");
    }
    assert!(first.contains_key("secrets/pki/ca.key.age") && first.contains_key("secrets/admin.conf.age"));
    assert!(!first.contains_key("pki/ca.key") && !first.contains_key("nodes/cp-1/etc/kubernetes/admin.conf"));
    let index: serde_json::Value = serde_json::from_slice(&first["index.json"].0).unwrap();
    let admin = index["files"].as_array().unwrap().iter().find(|f| f["path"] == "admin.conf").unwrap();
    assert_eq!(admin["sealed"], "secrets/admin.conf.age");

    // Everything can be committed; a fresh clone with only the identity carries on.
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "cluster"]);
    let clone = s.root.join("clone");
    git(&s.root, &["clone", "-q", repo.to_str().unwrap(), clone.to_str().unwrap()]);
    let cout = clone.join("out");
    let summary = kubeforge::cli::run_gen(&s.opts(&cout, &["--identity", s.identity.to_str().unwrap()])).unwrap();
    assert!(summary.contains("20 kept, 0 issued") && summary.contains("0 removed"), "{summary}");
    // Byte-identical, and the modes git does not keep (0600 manifests and configs) are restored.
    assert_eq!(first, tree(&cout), "the clone's rerun must reproduce the first tree exactly");
    let again = kubeforge::cli::run_gen(&s.opts(&cout, &["--identity", s.identity.to_str().unwrap()])).unwrap();
    assert!(again.contains("nothing to do"), "{again}");

    // Materialize one node for deployment: its plain files appear (gitignored), nobody else's.
    kubeforge::cli::run_gen(&s.opts(&cout, &["--identity", s.identity.to_str().unwrap(), "--materialize", "worker-1"]))
        .unwrap();
    let m = tree(&cout);
    assert!(m.contains_key("nodes/worker-1/etc/kubernetes/kubelet.conf"));
    assert!(m.contains_key("nodes/worker-1/var/lib/kubelet/pki/kubelet.key"));
    assert!(!m.contains_key("nodes/cp-1/etc/kubernetes/admin.conf") && !m.contains_key("pki/ca.key"));
    assert_eq!(git(&clone, &["status", "--porcelain"]), "", "materialized secrets are ignored by git");
    // The keys are the ones the first run made: decrypt the sealed CA key and compare with the node's kubelet key.
    let ids = kubeforge::sealed::load_identities(&s.identity).unwrap();
    let opened = kubeforge::sealed::unseal_all(&cout, &ids).unwrap();
    assert_eq!(
        opened["nodes/worker-1/var/lib/kubelet/pki/kubelet.key"].0,
        m["nodes/worker-1/var/lib/kubelet/pki/kubelet.key"].0
    );
    // And a run without --materialize takes them away again.
    kubeforge::cli::run_gen(&s.opts(&cout, &["--identity", s.identity.to_str().unwrap()])).unwrap();
    assert!(!cout.join("nodes/worker-1/etc/kubernetes/kubelet.conf").exists());
}

#[test]
fn plan_and_check_work_without_the_identity() {
    let s = Sealed::new("secrets-public");
    let out = s.root.join("out");
    kubeforge::cli::run_gen(&s.opts(&out, &[])).unwrap();
    // SAFETY of the test: no identity anywhere in the environment.
    assert!(std::env::var_os(kubeforge::sealed::IDENTITY_ENV).is_none());
    let (plan, todo) = kubeforge::cli::run_plan(&s.opts(&out, &[])).unwrap();
    assert!(!todo, "{plan}");
    assert!(plan.contains("public files only") && plan.contains("20 kept"), "{plan}");
    let text = fs::read_to_string(&s.spec).unwrap().replace("certSANs: []", "certSANs: [10.0.0.5]");
    fs::write(&s.spec, text).unwrap();
    let (plan, todo) = kubeforge::cli::run_plan(&s.opts(&out, &[])).unwrap();
    assert!(todo);
    assert!(plan.contains("reissue  nodes/cp-1/apiserver — SAN added: IP:10.0.0.5"), "{plan}");
    let (report, soon) = kubeforge::cli::run_check(&args(&["--out", out.to_str().unwrap()])).unwrap();
    assert!(!soon && report.contains("all 23 certificates are valid"), "{report}");
}

#[test]
fn a_wrong_or_missing_identity_is_a_clear_error_and_writes_nothing() {
    let s = Sealed::new("secrets-wrong");
    let out = s.root.join("out");
    kubeforge::cli::run_gen(&s.opts(&out, &[])).unwrap();
    let before = tree(&out);
    let err = kubeforge::cli::run_gen(&s.opts(&out, &[])).unwrap_err().to_string();
    assert!(err.contains("--identity") && err.contains(kubeforge::sealed::IDENTITY_ENV), "{err}");
    let other = s.root.join("other.txt");
    use age::secrecy::ExposeSecret;
    let other_secret = age::x25519::Identity::generate().to_string().expose_secret().to_string();
    fs::write(&other, format!("{other_secret}\n")).unwrap();
    let err = kubeforge::cli::run_gen(&s.opts(&out, &["--identity", other.to_str().unwrap()])).unwrap_err().to_string();
    assert!(err.contains("cannot decrypt") && err.contains(".age"), "{err}");
    assert!(!err.contains(&other_secret), "an error never shows an identity");
    let garbage = s.root.join("garbage.txt");
    fs::write(&garbage, "not an identity\n").unwrap();
    let err =
        kubeforge::cli::run_gen(&s.opts(&out, &["--identity", garbage.to_str().unwrap()])).unwrap_err().to_string();
    assert!(err.contains("no AGE-SECRET-KEY"), "{err}");
    assert_eq!(before, tree(&out), "a refused run writes nothing");
}
