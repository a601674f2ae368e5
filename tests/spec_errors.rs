//! Bad input gets a clear error naming the file, the field path and the value, and nothing is written.
//!
//! Each case takes the demo spec, breaks one thing, runs `gen` exactly as `cargo xtask gen --spec` does, and checks
//! the message and that the output directory was not even created.

mod support;

use std::path::Path;

const DEMO: &str = include_str!("../fixtures/demo.yaml");

/// Runs `gen --spec <file> --out <dir>` on `spec`; returns the error message, asserting nothing was written.
fn gen_error(spec: &str) -> String {
    let tmp = support::temp_dir("spec-errors");
    let file = tmp.path().join("cluster.yaml");
    std::fs::write(&file, spec).unwrap();
    let out = tmp.path().join("out");
    let o = support::kubeforge(&["gen", "--spec", file.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.code, 1, "a broken spec must be rejected: {o:?}");
    let err = o.text;
    assert!(!out.exists(), "nothing may be written for a broken spec, but {} exists", out.display());
    assert!(err.contains(file.to_str().unwrap()), "the message must name the file:\n{err}");
    err
}

fn replaced(from: &str, to: &str) -> String {
    assert!(DEMO.contains(from), "the demo spec no longer contains {from:?}");
    DEMO.replacen(from, to, 1)
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "expected {p:?} in the message:\n{err}");
    }
}

#[test]
fn the_demo_spec_itself_is_valid() {
    kubeforge::spec::parse(Path::new("demo.yaml"), DEMO).unwrap();
}

#[test]
fn unknown_field_names_its_path() {
    let err =
        gen_error(&replaced("    role: worker\n    address: 10.0.0.21", "    role: worker\n    adress: 10.0.0.21"));
    assert_mentions(&err, &["nodes[1]", "unknown field `adress`", "address"]);
}

#[test]
fn bad_cidr() {
    let err = gen_error(&replaced("serviceSubnet: 10.96.0.0/12", "serviceSubnet: 10.96.0.0/33"));
    assert_mentions(&err, &["networking.serviceSubnet", "10.96.0.0/33", "prefix"]);
    let err = gen_error(&replaced("podSubnet: 10.244.0.0/16", "podSubnet: 10.244.1.0/16"));
    assert_mentions(&err, &["networking.podSubnet", "host bits", "10.244.0.0/16"]);
}

#[test]
fn bad_ip() {
    let err = gen_error(&replaced("address: 10.0.0.22", "address: 10.0.0.300"));
    assert_mentions(&err, &["nodes[2].address", "\"10.0.0.300\"", "not an IPv4 or IPv6 address"]);
}

#[test]
fn duplicate_node_names_and_addresses() {
    let err = gen_error(&replaced("name: worker-2", "name: worker-1"));
    assert_mentions(&err, &["nodes[2].name", "\"worker-1\"", "unique"]);
    let err = gen_error(&replaced("address: 10.0.0.22", "address: 10.0.0.21"));
    assert_mentions(&err, &["nodes[2].address", "\"10.0.0.21\"", "unique"]);
}

#[test]
fn node_name_must_be_a_dns_subdomain() {
    for bad in ["Worker_2", "-worker", "worker-2.", "a.b..c"] {
        let err = gen_error(&replaced("name: worker-2", &format!("name: \"{bad}\"")));
        assert_mentions(&err, &["nodes[2].name", &format!("{bad:?}"), "DNS-1123 subdomain"]);
    }
    let long = "a".repeat(64);
    let err = gen_error(&replaced("name: worker-2", &format!("name: {long}")));
    assert_mentions(&err, &["nodes[2].name", "at most 63"]);
}

#[test]
fn a_cluster_needs_a_control_plane() {
    let err = gen_error(&replaced("role: control-plane", "role: worker"));
    assert_mentions(&err, &["nodes:", "no node has role control-plane"]);
    let err = gen_error(&replaced("role: control-plane", "role: master"));
    assert_mentions(&err, &["nodes[0].role", "\"master\"", "control-plane, worker"]);
}

#[test]
fn unsupported_versions() {
    for (bad, why) in [
        ("v1.32.4", "v1.33.x to v1.37.x"),
        ("v1.31.9", "upgrade the cluster with kubeadm to v1.33 first"),
        ("v1.38.0", "v1.33.x to v1.37.x"),
        ("1.37.1", "v1.MINOR.PATCH"),
    ] {
        let err = gen_error(&replaced("kubernetesVersion: v1.37.1", &format!("kubernetesVersion: {bad}")));
        assert_mentions(&err, &["kubernetesVersion", bad, why]);
    }
}

#[test]
fn key_algorithm_and_validity() {
    let err = gen_error(&replaced("keyAlgorithm: ECDSA-P256", "keyAlgorithm: ed25519"));
    assert_mentions(&err, &["pki.keyAlgorithm", "\"ed25519\"", "RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384"]);
    let err = gen_error(&replaced("certificateValidity: 8760h", "certificateValidity: 1y"));
    assert_mentions(&err, &["pki.certificateValidity", "\"1y\"", "8760h"]);
    let err = gen_error(&replaced("certificateValidity: 8760h", "certificateValidity: 90000h"));
    assert_mentions(&err, &["pki.certificateValidity", "outlive the CA"]);
}

#[test]
fn sans_are_ips_or_dns_names() {
    for (bad, why) in [
        ("10.0.0.256", "looks like an IP address"),
        ("*.com", "wildcard over a top-level domain"),
        ("bad name", "neither an IP address nor a valid DNS name"),
        ("a\\nb: c", "neither an IP address nor a valid DNS name"),
    ] {
        let err = gen_error(&replaced("certSANs: []", &format!("certSANs: [\"{bad}\"]")));
        assert_mentions(&err, &["apiServer.certSANs[0]", why]);
    }
}

#[test]
fn endpoint_and_api_version() {
    let err = gen_error(&replaced("controlPlaneEndpoint: \"\"", "controlPlaneEndpoint: \"lb.example.com:99999\""));
    assert_mentions(&err, &["controlPlaneEndpoint", "lb.example.com:99999", "1 to 65535"]);
    let err = gen_error(&replaced("apiVersion: kubeforge/v1alpha1", "apiVersion: kubeforge/v2"));
    assert_mentions(&err, &["apiVersion", "kubeforge/v1alpha1"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let spec = replaced("address: 10.0.0.22", "address: nope").replacen("podSubnet: 10.244.0.0/16", "podSubnet: x", 1);
    let err = gen_error(&spec);
    assert_mentions(&err, &["2 problems", "nodes[2].address", "networking.podSubnet"]);
}

#[test]
fn unreadable_or_malformed_files() {
    let err = gen_error("nodes: [");
    assert!(!err.is_empty());
    let tmp = support::temp_dir("spec-missing");
    let out = tmp.path().join("out");
    let missing = support::kubeforge(&["gen", "--spec", "/nonexistent/cluster.yaml", "--out", out.to_str().unwrap()]);
    assert_eq!(missing.code, 1);
    assert_mentions(&missing.text, &["/nonexistent/cluster.yaml", "cannot read"]);
    assert!(!out.exists());
}
