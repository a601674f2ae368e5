//! An upgrade is a spec edit: `kubernetesVersion` moves one minor (or one patch) at a time, and each step is a plan
//! that names exactly the files the version changes, keeps every CA and every key, and is refused when it skips a
//! minor or goes back.

mod support;

use kubeforge::ops::report::Action;
use support::{Cluster, Tree};

/// A single-control-plane cluster at `version` (the demo spec at another version).
fn at(name: &str, version: &str) -> Cluster {
    let spec = kubeforge::DEMO_SPEC.replace("kubernetesVersion: v1.37.1", &format!("kubernetesVersion: {version}"));
    assert!(spec.contains(version), "the demo spec changed: update this test");
    Cluster::new(name, &spec)
}

fn set_version(c: &Cluster, from: &str, to: &str) {
    c.edit(&format!("kubernetesVersion: {from}"), &format!("kubernetesVersion: {to}"));
}

/// What the plan to `to` says, what gen then changes, and that nothing else moved.
fn step(c: &Cluster, from: &str, to: &str, expected_files: &[&str]) {
    set_version(c, from, to);
    let before = c.tree();
    let plan = c.plan();
    let upgrade = plan.upgrade.as_ref().unwrap_or_else(|| panic!("{from} -> {to}: no upgrade in the plan:\n{plan}"));
    assert_eq!((upgrade.from.as_str(), upgrade.to.as_str()), (from, to));
    assert!(plan.to_string().contains(&format!("upgrade: Kubernetes {from} -> {to}")), "{plan}");
    // The version changes no certificate: every one is kept.
    assert!(plan.certificates.iter().all(|l| l.action == Action::Keep), "{from} -> {to}: {plan}");
    let files = plan.files.as_ref().unwrap();
    assert_eq!(files.write, expected_files, "{from} -> {to}: the files the plan names");
    assert!(files.remove.is_empty(), "{from} -> {to}: {plan}");
    assert_eq!(before.touched(&c.tree()), Vec::<String>::new(), "plan writes nothing");

    let applied = support::apply(&c.options());
    assert_eq!(applied.files.as_ref().unwrap().write, expected_files);
    let after = c.tree();
    assert_eq!(before.changed_files(&after), expected_files, "{from} -> {to}: what gen changed");
    for f in ["pki/ca.key", "pki/etcd-ca.key", "pki/front-proxy-ca.key", "pki/sa.key", "pki/ca.crt"] {
        assert_eq!(before.files()[f], after.files()[f], "{from} -> {to}: {f} must be kept byte for byte");
    }
    assert!(!c.plan().has_changes(), "{from} -> {to}: a second plan has nothing to do");
}

/// The files a minor upgrade of the demo's single control plane changes: the four static pods (images, and
/// whatever the new minor writes differently) and the index that describes them.
const CONTROL_PLANE: [&str; 5] = [
    "index.json",
    "nodes/cp-1/etc/kubernetes/manifests/etcd.yaml",
    "nodes/cp-1/etc/kubernetes/manifests/kube-apiserver.yaml",
    "nodes/cp-1/etc/kubernetes/manifests/kube-controller-manager.yaml",
    "nodes/cp-1/etc/kubernetes/manifests/kube-scheduler.yaml",
];

#[test]
fn v1_35_to_v1_36_to_v1_37_is_a_sequence_of_reviewable_plans() {
    let c = at("upgrade-path", "v1.35.8");
    let first = c.generate();
    assert!(first.upgrade.is_none() && first.warnings.is_empty(), "{first}");
    // v1.35 -> v1.36: images, etcd 3.6.8, and the controller-manager loses flexvolume-dir.
    step(&c, "v1.35.8", "v1.36.4", &CONTROL_PLANE);
    let kcm = c.tree().text("nodes/cp-1/etc/kubernetes/manifests/kube-controller-manager.yaml");
    assert!(!kcm.contains("flexvolume") && kcm.contains("kube-controller-manager:v1.36.4"), "{kcm}");
    // A patch release: only the images that carry the Kubernetes version (etcd's does not).
    step(
        &c,
        "v1.36.4",
        "v1.36.5",
        &[
            "index.json",
            "nodes/cp-1/etc/kubernetes/manifests/kube-apiserver.yaml",
            "nodes/cp-1/etc/kubernetes/manifests/kube-controller-manager.yaml",
            "nodes/cp-1/etc/kubernetes/manifests/kube-scheduler.yaml",
        ],
    );
    // v1.36 -> v1.37: images and etcd 3.7.0.
    step(&c, "v1.36.5", "v1.37.1", &CONTROL_PLANE);
    assert!(
        c.tree().text("nodes/cp-1/etc/kubernetes/manifests/etcd.yaml").contains("image: registry.k8s.io/etcd:3.7.0-0")
    );
}

#[test]
fn a_skipped_minor_or_a_downgrade_is_refused_with_what_to_do() {
    let c = at("upgrade-refused", "v1.35.8");
    c.generate();
    let before = c.tree();
    set_version(&c, "v1.35.8", "v1.37.1");
    let err = support::try_apply(&c.options()).unwrap_err();
    assert!(err.contains("skips v1.36") && err.contains("one minor at a time") && err.contains("v1.36.x"), "{err}");
    let plan_err = c.options().load().and_then(|ctx| ctx.plan()).unwrap_err().to_string();
    assert!(plan_err.contains("skips v1.36"), "{plan_err}");
    set_version(&c, "v1.37.1", "v1.34.2");
    let err = support::try_apply(&c.options()).unwrap_err();
    assert!(err.contains("older than v1.35.8") && err.contains("downgrades are not supported"), "{err}");
    set_version(&c, "v1.34.2", "v1.35.7");
    let err = support::try_apply(&c.options()).unwrap_err();
    assert!(err.contains("older than v1.35.8"), "a patch downgrade too: {err}");
    assert_eq!(before.diff(&c.tree()), Vec::<String>::new(), "refused runs write nothing");
}

#[test]
fn versions_past_upstream_support_warn_on_every_run() {
    let c = at("upgrade-old", "v1.33.4");
    let r = c.generate();
    assert_eq!(r.warnings.len(), 1, "{r}");
    assert!(r.warnings[0].contains("v1.33 is past upstream support") && r.warnings[0].contains("v1.34 next"), "{r}");
    assert!(r.to_string().starts_with("warning: Kubernetes v1.33 is past upstream support"), "{r}");
    assert_eq!(c.plan().warnings, r.warnings);
    // v1.33 -> v1.34 changes what kubeadm v1.34 writes differently: named probe ports, no creationTimestamp, the
    // etcd 3.6 flag names, and every node's kubeadm-flags.env for the new pause tag; no certificate.
    let flags = ["cp-1", "worker-1", "worker-2"].map(|n| format!("nodes/{n}/var/lib/kubelet/kubeadm-flags.env"));
    let files: Vec<&str> = CONTROL_PLANE.iter().copied().chain(flags.iter().map(String::as_str)).collect();
    step(&c, "v1.33.4", "v1.34.2", &files);
    let env = c.tree().text("nodes/worker-1/var/lib/kubelet/kubeadm-flags.env");
    assert_eq!(env, "KUBELET_KUBEADM_ARGS=\"--pod-infra-container-image=registry.k8s.io/pause:3.10.1\"\n");
    let etcd = c.tree().text("nodes/cp-1/etc/kubernetes/manifests/etcd.yaml");
    assert!(etcd.contains("--feature-gates=InitialCorruptCheck=true") && !etcd.contains("creationTimestamp"), "{etcd}");
    let r = support::apply(&c.options());
    assert!(r.warnings[0].contains("v1.34 is past upstream support"), "{r}");
}

#[test]
fn an_upgrade_keeps_every_key_of_every_node() {
    let c = at("upgrade-keys", "v1.36.4");
    c.generate();
    let keys = |t: &Tree| -> Vec<(String, Vec<u8>)> {
        t.files().into_iter().filter(|(p, _)| p.ends_with(".key") || p.ends_with(".crt")).collect()
    };
    let before = keys(&c.tree());
    set_version(&c, "v1.36.4", "v1.37.1");
    c.generate();
    assert_eq!(before, keys(&c.tree()), "no certificate or key changes with the version");
}
