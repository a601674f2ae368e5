//! The life of the PKI after day one: reruns that keep what still matches, a plan with reasons, renewals that keep
//! the CAs, and expiry checks with exact boundaries.

mod support;

use std::fs;
use std::process::Command;

use kubeforge::ops::report::{Action, CaOrigin};
use support::{Cluster, reissued};

fn cas_kept(r: &kubeforge::ops::report::RunReport) -> bool {
    r.cas.iter().all(|c| c.origin == CaOrigin::Kept) && r.cas.len() == 3
}

#[test]
fn a_real_rerun_with_nothing_changed_is_byte_identical() {
    // Operating-system keys and the real clock, as a user runs it: the second run must keep everything.
    let c = Cluster::new("life-rerun", kubeforge::DEMO_SPEC);
    c.generate();
    let before = c.tree();
    let plan = c.plan();
    assert!(!plan.has_changes(), "plan after gen must have nothing to do:\n{plan}");
    let again = c.generate();
    assert!(!again.has_changes() && again.count(Action::Keep) == 20, "{again}");
    assert!(again.to_string().contains("nothing to do: all"), "{again}");
    assert_eq!(before.changed_files(&c.tree()), Vec::<String>::new());
}

#[test]
fn adding_an_apiserver_san_reissues_exactly_the_apiserver_certificate() {
    let c = Cluster::new("life-san", kubeforge::DEMO_SPEC);
    c.generate();
    let before = c.tree();
    c.edit("certSANs: []", "certSANs: [10.0.0.5]");
    let plan = c.plan();
    assert!(plan.has_changes(), "{plan}");
    assert_eq!(reissued(&plan), ["nodes/cp-1/apiserver — SAN added: IP:10.0.0.5"], "{plan}");
    assert!(plan.to_string().contains("    reissue  nodes/cp-1/apiserver — SAN added: IP:10.0.0.5"), "{plan}");
    assert_eq!(before.touched(&c.tree()), Vec::<String>::new(), "plan writes nothing");

    c.generate();
    let diff = before.changed_files(&c.tree());
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
    let pki_md = c.tree().text("PKI.md");
    let old_md = before.text("PKI.md");
    let md_diff: Vec<&str> = pki_md.lines().filter(|l| !old_md.lines().any(|o| o == *l)).collect();
    assert_eq!(md_diff.len(), 1, "one changed row in PKI.md: {md_diff:?}");
    assert!(md_diff[0].starts_with("| apiserver | cp-1 |") && md_diff[0].contains("IP:10.0.0.5"));

    // Removing it again is a change too: covering the SANs (kubeadm's rule) is not enough.
    c.edit("certSANs: [10.0.0.5]", "certSANs: []");
    assert_eq!(reissued(&c.plan()), ["nodes/cp-1/apiserver — SAN removed: IP:10.0.0.5"]);
}

#[test]
fn identity_usage_and_algorithm_changes_are_reasons() {
    let c = Cluster::new("life-reasons", kubeforge::DEMO_SPEC);
    c.generate();
    c.edit("keyAlgorithm: ECDSA-P256", "keyAlgorithm: ECDSA-P384");
    let plan = c.plan();
    assert!(
        reissued(&plan).contains(&"nodes/cp-1/apiserver — key algorithm ECDSA-P256 -> ECDSA-P384".into()),
        "{plan}"
    );
    // The CAs are kept: changing the algorithm never replaces a CA.
    assert!(cas_kept(&plan), "{plan}");
    assert!(plan.to_string().contains("CAs: ca (kept), etcd-ca (kept), front-proxy-ca (kept)"), "{plan}");
    c.edit("keyAlgorithm: ECDSA-P384", "keyAlgorithm: ECDSA-P256");
    c.edit("name: worker-2", "name: worker-9");
    let plan = c.plan();
    let line = |id: &str| plan.certificates.iter().find(|l| l.id == id).unwrap_or_else(|| panic!("{id}: {plan}"));
    assert_eq!(line("nodes/worker-9/kubelet-client").action, Action::Issue);
    assert_eq!(line("nodes/worker-2/kubelet-client").action, Action::Remove);
    assert_eq!(line("nodes/worker-2/kubelet-client").reasons, ["no longer in the spec"]);
    let text = plan.to_string();
    assert!(text.contains("issue    nodes/worker-9/kubelet-client — new"), "{text}");
    assert!(text.contains("remove   nodes/worker-2/kubelet-client — no longer in the spec"), "{text}");
    c.generate();
    assert!(!c.out.join("nodes/worker-2").exists(), "a removed node's bundle is removed");
    assert!(c.out.join("nodes/worker-9/etc/kubernetes/kubelet.conf").exists());
}

#[test]
fn a_certificate_near_expiry_is_reissued() {
    let c = Cluster::new("life-expiry", kubeforge::DEMO_SPEC);
    support::apply(&kubeforge::ops::Options { now: Some(support::now()), ..c.options() });
    let plan_at = |now: &str| {
        let o = kubeforge::ops::Options { now: kubeforge::parse_instant(now), ..c.options() };
        o.load().and_then(|ctx| ctx.plan()).unwrap()
    };
    // 8760h validity, 720h renewal window: 2026-12-02T00:00:00Z is exactly at its edge.
    let plan = plan_at("2026-12-01T23:59:59Z");
    assert!(!plan.has_changes(), "one second before the window nothing is due:\n{plan}");
    let plan = plan_at("2026-12-02T00:00:00Z");
    assert!(plan.has_changes());
    assert!(
        reissued(&plan)
            .contains(&"nodes/cp-1/apiserver — expires 2027-01-01T00:00:00Z (within pki.renewBefore, 720h)".into()),
        "{plan}"
    );
    assert!(cas_kept(&plan), "{plan}");
}

#[test]
fn renew_keeps_the_cas_and_every_chain_still_verifies() {
    let c = Cluster::new("life-renew", kubeforge::DEMO_SPEC);
    c.generate();
    let before = c.tree().files();
    let renew = |names: &[&str], keep_keys: bool| {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        c.options().load().and_then(|ctx| ctx.renew(&names, keep_keys)).map_err(|e| e.to_string())
    };
    let summary = renew(&["all"], false).unwrap();
    assert_eq!((summary.count(Action::Keep), summary.count(Action::Reissue)), (0, 20), "{summary}");
    assert!(summary.certificates.iter().all(|l| l.reasons == ["renewal requested"]), "{summary}");
    let after = c.tree().files();
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
    renew(&["apiserver"], true).unwrap();
    let again = c.tree().files();
    assert_eq!(after["pki/nodes/cp-1/apiserver.key"], again["pki/nodes/cp-1/apiserver.key"]);
    assert_ne!(after["pki/nodes/cp-1/apiserver.crt"], again["pki/nodes/cp-1/apiserver.crt"]);

    let err = renew(&["etcd-ca"], false).unwrap_err();
    assert!(err.contains("is a CA"), "{err}");
    // The command line agrees: a CA is refused, and renew with no name is a usage error.
    let spec = c.spec.to_str().unwrap();
    let out = c.out.to_str().unwrap();
    let o = support::kubeforge(&["renew", "etcd-ca", "--spec", spec, "--out", out]);
    assert_eq!(o.code, 1, "{o:?}");
    let o = support::kubeforge(&["renew", "--spec", spec, "--out", out]);
    assert_eq!(o.code, 2, "{o:?}");
}

#[test]
fn check_exit_boundary_and_formats() {
    let c = Cluster::new("life-check", kubeforge::DEMO_SPEC);
    c.generate_seeded();
    let out = c.out.to_str().unwrap();
    let check = |now: &str, within: &str| {
        let o = support::kubeforge(&["check", "--out", out, "--now", now, "--within", within]);
        assert!(o.code <= 1, "{o:?}");
        (o.text, o.code == 1)
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

    let report = kubeforge::ops::check(&c.out, kubeforge::parse_instant("2026-06-01T00:00:00Z").unwrap(), 0).unwrap();
    assert_eq!(report.expiring, 0);
    let admin = report.certificates.iter().find(|r| r.name == "admin").unwrap();
    assert_eq!((admin.profile.as_deref(), admin.node.as_deref()), (Some("admin"), None));
    let kubelet = report.certificates.iter().find(|r| r.name == "nodes/worker-1/kubelet-serving").unwrap();
    assert_eq!((kubelet.profile.as_deref(), kubelet.node.as_deref()), (Some("kubelet-serving"), Some("worker-1")));
    let o = support::kubeforge(&["check", "--out", out, "--now", "2026-06-01T00:00:00Z", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&o.text).unwrap();
    assert_eq!((json["apiVersion"].as_str(), json["kind"].as_str()), (Some("kubeforge/v1alpha1"), Some("CheckReport")));
    let rows = json["certificates"].as_array().unwrap();
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
    for (path, _) in c.tree().files() {
        if path.ends_with(".key") || path.ends_with(".conf") {
            fs::remove_file(c.out.join(&path)).unwrap();
        }
    }
    let o = support::kubeforge(&["check", "--out", c.out.to_str().unwrap()]);
    assert!(o.code == 0 && o.text.contains("all 23 certificates are valid"), "{o:?}");
}
