//! Hostile and broken input.
//!
//! - Spec strings end up in YAML files and in certificates. For random strings (proptest, a fixed seed and a fixed
//!   number of cases, so CI is reproducible) and for every line of `tests/data/hostile-seeds.txt`, placed in node
//!   names, node SANs, `apiServer.certSANs`, the cluster name, `controlPlaneEndpoint`, `hostCACertDirs` entries and
//!   etcd external endpoints, and the customization's extraArgs names and values, extraVolumes host paths,
//!   extraEnvs values, `imageRepository`, node label values and a kubelet setting: `kubeforge::spec::parse` either rejects the spec with an error that names the field
//!   (on lines of its own: a value cannot forge another line of the message), or accepts it, and then
//!   `kubeforge::generate` succeeds, every YAML file it produces parses, every static pod is a valid Pod as far as
//!   its volumes go (the API server would reject the rest), every path stays inside OUT, and the string comes back
//!   verbatim where it was put (and is not left as a plain scalar that YAML 1.1, which Kubernetes reads, takes for
//!   a boolean or a number). Nothing panics.
//! - hostCACertDirs whose volume names collide are all mounted (or rejected), never silently dropped.
//! - Keys never leak: gen, plan, check, renew and failing runs print no key material and no PEM marker
//!   ("PRIVATE KEY", "BEGIN"), nor do index.json and PKI.md.
//! - Tampered material in OUT (a truncated key, a certificate that does not match its key, a world-readable CA key,
//!   a leaf signed by another CA) stops the run, and OUT is left byte for byte and mode for mode as it was.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde::Deserialize;
use serde_yaml::Value;

const NOW: &str = "2026-01-01T00:00:00Z";
const SEEDS: &str = include_str!("data/hostile-seeds.txt");
/// Cases per property; each property has its own fixed seed.
const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------------------------------
// The fields, and specs built around a hostile value.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    NodeName,
    NodeSan,
    CertSan,
    ClusterName,
    ControlPlaneEndpoint,
    HostCaCertDir,
    EtcdEndpoint,
    // Customization (issue 12).
    ExtraArgName,
    ExtraArgValue,
    ExtraVolumeHostPath,
    ExtraEnvValue,
    ImageRepository,
    NodeLabelValue,
    KubeletSetting,
}

impl Field {
    /// The field paths an error about this value may name.
    fn paths(self) -> &'static [&'static str] {
        match self {
            Field::NodeName => &["nodes[0].name"],
            Field::NodeSan => &["nodes[0].sans[0]"],
            Field::CertSan => &["apiServer.certSANs[0]"],
            Field::ClusterName => &["name"],
            Field::ControlPlaneEndpoint => &["controlPlaneEndpoint"],
            Field::HostCaCertDir => &["hostCACertDirs[0]"],
            Field::EtcdEndpoint => &["etcd.external.endpoints[0]"],
            Field::ExtraArgName => &["apiServer.extraArgs[0].name", "apiServer.extraArgs[0]"],
            Field::ExtraArgValue => &["apiServer.extraArgs[0].value"],
            Field::ExtraVolumeHostPath => &["apiServer.extraVolumes[0].hostPath"],
            Field::ExtraEnvValue => &["apiServer.extraEnvs[0].value"],
            Field::ImageRepository => &["imageRepository"],
            Field::NodeLabelValue => &["nodes[0].labels.corp.example/tier"],
            Field::KubeletSetting => &["kubelet.resolvConf"],
        }
    }

    /// Around a random string, what makes the rest of the value valid (so that the generator is reached too).
    fn wrap(self) -> (&'static str, &'static str) {
        match self {
            Field::NodeName | Field::NodeSan | Field::CertSan => ("a.", ".example.com"),
            Field::ClusterName => ("c", "x"),
            Field::ControlPlaneEndpoint => ("api.", ".example.com:6443"),
            Field::HostCaCertDir => ("/etc/", ""),
            Field::EtcdEndpoint => ("https://", ".example.com:2379"),
            Field::ExtraArgName => ("oidc-", ""),
            Field::ExtraArgValue => ("https://", ".example.com/realms/k8s"),
            Field::ExtraVolumeHostPath => ("/srv/", ""),
            Field::ExtraEnvValue => ("", ""),
            Field::ImageRepository => ("registry.", ".example.com/k8s"),
            Field::NodeLabelValue => ("a", "z"),
            Field::KubeletSetting => ("/run/", "/resolv.conf"),
        }
    }

    /// A small valid cluster with `v` (a YAML scalar) in this field: one control-plane node, where every field
    /// lands (a worker would add cost, not coverage).
    fn spec(self, s: &str) -> String {
        let v = yaml_dq(s);
        let pick = |f: Field, default: &str| if f == self { v.clone() } else { default.to_string() };
        let etcd = if self == Field::EtcdEndpoint {
            format!(
                "etcd:\n  external:\n    endpoints: [{v}]\n    caFile: /etc/etcd/pki/ca.crt\n    \
                 certFile: /etc/etcd/pki/client.crt\n    keyFile: /etc/etcd/pki/client.key\n"
            )
        } else {
            String::new()
        };
        let custom = match self {
            Field::ExtraArgName => format!("  extraArgs:\n  - {{name: {v}, value: x}}\n"),
            Field::ExtraArgValue => format!("  extraArgs:\n  - {{name: oidc-issuer-url, value: {v}}}\n"),
            Field::ExtraVolumeHostPath => {
                format!("  extraVolumes:\n  - {{name: extra, hostPath: {v}, mountPath: /srv/extra, readOnly: true}}\n")
            }
            Field::ExtraEnvValue => format!("  extraEnvs:\n  - {{name: HTTPS_PROXY, value: {v}}}\n"),
            _ => String::new(),
        };
        let top = match self {
            Field::ImageRepository => format!("imageRepository: {v}\n"),
            Field::KubeletSetting => format!("kubelet:\n  resolvConf: {v}\n"),
            _ => String::new(),
        };
        let labels = if self == Field::NodeLabelValue {
            format!("    labels:\n      corp.example/tier: {v}\n")
        } else {
            String::new()
        };
        format!(
            "apiVersion: kubeforge/v1alpha1\n\
             kind: Cluster\n\
             name: {name}\n\
             kubernetesVersion: v1.34.1\n\
             controlPlaneEndpoint: {endpoint}\n\
             hostCACertDirs: [{dirs}]\n\
             {top}\
             apiServer:\n  certSANs: [{cert_sans}]\n{custom}\
             {etcd}\
             nodes:\n\
             \x20 - name: {node}\n    role: control-plane\n    address: 10.0.0.11\n    sans: [{node_sans}]\n{labels}",
            name = pick(Field::ClusterName, "demo"),
            endpoint = pick(Field::ControlPlaneEndpoint, "\"\""),
            dirs = pick(Field::HostCaCertDir, "/usr/share/ca-certificates"),
            cert_sans = pick(Field::CertSan, ""),
            node = pick(Field::NodeName, "cp-1"),
            node_sans = pick(Field::NodeSan, ""),
        )
    }
}

/// `s` as a YAML double-quoted scalar: JSON's escapes (`\"`, `\\`, `\uXXXX`) for everything outside printable
/// ASCII (`\UXXXXXXXX` above the BMP, which YAML has and JSON spells as a surrogate pair), so the spec itself is
/// always valid YAML and the value reaches the validator exactly.
fn yaml_dq(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            ' '..='~' => o.push(c),
            c if (c as u32) <= 0xFFFF => write!(o, "\\u{:04X}", c as u32).unwrap(),
            c => write!(o, "\\U{:08X}", c as u32).unwrap(),
        }
    }
    o.push('"');
    o
}

fn seeds() -> Vec<String> {
    SEEDS
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| serde_json::from_str::<String>(l).unwrap_or_else(|e| panic!("hostile-seeds.txt: {l}: {e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// The property.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Rejected,
    Generated,
}

enum Ran {
    Rejected(kubeforge::spec::SpecError),
    Generated(kubeforge::Generated),
    GenerateFailed(kubeforge::Error),
}

/// The whole property for one value in one field; `Err` describes the violation.
fn check(field: Field, s: &str) -> Result<Verdict, String> {
    let show = format!("{field:?} = {s:?}");
    let text = field.spec(s);
    // The harness itself: the scalar reads back as exactly `s`.
    let back: Value =
        serde_yaml::from_str(&format!("v: {}", yaml_dq(s))).map_err(|e| format!("{show}: harness: {e}"))?;
    if back["v"].as_str() != Some(s) {
        return Err(format!("{show}: harness: the YAML scalar reads back as {:?}", back["v"]));
    }
    let store = std::env::temp_dir().join("kubeforge-hostile-no-such-store");
    assert!(!store.exists(), "{} must not exist", store.display());
    let ran = catch_unwind(AssertUnwindSafe(|| match kubeforge::spec::parse(Path::new("hostile.yaml"), &text) {
        Err(e) => Ran::Rejected(e),
        Ok(cluster) => {
            let keys = kubeforge::pki::keys::KeySource::seeded(1);
            let now = kubeforge::parse_instant(NOW).unwrap();
            match kubeforge::generate(&cluster, &store, &keys, now) {
                Ok(g) => Ran::Generated(g),
                Err(e) => Ran::GenerateFailed(e),
            }
        }
    }));
    match ran {
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("{show}: PANIC in parse/generate: {msg}\nspec:\n{text}"))
        }
        Ok(Ran::Rejected(e)) => {
            let msg = e.to_string();
            if !field.paths().iter().any(|p| msg.contains(&format!("  - {p}: "))) {
                return Err(format!("{show}: the error does not name {:?}:\n{msg}", field.paths()));
            }
            let bad: Vec<char> = msg
                .chars()
                .filter(|c| (c.is_control() && *c != '\n') || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}'))
                .collect();
            if !bad.is_empty() {
                return Err(format!("{show}: the error message carries raw control characters {bad:?}:\n{msg:?}"));
            }
            if msg.matches('\n').count() != e.problems.len() {
                return Err(format!(
                    "{show}: {} problem(s) but {} lines: a value forged a line of the message:\n{msg}",
                    e.problems.len(),
                    msg.matches('\n').count() + 1
                ));
            }
            Ok(Verdict::Rejected)
        }
        Ok(Ran::GenerateFailed(e)) => {
            Err(format!("{show}: the spec was accepted but generate failed: {e}\nspec:\n{text}"))
        }
        Ok(Ran::Generated(g)) => {
            let problems = verify(field, s, &g);
            if problems.is_empty() {
                Ok(Verdict::Generated)
            } else {
                Err(format!("{show}: accepted and generated, but:\n  - {}", problems.join("\n  - ")))
            }
        }
    }
}

fn parse_yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    serde_yaml::Deserializer::from_str(text).map(|d| Value::deserialize(d).map_err(|e| e.to_string())).collect()
}

/// What must hold of an accepted value's output.
fn verify(field: Field, s: &str, g: &kubeforge::Generated) -> Vec<String> {
    use kubeforge::output::Kind;
    let mut problems = Vec::new();
    let mut docs: BTreeMap<String, Value> = BTreeMap::new();
    let mut index = serde_json::Value::Null;
    for (path, e) in &g.tree.files {
        if path.starts_with('/') || path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
            problems.push(format!("output path {path:?} escapes OUT or is not clean"));
        }
        let yaml = matches!(
            e.kind,
            Kind::Manifest
                | Kind::Kubeconfig
                | Kind::Rbac
                | Kind::KubeletConfig
                | Kind::AuditPolicy
                | Kind::EncryptionConfig
        ) || [".yaml", ".yml", ".conf"].iter().any(|x| path.ends_with(x));
        let text = match std::str::from_utf8(&e.bytes) {
            Ok(t) => t,
            Err(_) if yaml || path.ends_with(".json") => {
                problems.push(format!("{path}: not UTF-8"));
                continue;
            }
            Err(_) => continue,
        };
        if yaml {
            match parse_yaml_docs(text) {
                Ok(mut d) if d.len() == 1 => {
                    docs.insert(path.clone(), d.remove(0));
                }
                Ok(_) => {}
                Err(err) => problems.push(format!("{path}: invalid YAML: {err}")),
            }
        }
        if path == "index.json" {
            match serde_json::from_str(text) {
                Ok(v) => index = v,
                Err(err) => problems.push(format!("index.json: invalid JSON: {err}")),
            }
        }
    }
    // Kubernetes reads YAML 1.1: `on`, `no`, `1:20`... as a plain scalar is not a string there.
    if yaml11_non_string(s) {
        for (path, e) in g.tree.files.iter().filter(|(p, _)| docs.contains_key(*p)) {
            let text = String::from_utf8_lossy(&e.bytes);
            for l in text.lines().map(str::trim_end) {
                if l.ends_with(&format!(": {s}")) || l.trim_start() == format!("- {s}") {
                    problems.push(format!("{path}: {l:?}: {s:?} unquoted reads as a non-string in YAML 1.1"));
                }
            }
        }
    }
    for (path, pod) in docs.iter().filter(|(p, _)| p.contains("/etc/kubernetes/manifests/")) {
        problems.extend(pod_problems(pod).into_iter().map(|p| format!("{path}: {p}")));
    }

    let node = if field == Field::NodeName { s } else { "cp-1" };
    let bundle = format!("nodes/{node}");
    let doc = |rel: &str| docs.get(&format!("{bundle}{rel}"));
    let command = |rel: &str| -> Vec<String> {
        doc(rel)
            .and_then(|p| p["spec"]["containers"][0]["command"].as_sequence().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|w| w.as_str().map(str::to_string))
            .collect()
    };
    let sans = |rel: &str| -> Vec<String> {
        let path = format!("{bundle}{rel}");
        index["files"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["path"] == path.as_str())
            .and_then(|f| f["certificate"]["sans"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let san = |v: &str| match v.parse::<IpAddr>() {
        Ok(ip) => format!("IP:{ip}"),
        Err(_) => format!("DNS:{v}"),
    };
    let mut expect = |ok: bool, what: String| {
        if !ok {
            problems.push(what);
        }
    };
    match field {
        Field::NodeName => {
            let etcd = command("/etc/kubernetes/manifests/etcd.yaml");
            expect(
                etcd.contains(&format!("--name={s}")),
                format!("etcd's command has no --name={s:?}: {:?}", etcd.iter().find(|w| w.starts_with("--name"))),
            );
            let user = doc("/etc/kubernetes/kubelet.conf").map(|k| k["users"][0]["name"].clone());
            expect(
                user.as_ref().and_then(Value::as_str) == Some(&format!("system:node:{s}")),
                format!("kubelet.conf's user is {user:?}, not system:node:{s}"),
            );
        }
        Field::NodeSan | Field::CertSan => {
            let got = sans("/etc/kubernetes/pki/apiserver.crt");
            expect(got.contains(&san(s)), format!("apiserver.crt's SANs {got:?} lack {}", san(s)));
            if field == Field::NodeSan {
                let got = sans("/var/lib/kubelet/pki/kubelet.crt");
                expect(got.contains(&san(s)), format!("kubelet.crt's SANs {got:?} lack {}", san(s)));
            }
        }
        Field::ClusterName => {
            for path in ["admin.conf".to_string(), format!("{bundle}/etc/kubernetes/kubelet.conf")] {
                let k = docs.get(&path);
                let name = k.map(|k| k["clusters"][0]["name"].clone());
                let ctx = k.map(|k| k["contexts"][0]["context"]["cluster"].clone());
                expect(
                    name.as_ref().and_then(Value::as_str) == Some(s) && ctx.as_ref().and_then(Value::as_str) == Some(s),
                    format!("{path}: cluster name {name:?}, context cluster {ctx:?}, not {s:?}"),
                );
            }
        }
        Field::ControlPlaneEndpoint => {
            let server = docs.get("admin.conf").map(|k| k["clusters"][0]["cluster"]["server"].clone());
            let server = server.as_ref().and_then(Value::as_str).unwrap_or("").to_string();
            match kubeforge::net::parse_host_port(s) {
                // Empty means unset: the first control-plane node's address.
                _ if s.is_empty() => expect(
                    server == "https://10.0.0.11:6443",
                    format!("no endpoint, yet admin.conf's server is {server:?}"),
                ),
                Err(e) => expect(false, format!("accepted, but parse_host_port says {e}")),
                Ok((host, port)) => {
                    let want = kubeforge::net::https_url(&host, port.unwrap_or(kubeforge::API_SERVER_PORT));
                    expect(server == want, format!("admin.conf's server is {server:?}, want {want:?}"));
                    if let kubeforge::net::Host::Dns(name) = &host {
                        // A DNS name is written as it was given (with its port, if one was given).
                        let verbatim = if port.is_some() { format!("https://{s}") } else { format!("https://{s}:") };
                        expect(server.starts_with(&verbatim), format!("admin.conf's server {server:?} is not {s:?}"));
                        let got = sans("/etc/kubernetes/pki/apiserver.crt");
                        expect(
                            got.contains(&format!("DNS:{name}")),
                            format!("apiserver.crt's SANs {got:?} lack {name}"),
                        );
                    }
                }
            }
        }
        Field::HostCaCertDir => {
            for m in ["kube-apiserver", "kube-controller-manager"] {
                let pod = doc(&format!("/etc/kubernetes/manifests/{m}.yaml"));
                let hostpath = pod.is_some_and(|p| {
                    p["spec"]["volumes"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|v| v["hostPath"]["path"].as_str() == Some(s))
                });
                let mount = pod.is_some_and(|p| {
                    p["spec"]["containers"][0]["volumeMounts"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .any(|v| v["mountPath"].as_str() == Some(s) && v["readOnly"].as_bool() == Some(true))
                });
                expect(hostpath && mount, format!("{m}: no read-only hostPath mount of {s:?}"));
            }
        }
        Field::ExtraArgName | Field::ExtraArgValue => {
            let api = command("/etc/kubernetes/manifests/kube-apiserver.yaml");
            let want = if field == Field::ExtraArgName { format!("--{s}=x") } else { format!("--oidc-issuer-url={s}") };
            expect(
                api.last() == Some(&want),
                format!("kube-apiserver's command ends with {:?}, not {want:?}", api.last()),
            );
        }
        Field::ExtraVolumeHostPath | Field::ExtraEnvValue | Field::ImageRepository => {
            let pod = doc("/etc/kubernetes/manifests/kube-apiserver.yaml");
            let got = pod.map(|p| match field {
                Field::ExtraVolumeHostPath => p["spec"]["volumes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"].as_str() == Some("extra"))
                    .map(|v| v["hostPath"]["path"].clone()),
                Field::ExtraEnvValue => Some(p["spec"]["containers"][0]["env"][0]["value"].clone()),
                _ => Some(p["spec"]["containers"][0]["image"].clone()),
            });
            let want =
                if field == Field::ImageRepository { format!("{s}/kube-apiserver:v1.34.1") } else { s.to_string() };
            let got = got.flatten();
            expect(
                got.as_ref().and_then(Value::as_str) == Some(want.as_str()),
                format!("kube-apiserver has {got:?}, not {want:?}"),
            );
        }
        Field::NodeLabelValue => {
            let env = g.tree.files.get(&format!("{bundle}/var/lib/kubelet/kubeadm-flags.env"));
            let env = env.map(|e| String::from_utf8_lossy(&e.bytes).into_owned()).unwrap_or_default();
            let want = format!("--node-labels=corp.example/tier={s} ");
            expect(
                env.starts_with("KUBELET_KUBEADM_ARGS=\"") && env.contains(&want) && env.lines().count() == 1,
                format!("kubeadm-flags.env is {env:?}, without {want:?} on its one line"),
            );
        }
        Field::KubeletSetting => {
            let got = doc("/var/lib/kubelet/config.yaml").map(|k| k["resolvConf"].clone());
            expect(got.as_ref().and_then(Value::as_str) == Some(s), format!("config.yaml's resolvConf is {got:?}"));
        }
        Field::EtcdEndpoint => {
            let api = command("/etc/kubernetes/manifests/kube-apiserver.yaml");
            expect(
                api.contains(&format!("--etcd-servers={s}")),
                format!(
                    "kube-apiserver has {:?}, not --etcd-servers={s}",
                    api.iter().find(|w| w.starts_with("--etcd-servers"))
                ),
            );
        }
    }
    problems
}

/// Whether YAML 1.1 (go-yaml v2, behind Kubernetes' sigs.k8s.io/yaml) resolves the plain scalar `s` to something
/// other than a string where YAML 1.2 (serde_yaml, which the verbatim checks use) reads a string: the 1.1
/// booleans y/n/yes/no/on/off, base-60 and `_`-grouped integers, 0b binary.
fn yaml11_non_string(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    let unsigned = l.trim_start_matches(['-', '+']);
    let digits = |t: &str, radix: u32| {
        !t.is_empty() && t.chars().any(|c| c.is_digit(radix)) && t.chars().all(|c| c.is_digit(radix) || c == '_')
    };
    ["y", "yes", "n", "no", "on", "off"].contains(&l.as_str())
        || (unsigned.contains('_') && digits(unsigned, 10))
        || unsigned.strip_prefix("0b").is_some_and(|t| digits(t, 2))
        || (unsigned.contains(':') && unsigned.split(':').all(|t| digits(t, 10)))
}

/// What the API server's Pod validation says about a static pod's volumes (kubelet drops an invalid static pod):
/// volume names are unique DNS-1123 labels, mount paths are unique, every mount names a volume.
fn pod_problems(pod: &Value) -> Vec<String> {
    let mut p = Vec::new();
    if pod["kind"].as_str() != Some("Pod") {
        p.push(format!("kind is {:?}", pod["kind"]));
    }
    let mut names = BTreeSet::new();
    for v in pod["spec"]["volumes"].as_sequence().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("");
        if !kubeforge::net::is_dns_label(name) {
            p.push(format!("volume name {name:?} is not a DNS-1123 label (for hostPath {:?})", v["hostPath"]["path"]));
        }
        if !names.insert(name.to_string()) {
            p.push(format!("volume name {name:?} is used twice"));
        }
    }
    for c in pod["spec"]["containers"].as_sequence().into_iter().flatten() {
        let mut paths = BTreeSet::new();
        for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
            let (name, path) = (m["name"].as_str().unwrap_or(""), m["mountPath"].as_str().unwrap_or(""));
            if !names.contains(name) {
                p.push(format!("volumeMount {name:?} names no volume"));
            }
            if !paths.insert(path.to_string()) {
                p.push(format!("mountPath {path:?} is used twice"));
            }
        }
    }
    p
}

// ---------------------------------------------------------------------------------------------------------------
// Strategies and the runner.
// ---------------------------------------------------------------------------------------------------------------

/// Random strings biased towards trouble: seed fragments glued to DNS-like pieces, arbitrary Unicode, printable
/// ASCII, and each field's near-valid wrapping of those.
fn hostile(field: Field) -> impl Strategy<Value = String> {
    let fragments: Vec<String> = seeds();
    let piece = prop_oneof![
        3 => prop::sample::select(fragments),
        3 => "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?",
        1 => prop::sample::select(vec![".", "-", "*", ":", "/", "[", "]", "_", "@", " ", "\n", "\u{85}", "\u{7f}"])
            .prop_map(String::from),
        1 => any::<char>().prop_map(String::from),
    ];
    let glued = prop::collection::vec(piece, 1..5).prop_map(|v| v.concat());
    let base = prop_oneof![
        4 => glued,
        1 => any::<String>(),
        1 => "[ -~]{0,70}",
        1 => "[a-z0-9.-]{1,70}",
    ];
    let (pre, post) = field.wrap();
    prop_oneof![
        1 => base.clone(),
        1 => base.prop_map(move |s| format!("{pre}{s}{post}")),
    ]
}

fn runner(seed: u8) -> TestRunner {
    let config = ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        max_shrink_iters: 256,
        max_shrink_time: 5_000,
        ..ProptestConfig::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]))
}

/// The property for one field: every seed line (raw and wrapped), then `CASES` random strings.
fn property(field: Field, seed: u8) {
    let start = std::time::Instant::now();
    let seeds = seeds();
    assert!(seeds.len() > 100, "the corpus has {} lines", seeds.len());
    let (pre, post) = field.wrap();
    let mut failures = Vec::new();
    let mut seeded = BTreeMap::new();
    for s in &seeds {
        for v in [s.clone(), format!("{pre}{s}{post}")] {
            match check(field, &v) {
                Ok(verdict) => *seeded.entry(verdict).or_insert(0usize) += 1,
                Err(e) => failures.push(e),
            }
        }
    }
    println!("{field:?}: seed corpus: {seeded:?}, {} broke the property", failures.len());
    let mut runner = runner(seed);
    let counts = std::cell::RefCell::new(BTreeMap::new());
    let result = runner.run(&hostile(field), |s| {
        let v = check(field, &s).map_err(TestCaseError::fail)?;
        *counts.borrow_mut().entry(v).or_insert(0usize) += 1;
        Ok(())
    });
    println!("{field:?}: random: {:?}; {:.1?} in all", counts.borrow(), start.elapsed());
    if let Err(e) = result {
        failures.push(format!("random input (seed {seed}, shrunk): {e}"));
    }
    assert!(
        failures.is_empty(),
        "{field:?}: {} input(s) broke the property:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(
        seeded.get(&Verdict::Generated).is_some_and(|n| *n > 0),
        "{field:?}: no seed value was accepted; the property would be vacuous"
    );
}

#[test]
fn property_extra_arg_name() {
    property(Field::ExtraArgName, 8);
}

#[test]
fn property_extra_arg_value() {
    property(Field::ExtraArgValue, 9);
}

#[test]
fn property_extra_volume_host_path() {
    property(Field::ExtraVolumeHostPath, 10);
}

#[test]
fn property_extra_env_value() {
    property(Field::ExtraEnvValue, 11);
}

#[test]
fn property_image_repository() {
    property(Field::ImageRepository, 12);
}

#[test]
fn property_node_label_value() {
    property(Field::NodeLabelValue, 13);
}

#[test]
fn property_kubelet_setting() {
    property(Field::KubeletSetting, 14);
}

#[test]
fn property_node_name() {
    property(Field::NodeName, 1);
}

#[test]
fn property_node_san() {
    property(Field::NodeSan, 2);
}

#[test]
fn property_cert_san() {
    property(Field::CertSan, 3);
}

#[test]
fn property_cluster_name() {
    property(Field::ClusterName, 4);
}

#[test]
fn property_control_plane_endpoint() {
    property(Field::ControlPlaneEndpoint, 5);
}

#[test]
fn property_host_ca_cert_dir() {
    property(Field::HostCaCertDir, 6);
}

#[test]
fn property_etcd_endpoint() {
    property(Field::EtcdEndpoint, 7);
}

// ---------------------------------------------------------------------------------------------------------------
// Keys never leak.
// ---------------------------------------------------------------------------------------------------------------

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn gen_args(out: &Path) -> Vec<String> {
    args(&["--out", out.to_str().unwrap(), "--seed", "1", "--now", NOW])
}

/// `kubeforge CMD ARGS...`, in-process.
fn cli(cmd: &str, a: &[String]) -> support::Outcome {
    let mut v = vec![cmd];
    v.extend(a.iter().map(String::as_str));
    support::kubeforge(&v)
}

/// `kubeforge CMD ARGS...`, which must succeed: its output.
fn cli_ok(cmd: &str, a: &[String]) -> String {
    let o = cli(cmd, a);
    assert!(o.code == 0 || (cmd == "plan" && o.code == 2), "{cmd} {a:?}: {o:?}");
    o.text
}

/// `kubeforge CMD ARGS...`, which must fail: its message.
fn cli_err(cmd: &str, a: &[String], what: &str) -> String {
    let o = cli(cmd, a);
    assert_eq!(o.code, 1, "{what}: {cmd} {a:?} must fail: {o:?}");
    o.text
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let tree = support::Tree::of(dir);
    tree.files().into_keys().map(|p| dir.join(p)).collect()
}

/// Every piece of secret material in OUT: the lines of each private key file, each kubeconfig's client-key-data,
/// the encryption-at-rest secrets.
fn secrets(out: &Path) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    for p in walk(out) {
        let Ok(text) = fs::read_to_string(&p) else { continue };
        if text.contains("PRIVATE KEY") || p.extension().is_some_and(|x| x == "key") {
            for l in text.lines().map(str::trim) {
                if l.len() >= 16 && !l.starts_with("-----") {
                    s.insert(l.to_string());
                }
            }
        }
        for l in text.lines().map(str::trim) {
            for prefix in ["client-key-data: ", "secret: "] {
                if let Some(v) = l.strip_prefix(prefix) {
                    s.insert(v.trim_matches('"').to_string());
                    // A 48-character window of it, in case a message shows only part.
                    if v.len() > 48 {
                        s.insert(v[..48].to_string());
                    }
                }
            }
        }
    }
    s
}

fn leaks(what: &str, text: &str, secrets: &BTreeSet<String>) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["PRIVATE KEY", "BEGIN"] {
        if text.contains(marker) {
            let line = text.lines().find(|l| l.contains(marker)).unwrap_or("");
            found.push(format!("{what}: contains the marker {marker:?} (in: {line:?})"));
        }
    }
    for s in secrets {
        if text.contains(s.as_str()) {
            found.push(format!("{what}: contains SECRET MATERIAL {}…", &s[..12.min(s.len())]));
        }
    }
    found
}

#[test]
fn keys_never_leak() {
    let tmp = support::temp_dir("hostile-leak");
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let mut texts: Vec<(String, String)> = Vec::new();
    texts.push(("gen".into(), cli_ok("gen", &gen_args(&out))));
    let all = secrets(&out);
    assert!(all.len() > 20, "found only {} secret lines in OUT; the test would be vacuous", all.len());
    texts.push(("gen (rerun)".into(), cli_ok("gen", &gen_args(&out))));
    texts.push(("gen --format json".into(), cli_ok("gen", &[gen_args(&out), args(&["--format", "json"])].concat())));
    texts.push(("gen --dry-run".into(), {
        let mut a = gen_args(&out);
        a.push("--dry-run".into());
        cli_ok("gen", &a)
    }));
    texts.push(("plan".into(), cli_ok("plan", &gen_args(&out))));
    texts.push(("plan --format json".into(), cli_ok("plan", &[gen_args(&out), args(&["--format", "json"])].concat())));
    texts.push(("check".into(), cli_ok("check", &args(&["--out", o, "--now", NOW]))));
    texts.push(("check --format json".into(), cli_ok("check", &args(&["--out", o, "--now", NOW, "--format", "json"]))));
    texts.push(("renew all".into(), {
        let mut a = args(&["all"]);
        a.extend(gen_args(&out));
        a.extend(args(&["--format", "json"]));
        cli_ok("renew", &a)
    }));
    let all: BTreeSet<String> = all.union(&secrets(&out)).cloned().collect();
    for rel in ["index.json", "PKI.md"] {
        let text = fs::read_to_string(out.join(rel)).unwrap();
        let found = leaks(rel, &text, &all);
        assert!(found.is_empty(), "{found:?}");
    }

    // Failing runs: each damage in a copy of OUT, then gen and plan must fail without showing key material.
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 7] = [
        ("truncated CA key", |pki| {
            let k = fs::read(pki.join("ca.key")).unwrap();
            fs::write(pki.join("ca.key"), &k[..k.len() / 2]).unwrap();
        }),
        ("CA with another CA's key", |pki| {
            fs::copy(pki.join("etcd-ca.key"), pki.join("ca.key")).unwrap();
        }),
        ("swapped leaf keys", |pki| {
            swap(&pki.join("nodes/cp-1/apiserver.key"), &pki.join("nodes/cp-1/apiserver-kubelet-client.key"))
        }),
        ("truncated leaf key", |pki| {
            let p = pki.join("nodes/cp-1/apiserver.key");
            let k = fs::read(&p).unwrap();
            fs::write(&p, &k[..k.len() - 30]).unwrap();
        }),
        ("world-readable CA key", |pki| {
            fs::set_permissions(pki.join("ca.key"), fs::Permissions::from_mode(0o644)).unwrap();
        }),
        ("a key where the certificate belongs", |pki| {
            fs::copy(pki.join("front-proxy-ca.key"), pki.join("front-proxy-ca.crt")).unwrap();
        }),
        ("a key with a mangled label", |pki| {
            let p = pki.join("sa.key");
            let t = fs::read_to_string(&p).unwrap().replace("PRIVATE KEY", "PRIVATE KEY X");
            fs::write(&p, t).unwrap();
        }),
    ];
    let mut found = Vec::new();
    for (i, (name, damage)) in damages.iter().enumerate() {
        let copy = tmp.path().join(format!("damaged-{i}"));
        copy_dir(&out, &copy);
        damage(&copy.join("pki"));
        for what in ["gen", "plan"] {
            let e = kubeforge::ops::Options {
                seed: Some(1),
                now: kubeforge::parse_instant(NOW),
                ..kubeforge::ops::Options::new(None, &copy)
            }
            .load()
            .and_then(|ctx| if what == "gen" { ctx.apply(&Default::default()) } else { ctx.plan() })
            .expect_err(name);
            texts.push((format!("{what} with {name}"), e.to_string()));
            texts.push((format!("{what} with {name} (Debug)"), format!("{e:?}")));
        }
        let t = cli("check", &args(&["--out", copy.to_str().unwrap(), "--now", NOW])).text;
        found.extend(leaks(&format!("check with {name}"), &t, &all));
    }
    // A spec whose CA files are swapped (the key given as the certificate and the other way round).
    let spec = tmp.path().join("swapped-ca.yaml");
    let ca = out.join("pki");
    fs::write(
        &spec,
        kubeforge::DEMO_SPEC.replace(
            "pki:\n",
            &format!(
                "pki:\n  cas:\n    ca:\n      cert: {}\n      key: {}\n",
                ca.join("ca.key").display(),
                ca.join("ca.crt").display()
            ),
        ),
    )
    .unwrap();
    let fresh = tmp.path().join("fresh");
    let e = cli_err("gen", &args(&["--spec", spec.to_str().unwrap(), "--out", fresh.to_str().unwrap()]), "swapped");
    texts.push(("gen with swapped pki.cas files".into(), e));
    for (what, t) in &texts {
        found.extend(leaks(what, t, &all));
    }
    for (what, t) in texts.iter().filter(|(w, _)| !w.ends_with("(Debug)")) {
        println!("--- {what}: {}", t.lines().next().unwrap_or(""));
    }
    assert!(found.is_empty(), "key material in output:\n{}", found.join("\n"));
}

/// Two hostCACertDirs whose volume names collide (`/etc/a-b` and `/etc/a/b` would both be `etc-a-b`): each is
/// mounted, or the spec is rejected; neither is silently dropped.
#[test]
fn colliding_host_ca_cert_dirs_are_never_dropped() {
    let dirs = ["/etc/a-b", "/etc/a/b"];
    let text = Field::HostCaCertDir.spec(dirs[0]).replace(
        &format!("hostCACertDirs: [{}]", yaml_dq(dirs[0])),
        &format!("hostCACertDirs: [{}, {}]", yaml_dq(dirs[0]), yaml_dq(dirs[1])),
    );
    assert!(text.contains(dirs[1]));
    let cluster = match kubeforge::spec::parse(Path::new("collide.yaml"), &text) {
        Err(e) => {
            assert!(e.to_string().contains("hostCACertDirs["), "{e}");
            return;
        }
        Ok(c) => c,
    };
    let store = std::env::temp_dir().join("kubeforge-hostile-no-such-store");
    let keys = kubeforge::pki::keys::KeySource::seeded(1);
    let g = kubeforge::generate(&cluster, &store, &keys, kubeforge::parse_instant(NOW).unwrap()).unwrap();
    let mut problems = Vec::new();
    for m in ["kube-apiserver", "kube-controller-manager"] {
        let path = format!("nodes/cp-1/etc/kubernetes/manifests/{m}.yaml");
        let pod: Value = serde_yaml::from_slice(&g.tree.files[&path].bytes).unwrap();
        problems.extend(pod_problems(&pod).into_iter().map(|p| format!("{m}: {p}")));
        let mounted: Vec<&str> = pod["spec"]["containers"][0]["volumeMounts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v["mountPath"].as_str())
            .collect();
        for d in dirs {
            if !mounted.contains(&d) {
                problems.push(format!("{m}: hostCACertDirs entry {d:?} is not mounted (mounts: {mounted:?})"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

fn swap(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    fs::write(a, y).unwrap();
    fs::write(b, x).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for p in walk(from) {
        let rel = p.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&p, &dest).unwrap(); // copies the mode too
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Tampered material stops the run, and nothing is written.
// ---------------------------------------------------------------------------------------------------------------

/// Generates OUT, damages it, and expects the next gen to stop with every one of `expect` in its error and OUT
/// byte-for-byte and mode-for-mode as it was.
fn tampered(name: &str, damage: impl FnOnce(&Path), expect: &[&str]) {
    let tmp = support::temp_dir(name);
    let out = tmp.path().join("out");
    cli_ok("gen", &gen_args(&out));
    damage(&out);
    let before = support::Tree::of(&out);
    let result = cli("gen", &gen_args(&out));
    let changed = before.diff(&support::Tree::of(&out));
    let err = match result.code {
        0 => panic!("{name}: gen went ahead on tampered material; changed: {changed:?}\n{}", result.text),
        _ => result.text,
    };
    println!("{name}: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: expected {e:?} in:\n{err}");
    }
    assert!(changed.is_empty(), "{name}: a refused run changed OUT: {changed:?}");
}

#[test]
fn an_untampered_rerun_goes_ahead_and_changes_nothing() {
    let tmp = support::temp_dir("hostile-control");
    let out = tmp.path().join("out");
    cli_ok("gen", &gen_args(&out));
    let before = support::Tree::of(&out);
    cli_ok("gen", &gen_args(&out));
    assert_eq!(before.diff(&support::Tree::of(&out)), Vec::<String>::new());
}

#[test]
fn a_truncated_key_stops_the_run() {
    tampered(
        "hostile-truncated",
        |out| {
            let p = out.join("pki/nodes/cp-1/apiserver.key");
            let k = fs::read(&p).unwrap();
            fs::write(&p, &k[..k.len() / 2]).unwrap();
        },
        &["apiserver.key"],
    );
}

#[test]
fn a_certificate_that_does_not_match_its_key_stops_the_run() {
    tampered(
        "hostile-swapped",
        |out| {
            let pki = out.join("pki/nodes/cp-1");
            swap(&pki.join("apiserver.key"), &pki.join("front-proxy-client.key"));
        },
        &["does not match"],
    );
}

#[test]
fn a_world_readable_ca_key_stops_the_run() {
    tampered(
        "hostile-readable",
        |out| fs::set_permissions(out.join("pki/ca.key"), fs::Permissions::from_mode(0o644)).unwrap(),
        &["ca.key", "mode", "0644"],
    );
}

#[test]
fn a_leaf_from_another_ca_stops_the_run() {
    let tmp = support::temp_dir("hostile-other-ca-src");
    let other = tmp.path().join("other");
    cli_ok("gen", &args(&["--out", other.to_str().unwrap(), "--seed", "2", "--now", NOW]));
    tampered(
        "hostile-other-ca",
        |out| {
            for ext in ["crt", "key"] {
                let rel = format!("pki/nodes/cp-1/apiserver.{ext}");
                fs::copy(other.join(&rel), out.join(&rel)).unwrap();
            }
        },
        &["apiserver"],
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Hostile or mistaken input: every file the spec or the command line names is checked, no message quotes what
// could be a secret, and a run that refuses writes nothing.
// ---------------------------------------------------------------------------------------------------------------

/// A fresh demo OUT (seeded) and its spec, in a temp dir.
fn demo(name: &str) -> (support::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = support::temp_dir(name);
    let spec = tmp.path().join("cluster.yaml");
    fs::write(&spec, kubeforge::DEMO_SPEC).unwrap();
    let out = tmp.path().join("out");
    cli_ok(
        "gen",
        &args(&["--spec", spec.to_str().unwrap(), "--out", out.to_str().unwrap(), "--seed", "1", "--now", NOW]),
    );
    (tmp, spec, out)
}

/// `kubeforge CMD ARGS` fails with every one of `expect` in its message, quotes no key material of `out`, and
/// changes nothing in `out` (kubeforge's own .kubeforge/ aside).
fn refused(cmd: &str, a: &[String], out: &Path, expect: &[&str]) -> String {
    let all = if out.exists() { secrets(out) } else { BTreeSet::new() };
    let before = support::Tree::output(out);
    let err = cli_err(cmd, a, &format!("{expect:?}"));
    for e in expect {
        assert!(err.contains(e), "expected {e:?} in:\n{err}");
    }
    let leaked = leaks(cmd, &err, &all);
    assert!(leaked.is_empty(), "{leaked:?}");
    assert_eq!(before.diff(&support::Tree::output(out)), Vec::<String>::new(), "a refused run changed OUT");
    err
}

#[test]
fn a_chain_must_hold_ca_certificates_and_nothing_else() {
    let (tmp, _, out) = demo("hostile-chain");
    let key = fs::read_to_string(out.join("pki/ca.key")).unwrap();
    let ca = out.join("pki/ca.crt");
    let junk = tmp.path().join("junk.pem");
    fs::write(&junk, "this is not a certificate\n").unwrap();
    let leaf = out.join("pki/nodes/cp-1/apiserver.crt");
    for (name, chain, expect) in [
        ("the CA's own key", out.join("pki/ca.key"), "holds a private key"),
        ("junk text", junk.clone(), "chain"),
        ("a leaf certificate", leaf, "is not a CA certificate"),
    ] {
        let spec = tmp.path().join("byo.yaml");
        let text = kubeforge::DEMO_SPEC.replace(
            "pki:\n",
            &format!(
                "pki:\n  cas:\n    ca: {{cert: {}, key: {}, chain: {}}}\n",
                ca.display(),
                out.join("pki/ca.key").display(),
                chain.display()
            ),
        );
        fs::write(&spec, text).unwrap();
        let fresh = tmp.path().join(format!("fresh-{}", name.replace(' ', "-")));
        let err = refused(
            "gen",
            &args(&["--spec", spec.to_str().unwrap(), "--out", fresh.to_str().unwrap()]),
            &fresh,
            &[expect],
        );
        assert!(!err.contains(key.lines().nth(1).unwrap()), "{name}: the key is quoted");
        assert!(!fresh.exists() || support::Tree::output(&fresh).files().is_empty(), "{name}");
    }
}

#[test]
fn a_secret_or_a_device_given_as_the_spec_is_refused_without_showing_it() {
    let (tmp, _, out) = demo("hostile-spec-file");
    for secret in ["pki/ca.key", "pki/sa.key", "pki/encryption/key-1.key", "admin.conf"] {
        let path = out.join(secret);
        let text = fs::read_to_string(&path).unwrap();
        let fresh = tmp.path().join("fresh");
        let err = refused(
            "gen",
            &args(&["--spec", path.to_str().unwrap(), "--out", fresh.to_str().unwrap()]),
            &fresh,
            &["invalid cluster spec"],
        );
        for line in text.lines().filter(|l| l.len() > 16 && !l.starts_with("-----")) {
            let probe = &line[..16.min(line.len())];
            assert!(!err.contains(probe.trim()), "{secret}: the error quotes its content:\n{err}");
        }
        assert!(!fresh.exists(), "{secret}: nothing is written for a bad spec");
    }
    let o = cli("plan", &args(&["--spec", "/dev/zero", "--out", out.to_str().unwrap()]));
    assert_eq!(o.code, 1);
    assert!(o.text.contains("not a regular file"), "{}", o.text);
    let big = tmp.path().join("big.yaml");
    fs::File::create(&big).unwrap().set_len(kubeforge::input::SPEC_LIMIT + 1).unwrap();
    let o = cli("plan", &args(&["--spec", big.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    assert!(o.code == 1 && o.text.contains("bytes, more than"), "{}", o.text);
}

#[test]
fn a_clock_x509_cannot_write_is_a_clear_error() {
    let tmp = support::temp_dir("hostile-clock");
    let out = tmp.path().join("out");
    for (now, expect) in [
        ("9999-06-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("0000-01-01T00:00:00Z", "1950-01-01T00:00:00Z"),
        ("2030-01-01T00:00:00Z", ""),
    ] {
        let o = cli("gen", &args(&["--out", out.to_str().unwrap(), "--now", now]));
        if expect.is_empty() {
            assert_eq!(o.code, 0, "{o:?}");
            continue;
        }
        assert_eq!(o.code, 1, "{now}: {o:?}");
        assert!(o.text.contains("X.509") && o.text.contains(expect), "{now}: {}", o.text);
    }
    let o = cli("check", &args(&["--out", out.to_str().unwrap(), "--now", "9999-12-31T23:59:59Z"]));
    assert_eq!(o.code, 1, "everything has expired by then: {o:?}");
}

#[test]
fn a_deleted_ca_is_diagnosed_and_never_recreated() {
    let (_tmp, spec, out) = demo("hostile-deleted-ca");
    fs::remove_file(out.join("pki/ca.crt")).unwrap();
    fs::remove_file(out.join("pki/ca.key")).unwrap();
    let base = args(&["--spec", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    refused("gen", &base, &out, &["CA ca", "deleted", "restore both files"]);
    refused("renew", &[args(&["all"]), base.clone()].concat(), &out, &["CA ca", "deleted"]);
    assert!(!out.join("pki/ca.crt").exists() && !out.join("pki/ca.key").exists(), "no CA was created");
    // An empty OUT is no excuse either: renew never creates a CA.
    let empty = out.with_file_name("empty");
    let err = cli_err("renew", &args(&["all", "--out", empty.to_str().unwrap()]), "renew on nothing");
    assert!(err.contains("never creates a CA"), "{err}");
    assert!(!empty.join("pki").exists());
}

#[test]
fn a_readable_key_anywhere_in_out_stops_the_run() {
    let (_tmp, spec, out) = demo("hostile-bundle-key");
    let key = out.join("nodes/worker-1/var/lib/kubelet/pki/kubelet.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let base = args(&["--spec", spec.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    refused("gen", &base, &out, &["kubelet.key", "0644", "renew"]);
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "not silently re-moded");
    let conf = out.join("nodes/cp-1/etc/kubernetes/admin.conf");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o640)).unwrap();
    refused("gen", &base, &out, &["admin.conf", "0640"]);
}

#[test]
fn a_file_where_a_directory_belongs_stops_the_run_before_any_write() {
    let tmp = support::temp_dir("hostile-pki-file");
    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("pki"), "not a directory\n").unwrap();
    let err = refused(
        "gen",
        &args(&["--out", out.to_str().unwrap()]),
        &out,
        &["pki", "is a file where kubeforge needs a directory"],
    );
    assert!(err.contains("Nothing was written"), "{err}");
    let files: Vec<String> = support::Tree::output(&out).files().into_keys().collect();
    assert_eq!(files, ["pki"]);
    // A symbolic link that would take writes elsewhere is refused the same way.
    fs::remove_file(out.join("pki")).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("nodes")).unwrap();
    refused("gen", &args(&["--out", out.to_str().unwrap()]), &out, &["symbolic link"]);
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}
