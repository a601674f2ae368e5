//! The life of the PKI after day one: reruns that keep what still matches, a plan with reasons, renewals that keep
//! the CAs, and expiry checks with exact boundaries.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned(), fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn changed(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).cloned().collect()
}

struct Cluster {
    _tmp: support::TempDir,
    spec: std::path::PathBuf,
    out: std::path::PathBuf,
}

impl Cluster {
    fn new(name: &str, spec_text: &str) -> Self {
        let tmp = support::temp_dir(name);
        let spec = tmp.path().join("cluster.yaml");
        fs::write(&spec, spec_text).unwrap();
        let out = tmp.path().join("out");
        Cluster { _tmp: tmp, spec, out }
    }

    fn opts(&self) -> Vec<String> {
        args(&["--spec", self.spec.to_str().unwrap(), "--out", self.out.to_str().unwrap()])
    }

    fn generate(&self) -> String {
        kubeforge::cli::run_gen(&self.opts()).unwrap()
    }

    fn plan(&self) -> (String, bool) {
        kubeforge::cli::run_plan(&self.opts()).unwrap()
    }

    fn edit(&self, from: &str, to: &str) {
        let text = fs::read_to_string(&self.spec).unwrap();
        assert!(text.contains(from), "spec lacks {from:?}");
        fs::write(&self.spec, text.replacen(from, to, 1)).unwrap();
    }
}

#[test]
fn a_real_rerun_with_nothing_changed_is_byte_identical() {
    // Operating-system keys and the real clock, as a user runs it: the second run must keep everything.
    let c = Cluster::new("life-rerun", kubeforge::DEMO_SPEC);
    c.generate();
    let before = files(&c.out);
    let (plan, todo) = c.plan();
    assert!(!todo, "plan after gen must have nothing to do:\n{plan}");
    let summary = c.generate();
    assert!(summary.contains("nothing to do"), "{summary}");
    assert_eq!(changed(&before, &files(&c.out)), Vec::<String>::new());
}

#[test]
fn adding_an_apiserver_san_reissues_exactly_the_apiserver_certificate() {
    let c = Cluster::new("life-san", kubeforge::DEMO_SPEC);
    c.generate();
    let before = files(&c.out);
    c.edit("certSANs: []", "certSANs: [10.0.0.5]");
    let (plan, todo) = c.plan();
    assert!(todo, "{plan}");
    let reissued: Vec<&str> = plan.lines().filter(|l| l.trim_start().starts_with("reissue ")).collect();
    assert_eq!(reissued, ["    reissue  nodes/cp-1/apiserver — SAN added: IP:10.0.0.5"], "{plan}");
    assert!(!plan.contains("    issue "), "{plan}");
    assert_eq!(before, files(&c.out), "plan writes nothing");

    c.generate();
    let mut diff = changed(&before, &files(&c.out));
    diff.sort();
    // The certificate and key in the store and on the node; the index and inventory that describe them.
    assert_eq!(
        diff,
        [
            "PKI.md",
            "index.json",
            "nodes/cp-1/etc/kubernetes/pki/apiserver.crt",
            "nodes/cp-1/etc/kubernetes/pki/apiserver.key",
            "pki/nodes/cp-1/apiserver.crt",
            "pki/nodes/cp-1/apiserver.key",
        ]
    );
    let pki_md = String::from_utf8(files(&c.out)["PKI.md"].clone()).unwrap();
    let old_md = String::from_utf8(before["PKI.md"].clone()).unwrap();
    let md_diff: Vec<&str> = pki_md.lines().filter(|l| !old_md.lines().any(|o| o == *l)).collect();
    assert_eq!(md_diff.len(), 1, "one changed row in PKI.md: {md_diff:?}");
    assert!(md_diff[0].starts_with("| apiserver | cp-1 |") && md_diff[0].contains("IP:10.0.0.5"));

    // Removing it again is a change too: covering the SANs (kubeadm's rule) is not enough.
    c.edit("certSANs: [10.0.0.5]", "certSANs: []");
    let (plan, _) = c.plan();
    assert!(plan.contains("reissue  nodes/cp-1/apiserver — SAN removed: IP:10.0.0.5"), "{plan}");
}

#[test]
fn identity_usage_and_algorithm_changes_are_reasons() {
    let c = Cluster::new("life-reasons", kubeforge::DEMO_SPEC);
    c.generate();
    c.edit("keyAlgorithm: ECDSA-P256", "keyAlgorithm: ECDSA-P384");
    let (plan, _) = c.plan();
    assert!(plan.contains("reissue  nodes/cp-1/apiserver — key algorithm ECDSA-P256 -> ECDSA-P384"), "{plan}");
    // The CAs are kept: changing the algorithm never replaces a CA.
    assert!(plan.contains("CAs: ca (kept), etcd-ca (kept), front-proxy-ca (kept)"), "{plan}");
    c.edit("keyAlgorithm: ECDSA-P384", "keyAlgorithm: ECDSA-P256");
    c.edit("name: worker-2", "name: worker-9");
    let (plan, _) = c.plan();
    assert!(plan.contains("issue    nodes/worker-9/kubelet-client — new"), "{plan}");
    assert!(plan.contains("remove   nodes/worker-2/kubelet-client — no longer in the spec"), "{plan}");
    c.generate();
    assert!(!c.out.join("nodes/worker-2").exists(), "a removed node's bundle is removed");
    assert!(c.out.join("nodes/worker-9/etc/kubernetes/kubelet.conf").exists());
}

#[test]
fn a_certificate_near_expiry_is_reissued() {
    let c = Cluster::new("life-expiry", kubeforge::DEMO_SPEC);
    let mut a = c.opts();
    a.extend(args(&["--now", "2026-01-01T00:00:00Z"]));
    kubeforge::cli::run_gen(&a).unwrap();
    // 8760h validity, 720h renewal window: 2026-12-02T00:00:01Z is just inside it.
    let mut later = c.opts();
    later.extend(args(&["--now", "2026-12-01T23:59:59Z"]));
    let (plan, todo) = kubeforge::cli::run_plan(&later).unwrap();
    assert!(!todo, "one second before the window nothing is due:\n{plan}");
    let mut inside = c.opts();
    inside.extend(args(&["--now", "2026-12-02T00:00:00Z"]));
    let (plan, todo) = kubeforge::cli::run_plan(&inside).unwrap();
    assert!(todo);
    assert!(
        plan.contains("reissue  nodes/cp-1/apiserver — expires 2027-01-01T00:00:00Z (within pki.renewBefore, 720h)"),
        "{plan}"
    );
    assert!(plan.contains("CAs: ca (kept)"), "{plan}");
}

#[test]
fn renew_keeps_the_cas_and_every_chain_still_verifies() {
    let c = Cluster::new("life-renew", kubeforge::DEMO_SPEC);
    c.generate();
    let before = files(&c.out);
    let mut a = args(&["all"]);
    a.extend(c.opts());
    let summary = kubeforge::cli::run_renew(&a).unwrap();
    assert!(summary.contains("certificates: 0 kept, 20 issued"), "{summary}");
    let after = files(&c.out);
    for ca in ["pki/ca.crt", "pki/ca.key", "pki/etcd-ca.crt", "pki/etcd-ca.key", "pki/front-proxy-ca.crt", "pki/sa.key"]
    {
        assert_eq!(before[ca], after[ca], "{ca} must be kept");
    }
    for leaf in ["pki/nodes/cp-1/apiserver.key", "pki/admin.key", "pki/nodes/worker-1/kubelet-client.key"] {
        assert_ne!(before[leaf], after[leaf], "{leaf}: renew makes new keys by default");
    }
    assert_ne!(before["admin.conf"], after["admin.conf"], "kubeconfigs that embed a renewed cert are rewritten");
    let openssl = support::tool("KUBEFORGE_OPENSSL");
    for (ca, leaves) in [
        (
            "ca",
            vec![
                "nodes/cp-1/apiserver",
                "admin",
                "super-admin",
                "nodes/worker-2/kubelet-serving",
                "nodes/cp-1/scheduler",
            ],
        ),
        ("etcd-ca", vec!["nodes/cp-1/etcd-server", "nodes/cp-1/etcd-peer", "nodes/cp-1/apiserver-etcd-client"]),
        ("front-proxy-ca", vec!["nodes/cp-1/front-proxy-client"]),
    ] {
        let mut cmd = Command::new(&openssl);
        cmd.args(["verify", "-x509_strict", "-CAfile"]).arg(c.out.join(format!("pki/{ca}.crt")));
        for l in leaves {
            cmd.arg(c.out.join(format!("pki/{l}.crt")));
        }
        support::run(&mut cmd);
    }

    // --keep-keys renews the certificate and keeps its key.
    let mut a = args(&["apiserver", "--keep-keys"]);
    a.extend(c.opts());
    kubeforge::cli::run_renew(&a).unwrap();
    let again = files(&c.out);
    assert_eq!(after["pki/nodes/cp-1/apiserver.key"], again["pki/nodes/cp-1/apiserver.key"]);
    assert_ne!(after["pki/nodes/cp-1/apiserver.crt"], again["pki/nodes/cp-1/apiserver.crt"]);

    let mut a = args(&["etcd-ca"]);
    a.extend(c.opts());
    let err = kubeforge::cli::run_renew(&a).unwrap_err().to_string();
    assert!(err.contains("is a CA"), "{err}");
}

#[test]
fn check_exit_boundary_and_formats() {
    let c = Cluster::new("life-check", kubeforge::DEMO_SPEC);
    let mut a = c.opts();
    a.extend(args(&["--now", "2026-01-01T00:00:00Z", "--seed", "5"]));
    kubeforge::cli::run_gen(&a).unwrap();
    let out = c.out.to_str().unwrap();
    let check = |now: &str, within: &str| {
        kubeforge::cli::run_check(&args(&["--out", out, "--now", now, "--within", within])).unwrap()
    };
    // Leaves expire at 2027-01-01T00:00:00Z. A window reaching exactly that instant counts; one second short does not.
    let (text, soon) = check("2026-12-02T00:00:00Z", "30d");
    assert!(soon, "{text}");
    assert!(text.contains("20 of 23 certificates expire within 30d"), "{text}");
    let (text, soon) = check("2026-12-02T00:00:01Z", "720h");
    assert!(soon, "{text}");
    let (text, soon) = check("2026-12-01T23:59:59Z", "30d");
    assert!(!soon, "{text}");
    assert!(text.contains("all 23 certificates are valid"), "{text}");
    // Every certificate is listed, CAs and kubeconfig client and kubelet certificates included.
    for name in [
        "admin",
        "super-admin",
        "nodes/worker-1/kubelet-client",
        "nodes/worker-1/kubelet-serving",
        "nodes/cp-1/kube-proxy",
    ] {
        assert!(text.lines().any(|l| l.starts_with(&format!("{name} "))), "{name} missing:\n{text}");
    }
    assert!(text.contains("CERTIFICATE AUTHORITY") && text.lines().any(|l| l.starts_with("etcd-ca ")), "{text}");

    let (json, _) =
        kubeforge::cli::run_check(&args(&["--out", out, "--now", "2026-06-01T00:00:00Z", "--format", "json"])).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 23);
    let ca = rows.iter().find(|r| r["name"] == "ca").unwrap();
    assert_eq!(ca["isCa"], true);
    assert_eq!(ca["notAfter"], "2035-12-30T00:00:00Z");
    let admin = rows.iter().find(|r| r["name"] == "admin").unwrap();
    assert_eq!(admin["residualSeconds"], 214 * 86400, "2026-06-01 to 2027-01-01");
    assert_eq!(admin["signer"], "CN = kubernetes");
}

#[test]
fn check_works_from_public_files_alone() {
    let c = Cluster::new("life-public", kubeforge::DEMO_SPEC);
    c.generate();
    // Remove every secret: keys and kubeconfigs. What is left is what a CI job without secrets has.
    for (path, _) in files(&c.out) {
        if path.ends_with(".key") || path.ends_with(".conf") {
            fs::remove_file(c.out.join(&path)).unwrap();
        }
    }
    let (text, soon) = kubeforge::cli::run_check(&args(&["--out", c.out.to_str().unwrap()])).unwrap();
    assert!(!soon && text.contains("all 23 certificates are valid"), "{text}");
}
