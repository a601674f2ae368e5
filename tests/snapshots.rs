//! Snapshots lock the generated output of every fixture, byte for byte.
//!
//! The clock and the key source are fixed, so the output is the same on every machine. Each fixture gets one
//! snapshot listing every file (mode, kind, SHA-256 of the exact bytes: this is what locks certificates and keys)
//! and one snapshot per readable file (manifests, kubeconfigs with their base64 blobs replaced by what they hold,
//! the PKI inventory, the RBAC objects), so a reviewer reads a flag or SAN change as a one-line diff. Private key
//! material never appears in a snapshot, only its hash.
//!
//! These tests say the output did not change; `tests/kubeadm_facts.rs` and the real-component tests say it is right.

mod support;

use base64::Engine;
use kubeforge::output::{Kind, Tree};
use sha2::{Digest, Sha256};

/// One per supported minor at least: demo v1.37, dual-stack and external-etcd v1.36, edge-v1.35, ha-5cp and
/// external-etcd-ca v1.35, ipv6 and ha-3cp v1.34, rsa-v1.33 v1.33.
const FIXTURES: [&str; 9] =
    ["demo", "rsa-v1.33", "ipv6", "ha-3cp", "ha-5cp", "external-etcd", "external-etcd-ca", "dual-stack", "edge-v1.35"];

fn generate(fixture: &str) -> Tree {
    support::generate_fixture(fixture).tree
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A kubeconfig's `*-data` fields show what they contain instead of base64.
fn readable_kubeconfig(text: &str) -> String {
    text.lines()
        .map(|line| {
            let Some((key, value)) = line.split_once(": ") else { return line.to_string() };
            if !key.trim_end().ends_with("-data") {
                return line.to_string();
            }
            let pem = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value).unwrap()).unwrap();
            let digest = &hex(&Sha256::digest(pem.as_bytes()))[..16];
            let what = if pem.contains("PRIVATE KEY") {
                "private key".to_string()
            } else {
                let info = kubeforge::pki::inspect::CertInfo::from_pem(&pem).unwrap();
                format!("certificate {} issued by {}", info.subject, info.issuer)
            };
            format!("{key}: <{what}, sha256 {digest}…>")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn snapshot_fixture(fixture: &str) {
    let tree = generate(fixture);
    let listing: String = tree
        .files
        .iter()
        .map(|(path, e)| {
            format!("{:o} {:<11} {} {path}\n", e.mode, format!("{:?}", e.kind), &hex(&Sha256::digest(&e.bytes))[..16])
        })
        .collect();
    insta::assert_snapshot!(format!("{fixture}__files"), listing);

    // Every byte is locked by the listing; the readable files of the cluster, of the first control-plane node and
    // of the first worker are also shown in full (the other nodes' differ only in names and addresses).
    let first_nodes: Vec<String> =
        {
            let node_of = |p: &String| p.strip_prefix("nodes/").and_then(|r| r.split('/').next()).map(String::from);
            let cp = tree.files.keys().filter(|p| p.ends_with("/manifests/kube-apiserver.yaml")).find_map(node_of);
            let worker =
                tree.files.keys().filter(|p| p.ends_with("/kubelet.conf")).filter_map(node_of).find(|n| {
                    !tree.files.contains_key(&format!("nodes/{n}/etc/kubernetes/manifests/kube-apiserver.yaml"))
                });
            cp.into_iter().chain(worker).collect()
        };
    for (path, e) in &tree.files {
        if let Some(rest) = path.strip_prefix("nodes/")
            && !first_nodes.iter().any(|n| rest.starts_with(&format!("{n}/")))
        {
            continue;
        }
        let text = std::str::from_utf8(&e.bytes).unwrap();
        let shown = match e.kind {
            Kind::Manifest
            | Kind::Rbac
            | Kind::Inventory
            | Kind::KubeletConfig
            | Kind::KubeletFlags
            | Kind::AuditPolicy
            | Kind::Gitignore => text.to_string(),
            // The index is large and derived from the files above; the demo's is shown as the example.
            Kind::Index if fixture == "demo" => text.to_string(),
            Kind::Kubeconfig => readable_kubeconfig(text),
            _ => continue,
        };
        let name = format!("{fixture}__{}", path.replace('/', "_"));
        insta::assert_snapshot!(name, shown);
    }
}

#[test]
fn demo_one_control_plane_two_workers_ecdsa() {
    snapshot_fixture("demo");
}

/// A private registry, OIDC, extraVolumes and extraEnvs, an etcd quota and data directory, kubelet settings,
/// labels, taints, a bind port and a kubeadm patches directory with one patch of each type.
#[test]
fn customized_v1_37() {
    snapshot_fixture("customized");
}

#[test]
fn rsa_2048_on_v1_33_behind_a_load_balancer() {
    snapshot_fixture("rsa-v1.33");
}

#[test]
fn ipv6_p384() {
    snapshot_fixture("ipv6");
}

#[test]
fn ha_three_stacked_control_planes() {
    snapshot_fixture("ha-3cp");
}

#[test]
fn ha_five_control_planes_on_v1_35() {
    snapshot_fixture("ha-5cp");
}

#[test]
fn external_etcd_with_user_files_on_v1_36() {
    snapshot_fixture("external-etcd");
}

#[test]
fn external_etcd_with_a_client_ca() {
    snapshot_fixture("external-etcd-ca");
}

#[test]
fn dual_stack() {
    snapshot_fixture("dual-stack");
}

#[test]
fn one_control_plane_behind_a_load_balancer_on_v1_35() {
    snapshot_fixture("edge-v1.35");
}

#[test]
fn output_is_deterministic_for_a_seeded_source() {
    let (a, b) = (generate("demo"), generate("demo"));
    assert_eq!(a.files.len(), b.files.len());
    for ((pa, ea), (pb, eb)) in a.files.iter().zip(&b.files) {
        assert_eq!(pa, pb);
        assert!(ea.bytes == eb.bytes, "{pa} differs between two runs with the same seed and clock");
    }
}

#[test]
fn no_snapshot_shows_key_material() {
    for fixture in FIXTURES {
        let tree = generate(fixture);
        for (path, e) in &tree.files {
            let text = String::from_utf8_lossy(&e.bytes);
            let shown = match e.kind {
                Kind::Manifest
                | Kind::Rbac
                | Kind::Inventory
                | Kind::Index
                | Kind::KubeletConfig
                | Kind::AuditPolicy => text.to_string(),
                Kind::Kubeconfig => readable_kubeconfig(&text),
                _ => continue,
            };
            assert!(!shown.contains("PRIVATE KEY"), "{fixture}/{path}: a snapshot would show a private key");
            assert!(!shown.contains("LS0tLS1CRUdJTi"), "{fixture}/{path}: a snapshot would show base64 PEM");
        }
    }
}
