//! kubeforge's secure defaults that customization can turn off, each with the CIS Kubernetes Benchmark 1.12 check
//! it gives up. Turning one off through extraArgs, kubelet settings or a patch is allowed, and every `gen` and
//! `plan` warns about it: a setting is compared between what kubeforge renders and what is written, and a warning
//! is due when kubeforge's value passes the check and the written one does not. (`security:` opt-outs are the
//! spec's documented switches and do not warn.)
//!
//! Each rule encodes its check as kube-bench evaluates it (`tests/data/cis-1.12-checks.yaml`); `tests/cis.rs`
//! turns every rule's setting off and shows that exactly the named check then fails.

use serde_yaml::Value;

use super::Component;

/// A flag of a static pod's command line (the last occurrence counts, as for the components' flag parsing).
pub struct FlagRule {
    pub component: Component,
    pub flag: &'static str,
    pub cis: &'static str,
    pub what: &'static str,
    pub ok: fn(Option<&str>) -> bool,
}

/// A field of the KubeletConfiguration, by dotted path.
pub struct KubeletRule {
    pub path: &'static str,
    pub cis: &'static str,
    pub what: &'static str,
    pub ok: fn(Option<&Value>) -> bool,
}

fn is(v: Option<&str>, want: &str) -> bool {
    v == Some(want)
}

fn list_has(v: Option<&str>, item: &str) -> bool {
    v.is_some_and(|v| v.split(',').any(|x| x.trim() == item))
}

fn at_least(v: Option<&str>, n: i64) -> bool {
    v.and_then(|v| v.parse::<i64>().ok()).is_some_and(|x| x >= n)
}

fn gate_off(v: Option<&str>, gate: &str) -> bool {
    v.is_some_and(|v| v.split(',').any(|e| e.replace(' ', "") == format!("{gate}=false")))
}

/// kube-bench's allowed suites for CIS 1.2.29 (apiserver).
const APISERVER_SUITES: &str = "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,\
TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,\
TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,\
TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";

use Component::{ApiServer, ControllerManager, Etcd, Scheduler};

/// One row of [`FLAG_RULES`].
const fn rule(
    component: Component,
    flag: &'static str,
    cis: &'static str,
    what: &'static str,
    ok: fn(Option<&str>) -> bool,
) -> FlagRule {
    FlagRule { component, flag, cis, what, ok }
}

pub const FLAG_RULES: &[FlagRule] = &[
    rule(ApiServer, "token-auth-file", "1.2.2", "no static token file", |v| v.is_none()),
    rule(ApiServer, "authorization-mode", "1.2.6", "authorization not AlwaysAllow", |v| {
        v.is_some() && !list_has(v, "AlwaysAllow")
    }),
    rule(ApiServer, "authorization-mode", "1.2.7", "Node authorization", |v| list_has(v, "Node")),
    rule(ApiServer, "authorization-mode", "1.2.8", "RBAC authorization", |v| list_has(v, "RBAC")),
    rule(ApiServer, "enable-admission-plugins", "1.2.10", "no AlwaysAdmit admission", |v| !list_has(v, "AlwaysAdmit")),
    rule(ApiServer, "disable-admission-plugins", "1.2.12", "the ServiceAccount admission plugin", |v| {
        !list_has(v, "ServiceAccount")
    }),
    rule(ApiServer, "disable-admission-plugins", "1.2.13", "the NamespaceLifecycle admission plugin", |v| {
        !list_has(v, "NamespaceLifecycle")
    }),
    rule(ApiServer, "enable-admission-plugins", "1.2.14", "the NodeRestriction admission plugin", |v| {
        list_has(v, "NodeRestriction")
    }),
    rule(ApiServer, "profiling", "1.2.15", "profiling off", |v| is(v, "false")),
    rule(ApiServer, "audit-log-maxage", "1.2.17", "audit logs kept 30 days", |v| at_least(v, 30)),
    rule(ApiServer, "audit-log-maxbackup", "1.2.18", "10 audit log backups", |v| at_least(v, 10)),
    rule(ApiServer, "audit-log-maxsize", "1.2.19", "audit logs rotated at 100 MB", |v| at_least(v, 100)),
    rule(ApiServer, "service-account-lookup", "1.2.21", "service-account token lookup", |v| !is(v, "false")),
    rule(ApiServer, "tls-cipher-suites", "1.2.29", "strong TLS cipher suites only", |v| {
        v.is_some_and(|v| v.split(',').all(|s| APISERVER_SUITES.split(',').any(|a| a == s)))
    }),
    rule(
        ApiServer,
        "service-account-extend-token-expiration",
        "1.2.30",
        "service-account tokens not extended to a year",
        |v| is(v, "false"),
    ),
    rule(ControllerManager, "profiling", "1.3.2", "profiling off", |v| is(v, "false")),
    rule(ControllerManager, "use-service-account-credentials", "1.3.3", "one service account per controller", |v| {
        is(v, "true")
    }),
    rule(ControllerManager, "feature-gates", "1.3.6", "RotateKubeletServerCertificate on", |v| {
        !gate_off(v, "RotateKubeletServerCertificate")
    }),
    rule(ControllerManager, "bind-address", "1.3.7", "serving on 127.0.0.1 only", |v| is(v, "127.0.0.1")),
    rule(Scheduler, "profiling", "1.4.1", "profiling off", |v| is(v, "false")),
    rule(Scheduler, "bind-address", "1.4.2", "serving on 127.0.0.1 only", |v| is(v, "127.0.0.1")),
    rule(Etcd, "client-cert-auth", "2.2", "client certificate authentication", |v| is(v, "true")),
    rule(Etcd, "peer-client-cert-auth", "2.5", "peer certificate authentication", |v| is(v, "true")),
];

pub const KUBELET_RULES: &[KubeletRule] = &[
    KubeletRule {
        path: "authentication.anonymous.enabled",
        cis: "4.2.1",
        what: "no anonymous requests to the kubelet",
        ok: |v| v.and_then(Value::as_bool) == Some(false),
    },
    KubeletRule {
        path: "authorization.mode",
        cis: "4.2.2",
        what: "kubelet authorization not AlwaysAllow",
        ok: |v| v.and_then(Value::as_str) != Some("AlwaysAllow"),
    },
    KubeletRule {
        path: "readOnlyPort",
        cis: "4.2.4",
        what: "no read-only port",
        ok: |v| v.is_none() || v.and_then(Value::as_i64) == Some(0),
    },
    KubeletRule {
        path: "streamingConnectionIdleTimeout",
        cis: "4.2.5",
        what: "idle streaming connections time out",
        ok: |v| !matches!(v.and_then(Value::as_str), Some("0" | "0s")),
    },
    KubeletRule {
        path: "makeIPTablesUtilChains",
        cis: "4.2.6",
        what: "the kubelet manages its iptables chains",
        ok: |v| v.and_then(Value::as_bool) != Some(false),
    },
    KubeletRule {
        path: "rotateCertificates",
        cis: "4.2.10",
        what: "kubelet client certificate rotation",
        ok: |v| v.and_then(Value::as_bool) != Some(false),
    },
    KubeletRule {
        path: "featureGates.RotateKubeletServerCertificate",
        cis: "4.2.11",
        what: "RotateKubeletServerCertificate on",
        ok: |v| v.and_then(Value::as_bool) != Some(false),
    },
];

/// The value a component reads for `flag`: its last occurrence on the command line.
pub fn flag_value<'a>(command: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("--{flag}=");
    command.iter().rev().find_map(|a| a.strip_prefix(&prefix))
}

/// Warnings for a static pod: kubeforge's command `base`, the written one `fin`.
pub fn pod_warnings(component: Component, base: &[String], fin: &[String]) -> Vec<String> {
    FLAG_RULES
        .iter()
        .filter(|r| r.component == component)
        .filter(|r| (r.ok)(flag_value(base, r.flag)) && !(r.ok)(flag_value(fin, r.flag)))
        .map(|r| {
            let now = flag_value(fin, r.flag).map_or_else(|| "unset".to_string(), |v| format!("--{}={v}", r.flag));
            format!(
                "{}: {now} turns off kubeforge's secure default ({}): CIS {} fails",
                component.binary(),
                r.what,
                r.cis
            )
        })
        .collect()
}

/// Warnings for a node's KubeletConfiguration (which node is said by the caller, which groups them).
pub fn kubelet_warnings(base: &Value, fin: &Value) -> Vec<String> {
    KUBELET_RULES
        .iter()
        .filter(|r| (r.ok)(super::kubelet::lookup(base, r.path)) && !(r.ok)(super::kubelet::lookup(fin, r.path)))
        .map(|r| {
            let now = super::kubelet::lookup(fin, r.path)
                .map_or_else(|| "unset".to_string(), |v| crate::render::yaml::document(v).trim_end().to_string());
            format!("kubelet {}: {now} turns off kubeforge's secure default ({}): CIS {} fails", r.path, r.what, r.cis)
        })
        .collect()
}
