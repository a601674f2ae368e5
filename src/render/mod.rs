//! Rendering: every text file kubeforge writes comes from an askama template in `templates/`, fed with values that
//! are already decided (sorted flags, resolved paths, URLs). Templates hold layout, not logic.

pub mod kubeconfig;
pub mod kubelet;
pub mod manifests;
pub mod yaml;

use askama::Template;

use crate::pki::inspect::CertInfo;

/// Template filters, in scope of every template struct in this module tree.
pub mod filters {
    use std::fmt::Display;

    /// A string as a safe YAML scalar (see [`super::yaml::scalar`]).
    #[askama::filter_fn]
    pub fn yaml(s: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(super::yaml::scalar(&s.to_string()))
    }

    /// A string as one Markdown table cell.
    #[askama::filter_fn]
    pub fn cell(s: impl Display, _: &dyn askama::Values) -> askama::Result<String> {
        let s = s.to_string();
        if !s.bytes().any(|b| b == b'\\' || b == b'|' || b == b'\n') {
            return Ok(s);
        }
        Ok(s.replace('\\', "\\\\").replace('|', "\\|").replace('\n', " "))
    }
}

/// askama drops a template's final newline; every file we write ends with exactly one.
pub fn finish(mut s: String) -> String {
    while s.ends_with('\n') {
        s.pop();
    }
    s.push('\n');
    s
}

#[derive(Template)]
#[template(path = "cluster-role-bindings.yml", escape = "none")]
pub struct ClusterRoleBindings;

/// One row of the readable inventory.
pub struct InventoryRow {
    pub name: String,
    pub node: String,
    pub info: std::sync::Arc<CertInfo>,
}

impl InventoryRow {
    pub fn sans(&self) -> String {
        if self.info.sans.is_empty() { "-".into() } else { self.info.sans.join(", ") }
    }

    pub fn usages(&self) -> String {
        if self.info.is_ca {
            return "CA".into();
        }
        self.info.ext_key_usage.join(", ")
    }

    pub fn not_after(&self) -> String {
        crate::times::readable(self.info.not_after)
    }
}

#[derive(Template)]
#[template(path = "PKI.md", escape = "none")]
pub struct Inventory<'a> {
    pub cluster: &'a str,
    pub rows: Vec<InventoryRow>,
}

#[derive(Template)]
#[template(path = "SIGNING.md", escape = "none")]
pub struct SigningList<'a> {
    pub cluster: &'a str,
    pub store: String,
    pub cas: Vec<String>,
    pub validity: String,
    /// The key usages every certificate needs, e.g. `digitalSignature` (EC keys) or `digitalSignature, keyEncipherment`.
    pub key_usage: String,
    /// CSR path (without extension), signer subject, subject, SANs, extended key usages.
    pub rows: Vec<(String, String, String, String, String)>,
}

#[derive(Template)]
#[template(path = "audit-policy.yml", escape = "none")]
pub struct AuditPolicy;

/// What encrypts Secrets at rest.
pub enum Provider {
    /// `secretbox` or `aescbc`, with (name, base64 32-byte secret) in order.
    Keys(&'static str, Vec<(String, String)>),
    /// KMS v2 plugin name and endpoint.
    Kms(String, String),
}

#[derive(Template)]
#[template(path = "encryption-config.yml", escape = "none")]
pub struct EncryptionConfig {
    pub provider: Provider,
}

/// Renders what the spec customizes, for every node, before anything is generated: a problem (an override of an
/// owned flag, a colliding volume, a patch that does not apply or leaves something kubeforge cannot write) is a
/// problem of the spec, reported with it. Returns the warnings of every run (secure defaults turned off), each
/// said once, with the nodes it applies to.
pub fn check(c: &crate::spec::Cluster) -> Result<Vec<String>, Vec<crate::spec::Problem>> {
    let mut warnings: Vec<String> = Vec::new();
    let mut problems: Vec<crate::spec::Problem> = Vec::new();
    // A patch that would apply to nothing is a mistake, not a no-op.
    if !c.stacked_etcd() {
        for p in c.patches.iter().filter(|p| p.target == "etcd") {
            problems.push(manifests::patch_problem(format!(
                "{} patches etcd, but etcd is external (etcd.external): kubeforge writes no etcd.yaml",
                p.file
            )));
        }
    }
    let add = |w: String, warnings: &mut Vec<String>| {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    };
    for node in c.nodes.iter().filter(|n| n.is_control_plane()) {
        match manifests::pods(c, node, true) {
            Ok(pods) => pods.into_iter().flat_map(|p| p.warnings).for_each(|w| add(w, &mut warnings)),
            Err(p) => {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
    }
    // Kubelet warnings grouped by message: the nodes each applies to.
    let mut kubelet: Vec<(String, Vec<&str>)> = Vec::new();
    for node in c.nodes.iter().filter(|n| kubelet::customized(c, n)) {
        match kubelet::config(c, node) {
            Ok(cfg) => {
                for w in cfg.warnings {
                    match kubelet.iter_mut().find(|(m, _)| *m == w) {
                        Some((_, nodes)) => nodes.push(&node.name),
                        None => kubelet.push((w, vec![&node.name])),
                    }
                }
            }
            Err(p) => {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
    }
    for (m, nodes) in kubelet {
        let which = if nodes.len() == c.nodes.len() {
            "every node".to_string()
        } else if nodes.len() <= 5 {
            format!("node{} {}", if nodes.len() == 1 { "" } else { "s" }, nodes.join(", "))
        } else {
            format!("nodes {} and {} more", nodes[..5].join(", "), nodes.len() - 5)
        };
        add(format!("{m} ({which})"), &mut warnings);
    }
    if problems.is_empty() { Ok(warnings) } else { Err(problems) }
}
