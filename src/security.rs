//! `security:` in the spec: kubeforge's hardening beyond kubeadm, on by default, each part a documented opt-out.
//!
//! The defaults pass every automated check of the CIS Kubernetes Benchmark 1.12 that a generator can satisfy
//! (kube-bench's cfg/cis-1.12); kubeadm's own defaults fail nine of them (1.2.5, 1.2.15-1.2.19, 1.2.30, 1.3.2,
//! 1.4.1). The README lists each check and each opt-out.

use serde::Deserialize;

/// TLS cipher suites allowed by both CIS 1.2.29 (apiserver) and 4.2.12 (kubelet): ECDHE with AEAD ciphers only.
/// TLS 1.3 suites are not configurable in Go and are always on.
pub const CIS_CIPHER_SUITES: [&str; 6] = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawSecurity {
    /// `--profiling` on kube-apiserver, kube-controller-manager and kube-scheduler (CIS 1.2.15, 1.3.2, 1.4.1).
    #[serde(default)]
    pub profiling: bool,
    #[serde(default)]
    pub audit_log: RawAudit,
    /// `--kubelet-certificate-authority`: the apiserver verifies kubelets' serving certificates (CIS 1.2.5).
    #[serde(default = "yes")]
    pub verify_kubelets: bool,
    /// Upstream's default (true) extends projected service-account tokens to a year (CIS 1.2.30 wants false).
    #[serde(default)]
    pub service_account_extend_token_expiration: bool,
    #[serde(default = "default_tls_min")]
    pub tls_min_version: String,
    #[serde(default = "default_ciphers")]
    pub tls_cipher_suites: Vec<String>,
    #[serde(default)]
    pub encryption_at_rest: RawEncryption,
    /// KubeletConfiguration `protectKernelDefaults` (CIS 4.2.6 family): the node's sysctls must then match what
    /// the kubelet expects, so it is off unless the node image sets them.
    #[serde(default)]
    pub protect_kernel_defaults: bool,
    /// Owner of etcd's data directory, recorded in index.json (CIS 1.1.12 wants etcd:etcd, which needs that user
    /// on the node).
    #[serde(default = "root")]
    pub etcd_data_dir_owner: String,
}

impl Default for RawSecurity {
    fn default() -> Self {
        RawSecurity {
            profiling: false,
            audit_log: RawAudit::default(),
            verify_kubelets: true,
            service_account_extend_token_expiration: false,
            tls_min_version: default_tls_min(),
            tls_cipher_suites: default_ciphers(),
            encryption_at_rest: RawEncryption::default(),
            protect_kernel_defaults: false,
            etcd_data_dir_owner: root(),
        }
    }
}

fn yes() -> bool {
    true
}
fn root() -> String {
    "root:root".into()
}
fn default_tls_min() -> String {
    "VersionTLS12".into()
}
fn default_ciphers() -> Vec<String> {
    CIS_CIPHER_SUITES.iter().map(|s| s.to_string()).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAudit {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "thirty")]
    pub max_age: u32,
    #[serde(default = "ten")]
    pub max_backup: u32,
    #[serde(default = "hundred")]
    pub max_size: u32,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit { enabled: true, max_age: 30, max_backup: 10, max_size: 100 }
    }
}

fn thirty() -> u32 {
    30
}
fn ten() -> u32 {
    10
}
fn hundred() -> u32 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawEncryption {
    /// secretbox (default) | aescbc | kms | none.
    #[serde(default = "secretbox")]
    pub provider: String,
    /// Key names, first = the one that encrypts new writes. A name's 32-byte key is generated the first time it
    /// appears and kept while it is listed. Rotation is three reviewable steps: append a new name (every apiserver
    /// can read it), move it first (it encrypts), remove the old one (after rewriting all Secrets).
    #[serde(default = "default_keys")]
    pub keys: Vec<String>,
    /// For provider kms: the KMS v2 plugin.
    #[serde(default)]
    pub kms: Option<RawKms>,
}

impl Default for RawEncryption {
    fn default() -> Self {
        RawEncryption { provider: secretbox(), keys: default_keys(), kms: None }
    }
}

fn secretbox() -> String {
    "secretbox".into()
}
fn default_keys() -> Vec<String> {
    vec!["key-1".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawKms {
    pub name: String,
    /// e.g. unix:///var/run/kms-plugin/socket.sock
    pub endpoint: String,
}

/// The validated `security:` section.
#[derive(Debug, Clone)]
pub struct Security {
    pub profiling: bool,
    pub audit: Option<Audit>,
    pub verify_kubelets: bool,
    pub extend_token_expiration: bool,
    pub tls_min_version: String,
    pub cipher_suites: Vec<String>,
    pub encryption: Encryption,
    pub protect_kernel_defaults: bool,
    pub etcd_data_dir_owner: (String, String),
}

#[derive(Debug, Clone, Copy)]
pub struct Audit {
    pub max_age: u32,
    pub max_backup: u32,
    pub max_size: u32,
}

#[derive(Debug, Clone)]
pub enum Encryption {
    None,
    /// secretbox or aescbc with named keys, first encrypts.
    Keys {
        provider: &'static str,
        names: Vec<String>,
    },
    Kms(RawKms),
}

/// Go's TLS version names as the apiserver, kubelet and etcd accept them.
const TLS_VERSIONS: [&str; 2] = ["VersionTLS12", "VersionTLS13"];

/// Validates `raw`; problems go to `fail(path, message)`.
pub fn validate(raw: &RawSecurity, fail: &mut dyn FnMut(String, String)) -> Security {
    if !TLS_VERSIONS.contains(&raw.tls_min_version.as_str()) {
        fail(
            "security.tlsMinVersion".into(),
            format!(
                "{:?} is not one of {} (TLS 1.0 and 1.1 are not allowed)",
                raw.tls_min_version,
                TLS_VERSIONS.join(", ")
            ),
        );
    }
    for (i, s) in raw.tls_cipher_suites.iter().enumerate() {
        if !s.starts_with("TLS_") || !s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
            fail(format!("security.tlsCipherSuites[{i}]"), format!("{s:?} is not a Go TLS cipher suite name"));
        }
    }
    if raw.tls_cipher_suites.is_empty() {
        fail("security.tlsCipherSuites".into(), "list at least one cipher suite (for TLS 1.2)".into());
    }
    let audit = raw.audit_log.enabled.then_some(Audit {
        max_age: raw.audit_log.max_age,
        max_backup: raw.audit_log.max_backup,
        max_size: raw.audit_log.max_size,
    });
    let e = &raw.encryption_at_rest;
    let encryption = match e.provider.as_str() {
        "none" => Encryption::None,
        "secretbox" | "aescbc" => {
            let provider = if e.provider == "secretbox" { "secretbox" } else { "aescbc" };
            let mut seen = std::collections::BTreeSet::new();
            for (i, k) in e.keys.iter().enumerate() {
                if !crate::net::is_dns_label(k) {
                    fail(
                        format!("security.encryptionAtRest.keys[{i}]"),
                        format!("{k:?} is not a valid key name (lowercase letters, digits and '-')"),
                    );
                } else if !seen.insert(k) {
                    fail(format!("security.encryptionAtRest.keys[{i}]"), format!("{k:?} is listed twice"));
                }
            }
            if e.keys.is_empty() {
                fail("security.encryptionAtRest.keys".into(), "list at least one key name".into());
            }
            Encryption::Keys { provider, names: e.keys.clone() }
        }
        "kms" => match &e.kms {
            Some(k) => Encryption::Kms(k.clone()),
            None => {
                fail("security.encryptionAtRest.kms".into(), "provider kms needs kms: {name, endpoint}".into());
                Encryption::None
            }
        },
        other => {
            fail(
                "security.encryptionAtRest.provider".into(),
                format!("{other:?} is not one of secretbox, aescbc, kms, none"),
            );
            Encryption::None
        }
    };
    let owner = raw
        .etcd_data_dir_owner
        .split_once(':')
        .filter(|(u, g)| crate::net::is_dns_label(u) && crate::net::is_dns_label(g));
    if owner.is_none() {
        fail("security.etcdDataDirOwner".into(), format!("{:?} is not USER:GROUP", raw.etcd_data_dir_owner));
    }
    Security {
        profiling: raw.profiling,
        audit,
        verify_kubelets: raw.verify_kubelets,
        extend_token_expiration: raw.service_account_extend_token_expiration,
        tls_min_version: raw.tls_min_version.clone(),
        cipher_suites: raw.tls_cipher_suites.clone(),
        encryption,
        protect_kernel_defaults: raw.protect_kernel_defaults,
        etcd_data_dir_owner: owner.map_or(("root".into(), "root".into()), |(u, g)| (u.into(), g.into())),
    }
}
