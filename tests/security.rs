//! The hardening's moving parts: encryption keys that survive reruns and rotate in reviewable steps, and every
//! opt-out in `security:` doing exactly what it says.

mod support;

use std::fs;
use std::path::Path;

use kubeforge::ops::Options;
use kubeforge::ops::report::RunReport;

fn gen_with(spec: &Path, out: &Path) -> RunReport {
    support::apply(&Options::new(Some(spec), out))
}

fn with_security(block: &str) -> String {
    kubeforge::DEMO_SPEC.replace("nodes:\n", &format!("security:\n{block}nodes:\n"))
}

fn command(out: &Path, component: &str) -> Vec<String> {
    let text = fs::read_to_string(out.join(format!("nodes/cp-1/etc/kubernetes/manifests/{component}.yaml"))).unwrap();
    let pod: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    pod["spec"]["containers"][0]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn secrets(out: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(out.join("nodes/cp-1/etc/kubernetes/encryption-config.yaml")).unwrap();
    let cfg: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let providers = cfg["resources"][0]["providers"].as_sequence().unwrap();
    assert_eq!(providers.last().unwrap()["identity"], serde_yaml::from_str::<serde_yaml::Value>("{}").unwrap());
    providers[0]["secretbox"]["keys"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap().to_string(), k["secret"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn encryption_keys_are_kept_and_rotate_in_reviewable_steps() {
    let tmp = support::temp_dir("sec-rotate");
    let (spec, out) = (tmp.path().join("c.yaml"), tmp.path().join("out"));
    fs::write(&spec, kubeforge::DEMO_SPEC).unwrap();
    gen_with(&spec, &out);
    let first = secrets(&out);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, "key-1");
    use base64::Engine;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(&first[0].1).unwrap().len(), 32);
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&out.join("pki/encryption/key-1.key")), 0o600);
    assert_eq!(mode(&out.join("nodes/cp-1/etc/kubernetes/encryption-config.yaml")), 0o600);

    // Step 1: a new key, listed second: every apiserver can decrypt with it, none encrypts with it yet.
    let step = |keys: &str| {
        fs::write(&spec, with_security(&format!("  encryptionAtRest:\n    keys: [{keys}]\n"))).unwrap();
        let plan = Options::new(Some(&spec), &out).load().and_then(|c| c.plan()).unwrap();
        assert!(plan.has_changes(), "{plan}");
        assert_eq!(support::reissued(&plan), Vec::<String>::new(), "a key rotation touches no certificate:\n{plan}");
        gen_with(&spec, &out);
        secrets(&out)
    };
    let s1 = step("key-1, key-2");
    assert_eq!(s1[0], first[0], "the existing key is kept, byte for byte");
    assert_eq!(s1[1].0, "key-2");
    assert_ne!(s1[1].1, first[0].1);
    // Step 2: promote it.
    let s2 = step("key-2, key-1");
    assert_eq!(s2, vec![s1[1].clone(), s1[0].clone()]);
    // Step 3: drop the old key (after rewriting every Secret); its store file goes too.
    let s3 = step("key-2");
    assert_eq!(s3, vec![s1[1].clone()]);
    assert!(!out.join("pki/encryption/key-1.key").exists());
}

#[test]
fn every_opt_out_does_what_it_says() {
    let tmp = support::temp_dir("sec-optout");
    let (spec, out) = (tmp.path().join("c.yaml"), tmp.path().join("out"));
    fs::write(
        &spec,
        with_security(
            "  profiling: true\n  auditLog: {enabled: false}\n  verifyKubelets: false\n  serviceAccountExtendTokenExpiration: true\n  encryptionAtRest: {provider: none}\n  protectKernelDefaults: true\n  tlsMinVersion: VersionTLS13\n",
        ),
    )
    .unwrap();
    gen_with(&spec, &out);
    let api = command(&out, "kube-apiserver");
    for gone in [
        "--profiling",
        "--audit-",
        "--kubelet-certificate-authority",
        "--service-account-extend-token-expiration",
        "--encryption-provider-config",
    ] {
        assert!(!api.iter().any(|a| a.starts_with(gone)), "{gone} must be absent: {api:?}");
    }
    assert!(api.contains(&"--tls-min-version=VersionTLS13".to_string()));
    for c in ["kube-controller-manager", "kube-scheduler"] {
        assert!(!command(&out, c).iter().any(|a| a.starts_with("--profiling")), "{c}");
    }
    let node = out.join("nodes/cp-1/etc/kubernetes");
    assert!(!node.join("audit-policy.yaml").exists() && !node.join("encryption-config.yaml").exists());
    let manifest = fs::read_to_string(node.join("manifests/kube-apiserver.yaml")).unwrap();
    assert!(!manifest.contains("audit") && !manifest.contains("encryption-config"), "no mounts for what is off");
    let kubelet = fs::read_to_string(out.join("nodes/worker-1/var/lib/kubelet/config.yaml")).unwrap();
    assert!(kubelet.contains("protectKernelDefaults: true") && kubelet.contains("tlsMinVersion: VersionTLS13"));
}

#[test]
fn hardening_settings_are_validated() {
    for (block, path) in [
        ("  tlsMinVersion: VersionTLS11\n", "security.tlsMinVersion"),
        ("  tlsCipherSuites: [\"RC4 please\"]\n", "security.tlsCipherSuites[0]"),
        ("  encryptionAtRest: {provider: rot13}\n", "security.encryptionAtRest.provider"),
        ("  encryptionAtRest: {keys: [a, a]}\n", "security.encryptionAtRest.keys[1]"),
        ("  encryptionAtRest: {provider: kms}\n", "security.encryptionAtRest.kms"),
        ("  etcdDataDirOwner: etcd\n", "security.etcdDataDirOwner"),
        ("  profilng: false\n", "security"),
    ] {
        let err = kubeforge::spec::parse(Path::new("c.yaml"), &with_security(block)).unwrap_err().to_string();
        assert!(err.contains(path), "{block:?}: expected {path} in:\n{err}");
    }
}

#[test]
fn kms_provider_renders_a_kms_v2_config() {
    let tmp = support::temp_dir("sec-kms");
    let (spec, out) = (tmp.path().join("c.yaml"), tmp.path().join("out"));
    fs::write(
        &spec,
        with_security("  encryptionAtRest:\n    provider: kms\n    kms: {name: vault, endpoint: \"unix:///var/run/kms/vault.sock\"}\n"),
    )
    .unwrap();
    gen_with(&spec, &out);
    let text = fs::read_to_string(out.join("nodes/cp-1/etc/kubernetes/encryption-config.yaml")).unwrap();
    let cfg: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let kms = &cfg["resources"][0]["providers"][0]["kms"];
    assert_eq!(kms["apiVersion"].as_str(), Some("v2"));
    assert_eq!(kms["name"].as_str(), Some("vault"));
    assert_eq!(kms["endpoint"].as_str(), Some("unix:///var/run/kms/vault.sock"));
    assert!(!out.join("pki/encryption").exists(), "no local keys with KMS");
}
