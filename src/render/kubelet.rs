//! A node's KubeletConfiguration (`/var/lib/kubelet/config.yaml`): kubeadm's enforced defaults (kubeadm-facts
//! §4.3), the serving certificate kubeforge issues, the CIS 1.12 kubelet items, the container runtime endpoint
//! and the node's taints, then the spec's kubelet settings (cluster, then node) and the `kubeletconfiguration`
//! patches, as a YAML value with its keys sorted (sigs.k8s.io/yaml sorts them too), written by `yaml::document`.
//! And kubeadm's `kubeadm-flags.env`, for the kubelet flags that have no configuration field.

use serde_yaml::{Mapping, Value};

use crate::custom;
use crate::layout;
use crate::pki::profile::ProfileId;
use crate::spec::{Cluster, Node, Problem};

/// A node's configuration as written.
#[derive(Clone)]
pub struct Config {
    pub text: String,
    /// The files it makes the kubelet read, with the setting that names each.
    pub uses: Vec<(String, String)>,
    /// Secure defaults it turns off, without the node's name (see `custom::secure::kubelet_warnings`).
    pub warnings: Vec<String>,
}

/// Whether anything customizes `node`'s kubelet configuration (else it is kubeforge's alone).
pub fn customized(c: &Cluster, node: &Node) -> bool {
    customized_with(c, &node.kubelet)
}

fn customized_with(c: &Cluster, node_kubelet: &serde_yaml::Mapping) -> bool {
    !c.kubelet.is_empty() || !node_kubelet.is_empty() || custom::patches::any_for(&c.patches, "kubeletconfiguration")
}

/// What a node's configuration depends on besides the cluster: nodes with equal inputs get the same configuration
/// (but for its header), so a run renders it once for all of them ([`body`] sees the node only through this, so a
/// new per-node input has to be added here, and with it to the key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeInputs {
    pub taints: Vec<crate::spec::Taint>,
    pub kubelet: serde_yaml::Mapping,
}

impl NodeInputs {
    pub fn of(node: &Node) -> NodeInputs {
        NodeInputs { taints: node.taints.clone(), kubelet: node.kubelet.clone() }
    }
}

/// The configuration of `node`.
pub fn config(c: &Cluster, node: &Node) -> Result<Config, Problem> {
    let b = body(c, &NodeInputs::of(node))?;
    Ok(Config { text: with_header(node, &b.text), ..b })
}

/// A configuration's body with the header naming its node.
pub fn with_header(node: &Node, body: &str) -> String {
    format!("# KubeletConfiguration for node {} ({}), written by kubeforge.\n{body}", node.name, layout::KUBELET_CONFIG)
}

/// The settings that name a file, with the use recorded in the index.
const FILE_SETTINGS: [(&str, &str); 3] = [
    ("authentication.x509.clientCAFile", "kubelet --client-ca-file (authentication.x509.clientCAFile)"),
    ("tlsCertFile", "kubelet --tls-cert-file (tlsCertFile)"),
    ("tlsPrivateKeyFile", "kubelet --tls-private-key-file (tlsPrivateKeyFile)"),
];

/// The configuration without its header, for nodes with inputs `n`.
pub fn body(c: &Cluster, n: &NodeInputs) -> Result<Config, Problem> {
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
        ("containerRuntimeEndpoint", s(crate::spec::DEFAULT_CRI_SOCKET)),
        ("eventRecordQPS", Value::from(5)),
        ("healthzBindAddress", s("127.0.0.1")),
        ("healthzPort", Value::from(10248)),
        ("makeIPTablesUtilChains", Value::Bool(true)),
        ("protectKernelDefaults", Value::Bool(sec.protect_kernel_defaults)),
        ("readOnlyPort", Value::from(0)),
        (
            "registerWithTaints",
            Value::Sequence(
                n.taints
                    .iter()
                    .map(|t| {
                        let mut m = vec![("effect", s(&t.effect)), ("key", s(&t.key))];
                        if !t.value.is_empty() {
                            m.push(("value", s(&t.value)));
                        }
                        map(m)
                    })
                    .collect(),
            ),
        ),
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
        // Without taints the field is left out, as Go's omitempty leaves it.
        if !(k == "registerWithTaints" && v.as_sequence().is_some_and(|t| t.is_empty())) {
            doc.insert(s(k), v);
        }
    }
    let base = Value::Mapping(doc);
    let mut doc = base.clone();
    let mut warnings = Vec::new();
    if customized_with(c, &n.kubelet) {
        custom::kubelet::merge(&mut doc, &c.kubelet);
        custom::kubelet::merge(&mut doc, &n.kubelet);
        let target = "kubeletconfiguration";
        if custom::patches::any_for(&c.patches, target) {
            custom::patches::apply(&c.patches, target, &mut doc).map_err(super::manifests::patch_problem)?;
            let files: Vec<&str> = c.patches.iter().filter(|p| p.target == target).map(|p| p.file.as_str()).collect();
            check_patched(&base, &doc).map_err(|m| {
                super::manifests::patch_problem(format!("the patches for {target} ({}) {m}", files.join(", ")))
            })?;
        }
        // Sorted like kubeforge's own fields, apiVersion and kind first.
        custom::kubelet::sort_keys(&mut doc);
        if let Value::Mapping(m) = &mut doc {
            let first = |k: &Value| !matches!(k.as_str(), Some("apiVersion" | "kind"));
            let (mut front, rest): (Vec<_>, Vec<_>) = std::mem::take(m).into_iter().partition(|(k, _)| !first(k));
            front.sort_by(|a, b| a.0.as_str().cmp(&b.0.as_str()));
            *m = front.into_iter().chain(rest).collect();
        }
        warnings = custom::secure::kubelet_warnings(&base, &doc);
    }
    let uses = FILE_SETTINGS
        .iter()
        .filter_map(|(path, u)| Some((custom::kubelet::lookup(&doc, path)?.as_str()?.to_string(), u.to_string())))
        .collect();
    Ok(Config { text: super::yaml::document(&doc), uses, warnings })
}

/// What a patched configuration must still be: a KubeletConfiguration of known fields and types, with
/// kubeforge's owned fields as kubeforge set them.
fn check_patched(base: &Value, doc: &Value) -> Result<(), String> {
    for k in ["apiVersion", "kind"] {
        if custom::kubelet::lookup(doc, k) != custom::kubelet::lookup(base, k) {
            return Err(format!("change {k}; it stays as kubeforge writes it"));
        }
    }
    if let Some((field, by)) = custom::kubelet::owned_changes(base, doc).first() {
        return Err(format!("change {field}, which is kubeforge's to set: it comes from {by}"));
    }
    let mut fields = doc.as_mapping().cloned().ok_or("leave something that is not a mapping")?;
    fields.shift_remove("apiVersion");
    fields.shift_remove("kind");
    let mut problems = Vec::new();
    custom::kubelet::check_fields(&fields, "", &mut |p, m| {
        problems.push(format!("{}: {m}", p.trim_start_matches('.')))
    });
    match problems.first() {
        Some(p) => Err(format!("leave a field the kubelet cannot read: {p}")),
        None => Ok(()),
    }
}

/// `/var/lib/kubelet/kubeadm-flags.env` of `node`: kubeadm's file for the kubelet's flags that have no field in
/// the configuration (`KUBELET_KUBEADM_ARGS`, read by kubeadm's kubelet drop-in): the node's labels, and up to
/// v1.34 the sandbox image. Empty from v1.35 without labels, as kubeadm writes it.
pub fn flags_env(c: &Cluster, node: &Node) -> String {
    let mut flags: Vec<(String, String)> = Vec::new();
    if !node.labels.is_empty() {
        let labels: Vec<String> = node.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        flags.push(("node-labels".into(), labels.join(",")));
    }
    if c.facts().pause_flag {
        flags.push(("pod-infra-container-image".into(), pause_image(c)));
    }
    flags.sort();
    let args: Vec<String> = flags.into_iter().map(|(k, v)| format!("--{k}={v}")).collect();
    // Every value is a label or an image reference: no quote, backslash, `$` or whitespace can occur in them.
    format!("KUBELET_KUBEADM_ARGS=\"{}\"\n", args.join(" "))
}

/// The sandbox image of the cluster's version under `imageRepository`.
pub fn pause_image(c: &Cluster) -> String {
    c.image("pause", c.facts().pause)
}
