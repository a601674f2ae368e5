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
        Ok(s.to_string().replace('\\', "\\\\").replace('|', "\\|").replace('\n', " "))
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
