//! CAs kubeforge did not make: an intermediate brought with its key and chain, a CA without its key (CSRs, an
//! external signer, import with checks), and adopting a kubeadm node built with the openssl CLI.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kubeforge::ops::report::{Action, CaOrigin};
use kubeforge::ops::{Context, Options};

/// The context of a run on `spec` and `out`, as a user runs it.
fn ctx(spec: &Path, out: &Path) -> Context {
    Options::new(Some(spec), out).load().unwrap()
}

fn openssl() -> Command {
    Command::new(support::tool("KUBEFORGE_OPENSSL"))
}

/// Runs openssl in `dir` with `a`.
fn ossl(dir: &Path, a: &[&str]) {
    support::run(openssl().current_dir(dir).args(a));
}

/// A self-signed CA `name.crt`/`name.key` (RSA-2048, PKCS#1 key as kubeadm writes it) with subject `subj`.
fn ca(dir: &Path, name: &str, subj: &str) {
    ossl(dir, &["genrsa", "-traditional", "-out", &format!("{name}.key"), "2048"]);
    ossl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-subj",
            subj,
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign",
        ],
    );
}

/// A leaf `name.crt`/`name.key` signed by `ca`, with the given subject, EKU and SANs (openssl syntax or empty).
fn leaf(dir: &Path, name: &str, ca: &str, subj: &str, eku: &str, sans: &str) {
    if let Some(parent) = Path::new(name).parent() {
        fs::create_dir_all(dir.join(parent)).unwrap();
    }
    ossl(dir, &["genrsa", "-traditional", "-out", &format!("{name}.key"), "2048"]);
    ossl(dir, &["req", "-new", "-key", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", subj]);
    // What kubeadm writes for its RSA keys (§1.2).
    sign_csr(dir, &format!("{name}.csr"), &format!("{name}.crt"), ca, "digitalSignature,keyEncipherment", eku, sans);
}

fn sign_csr(dir: &Path, csr: &str, crt: &str, ca: &str, ku: &str, eku: &str, sans: &str) {
    let ext = dir.join(format!("{}.ext", crt.replace('/', "_")));
    let mut text = format!(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,{ku}\nextendedKeyUsage={eku}\nauthorityKeyIdentifier=keyid\n"
    );
    if !sans.is_empty() {
        text += &format!("subjectAltName={sans}\n");
    }
    fs::write(&ext, text).unwrap();
    ossl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            crt,
            "-days",
            "365",
            "-sha256",
            "-extfile",
            ext.to_str().unwrap(),
        ],
    );
}

fn b64(path: &Path) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(fs::read(path).unwrap())
}

/// A kubeadm-style kubeconfig with embedded data.
fn kubeconfig(dir: &Path, file: &str, user: &str, cert: &str) {
    let text = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://10.0.0.11:6443\n  name: kubernetes\n\
         contexts:\n- context:\n    cluster: kubernetes\n    user: {user}\n  name: {user}@kubernetes\ncurrent-context: {user}@kubernetes\n\
         kind: Config\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b64(&dir.join("pki/ca.crt")),
        b64(&dir.join(format!("{cert}.crt"))),
        b64(&dir.join(format!("{cert}.key"))),
    );
    fs::write(dir.join(file), text).unwrap();
}

const SPEC_RSA: &str = "apiVersion: kubeforge/v1alpha1
kind: Cluster
kubernetesVersion: v1.34.1
pki:
  keyAlgorithm: RSA-2048
nodes:
  - {name: cp-1, role: control-plane, address: 10.0.0.11}
  - {name: worker-1, role: worker, address: 10.0.0.21}
";

#[test]
fn import_a_kubeadm_node_then_plan_has_nothing_to_do() {
    let tmp = support::temp_dir("import-kubeadm");
    let k = tmp.path().join("etc-kubernetes");
    let pki = k.join("pki");
    fs::create_dir_all(pki.join("etcd")).unwrap();
    // What `kubeadm init` writes for node cp-1 at 10.0.0.11 (kubeadm-facts §1), made with the openssl CLI.
    ca(&pki, "ca", "/CN=kubernetes");
    ca(&pki, "front-proxy-ca", "/CN=front-proxy-ca");
    ca(&pki, "etcd/ca", "/CN=etcd-ca");
    let api_sans = "DNS:cp-1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:10.0.0.11";
    leaf(&pki, "apiserver", "ca", "/CN=kube-apiserver", "serverAuth", api_sans);
    leaf(
        &pki,
        "apiserver-kubelet-client",
        "ca",
        "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client",
        "clientAuth",
        "",
    );
    leaf(&pki, "front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", "clientAuth", "");
    let etcd_sans = "DNS:cp-1,DNS:localhost,IP:10.0.0.11,IP:127.0.0.1,IP:::1";
    leaf(&pki, "etcd/server", "etcd/ca", "/CN=cp-1", "serverAuth,clientAuth", etcd_sans);
    leaf(&pki, "etcd/peer", "etcd/ca", "/CN=cp-1", "serverAuth,clientAuth", etcd_sans);
    leaf(&pki, "etcd/healthcheck-client", "etcd/ca", "/CN=kube-etcd-healthcheck-client", "clientAuth", "");
    leaf(&pki, "apiserver-etcd-client", "etcd/ca", "/CN=kube-apiserver-etcd-client", "clientAuth", "");
    ossl(&pki, &["genrsa", "-traditional", "-out", "sa.key", "2048"]);
    for (file, user, subj) in [
        ("admin.conf", "kubernetes-admin", "/O=kubeadm:cluster-admins/CN=kubernetes-admin"),
        ("super-admin.conf", "kubernetes-super-admin", "/O=system:masters/CN=kubernetes-super-admin"),
        ("controller-manager.conf", "system:kube-controller-manager", "/CN=system:kube-controller-manager"),
        ("scheduler.conf", "system:kube-scheduler", "/CN=system:kube-scheduler"),
        ("kubelet.conf", "system:node:cp-1", "/O=system:nodes/CN=system:node:cp-1"),
    ] {
        let base = format!("conf-{}", file.trim_end_matches(".conf"));
        leaf(&pki, &base, "ca", subj, "clientAuth", "");
        kubeconfig(&k, file, user, &format!("pki/{base}"));
    }

    let spec = tmp.path().join("cluster.yaml");
    fs::write(&spec, SPEC_RSA).unwrap();
    let out = tmp.path().join("out");
    let summary = ctx(&spec, &out).import_kubeadm(&k, "cp-1").unwrap();
    assert!(summary.cas.iter().all(|c| c.origin == CaOrigin::Kept), "{summary}");
    assert_eq!(summary.service_account_key, Some("kept"), "{summary}");
    assert!(summary.to_string().starts_with(&format!(
        "adopted {} files of {} as node cp-1",
        summary.imported.as_ref().unwrap().files.len(),
        k.display()
    )));
    // Everything kubeadm had is adopted as is; only what kubeadm never makes is issued.
    for l in summary.certificates.iter().filter(|l| l.action == Action::Issue) {
        assert!(
            l.id.contains("kubelet-serving") || l.id.contains("kube-proxy") || l.id.contains("worker-1/kubelet-client"),
            "only kubeforge's extras may be issued on import:\n{summary}"
        );
    }
    // kubeadm before May 2026 gave apiserver-kubelet-client O=kubeadm:cluster-admins (cluster-admin); kubeforge
    // drops it in every version (least privilege), so that one certificate is reissued, with its reason.
    let reissued: Vec<String> = summary
        .certificates
        .iter()
        .filter(|l| l.action == Action::Reissue)
        .map(|l| format!("{} — {}", l.id, l.reasons.join("; ")))
        .collect();
    assert_eq!(
        reissued,
        [
            "nodes/cp-1/apiserver-kubelet-client — subject \"O = kubeadm:cluster-admins, CN = kube-apiserver-kubelet-client\" -> \"CN = kube-apiserver-kubelet-client\""
        ],
        "{summary}"
    );
    for (ours, theirs) in [
        ("pki/ca.crt", "pki/ca.crt"),
        ("pki/ca.key", "pki/ca.key"),
        ("pki/etcd-ca.crt", "pki/etcd/ca.crt"),
        ("pki/nodes/cp-1/apiserver.crt", "pki/apiserver.crt"),
        ("pki/nodes/cp-1/etcd-peer.key", "pki/etcd/peer.key"),
        ("pki/sa.key", "pki/sa.key"),
        ("nodes/cp-1/etc/kubernetes/pki/apiserver.crt", "pki/apiserver.crt"),
    ] {
        assert_eq!(fs::read(out.join(ours)).unwrap(), fs::read(k.join(theirs)).unwrap(), "{ours} must be {theirs}");
    }
    let plan = ctx(&spec, &out).plan().unwrap();
    assert!(!plan.has_changes(), "the first plan after import must have nothing to do:\n{plan}");

    // A second import into the same OUT would replace the CA: refused.
    let err = ctx(&spec, &out).import_kubeadm(&k, "cp-1").unwrap_err().to_string();
    assert!(err.contains("never replaces a CA silently"), "{err}");
}

struct External {
    _tmp: support::TempDir,
    dir: PathBuf,
    spec: PathBuf,
    out: PathBuf,
}

impl External {
    /// A cluster whose CA is a corporate intermediate (with key and chain) and whose front-proxy CA is external
    /// (certificate only).
    fn new(name: &str) -> Self {
        let tmp = support::temp_dir(name);
        let dir = tmp.path().to_path_buf();
        ca(&dir, "root", "/O=Corp/CN=Corp Root CA");
        ossl(&dir, &["genrsa", "-traditional", "-out", "int.key", "2048"]);
        ossl(&dir, &["req", "-new", "-key", "int.key", "-out", "int.csr", "-subj", "/O=Corp/CN=Corp Kubernetes CA"]);
        fs::write(
            dir.join("int.ext"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature,keyCertSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )
        .unwrap();
        ossl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "int.csr",
                "-CA",
                "root.crt",
                "-CAkey",
                "root.key",
                "-CAcreateserial",
                "-out",
                "int.crt",
                "-days",
                "1825",
                "-extfile",
                "int.ext",
            ],
        );
        ca(&dir, "fp", "/CN=corp-front-proxy-ca");
        let spec = dir.join("cluster.yaml");
        let text = SPEC_RSA.replace(
            "  keyAlgorithm: RSA-2048\n",
            "  keyAlgorithm: ECDSA-P256\n  cas:\n    ca: {cert: int.crt, key: int.key, chain: root.crt}\n    front-proxy-ca: {cert: fp.crt}\n",
        );
        fs::write(&spec, text).unwrap();
        let out = dir.join("out");
        External { _tmp: tmp, dir, spec, out }
    }

    fn ctx(&self) -> Context {
        ctx(&self.spec, &self.out)
    }
}

#[test]
fn external_ca_csr_sign_import_round_trip() {
    let x = External::new("external-csr");
    // Nothing can be generated before the external CA signed what it must sign.
    let err = x.ctx().apply(&Default::default()).unwrap_err().to_string();
    assert!(err.contains("nodes/cp-1/front-proxy-client") && err.contains("cargo xtask csr"), "{err}");
    assert!(!x.out.join("nodes").exists(), "nothing rendered");

    let msg = x.ctx().csr().unwrap();
    assert_eq!(msg.requests, ["nodes/cp-1/front-proxy-client"], "{msg}");
    assert_eq!(msg.cas, ["front-proxy-ca"], "{msg}");
    assert!(msg.to_string().contains("1 signing request"), "{msg}");
    let signing = fs::read_to_string(x.out.join("csr/SIGNING.md")).unwrap();
    assert!(signing.contains("| `nodes/cp-1/front-proxy-client.csr` | CN = corp-front-proxy-ca | CN = front-proxy-client | - | clientAuth |"), "{signing}");
    let csr = x.out.join("csr/nodes/cp-1/front-proxy-client.csr");
    support::run(openssl().args(["req", "-verify", "-noout", "-in"]).arg(&csr));

    // A wrong certificate is refused with its reasons and nothing is imported.
    fs::create_dir_all(x.dir.join("bad/nodes/cp-1")).unwrap();
    sign_csr(
        &x.dir,
        csr.to_str().unwrap(),
        "bad/nodes/cp-1/front-proxy-client.crt",
        "fp",
        "digitalSignature",
        "serverAuth",
        "DNS:evil.example.com",
    );
    let err = x.ctx().import_signed(&x.dir.join("bad")).unwrap_err().to_string();
    assert!(err.contains("SAN removed: DNS:evil.example.com") && err.contains("usages"), "{err}");
    assert!(!x.out.join("pki/nodes/cp-1/front-proxy-client.crt").exists());
    // One signed by another CA too.
    fs::create_dir_all(x.dir.join("wrong-ca/nodes/cp-1")).unwrap();
    sign_csr(
        &x.dir,
        csr.to_str().unwrap(),
        "wrong-ca/nodes/cp-1/front-proxy-client.crt",
        "root",
        "digitalSignature",
        "clientAuth",
        "",
    );
    let err = x.ctx().import_signed(&x.dir.join("wrong-ca")).unwrap_err().to_string();
    assert!(err.contains("signer: not signed by the current front-proxy-ca"), "{err}");

    // Signed as SIGNING.md says: accepted, and the cluster is generated around it.
    fs::create_dir_all(x.dir.join("signed/nodes/cp-1")).unwrap();
    // As SIGNING.md says for this cluster's EC keys: digitalSignature, without keyEncipherment (RFC 8813).
    assert!(signing.contains("**Key Usage: critical, digitalSignature**"), "{signing}");
    let wrong_ku = "wrong-ku/nodes/cp-1/front-proxy-client.crt";
    fs::create_dir_all(x.dir.join("wrong-ku/nodes/cp-1")).unwrap();
    sign_csr(&x.dir, csr.to_str().unwrap(), wrong_ku, "fp", "digitalSignature,keyEncipherment", "clientAuth", "");
    let err = x.ctx().import_signed(&x.dir.join("wrong-ku")).unwrap_err().to_string();
    assert!(err.contains("key usages"), "{err}");
    sign_csr(
        &x.dir,
        csr.to_str().unwrap(),
        "signed/nodes/cp-1/front-proxy-client.crt",
        "fp",
        "digitalSignature",
        "clientAuth",
        "",
    );
    let summary = x.ctx().import_signed(&x.dir.join("signed")).unwrap();
    assert_eq!(summary.imported.as_ref().unwrap().files, ["nodes/cp-1/front-proxy-client.crt"], "{summary}");
    assert!(summary.to_string().starts_with("imported 1 signed certificate"), "{summary}");
    let node = x.out.join("nodes/cp-1/etc/kubernetes");
    assert_eq!(
        fs::read(node.join("pki/front-proxy-client.crt")).unwrap(),
        fs::read(x.dir.join("signed/nodes/cp-1/front-proxy-client.crt")).unwrap()
    );
    assert!(!node.join("pki/front-proxy-ca.key").exists(), "an external CA's key never appears");
    support::run(
        openssl()
            .args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
            .arg(node.join("pki/front-proxy-ca.crt"))
            .arg(node.join("pki/front-proxy-client.crt")),
    );
    let plan = x.ctx().plan().unwrap();
    assert!(!plan.has_changes(), "{plan}");
    // The cluster CA (an intermediate with its key) signs the rest; clients trust it through the chain.
    support::run(
        openssl()
            .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
            .arg(x.dir.join("root.crt"))
            .arg("-untrusted")
            .arg(node.join("pki/ca.crt"))
            .arg(node.join("pki/apiserver.crt")),
    );
    let admin = fs::read_to_string(x.out.join("admin.conf")).unwrap();
    let ca_data = admin.lines().find_map(|l| l.trim().strip_prefix("certificate-authority-data: ")).unwrap();
    use base64::Engine;
    let bundle = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(ca_data).unwrap()).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "intermediate and root in the kubeconfig's CA data");
    assert!(bundle.ends_with(&fs::read_to_string(x.dir.join("root.crt")).unwrap()));
}

#[test]
fn a_provided_ca_never_silently_replaces_the_stored_one() {
    let x = External::new("external-replace");
    // First a cluster with kubeforge's own CAs in the same OUT...
    let plain = x.dir.join("plain.yaml");
    fs::write(&plain, SPEC_RSA).unwrap();
    support::apply(&Options::new(Some(&plain), &x.out));
    // ...then a spec that brings another CA: refused.
    let err = x.ctx().csr().and_then(|_| x.ctx().apply(&Default::default())).unwrap_err().to_string();
    assert!(err.contains("holds another CA") && err.contains("never replaces a CA silently"), "{err}");
}
