//! Secrets out of review: OUT/.gitignore keeps every secret out of git, and with `pki.encryption.age` the secrets
//! live only sealed in OUT/secrets, so the whole tree can be committed and a fresh clone with the identity carries
//! on where the last run stopped.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubeforge::ops::report::{Action, RunReport};
use kubeforge::ops::{GenOptions, Options};

fn git(dir: &Path, a: &[&str]) -> String {
    let out = support::run(
        Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t.invalid", "-c", "init.defaultBranch=main"])
            .args(a),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file below `dir`, with bytes and mode.
fn tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    support::Tree::of(dir).files_and_modes()
}

/// [`tree`] without kubeforge's own `.kubeforge/` (locks and caches, never committed, so not in a clone).
fn output_tree(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    support::Tree::output(dir).files_and_modes()
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
    support::apply(&Options::new(None, &out));
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
        if path.starts_with(".kubeforge/") {
            assert!(!is_tracked, "{path}: kubeforge's locks and transactions are never committed");
            continue;
        }
        assert_eq!(is_tracked, !secret.contains(path.as_str()), "{path}: committed exactly when public");
        if is_tracked {
            assert!(!has_key_material(bytes), "{path} holds key material but git would commit it");
        }
    }

    // A reviewer's fresh clone of the committed half plans without a single private key, and says so.
    git(&repo, &["commit", "-qm", "cluster"]);
    let clone = tmp.path().join("clone");
    git(tmp.path(), &["clone", "-q", repo.to_str().unwrap(), clone.to_str().unwrap()]);
    let cout = clone.join("out");
    assert!(!cout.join("pki/ca.key").exists());
    let plan = Options::new(None, &cout).load().and_then(|c| c.plan()).unwrap();
    assert!(plan.public_only && !plan.has_changes() && plan.count(Action::Keep) == 20, "{plan}");
    assert!(plan.to_string().contains("public files only: no private keys in OUT"), "{plan}");
    let o = support::kubeforge(&["plan", "--out", cout.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{o:?}");
    // And gen, which needs the keys, refuses without writing (beyond its lock in .kubeforge/, which git ignores).
    let before = support::Tree::output(&cout);
    assert!(support::try_apply(&Options::new(None, &cout)).unwrap_err().contains("ca.key"));
    assert_eq!(before.diff(&support::Tree::output(&cout)), Vec::<String>::new());
    assert_eq!(git(&clone, &["status", "--porcelain"]), "", "nothing for git to see");
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

    /// Options for `out`, with this test's identity or none.
    fn options(&self, out: &Path, identity: bool) -> Options {
        Options { identity: identity.then(|| self.identity.clone()), ..Options::new(Some(&self.spec), out) }
    }

    fn generate(&self, out: &Path, identity: bool, materialize: Option<&str>) -> Result<RunReport, String> {
        let g = GenOptions { dry_run: false, materialize: materialize.map(String::from) };
        self.options(out, identity).load().and_then(|c| c.apply(&g)).map_err(|e| e.to_string())
    }

    fn plan(&self, out: &Path) -> RunReport {
        self.options(out, false).load().and_then(|c| c.plan()).unwrap()
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
    s.generate(&out, false, None).unwrap();
    let first = output_tree(&out);
    for (path, (bytes, _)) in &tree(&out) {
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
    let plan = s.plan(&cout);
    assert!(plan.public_only && !plan.has_changes(), "a clone without the identity plans public-only:\n{plan}");
    let summary = s.generate(&cout, true, None).unwrap();
    assert_eq!(summary.count(Action::Keep), 20, "{summary}");
    assert_eq!(summary.files.as_ref().unwrap().remove, Vec::<String>::new(), "{summary}");
    // Byte-identical, and the modes git does not keep (0600 manifests and configs) are restored.
    assert_eq!(first, output_tree(&cout), "the clone's rerun must reproduce the first tree exactly");
    let again = s.generate(&cout, true, None).unwrap();
    assert!(!again.has_changes(), "{again}");

    // Materialize one node for deployment: its plain files appear (gitignored), nobody else's.
    s.generate(&cout, true, Some("worker-1")).unwrap();
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
    s.generate(&cout, true, None).unwrap();
    assert!(!cout.join("nodes/worker-1/etc/kubernetes/kubelet.conf").exists());
}

#[test]
fn plan_and_check_work_without_the_identity() {
    let s = Sealed::new("secrets-public");
    let out = s.root.join("out");
    s.generate(&out, false, None).unwrap();
    // SAFETY of the test: no identity anywhere in the environment.
    assert!(std::env::var_os(kubeforge::sealed::IDENTITY_ENV).is_none());
    let plan = s.plan(&out);
    assert!(!plan.has_changes(), "{plan}");
    assert!(plan.public_only && plan.files.is_none() && plan.count(Action::Keep) == 20, "{plan}");
    assert!(plan.to_string().contains("public files only"), "{plan}");
    let text = fs::read_to_string(&s.spec).unwrap().replace("certSANs: []", "certSANs: [10.0.0.5]");
    fs::write(&s.spec, text).unwrap();
    let plan = s.plan(&out);
    assert!(plan.has_changes());
    assert_eq!(support::reissued(&plan), ["nodes/cp-1/apiserver — SAN added: IP:10.0.0.5"], "{plan}");
    let o = support::kubeforge(&["check", "--out", out.to_str().unwrap()]);
    assert!(o.code == 0 && o.text.contains("all 23 certificates are valid"), "{o:?}");
}

#[test]
fn a_wrong_or_missing_identity_is_a_clear_error_and_writes_nothing() {
    let s = Sealed::new("secrets-wrong");
    let out = s.root.join("out");
    s.generate(&out, false, None).unwrap();
    let before = tree(&out);
    let err = s.generate(&out, false, None).unwrap_err();
    assert!(err.contains("--identity") && err.contains(kubeforge::sealed::IDENTITY_ENV), "{err}");
    let other = s.root.join("other.txt");
    use age::secrecy::ExposeSecret;
    let other_secret = age::x25519::Identity::generate().to_string().expose_secret().to_string();
    fs::write(&other, format!("{other_secret}\n")).unwrap();
    let with = |id: &Path| {
        let o = Options { identity: Some(id.to_path_buf()), ..s.options(&out, false) };
        o.load().and_then(|c| c.apply(&GenOptions::default())).unwrap_err().to_string()
    };
    let err = with(&other);
    assert!(err.contains("cannot decrypt") && err.contains(".age"), "{err}");
    assert!(!err.contains(&other_secret), "an error never shows an identity");
    let garbage = s.root.join("garbage.txt");
    fs::write(&garbage, "not an identity\n").unwrap();
    let err = with(&garbage);
    assert!(err.contains("no AGE-SECRET-KEY"), "{err}");
    assert_eq!(before, tree(&out), "a refused run writes nothing");
}
