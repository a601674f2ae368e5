//! Rotating a CA and the service-account key as reviewable stages (issue 15): `pki.rotation.<name>: add | switch |
//! remove`, each stage a plan that names exactly the files it changes, the stage rules read from the store, and the
//! output of neighbouring stages proven to interoperate with the real components, mixed as a rolling restart mixes
//! them: kubectl against `openssl s_server` (as tests/real_kubectl.rs does), a three-member etcd on 127.0.0.1-3
//! (as tests/real_etcd.rs does), and service-account tokens checked with PyJWT.
//!
//! Byte comparisons use the fixed seed and clock of the test kit; the real-component tests use the real clock
//! (the TLS peers check validity against it).

mod real;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine;
use kubeforge::ops::report::{Action, RotationLine, RunReport};
use kubeforge::pki::inspect::{CertInfo, signed_by};
use real::{bundle, container_command, flag, manifest, on_node};
use support::{Cluster, Proc, TempDir, Tree};

// ------------------------------------------------------------------------------------------------------------------
// The spec, the stages, the trees
// ------------------------------------------------------------------------------------------------------------------

/// `base` with `pki.rotation` set to `entries` (none: no rotation entry at all).
fn with_rotation(base: &str, entries: &[(&str, &str)]) -> String {
    if entries.is_empty() {
        return base.to_string();
    }
    let mut block = String::from("pki:\n  rotation:\n");
    for (name, stage) in entries {
        block += &format!("    {name}: {stage}\n");
    }
    assert!(base.contains("pki:\n"), "the spec has no pki section");
    base.replacen("pki:\n", &block, 1)
}

fn set_rotation(c: &Cluster, base: &str, entries: &[(&str, &str)]) {
    fs::write(&c.spec, with_rotation(base, entries)).unwrap();
}

fn seeded_plan(c: &Cluster) -> Result<RunReport, String> {
    c.seeded().load().and_then(|x| x.plan()).map_err(|e| e.to_string())
}

fn seeded_gen(c: &Cluster) -> Result<RunReport, String> {
    support::try_apply(&c.seeded())
}

fn rotations(r: &RunReport) -> Vec<(String, &'static str, bool)> {
    r.rotations.iter().map(|l: &RotationLine| (l.name.clone(), l.stage, l.entering)).collect()
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// One stage: the plan names exactly `write` and `remove` and writes nothing; gen changes exactly those files; the
/// report says the stage; a second plan has nothing to do and a second gen touches nothing. Returns gen's report.
fn stage(c: &Cluster, base: &str, entries: &[(&str, &str)], write: &[String], remove: &[String]) -> RunReport {
    set_rotation(c, base, entries);
    let before = c.tree();
    let what = format!("{entries:?}");
    let plan = seeded_plan(c).unwrap_or_else(|e| panic!("{what}: plan: {e}"));
    let files = plan.files.as_ref().unwrap();
    assert_eq!(sorted(&files.write), sorted(write), "{what}: the files the plan writes:\n{plan}");
    assert_eq!(sorted(&files.remove), sorted(remove), "{what}: the files the plan removes:\n{plan}");
    assert_eq!(before.touched(&c.tree()), Vec::<String>::new(), "{what}: plan writes nothing");
    let json = serde_json::to_value(&plan).unwrap();
    let errors = support::schema_errors("report.schema.json", &json);
    assert!(errors.is_empty(), "{what}: the plan's report breaks the schema: {errors:#?}");

    let applied = seeded_gen(c).unwrap_or_else(|e| panic!("{what}: gen: {e}"));
    let after = c.tree();
    let mut changed: Vec<String> = write.iter().chain(remove).cloned().collect();
    changed.sort();
    assert_eq!(before.changed_files(&after), changed, "{what}: what gen changed");
    assert!(rotations(&applied).iter().all(|r| r.2), "{what}: every rotation enters its stage: {applied}");
    let expected: Vec<(String, &str, bool)> = entries.iter().map(|(n, s)| (n.to_string(), *s, true)).collect();
    let mut got = rotations(&applied);
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want, "{what}: the report's rotations");
    let name = entries.first().map(|e| e.0).unwrap_or("ca");
    assert!(applied.to_string().contains(&format!("rotation: {name} -> ")), "{what}: {applied}");

    // A rerun at the same stage changes nothing, and says so.
    let again = seeded_plan(c).unwrap();
    assert!(!again.has_changes(), "{what}: a rerun at the same stage must be a no-op:\n{again}");
    assert!(rotations(&again).iter().all(|r| !r.2), "{what}: {again}");
    assert!(again.to_string().contains("(no change)"), "{what}: {again}");
    let tree = c.tree();
    seeded_gen(c).unwrap();
    assert_eq!(tree.touched(&c.tree()), Vec::<String>::new(), "{what}: a second gen touches nothing");
    applied
}

/// The certificate-authority-data of a kubeconfig, decoded.
fn ca_data(kubeconfig: &str) -> String {
    let v: serde_yaml::Value = serde_yaml::from_str(kubeconfig).unwrap();
    let b64 = v["clusters"][0]["cluster"]["certificate-authority-data"].as_str().unwrap();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

fn info(pem: &str) -> CertInfo {
    CertInfo::from_pem(pem).unwrap_or_else(|e| panic!("{e}"))
}

/// The demo's kubeconfigs: (node, file) and the operator's `admin.conf`.
fn demo_kubeconfigs() -> Vec<String> {
    let mut v = vec!["admin.conf".to_string()];
    for f in ["admin", "super-admin", "controller-manager", "scheduler", "kubelet", "kube-proxy"] {
        v.push(format!("nodes/cp-1/etc/kubernetes/{f}.conf"));
    }
    for w in ["worker-1", "worker-2"] {
        for f in ["kubelet", "kube-proxy"] {
            v.push(format!("nodes/{w}/etc/kubernetes/{f}.conf"));
        }
    }
    v
}

/// The demo's leaves signed by the cluster CA, as store ids (written by hand from the certificate table).
fn demo_ca_leaves() -> Vec<String> {
    let mut v: Vec<String> = ["admin", "super-admin"].iter().map(|s| s.to_string()).collect();
    for p in ["apiserver", "apiserver-kubelet-client", "controller-manager", "scheduler"] {
        v.push(format!("nodes/cp-1/{p}"));
    }
    for n in ["cp-1", "worker-1", "worker-2"] {
        for p in ["kubelet-client", "kubelet-serving", "kube-proxy"] {
            v.push(format!("nodes/{n}/{p}"));
        }
    }
    v
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

const NODES: [&str; 3] = ["cp-1", "worker-1", "worker-2"];
const CP: &str = "nodes/cp-1/etc/kubernetes";
const KCM: &str = "nodes/cp-1/etc/kubernetes/manifests/kube-controller-manager.yaml";

/// Equal secrets, without ever printing them (an `assert_eq!` would show both in its message).
fn secret_eq(a: &str, b: &str, what: &str) {
    assert!(a == b, "{what} (contents not shown: a private key)");
}

/// Every file of `before` that is a private key and not in `except` is byte-identical in `after`.
fn keys_kept(before: &Tree, after: &Tree, except: &dyn Fn(&str) -> bool, what: &str) {
    let (b, a) = (before.files(), after.files());
    let mut n = 0;
    for (path, bytes) in b.iter().filter(|(p, _)| p.ends_with(".key") && !except(p)) {
        assert!(a.get(path) == Some(bytes), "{what}: {path} must be kept byte for byte");
        n += 1;
    }
    assert!(n > 10, "{what}: only {n} keys compared");
}

// ------------------------------------------------------------------------------------------------------------------
// The cluster CA: every stage's files, contents, reports
// ------------------------------------------------------------------------------------------------------------------

#[test]
fn ca_rotation_stage_by_stage_changes_exactly_its_files() {
    let base = kubeforge::DEMO_SPEC;
    let c = Cluster::new("rot-ca", base);
    seeded_gen(&c).unwrap();
    let t0 = c.tree();
    let old_ca = t0.text("pki/ca.crt");
    let old_key = t0.text("pki/ca.key");
    let kubeconfigs = demo_kubeconfigs();
    let worker_cas: Vec<String> = NODES.iter().map(|n| format!("nodes/{n}/etc/kubernetes/pki/ca.crt")).collect();

    // add: the incoming CA beside the current one at every trust point; no leaf changes.
    let mut write = s(&[".gitignore", "PKI.md", "index.json", "pki/ca.next.crt", "pki/ca.next.key", KCM]);
    write.push(format!("{CP}/pki/ca-signing.crt"));
    write.extend(kubeconfigs.iter().cloned());
    write.extend(worker_cas.iter().cloned());
    let r = stage(&c, base, &[("ca", "add")], &write, &[]);
    assert!(r.certificates.iter().all(|l| l.action == Action::Keep), "add reissues nothing: {r}");
    let t1 = c.tree();
    let new_ca = t1.text("pki/ca.next.crt");
    let new_key = t1.text("pki/ca.next.key");
    let (old, new) = (info(&old_ca), info(&new_ca));
    assert_eq!((new.subject.as_str(), new.is_ca), (old.subject.as_str(), true), "same subject rules");
    assert_ne!(new.serial, old.serial, "two CAs of one subject never share a serial");
    assert_ne!(new.spki_der, old.spki_der);
    assert_eq!(t1.text("pki/ca.crt"), old_ca, "the current CA still signs");
    for p in &worker_cas {
        assert_eq!(t1.text(p), format!("{old_ca}{new_ca}"), "{p}: both CAs, the signing one first");
    }
    for k in &kubeconfigs {
        assert_eq!(ca_data(&t1.text(k)), format!("{old_ca}{new_ca}"), "{k}: certificate-authority-data");
    }
    assert_eq!(t1.text(&format!("{CP}/pki/ca-signing.crt")), old_ca);
    secret_eq(&t1.text(&format!("{CP}/pki/ca.key")), &old_key, "ca.key pairs with ca.crt's first certificate");
    assert!(t1.text(".gitignore").lines().any(|l| l == "/pki/ca.next.key"), "the incoming key is a secret");
    let kcm = container_command(&c.out.join(KCM));
    assert_eq!(flag(&kcm, "cluster-signing-cert-file"), "/etc/kubernetes/pki/ca-signing.crt");
    assert_eq!(flag(&kcm, "cluster-signing-key-file"), "/etc/kubernetes/pki/ca.key");
    for f in ["client-ca-file", "root-ca-file"] {
        assert_eq!(flag(&kcm, f), "/etc/kubernetes/pki/ca.crt", "{f} names the bundle");
    }
    let api = container_command(&c.out.join(format!("{CP}/manifests/kube-apiserver.yaml")));
    for f in ["client-ca-file", "kubelet-certificate-authority"] {
        assert_eq!(flag(&api, f), "/etc/kubernetes/pki/ca.crt", "{f} names the bundle");
    }
    let index: serde_json::Value = serde_json::from_str(&t1.text("index.json")).unwrap();
    let signing = index["files"].as_array().unwrap().iter().find(|f| f["path"] == format!("{CP}/pki/ca-signing.crt"));
    assert_eq!(signing.unwrap()["usedBy"], serde_json::json!(["kube-controller-manager --cluster-signing-cert-file"]));
    // check lists both CAs.
    let check = kubeforge::ops::check(&c.out, support::now(), 0).unwrap();
    let cas: Vec<&str> = check.certificates.iter().filter(|r| r.is_ca).map(|r| r.name.as_str()).collect();
    assert_eq!(cas, ["ca", "ca.next", "etcd-ca", "front-proxy-ca"]);
    assert!(t1.text("PKI.md").lines().any(|l| l.starts_with("| ca (incoming) |")), "{}", t1.text("PKI.md"));

    // switch: every leaf under ca reissued by the incoming CA, which signs from now on; both stay trusted.
    let mut write = s(&[".gitignore", "PKI.md", "index.json", "pki/ca.crt", "pki/ca.key", "pki/ca.prev.crt"]);
    for id in demo_ca_leaves() {
        write.push(format!("pki/{id}.crt"));
        write.push(format!("pki/{id}.key"));
    }
    for f in ["ca.crt", "ca.key", "ca-signing.crt", "apiserver.crt", "apiserver.key"] {
        write.push(format!("{CP}/pki/{f}"));
    }
    for f in ["apiserver-kubelet-client.crt", "apiserver-kubelet-client.key"] {
        write.push(format!("{CP}/pki/{f}"));
    }
    for n in NODES {
        write.push(format!("nodes/{n}/var/lib/kubelet/pki/kubelet.crt"));
        write.push(format!("nodes/{n}/var/lib/kubelet/pki/kubelet.key"));
    }
    write.extend(kubeconfigs.iter().cloned());
    write.extend(worker_cas.iter().filter(|p| !p.starts_with("nodes/cp-1/")).cloned());
    let r = stage(&c, base, &[("ca", "switch")], &write, &s(&["pki/ca.next.crt", "pki/ca.next.key"]));
    let reissued: BTreeSet<String> =
        r.certificates.iter().filter(|l| l.action == Action::Reissue).map(|l| l.id.clone()).collect();
    assert_eq!(reissued, demo_ca_leaves().into_iter().collect(), "switch reissues exactly the leaves under ca: {r}");
    for l in r.certificates.iter().filter(|l| l.action == Action::Reissue) {
        assert_eq!(l.reasons, [kubeforge::pki::rotation::switch_reason("ca")], "{}", l.id);
    }
    let t2 = c.tree();
    assert_eq!(t2.text("pki/ca.crt"), new_ca, "the incoming CA is the CA");
    secret_eq(&t2.text("pki/ca.key"), &new_key, "pki/ca.key: the incoming key");
    assert_eq!(t2.text("pki/ca.prev.crt"), old_ca, "the outgoing CA's certificate stays, for the trust points");
    for p in &worker_cas {
        assert_eq!(t2.text(p), format!("{new_ca}{old_ca}"), "{p}: both CAs, the signing one first");
    }
    for k in &kubeconfigs {
        assert_eq!(ca_data(&t2.text(k)), format!("{new_ca}{old_ca}"), "{k}");
    }
    assert_eq!(t2.text(&format!("{CP}/pki/ca-signing.crt")), new_ca);
    secret_eq(&t2.text(&format!("{CP}/pki/ca.key")), &new_key, "the node's ca.key: the incoming key");
    for id in demo_ca_leaves() {
        let leaf = info(&t2.text(&format!("pki/{id}.crt")));
        assert!(signed_by(&leaf.der, &new.spki_der) && !signed_by(&leaf.der, &old.spki_der), "{id}");
        let (a, b) = (t2.text(&format!("pki/{id}.key")), t1.text(&format!("pki/{id}.key")));
        assert!(a != b, "{id}: a new key");
    }
    // The outgoing CA's private key is gone from OUT: nothing is signed with it any more.
    for (path, bytes) in t2.files() {
        assert!(!String::from_utf8_lossy(&bytes).contains(old_key.trim()), "{path} holds the outgoing CA's key");
    }
    let check = kubeforge::ops::check(&c.out, support::now(), 0).unwrap();
    let cas: Vec<&str> = check.certificates.iter().filter(|r| r.is_ca).map(|r| r.name.as_str()).collect();
    assert_eq!(cas, ["ca", "ca.prev", "etcd-ca", "front-proxy-ca"]);

    // remove: the outgoing CA leaves every trust point; its certificate is archived.
    let archived = format!("pki/archive/ca-{}.crt", old.serial.replace(':', ""));
    let mut write = s(&["PKI.md", "index.json", KCM, &archived]);
    write.extend(kubeconfigs.iter().cloned());
    write.extend(worker_cas.iter().cloned());
    stage(&c, base, &[("ca", "remove")], &write, &s(&["pki/ca.prev.crt", &format!("{CP}/pki/ca-signing.crt")]));
    let t3 = c.tree();
    assert_eq!(t3.text(&archived), old_ca);
    for p in &worker_cas {
        assert_eq!(t3.text(p), new_ca, "{p}: only the new CA");
    }
    for k in &kubeconfigs {
        assert_eq!(ca_data(&t3.text(k)), new_ca, "{k}");
    }
    assert_eq!(t3.text(KCM), t0.text(KCM), "outside a rotation the controller-manager is as before, byte for byte");
    let check = kubeforge::ops::check(&c.out, support::now(), 0).unwrap();
    assert_eq!(check.certificates.len(), 23, "the archived CA is trusted nowhere and not checked");

    // The spec may drop the entry: nothing changes.
    set_rotation(&c, base, &[]);
    let plan = seeded_plan(&c).unwrap();
    assert!(!plan.has_changes() && plan.rotations.is_empty(), "{plan}");
    // Through it all: the other CAs, the service-account key and every key not under ca, byte for byte.
    let under_ca = |p: &str| {
        demo_ca_leaves().iter().any(|id| p == format!("pki/{id}.key"))
            || p.ends_with("/ca.key")
            || p == "pki/ca.key"
            || p.ends_with("/apiserver.key")
            || p.ends_with("/apiserver-kubelet-client.key")
            || p.ends_with("/kubelet/pki/kubelet.key")
    };
    keys_kept(&t0, &t3, &under_ca, "ca rotation");
    for f in ["pki/front-proxy-ca.crt", "pki/etcd-ca.crt", "pki/sa.pub", &format!("{CP}/pki/etcd/ca.crt")] {
        assert_eq!(t0.text(f), t3.text(f), "{f}");
    }
}

// ------------------------------------------------------------------------------------------------------------------
// The stage rules
// ------------------------------------------------------------------------------------------------------------------

/// A run that must fail: its error, and OUT untouched.
fn refused(c: &Cluster, base: &str, entries: &[(&str, &str)]) -> String {
    set_rotation(c, base, entries);
    let before = c.tree();
    let e = seeded_gen(c).expect_err(&format!("{entries:?} must be refused"));
    assert_eq!(before.touched(&c.tree()), Vec::<String>::new(), "{entries:?}: a refused run writes nothing");
    let p = seeded_plan(c).expect_err("plan refuses it too");
    assert_eq!(p, e);
    e
}

#[test]
fn out_of_order_stages_are_refused_with_the_next_stage() {
    let base = kubeforge::DEMO_SPEC;
    let c = Cluster::new("rot-rules", base);
    // Nothing to rotate before the first run.
    set_rotation(&c, base, &[("ca", "add")]);
    let e = seeded_gen(&c).unwrap_err();
    assert!(e.contains("pki.rotation.ca: there is no ca to rotate yet"), "{e}");
    assert!(!c.out.join("pki").exists(), "nothing written");
    set_rotation(&c, base, &[]);
    seeded_gen(&c).unwrap();

    for (name, entries, want) in [
        ("switch without add", [("ca", "switch")], ["switch is out of order", "The next stage is add"]),
        ("remove without add", [("ca", "remove")], ["remove is out of order", "The next stage is add"]),
        ("sa switch without add", [("sa", "switch")], ["switch is out of order", "The next stage is add"]),
    ] {
        let e = refused(&c, base, &entries);
        assert!(want.iter().all(|w| e.contains(w)), "{name}: {e}");
    }
    set_rotation(&c, base, &[("ca", "add"), ("sa", "add")]);
    seeded_gen(&c).unwrap();
    let e = refused(&c, base, &[("ca", "remove"), ("sa", "add")]);
    assert!(e.contains("remove right after add is out of order") && e.contains("The next stage is switch"), "{e}");
    assert!(e.contains("still signed by the outgoing CA"), "{e}");
    let e = refused(&c, base, &[("ca", "add")]);
    assert!(e.contains("pki/sa.next.pub") && e.contains("The next stage is switch"), "dropping sa's entry: {e}");
    let e = refused(&c, base, &[("sa", "add")]);
    assert!(e.contains("never drops or replaces a CA silently") && e.contains("pki/ca.next.crt"), "{e}");

    set_rotation(&c, base, &[("ca", "switch"), ("sa", "switch")]);
    seeded_gen(&c).unwrap();
    let e = refused(&c, base, &[("ca", "add"), ("sa", "switch")]);
    assert!(e.contains("add is out of order") && e.contains("The next stage is remove"), "{e}");
    let e = refused(&c, base, &[("sa", "switch")]);
    assert!(e.contains("pki/ca.prev.crt") && e.contains("The next stage is remove"), "{e}");

    set_rotation(&c, base, &[("ca", "remove"), ("sa", "remove")]);
    seeded_gen(&c).unwrap();
    let e = refused(&c, base, &[("ca", "switch"), ("sa", "remove")]);
    assert!(e.contains("the last rotation of ca is complete") && e.contains("The next stage is add"), "{e}");
    // A completed rotation: remove stays a no-op, and so does dropping the entries.
    set_rotation(&c, base, &[("ca", "remove"), ("sa", "remove")]);
    assert!(!seeded_plan(&c).unwrap().has_changes());
    set_rotation(&c, base, &[]);
    assert!(!seeded_plan(&c).unwrap().has_changes());
    // A new rotation may start again.
    set_rotation(&c, base, &[("ca", "add")]);
    let again = seeded_plan(&c).unwrap();
    assert_eq!(rotations(&again), [("ca".to_string(), "add", true)]);

    // The spec: names, stages, and what cannot be rotated, each with its field path.
    let parse = |extra: &str, rotation: &str| {
        let text = with_rotation(&base.replace("nodes:\n", &format!("{extra}nodes:\n")), &[]).replacen(
            "pki:\n",
            &format!("pki:\n  rotation: {rotation}\n"),
            1,
        );
        kubeforge::spec::parse(Path::new("r.yaml"), &text).map(|_| ()).map_err(|e| e.to_string())
    };
    let external = "etcd:\n  external:\n    endpoints: [https://10.0.1.5:2379]\n";
    for (extra, rotation, want) in [
        ("", "{kubelet: add}", "pki.rotation.kubelet: \"kubelet\" is not one of ca, front-proxy-ca, etcd-ca, sa"),
        ("", "{ca: rotate}", "pki.rotation.ca: \"rotate\" is not one of add, switch, remove"),
        (external, "{etcd-ca: add}", "pki.rotation.etcd-ca: with etcd.external there is no etcd CA"),
    ] {
        let e = parse(extra, rotation).unwrap_err();
        assert!(e.contains(want), "{rotation}: {e}");
    }
    parse("", "{ca: add, front-proxy-ca: switch, etcd-ca: remove, sa: add}").unwrap();
    let e = parse("", "[ca]").unwrap_err();
    assert!(e.contains("pki.rotation"), "{e}");
}

#[test]
fn two_cas_rotate_at_once_each_touching_only_its_own_files() {
    let base = kubeforge::DEMO_SPEC;
    let c = Cluster::new("rot-two", base);
    seeded_gen(&c).unwrap();
    let t0 = c.tree();
    let both = |st| [("front-proxy-ca", st), ("etcd-ca", st)];
    let mut write = s(&[".gitignore", "PKI.md", "index.json"]);
    for ca in ["front-proxy-ca", "etcd-ca"] {
        write.push(format!("pki/{ca}.next.crt"));
        write.push(format!("pki/{ca}.next.key"));
    }
    write.push(format!("{CP}/pki/front-proxy-ca.crt"));
    write.push(format!("{CP}/pki/etcd/ca.crt"));
    stage(&c, base, &both("add"), &write, &[]);
    let t1 = c.tree();
    let fp_next = t1.text("pki/front-proxy-ca.next.crt");
    let etcd_next = t1.text("pki/etcd-ca.next.crt");
    assert_eq!(t1.text(&format!("{CP}/pki/etcd/ca.crt")), format!("{}{etcd_next}", t0.text("pki/etcd-ca.crt")));

    let mut write = s(&[".gitignore", "PKI.md", "index.json"]);
    for ca in ["front-proxy-ca", "etcd-ca"] {
        for f in [".crt", ".key", ".prev.crt"] {
            write.push(format!("pki/{ca}{f}"));
        }
    }
    for id in ["front-proxy-client", "etcd-server", "etcd-peer", "etcd-healthcheck-client", "apiserver-etcd-client"] {
        write.push(format!("pki/nodes/cp-1/{id}.crt"));
        write.push(format!("pki/nodes/cp-1/{id}.key"));
    }
    for f in [
        "front-proxy-ca",
        "front-proxy-client",
        "etcd/ca",
        "etcd/server",
        "etcd/peer",
        "etcd/healthcheck-client",
        "apiserver-etcd-client",
    ] {
        write.push(format!("{CP}/pki/{f}.crt"));
        write.push(format!("{CP}/pki/{f}.key"));
    }
    let mut remove = Vec::new();
    for ca in ["front-proxy-ca", "etcd-ca"] {
        remove.push(format!("pki/{ca}.next.crt"));
        remove.push(format!("pki/{ca}.next.key"));
    }
    stage(&c, base, &both("switch"), &write, &remove);
    let t2 = c.tree();
    assert_eq!(t2.text("pki/front-proxy-ca.crt"), fp_next);
    assert_eq!(
        t2.text(&format!("{CP}/pki/front-proxy-ca.crt")),
        format!("{fp_next}{}", t0.text("pki/front-proxy-ca.crt"))
    );

    let mut write =
        s(&["PKI.md", "index.json", &format!("{CP}/pki/front-proxy-ca.crt"), &format!("{CP}/pki/etcd/ca.crt")]);
    for ca in ["front-proxy-ca", "etcd-ca"] {
        write
            .push(format!("pki/archive/{ca}-{}.crt", info(&t0.text(&format!("pki/{ca}.crt"))).serial.replace(':', "")));
    }
    stage(&c, base, &both("remove"), &write, &s(&["pki/front-proxy-ca.prev.crt", "pki/etcd-ca.prev.crt"]));
    let t3 = c.tree();
    assert_eq!(t3.text(&format!("{CP}/pki/etcd/ca.crt")), etcd_next);
    // Everything of the cluster CA and the service-account key, and every file a kubelet or kube-proxy reads.
    let now = t3.files();
    for (path, bytes) in t0.files() {
        let cluster_ca =
            path == "pki/ca.crt" || path == "pki/ca.key" || path.ends_with(".conf") || path.contains("/sa.");
        if cluster_ca || path.starts_with("nodes/worker-") || path.contains("kubelet") {
            assert!(now.get(&path) == Some(&bytes), "{path} must be kept byte for byte");
        }
    }
}

#[test]
fn renew_during_a_rotation_signs_with_the_stage_ca_and_a_public_plan_sees_the_switch() {
    let base = kubeforge::DEMO_SPEC;
    let c = Cluster::new("rot-renew", base);
    seeded_gen(&c).unwrap();
    let renew = |names: &[&str]| {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        c.seeded().load().and_then(|x| x.renew(&names, false)).unwrap_or_else(|e| panic!("renew: {e}"))
    };
    let apiserver = || info(&fs::read_to_string(c.out.join("pki/nodes/cp-1/apiserver.crt")).unwrap());
    set_rotation(&c, base, &[("ca", "add")]);
    seeded_gen(&c).unwrap();
    let old = info(&fs::read_to_string(c.out.join("pki/ca.crt")).unwrap());
    let new = info(&fs::read_to_string(c.out.join("pki/ca.next.crt")).unwrap());
    let before = apiserver();
    let r = renew(&["apiserver"]);
    assert_eq!(support::reissued(&r), ["nodes/cp-1/apiserver — renewal requested"], "{r}");
    let at_add = apiserver();
    assert_ne!(at_add.der, before.der);
    assert!(
        signed_by(&at_add.der, &old.spki_der) && !signed_by(&at_add.der, &new.spki_der),
        "add: the current CA signs"
    );
    assert_eq!(rotations(&r), [("ca".to_string(), "add", false)]);

    // A public-only plan (the committed half of OUT) sees what switch would reissue.
    let public = c.tmp.path().join("public");
    for (path, bytes) in c.tree().files() {
        if !(path.ends_with(".key") || path.ends_with(".conf")) {
            let p = public.join(&path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, bytes).unwrap();
        }
    }
    set_rotation(&c, base, &[("ca", "switch")]);
    let o =
        kubeforge::ops::Options { now: Some(support::now()), ..kubeforge::ops::Options::new(Some(&c.spec), &public) };
    let p = o.load().and_then(|x| x.plan()).unwrap();
    assert!(p.public_only, "{p}");
    assert_eq!(rotations(&p), [("ca".to_string(), "switch", true)]);
    let reissue: BTreeSet<String> =
        p.certificates.iter().filter(|l| l.action == Action::Reissue).map(|l| l.id.clone()).collect();
    assert_eq!(reissue, demo_ca_leaves().into_iter().collect(), "{p}");

    seeded_gen(&c).unwrap();
    let r = renew(&["apiserver"]);
    let at_switch = apiserver();
    assert!(
        signed_by(&at_switch.der, &new.spki_der) && !signed_by(&at_switch.der, &old.spki_der),
        "switch: the new CA signs"
    );
    assert_eq!(rotations(&r), [("ca".to_string(), "switch", false)]);
    // renew never touches a CA, rotating or not.
    let e = c.seeded().load().and_then(|x| x.renew(&["ca".to_string()], false)).unwrap_err().to_string();
    assert!(e.contains("is a CA"), "{e}");
}

#[test]
fn a_sealed_store_seals_the_incoming_keys_and_drops_the_outgoing_ones() {
    use age::secrecy::ExposeSecret;
    let tmp: TempDir = support::temp_dir("rot-sealed");
    let id = age::x25519::Identity::generate();
    let identity = tmp.join("identity.txt");
    fs::write(&identity, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let base = kubeforge::DEMO_SPEC.replace(
        "  certificateValidity: 8760h\n",
        &format!("  certificateValidity: 8760h\n  encryption:\n    age:\n      recipients: [{}]\n", id.to_public()),
    );
    let (spec, out) = (tmp.join("cluster.yaml"), tmp.join("out"));
    let run = |entries: &[(&str, &str)]| {
        fs::write(&spec, with_rotation(&base, entries)).unwrap();
        let o = kubeforge::ops::Options {
            seed: Some(support::SEED),
            now: Some(support::now()),
            identity: Some(identity.clone()),
            ..kubeforge::ops::Options::new(Some(&spec), &out)
        };
        support::apply(&o)
    };
    run(&[]);
    run(&[("ca", "add"), ("sa", "add")]);
    let files = Tree::of(&out).files();
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    for key in ["pki/ca.next.key", "pki/sa.next.key"] {
        assert!(!files.contains_key(key), "{key}: a secret is kept only sealed");
        assert!(files.contains_key(&format!("secrets/{key}.age")), "{key} is sealed");
        let entry = index["files"].as_array().unwrap().iter().find(|f| f["path"] == key).unwrap();
        assert_eq!(
            (entry["secret"].as_bool(), entry["sealed"].as_str()),
            (Some(true), Some(&*format!("secrets/{key}.age")))
        );
        assert!(String::from_utf8_lossy(&files[".gitignore"]).lines().any(|l| l == format!("/{key}")), "{key}");
    }
    // switch reads the incoming keys from the sealed store; the outgoing keys' sealed copies are gone.
    let before = Tree::of(&out).files();
    let r = run(&[("ca", "switch"), ("sa", "switch")]);
    assert_eq!(rotations(&r), [("ca".to_string(), "switch", true), ("sa".to_string(), "switch", true)]);
    let after = Tree::of(&out).files();
    for key in ["secrets/pki/ca.next.key.age", "secrets/pki/sa.next.key.age"] {
        assert!(!after.contains_key(key), "{key}");
    }
    for key in ["secrets/pki/ca.key.age", "secrets/pki/sa.key.age"] {
        assert_ne!(before[key], after[key], "{key}: the new key, sealed");
    }
    run(&[("ca", "remove"), ("sa", "remove")]);
}

// ------------------------------------------------------------------------------------------------------------------
// The service-account key, with tokens checked by PyJWT
// ------------------------------------------------------------------------------------------------------------------

const JWT_PY: &str = r#"
import json, re, sys
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
AUD = "https://kubernetes.default.svc.cluster.local"
mode = sys.argv[1]
if mode == "sign":
    key = load_pem_private_key(open(sys.argv[2], "rb").read(), password=None)
    claims = {"iss": AUD, "sub": "system:serviceaccount:default:rotation", "aud": [AUD], "exp": 4102444800}
    print(jwt.encode(claims, key, algorithm=sys.argv[3]))
else:
    token, alg = sys.argv[2], sys.argv[4]
    text = open(sys.argv[3]).read()
    blocks = re.findall(r"-----BEGIN PUBLIC KEY-----\n.*?-----END PUBLIC KEY-----\n", text, re.S)
    assert "".join(blocks) == text, "sa.pub holds PEM public keys and nothing else"
    verified = []
    for b in blocks:
        try:
            jwt.decode(token, load_pem_public_key(b.encode()), algorithms=[alg], audience=AUD)
            verified.append(True)
        except jwt.InvalidSignatureError:
            verified.append(False)
    print(json.dumps({"keys": len(blocks), "verified": verified}))
"#;

struct Jwt {
    script: PathBuf,
    alg: &'static str,
}

impl Jwt {
    fn new(dir: &Path, alg: &'static str) -> Jwt {
        let script = dir.join("jwt_check.py");
        fs::write(&script, JWT_PY).unwrap();
        Jwt { script, alg }
    }

    fn run(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(support::tool("KUBEFORGE_PYTHON"));
        cmd.arg(&self.script).args(args).env("PYTHONDONTWRITEBYTECODE", "1");
        support::stdout(&support::run(&mut cmd)).trim().to_string()
    }

    /// A token signed with the private key in `key` (a file; its content is never printed).
    fn sign(&self, key: &Path) -> String {
        self.run(&["sign", key.to_str().unwrap(), self.alg])
    }

    /// Which keys of a `sa.pub` verify `token`, in file order.
    fn verify(&self, token: &str, public: &Path) -> Vec<bool> {
        let v: serde_json::Value =
            serde_json::from_str(&self.run(&["verify", token, public.to_str().unwrap(), self.alg])).unwrap();
        let verified: Vec<bool> = v["verified"].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect();
        assert_eq!(v["keys"].as_u64(), Some(verified.len() as u64));
        verified
    }
}

fn sa_rotation(name: &str, key_algorithm: &str, alg: &'static str) {
    let base = kubeforge::DEMO_SPEC.replace("keyAlgorithm: ECDSA-P256", &format!("keyAlgorithm: {key_algorithm}"));
    let c = Cluster::new(name, &base);
    seeded_gen(&c).unwrap();
    let t0 = c.tree();
    let jwt = Jwt::new(c.tmp.path(), alg);
    let keep = c.tmp.path().join("keys");
    fs::create_dir_all(&keep).unwrap();
    let copy_key = |from: &str, to: &str| {
        let p = keep.join(to);
        fs::copy(c.out.join(from), &p).unwrap();
        p
    };
    let node_pub = c.out.join(format!("{CP}/pki/sa.pub"));
    let node_key = format!("{CP}/pki/sa.key");
    let old_token = jwt.sign(&copy_key(&node_key, "old.key"));
    assert_eq!(jwt.verify(&old_token, &node_pub), [true], "before: one key, which verifies its own tokens");
    let old_pub = t0.text("pki/sa.pub");

    stage(
        &c,
        &base,
        &[("sa", "add")],
        &s(&[".gitignore", "index.json", "pki/sa.next.key", "pki/sa.next.pub", &format!("{CP}/pki/sa.pub")]),
        &[],
    );
    let t1 = c.tree();
    let new_pub = t1.text("pki/sa.next.pub");
    assert_eq!(
        t1.text(&format!("{CP}/pki/sa.pub")),
        format!("{old_pub}{new_pub}"),
        "add: exactly the old and the new key"
    );
    secret_eq(&t1.text(&node_key), &t0.text(&node_key), "add: the old key still signs");
    let new_token = jwt.sign(&copy_key("pki/sa.next.key", "new.key"));
    assert_eq!(jwt.verify(&old_token, &node_pub), [true, false], "add: a token of the old key verifies");
    assert_eq!(jwt.verify(&new_token, &node_pub), [false, true], "add: a token of the new key verifies too");

    let write = s(&[
        ".gitignore",
        "index.json",
        "pki/sa.key",
        "pki/sa.pub",
        "pki/sa.prev.pub",
        &node_key,
        &format!("{CP}/pki/sa.pub"),
    ]);
    stage(&c, &base, &[("sa", "switch")], &write, &s(&["pki/sa.next.key", "pki/sa.next.pub"]));
    let t2 = c.tree();
    assert_eq!(
        t2.text(&format!("{CP}/pki/sa.pub")),
        format!("{new_pub}{old_pub}"),
        "switch: both keys, the signing one first"
    );
    secret_eq(&t2.text(&node_key), &fs::read_to_string(keep.join("new.key")).unwrap(), "switch: the new key signs");
    let apiserver = container_command(&c.out.join(format!("{CP}/manifests/kube-apiserver.yaml")));
    assert_eq!(flag(&apiserver, "service-account-signing-key-file"), "/etc/kubernetes/pki/sa.key");
    assert_eq!(flag(&apiserver, "service-account-key-file"), "/etc/kubernetes/pki/sa.pub");
    let kcm = container_command(&c.out.join(KCM));
    assert_eq!(flag(&kcm, "service-account-private-key-file"), "/etc/kubernetes/pki/sa.key");
    let switch_token = jwt.sign(&c.out.join(&node_key));
    assert_eq!(jwt.verify(&old_token, &node_pub), [false, true], "switch: a token of the old key still verifies");
    assert_eq!(jwt.verify(&switch_token, &node_pub), [true, false]);
    // Mixed: an apiserver still on the add files accepts what a switched one signs.
    let add_pub = c.tmp.path().join("add-sa.pub");
    fs::write(&add_pub, t1.text(&format!("{CP}/pki/sa.pub"))).unwrap();
    assert_eq!(jwt.verify(&switch_token, &add_pub), [false, true]);
    for (path, bytes) in t2.files() {
        assert!(!String::from_utf8_lossy(&bytes).contains(t0.text("pki/sa.key").trim()), "{path} holds the old sa.key");
    }

    let tag: String = {
        use sha2::Digest;
        sha2::Sha256::digest(old_pub.as_bytes())[..8].iter().map(|b| format!("{b:02x}")).collect()
    };
    let archived = format!("pki/archive/sa-{tag}.pub");
    stage(
        &c,
        &base,
        &[("sa", "remove")],
        &s(&["index.json", &archived, &format!("{CP}/pki/sa.pub")]),
        &s(&["pki/sa.prev.pub"]),
    );
    let t3 = c.tree();
    assert_eq!(t3.text(&format!("{CP}/pki/sa.pub")), new_pub, "remove: only the new key");
    assert_eq!(t3.text(&archived), old_pub);
    assert_eq!(jwt.verify(&old_token, &node_pub), [false], "remove: a token of the old key no longer verifies");
    assert_eq!(jwt.verify(&switch_token, &node_pub), [true]);
    // Every CA and certificate, and every key but sa's, byte for byte.
    keys_kept(&t0, &t3, &|p| p.ends_with("sa.key"), "sa rotation");
    let now = t3.files();
    for (path, bytes) in t0.files().into_iter().filter(|(p, _)| p.ends_with(".crt") || p.ends_with(".conf")) {
        // A kubeconfig holds a client key: compared without printing.
        assert!(now.get(&path) == Some(&bytes), "{path} must be kept byte for byte");
    }
}

#[test]
fn sa_rotation_es256_with_pyjwt() {
    sa_rotation("rot-sa-ec", "ECDSA-P256", "ES256");
}

#[test]
fn sa_rotation_rs256_with_pyjwt() {
    sa_rotation("rot-sa-rsa", "RSA-2048", "RS256");
}

// ------------------------------------------------------------------------------------------------------------------
// Real components: kubectl and etcd, with the files of neighbouring stages mixed
// ------------------------------------------------------------------------------------------------------------------

/// Generates `base` through every stage of `name`'s rotation into one OUT with the real clock, keeping a copy of
/// OUT after each: `before`, `add`, `switch`, `remove`.
fn stages(tmp: &Path, base: &str, name: &str, seed: u64) -> BTreeMap<&'static str, PathBuf> {
    let out = tmp.join("out");
    let spec = tmp.join("cluster.yaml");
    let mut dirs = BTreeMap::new();
    for st in ["before", "add", "switch", "remove"] {
        let entries: &[(&str, &str)] = if st == "before" { &[] } else { &[(name, st)] };
        fs::write(&spec, with_rotation(base, entries)).unwrap();
        support::generate_into(&spec, &out, seed, None);
        let copy = tmp.join(st);
        support::run(Command::new("cp").arg("-a").arg(&out).arg(&copy));
        dirs.insert(st, copy);
    }
    dirs
}

struct Kubectl {
    home: PathBuf,
    work: PathBuf,
}

impl Kubectl {
    fn new(tmp: &Path) -> Kubectl {
        let (home, work) = (tmp.join("home"), tmp.join("kubeconfigs"));
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&work).unwrap();
        Kubectl { home, work }
    }

    /// `kubectl get --raw /` with a copy of `kubeconfig` pointed at 127.0.0.1:`port`, verifying the server for the
    /// kubeconfig's own host (as real_kubectl.rs does).
    fn get(&self, label: &str, kubeconfig: &Path, port: u16) -> Output {
        let copy = self.work.join(label);
        fs::copy(kubeconfig, &copy).unwrap();
        let run = |args: &[&str]| {
            let mut c = real::kubectl(&self.home);
            c.arg("--kubeconfig").arg(&copy).args(args);
            c
        };
        let view = support::stdout(&support::run(&mut run(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].name} {.clusters[0].cluster.server}",
        ])));
        let (cluster, server) = view.trim().split_once(' ').unwrap();
        let host = server.trim_start_matches("https://").rsplit_once(':').unwrap().0.to_string();
        let local = format!("https://127.0.0.1:{port}");
        support::run(&mut run(&["config", "set-cluster", cluster, "--server", &local, "--tls-server-name", &host]));
        support::output(&mut run(&["get", "--raw", "/", "--request-timeout=30s"]))
    }
}

/// An apiserver impersonated by s_server: the serving certificate and key of one stage's cp-1, behind the
/// `--client-ca-file` of another's (each file found through that stage's kube-apiserver.yaml).
fn apiserver(tmp: &Path, label: &str, serving: &Path, client_ca: &Path) -> (Proc, u16) {
    let file = |stage: &Path, f: &str| {
        let b = bundle(stage, "cp-1");
        on_node(&b, flag(&container_command(&manifest(&b, "kube-apiserver")), f))
    };
    real::s_server(
        &tmp.join(format!("s_server-{label}.log")),
        &file(serving, "tls-cert-file"),
        &file(serving, "tls-private-key-file"),
        &file(client_ca, "client-ca-file"),
    )
}

const ADMIN_SUBJECT: &str = "O=kubeadm:cluster-admins, CN=kubernetes-admin";
const WORKER_SUBJECT: &str = "O=system:nodes, CN=system:node:worker-1";

fn served(what: &str, o: &Output, subject: &str) {
    let body = support::stdout(o);
    assert!(
        o.status.success() && body.contains("Verify return code: 0 (ok)"),
        "{what}: kubectl did not complete a verified request:{}",
        support::show(o)
    );
    assert!(
        body.lines().any(|l| l.trim() == real::www_subject(subject)),
        "{what}: another client than {subject}:\n{body}"
    );
}

fn refused_by(what: &str, o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && !support::stdout(o).contains("Verify return code"),
        "{what}: must fail:{}",
        support::show(o)
    );
    assert!(err.contains(needle), "{what}: expected {needle:?}:{}", support::show(o));
}

/// The kubeconfigs of a stage that the tests use: the operator's admin.conf and a worker's kubelet.conf.
fn clients(stage: &Path) -> [(PathBuf, &'static str); 2] {
    [
        (stage.join("admin.conf"), ADMIN_SUBJECT),
        (bundle(stage, "worker-1").join("etc/kubernetes/kubelet.conf"), WORKER_SUBJECT),
    ]
}

#[test]
fn ca_rotation_with_real_kubectl_across_mixed_stages() {
    let tmp: TempDir = support::temp_dir("rot-kubectl");
    let st = stages(&tmp, kubeforge::DEMO_SPEC, "ca", 31);
    let k = Kubectl::new(&tmp);
    let n = std::cell::Cell::new(0);
    // Each (client stage, server certificate stage, server client-CA stage) that must work, and must not.
    let ok = |client: &str, serving: &str, client_ca: &str| {
        let (server, port) = apiserver(&tmp, &format!("{serving}-{client_ca}"), &st[serving], &st[client_ca]);
        for (kc, subject) in clients(&st[client]) {
            n.set(n.get() + 1);
            let what = format!(
                "a {client} kubeconfig against an apiserver serving the {serving} certificate behind the {client_ca} --client-ca-file"
            );
            served(&what, &k.get(&format!("{}", n.get()), &kc, port), subject);
        }
        drop(server);
    };
    let no = |client: &str, serving: &str, client_ca: &str, needle: &str| {
        let (server, port) = apiserver(&tmp, &format!("{serving}-{client_ca}-no"), &st[serving], &st[client_ca]);
        for (kc, _) in clients(&st[client]) {
            n.set(n.get() + 1);
            let what = format!(
                "a {client} kubeconfig against the {serving} certificate behind the {client_ca} --client-ca-file"
            );
            refused_by(&what, &k.get(&format!("{}", n.get()), &kc, port), needle);
        }
        drop(server);
    };
    // After add: a client certificate from before the rotation (in the add kubeconfig, which trusts both CAs) with
    // an apiserver already serving switch's certificate behind add's --client-ca-file, and the reverse.
    ok("add", "switch", "add");
    ok("switch", "add", "add");
    // A kubeconfig from before the rotation (only the old CA) and an apiserver with add's files: fine, in both
    // directions; but it cannot verify a switch certificate: add must be everywhere before switch starts.
    ok("before", "add", "add");
    ok("add", "before", "before");
    no("before", "switch", "add", "x509: certificate signed by unknown authority");
    // After switch: switch and add files mixed, either way round.
    ok("switch", "switch", "switch");
    ok("add", "switch", "switch");
    ok("switch", "add", "switch");
    // After remove: the new certificates work, those from before the rotation are refused both ways.
    ok("remove", "remove", "remove");
    ok("switch", "remove", "remove");
    no("add", "remove", "remove", "remote error: tls:");
    no("before", "remove", "remove", "x509: certificate signed by unknown authority");
    no("remove", "add", "add", "x509: certificate signed by unknown authority");
}

// ---- etcd --------------------------------------------------------------------------------------------------------

const CLIENT: u16 = 2379;
const PEER: u16 = 2380;
const METRICS: u16 = 2381;
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Three control planes on 127.0.0.1-3 and a worker, v1.33 (whose etcd.yaml the installed etcd 3.5 runs as
/// written).
fn etcd_spec() -> String {
    let mut s = String::from(
        "apiVersion: kubeforge/v1alpha1\nkind: Cluster\nname: lo\nkubernetesVersion: v1.33.4\n\
         networking:\n  serviceSubnet: 10.96.0.0/12\npki:\n  keyAlgorithm: ECDSA-P256\nnodes:\n",
    );
    for (i, n) in ["cp-1", "cp-2", "cp-3"].iter().enumerate() {
        s += &format!("  - name: {n}\n    role: control-plane\n    address: 127.0.0.{}\n", i + 1);
    }
    s + "  - name: worker-1\n    role: worker\n    address: 127.0.0.9\n"
}

#[derive(Clone, Copy)]
struct Ports {
    addr: IpAddr,
    client: u16,
    peer: u16,
    metrics: u16,
    local_client: u16,
}

const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

impl Ports {
    fn new(addr: IpAddr) -> Ports {
        let on = |ip: IpAddr| support::free_port_on(&ip.to_string());
        let client = on(addr);
        let local_client = if addr == LO { client } else { on(LO) };
        Ports { addr, client, peer: on(addr), metrics: on(LO), local_client }
    }
}

/// The URLs of member `me`'s command: its own listeners and the others' peer URLs (as real_etcd.rs maps them).
fn port_map(all: &[Ports], me: usize) -> HashMap<(IpAddr, u16), u16> {
    let mut m = HashMap::new();
    for (i, p) in all.iter().enumerate() {
        if i != me {
            m.insert((p.addr, PEER), p.peer);
        }
    }
    let p = all[me];
    m.insert((p.addr, CLIENT), p.client);
    m.insert((p.addr, PEER), p.peer);
    m.insert((LO, CLIENT), p.local_client);
    m.insert((LO, METRICS), p.metrics);
    m
}

fn rewrite_urls(value: &str, map: &HashMap<(IpAddr, u16), u16>) -> String {
    let one = |url: &str| {
        let (scheme, ip, port) = real::parse_url(url);
        let new = map.get(&(ip, port)).unwrap_or_else(|| panic!("{url}: not an etcd URL of this cluster"));
        real::make_url(&scheme, ip, *new)
    };
    value
        .split(',')
        .map(|item| match item.split_once('=') {
            Some((name, url)) if url.contains("://") => format!("{name}={}", one(url)),
            _ => one(item),
        })
        .collect::<Vec<_>>()
        .join(",")
}

struct Member {
    name: String,
    ports: Ports,
    proc: Proc,
}

impl Member {
    fn healthy(&self) -> bool {
        http_get(SocketAddr::new(LO, self.ports.metrics), "/health").is_some_and(|b| b.contains(r#""health":"true""#))
    }

    fn client_url(&self) -> String {
        real::make_url("https", self.ports.addr, self.ports.client)
    }
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    assert!(addr.ip().is_loopback());
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// Member i of cp-1..3 runs its node's etcd.yaml and certificates from `stage_of[i]`; only paths, the data dir and
/// ports are rewritten. Waits until all three are healthy, failing at once on any TLS failure between them.
fn start_etcd(tmp: &Path, label: &str, stage_of: [&Path; 3]) -> Vec<Member> {
    let names = ["cp-1", "cp-2", "cp-3"];
    let ports: Vec<Ports> = (1..=3).map(|i| Ports::new(IpAddr::from([127, 0, 0, i]))).collect();
    let mut members: Vec<Member> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let b = bundle(stage_of[i], name);
            let map = port_map(&ports, i);
            let data = tmp.join(format!("{label}-data-{name}"));
            let cmd = container_command(&manifest(&b, "etcd"));
            assert_eq!(cmd[0], "etcd");
            let args: Vec<String> = cmd[1..]
                .iter()
                .map(|arg| {
                    let (flag, value) = arg.strip_prefix("--").and_then(|a| a.split_once('=')).unwrap();
                    let value = if flag == "data-dir" {
                        data.display().to_string()
                    } else if value.starts_with("/etc/kubernetes/") {
                        on_node(&b, value).display().to_string()
                    } else if value.contains("://") {
                        rewrite_urls(value, &map)
                    } else {
                        value.to_string()
                    };
                    format!("--{flag}={value}")
                })
                .collect();
            let mut c = Command::new(support::tool("KUBEFORGE_ETCD"));
            c.env_clear().args(&args);
            let proc = support::spawn(c, &tmp.join(format!("{label}-etcd-{name}.log")));
            Member { name: name.to_string(), ports: ports[i], proc }
        })
        .collect();
    let start = Instant::now();
    while !members.iter().all(Member::healthy) {
        for m in &mut members {
            let log = m.proc.log();
            let tls = real::etcd_tls_failures(&log);
            assert!(tls.is_empty(), "{label}: member {} saw a TLS failure:\n{}", m.name, tls.join("\n"));
            if let Some(status) = m.proc.exited() {
                panic!("{label}: member {} exited ({status}):\n{log}", m.name);
            }
        }
        assert!(start.elapsed() < START_TIMEOUT, "{label}: the cluster did not form in {START_TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    members
}

/// The etcd client kube-apiserver of cp-1 uses in `stage`: its `--etcd-cafile/--etcd-certfile/--etcd-keyfile`.
struct EtcdClient {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl EtcdClient {
    fn of(stage: &Path) -> EtcdClient {
        let b = bundle(stage, "cp-1");
        let cmd = container_command(&manifest(&b, "kube-apiserver"));
        EtcdClient {
            ca: on_node(&b, flag(&cmd, "etcd-cafile")),
            cert: on_node(&b, flag(&cmd, "etcd-certfile")),
            key: on_node(&b, flag(&cmd, "etcd-keyfile")),
        }
    }

    fn etcdctl(&self, endpoint: &str, args: &[&str]) -> Output {
        let mut c = Command::new(support::tool("KUBEFORGE_ETCDCTL"));
        c.env_clear().env("ETCDCTL_API", "3");
        c.arg(format!("--endpoints={endpoint}"))
            .arg(format!("--cacert={}", self.ca.display()))
            .arg(format!("--cert={}", self.cert.display()))
            .arg(format!("--key={}", self.key.display()))
            .args(["--dial-timeout=3s", "--command-timeout=5s"])
            .args(args);
        support::output(&mut c)
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The mixed cluster is healthy and replicates, and the apiserver etcd client of each of `stages` is accepted by
/// every member (and verifies every member's serving certificate).
fn mixed_cluster_serves(label: &str, members: &[Member], stages: &[(&str, &Path)]) {
    let clients: Vec<(&str, EtcdClient)> = stages.iter().map(|(n, p)| (*n, EtcdClient::of(p))).collect();
    for (i, (stage, client)) in clients.iter().enumerate() {
        let key = format!("/registry/kubeforge/{label}-{stage}");
        let put = client.etcdctl(&members[i % 3].client_url(), &["put", &key, stage]);
        assert!(
            put.status.success(),
            "{label}: put with the {stage} client via {}:{}",
            members[i % 3].name,
            support::show(&put)
        );
        for m in members {
            let o = client.etcdctl(&m.client_url(), &["get", &key, "--print-value-only"]);
            assert!(
                o.status.success() && support::stdout(&o).trim() == *stage,
                "{label}: the {stage} apiserver client reading through {} (written via {}):{}",
                m.name,
                members[i % 3].name,
                support::show(&o)
            );
            let h = text(&client.etcdctl(&m.client_url(), &["endpoint", "health"]));
            assert!(h.contains("is healthy"), "{label}: {stage} client, member {}: {h}", m.name);
        }
    }
    for m in members {
        let log = m.proc.log();
        assert!(real::etcd_tls_failures(&log).is_empty(), "{label}: member {} saw a TLS failure:\n{log}", m.name);
    }
}

#[test]
fn etcd_ca_rotation_with_a_real_three_member_etcd_across_mixed_stages() {
    let tmp: TempDir = support::temp_dir("rot-etcd");
    let st = stages(&tmp, &etcd_spec(), "etcd-ca", 41);
    let (add, switch, remove) = (st["add"].as_path(), st["switch"].as_path(), st["remove"].as_path());
    // After add: one member runs switch's files, two run add's.
    {
        let members = start_etcd(&tmp, "add", [switch, add, add]);
        mixed_cluster_serves("after add", &members, &[("add", add), ("switch", switch)]);
    }
    // After switch: two members on switch's files, one still on add's.
    {
        let members = start_etcd(&tmp, "switch", [switch, switch, add]);
        mixed_cluster_serves("after switch", &members, &[("switch", switch), ("add", add)]);
    }
    // After remove: the new certificates work; the apiserver's etcd client from before the switch is refused.
    let mut members = start_etcd(&tmp, "remove", [remove, remove, remove]);
    mixed_cluster_serves("after remove", &members, &[("remove", remove), ("switch", switch)]);
    let old = EtcdClient::of(add);
    for m in &mut members {
        let before = m.proc.log().matches("rejected connection").count();
        let o = old.etcdctl(&m.client_url(), &["get", "/registry/kubeforge/after remove-remove", "--print-value-only"]);
        assert!(!o.status.success(), "member {} served the pre-rotation client:{}", m.name, support::show(&o));
        let log_path = m.proc.log_path().to_path_buf();
        m.proc.wait_until("etcd to log that it rejected the old client", Duration::from_secs(10), || {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            log.lines()
                .filter(|l| l.contains("rejected connection"))
                .skip(before)
                .any(|l| l.contains("unknown authority") || l.contains("bad certificate"))
        });
    }
}
