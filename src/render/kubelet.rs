//! A node's KubeletConfiguration (`/var/lib/kubelet/config.yaml`): kubeadm's enforced defaults (kubeadm-facts
//! §4.3), the serving certificate kubeforge issues, the CIS 1.12 kubelet items and the container runtime endpoint,
//! as a YAML value with its keys sorted (sigs.k8s.io/yaml sorts them too), written by `yaml::document`.

use serde_yaml::{Mapping, Value};

use crate::layout;
use crate::pki::profile::ProfileId;
use crate::spec::{Cluster, Node};

/// The settings that name a file, with the use recorded in the index.
const FILE_SETTINGS: [(&str, &str); 3] = [
    ("authentication.x509.clientCAFile", "kubelet --client-ca-file (authentication.x509.clientCAFile)"),
    ("tlsCertFile", "kubelet --tls-cert-file (tlsCertFile)"),
    ("tlsPrivateKeyFile", "kubelet --tls-private-key-file (tlsPrivateKeyFile)"),
];

/// The configuration of `node`, and the files it makes the kubelet read with the setting that names each.
pub fn config(c: &Cluster, node: &Node) -> (String, Vec<(String, String)>) {
    let s = |v: &str| Value::String(v.to_string());
    let map = |pairs: Vec<(&str, Value)>| Value::Mapping(pairs.into_iter().map(|(k, v)| (s(k), v)).collect());
    let sec = &c.security;
    let fields: Vec<(&str, Value)> = vec![
        (
            "authentication",
            map(vec![
                ("anonymous", map(vec![("enabled", Value::Bool(false))])),
                ("webhook", map(vec![("cacheTTL", s("0s")), ("enabled", Value::Bool(true))])),
                ("x509", map(vec![("clientCAFile", s(&layout::crt(ProfileId::Ca)))])),
            ]),
        ),
        (
            "authorization",
            map(vec![
                ("mode", s("Webhook")),
                ("webhook", map(vec![("cacheAuthorizedTTL", s("0s")), ("cacheUnauthorizedTTL", s("0s"))])),
            ]),
        ),
        ("cgroupDriver", s("systemd")),
        ("clusterDNS", Value::Sequence(vec![s(&c.service_cidrs[0].nth(10).to_string())])),
        ("clusterDomain", s(&c.dns_domain)),
        ("containerRuntimeEndpoint", s(node.container_runtime_endpoint(c))),
        ("eventRecordQPS", Value::from(5)),
        ("healthzBindAddress", s("127.0.0.1")),
        ("healthzPort", Value::from(10248)),
        ("makeIPTablesUtilChains", Value::Bool(true)),
        ("protectKernelDefaults", Value::Bool(sec.protect_kernel_defaults)),
        ("readOnlyPort", Value::from(0)),
        ("rotateCertificates", Value::Bool(true)),
        ("serverTLSBootstrap", Value::Bool(false)),
        ("staticPodPath", s(layout::MANIFESTS_DIR)),
        ("streamingConnectionIdleTimeout", s("5m0s")),
        ("tlsCertFile", s(&layout::crt(ProfileId::KubeletServing))),
        ("tlsCipherSuites", Value::Sequence(sec.cipher_suites.iter().map(|x| s(x)).collect())),
        ("tlsMinVersion", s(&sec.tls_min_version)),
        ("tlsPrivateKeyFile", s(&layout::key(ProfileId::KubeletServing))),
    ];
    let mut doc = Mapping::new();
    doc.insert(s("apiVersion"), s("kubelet.config.k8s.io/v1beta1"));
    doc.insert(s("kind"), s("KubeletConfiguration"));
    for (k, v) in fields {
        doc.insert(s(k), v);
    }
    let doc = Value::Mapping(doc);
    let uses = FILE_SETTINGS
        .iter()
        .filter_map(|(path, u)| Some((lookup(&doc, path)?.as_str()?.to_string(), u.to_string())))
        .collect();
    let text = format!(
        "# KubeletConfiguration for node {} ({}), written by kubeforge.\n{}",
        node.name,
        layout::KUBELET_CONFIG,
        super::yaml::document(&doc)
    );
    (text, uses)
}

/// The value at a dotted path of a mapping.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}
