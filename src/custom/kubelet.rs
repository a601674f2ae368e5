//! Kubelet settings: a partial KubeletConfiguration (kubelet.config.k8s.io/v1beta1) merged over kubeforge's, at
//! the cluster level (`kubelet:`) and per node (`nodes[].kubelet`).
//!
//! Every field is checked against `kubelet-fields.tsv`, the field table of upstream's `types.go` (its header says
//! which commit): a misspelt field or a value of the wrong type is an error here, where the kubelet itself would
//! only log a strict-decoding warning and ignore it. The table is upstream's newest; a field newer than the
//! cluster's minor passes here and is ignored by that kubelet (UNVERIFIED per minor: one table for all).
//!
//! Merging is a deep merge of mappings: a mapping merges key by key, anything else replaces, and `null` removes
//! the field from kubeforge's configuration (the kubelet's own default applies).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_yaml::{Mapping, Value};

/// upstream's KubeletConfiguration fields: `path<TAB>type[<TAB>enum=A|B][<TAB>deprecated]`.
const FIELDS: &str = include_str!("kubelet-fields.tsv");

/// Fields that carry kubeforge's PKI or that another spec field decides, with what controls each.
pub const OWNED: [(&str, &str); 9] = [
    ("tlsCertFile", "the kubelet-serving certificate kubeforge issues for each node (pki)"),
    ("tlsPrivateKeyFile", "the kubelet-serving certificate kubeforge issues for each node (pki)"),
    ("authentication.x509.clientCAFile", "the cluster CA (pki.cas.ca, or the one kubeforge creates)"),
    ("serverTLSBootstrap", "kubeforge's kubelet-serving certificates (pki); bootstrapping would replace them"),
    ("staticPodPath", "kubeforge's layout: the manifests are installed in /etc/kubernetes/manifests"),
    ("clusterDomain", "networking.dnsDomain"),
    ("tlsCipherSuites", "security.tlsCipherSuites"),
    ("tlsMinVersion", "security.tlsMinVersion"),
    ("registerWithTaints", "nodes[].taints"),
];

pub struct Field {
    pub kind: &'static str,
    pub values: Option<Vec<&'static str>>,
}

/// The field table, by dotted path (`authentication.x509.clientCAFile`, `registerWithTaints[].key`).
pub fn fields() -> &'static BTreeMap<&'static str, Field> {
    static TABLE: OnceLock<BTreeMap<&'static str, Field>> = OnceLock::new();
    TABLE.get_or_init(|| {
        FIELDS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let mut cols = l.split('\t');
                let path = cols.next().expect("a path");
                let kind = cols.next().expect("a type");
                let values = cols.next().and_then(|e| e.strip_prefix("enum=")).map(|e| e.split('|').collect());
                (path, Field { kind, values })
            })
            .collect()
    })
}

/// Checks a partial configuration; `at` is its place in the spec (`kubelet`, `nodes[2].kubelet`).
pub fn validate(settings: &Mapping, at: &str, fail: &mut dyn FnMut(String, String)) {
    let whole = Value::Mapping(settings.clone());
    let mut owned_hit = Vec::new();
    for (k, v) in settings {
        let Some(key) = k.as_str() else { continue };
        if matches!(key, "apiVersion" | "kind") {
            fail(
                format!("{at}.{key}"),
                "kubeforge writes apiVersion and kind itself; give only the fields to set".into(),
            );
            owned_hit.push(key.to_string());
            continue;
        }
        // Setting an owned field, or removing (null) or replacing (not a mapping) one of its parents.
        if let Some((_, by)) =
            OWNED.iter().find(|(p, _)| *p == key || (p.starts_with(&format!("{key}.")) && !v.is_mapping()))
        {
            fail(format!("{at}.{key}"), format!("is kubeforge's to set: it comes from {by}"));
            owned_hit.push(key.to_string());
        }
    }
    for (owned, by) in OWNED {
        if owned.contains('.')
            && !owned_hit.iter().any(|h| owned.starts_with(&format!("{h}.")))
            && lookup(&whole, owned).is_some()
        {
            fail(format!("{at}.{owned}"), format!("is kubeforge's to set: it comes from {by}"));
        }
    }
    let rest: Mapping = settings
        .iter()
        .filter(|(k, _)| !k.as_str().is_some_and(|k| owned_hit.iter().any(|h| h == k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    check_fields(&rest, at, fail);
}

/// Checks every field of `settings` by name and type against the table; `at` prefixes the paths in messages.
pub fn check_fields(settings: &Mapping, at: &str, fail: &mut dyn FnMut(String, String)) {
    for (k, v) in settings {
        match k.as_str() {
            Some(key) => check(key, &format!("{at}{}", segment(key)), v, fail),
            None => fail(at.to_string(), "field names are strings".into()),
        }
    }
}

/// A key as a path segment: `.key` when it is a plain name, `["…"]` (escaped, shortened) otherwise, so that no
/// key can forge a line of a message.
fn segment(key: &str) -> String {
    if !key.is_empty() && key.len() <= 128 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b)) {
        format!(".{key}")
    } else {
        format!("[{:?}]", key.chars().take(64).collect::<String>())
    }
}

/// The value at a dotted path, if every step is a mapping that has it.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.as_mapping()?.get(k))
}

/// Checks `v` against the table entry at `path`.
fn check(path: &str, shown: &str, v: &Value, fail: &mut dyn FnMut(String, String)) {
    let table = fields();
    let Some(field) = table.get(path) else {
        let (parent, name) = path.rsplit_once('.').unwrap_or(("", path));
        let near = suggestion(parent, name);
        fail(
            shown.to_string(),
            format!(
                "{name:?} is not a KubeletConfiguration field{}",
                near.map(|n| format!(" (did you mean {n:?}?)")).unwrap_or_default()
            ),
        );
        return;
    };
    if v.is_null() {
        return;
    }
    let wrong = |fail: &mut dyn FnMut(String, String), what: &str| {
        fail(shown.to_string(), format!("must be {what} ({} in KubeletConfiguration)", field.kind));
    };
    let string = |v: &Value| v.as_str().is_some();
    match field.kind {
        "string" => match v.as_str() {
            None => wrong(fail, "a string"),
            Some(s) => {
                if let Some(values) = &field.values
                    && !values.contains(&s)
                {
                    fail(shown.to_string(), format!("must be one of {}", values.join(", ")));
                }
                if path == "containerRuntimeEndpoint" && !cri_endpoint(s) {
                    fail(
                        shown.to_string(),
                        format!(
                            "is not a CRI endpoint of the form unix:///path/to/socket (e.g. {})",
                            crate::spec::DEFAULT_CRI_SOCKET
                        ),
                    );
                }
                if let Some(m) = super::bad_value(s) {
                    fail(shown.to_string(), format!("the value {m}"));
                }
            }
        },
        "bool" | "int32" | "int64" | "float64" | "duration" | "quantity" | "[]string" | "[]int32" => {
            let int32 = |x: &Value| x.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
            let (ok, what) = match field.kind {
                "bool" => (v.is_bool(), "true or false"),
                "int32" => (int32(v), "a whole number (32-bit)"),
                "int64" => (v.as_i64().is_some(), "a whole number"),
                "float64" => (v.is_number(), "a number"),
                "duration" => {
                    (v.as_str().is_some_and(go_duration), "a duration such as \"5m0s\", \"30s\" or \"100ms\"")
                }
                "quantity" => {
                    (v.is_number() || v.as_str().is_some_and(quantity), "a quantity such as \"100Mi\" or \"500m\"")
                }
                "[]string" => (v.as_sequence().is_some_and(|s| s.iter().all(string)), "a list of strings"),
                _ => (v.as_sequence().is_some_and(|s| s.iter().all(int32)), "a list of whole numbers"),
            };
            if !ok {
                wrong(fail, what);
            }
        }
        "map[string]string" | "map[string]bool" | "map[string][]string" | "map[string]quantity" => {
            let value_ok = |x: &Value| match field.kind {
                "map[string]string" => x.as_str().is_some_and(|s| super::bad_value(s).is_none()),
                "map[string]bool" => x.is_bool(),
                "map[string]quantity" => x.is_number() || x.as_str().is_some_and(quantity),
                _ => x.as_sequence().is_some_and(|s| s.iter().all(string)),
            };
            match v.as_mapping() {
                Some(m) if m.iter().all(|(k, x)| string(k) && value_ok(x)) => {}
                _ => wrong(
                    fail,
                    match field.kind {
                        "map[string]string" => {
                            "a mapping of strings to strings (quote numbers: memory: \"1Gi\", cpu: \"500m\")"
                        }
                        "map[string]bool" => "a mapping of names to true or false",
                        "map[string]quantity" => "a mapping of resource names to quantities",
                        _ => "a mapping of names to lists of strings",
                    },
                ),
            }
        }
        "object" => match v.as_mapping() {
            None => wrong(fail, "a mapping"),
            Some(m) => {
                for (k, x) in m {
                    match k.as_str() {
                        Some(k) => check(&format!("{path}.{k}"), &format!("{shown}{}", segment(k)), x, fail),
                        None => fail(shown.to_string(), "field names are strings".into()),
                    }
                }
            }
        },
        "[]object" => match v.as_sequence() {
            None => wrong(fail, "a list"),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_mapping() {
                        None => fail(format!("{shown}[{i}]"), "must be a mapping".into()),
                        Some(m) => {
                            for (k, x) in m {
                                match k.as_str() {
                                    Some(k) => {
                                        check(&format!("{path}[].{k}"), &format!("{shown}[{i}]{}", segment(k)), x, fail)
                                    }
                                    None => fail(format!("{shown}[{i}]"), "field names are strings".into()),
                                }
                            }
                        }
                    }
                }
            }
        },
        _ => {}
    }
}

/// The field of the same parent closest in spelling, if close enough to be a likely typo.
fn suggestion(parent: &str, name: &str) -> Option<&'static str> {
    let prefix = if parent.is_empty() { String::new() } else { format!("{parent}.") };
    fields()
        .keys()
        .filter_map(|p| p.strip_prefix(prefix.as_str()).filter(|rest| !rest.contains('.')))
        .map(|candidate| (edit_distance(&candidate.to_ascii_lowercase(), &name.to_ascii_lowercase()), candidate))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn cri_endpoint(v: &str) -> bool {
    v.strip_prefix("unix://").is_some_and(|p| crate::net::is_clean_abs_path(p) && p != "/")
}

/// A Go `time.Duration` string: `0`, or numbers (with an optional fraction) each followed by ns, us, µs, ms,
/// s, m or h, optionally signed.
pub fn go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let num = &rest[..digits];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"].into_iter().find(|u| rest.starts_with(u)) else {
            return false;
        };
        // "m" must not swallow the "m" of "ms".
        let unit = if unit == "m" && rest.starts_with("ms") { "ms" } else { unit };
        rest = &rest[unit.len()..];
        any = true;
    }
    any
}

/// A `resource.Quantity`: a decimal number with an optional exponent or SI / binary suffix.
pub fn quantity(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let digits = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(digits);
    let num_ok = !num.is_empty() && num != "." && num.matches('.').count() <= 1;
    let suffix_ok = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"]
        .contains(&suffix)
        || suffix.strip_prefix(['e', 'E']).is_some_and(|e| {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        });
    num_ok && suffix_ok
}

/// Merges `over` into `base`: mappings key by key, anything else replaced, `null` removes.
pub fn merge(base: &mut Value, over: &Mapping) {
    let Value::Mapping(b) = base else {
        *base = Value::Mapping(Mapping::new());
        return merge(base, over);
    };
    for (k, v) in over {
        match (b.get_mut(k), v) {
            (_, Value::Null) => {
                b.shift_remove(k);
            }
            (Some(existing @ Value::Mapping(_)), Value::Mapping(m)) => merge(existing, m),
            _ => {
                b.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The owned fields whose value differs between kubeforge's configuration and the final one.
pub fn owned_changes(base: &Value, fin: &Value) -> Vec<(&'static str, &'static str)> {
    OWNED.iter().filter(|(p, _)| lookup(base, p) != lookup(fin, p)).copied().collect()
}

/// Sorts every mapping's keys, as sigs.k8s.io/yaml writes them (the order kubeadm's files have).
pub fn sort_keys(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            let mut entries: Vec<(Value, Value)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.as_str().unwrap_or("").cmp(b.0.as_str().unwrap_or("")));
            for (k, mut x) in entries {
                sort_keys(&mut x);
                m.insert(k, x);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let m: Mapping = serde_yaml::from_str(yaml).unwrap();
        let mut out = Vec::new();
        validate(&m, "kubelet", &mut |p, msg| out.push(format!("{p}: {msg}")));
        out
    }

    #[test]
    fn the_table_is_upstreams() {
        let t = fields();
        assert!(t.len() > 150, "{}", t.len());
        for p in [
            "maxPods",
            "systemReserved",
            "evictionHard",
            "registerWithTaints[].effect",
            "authentication.x509.clientCAFile",
        ] {
            assert!(t.contains_key(p), "{p}");
        }
        for (p, _) in OWNED {
            assert!(t.contains_key(p), "owned field {p} is a KubeletConfiguration field");
        }
    }

    #[test]
    fn settings_are_checked_by_name_and_type() {
        assert!(problems("maxPods: 250\nsystemReserved: {cpu: 500m, memory: 1Gi}\nevictionHard: {memory.available: 5%}\nshutdownGracePeriod: 30s\nlogging: {verbosity: 2}\n").is_empty());
        let p = problems("maxPod: 250\n");
        assert!(p[0].contains("\"maxPod\" is not a KubeletConfiguration field (did you mean \"maxPods\"?)"), "{p:?}");
        assert!(problems("maxPods: \"250\"\n")[0].contains("a whole number"));
        assert!(problems("maxPods: 99999999999\n")[0].contains("32-bit"));
        assert!(problems("systemReserved: {cpu: 1}\n")[0].contains("quote numbers"));
        assert!(problems("shutdownGracePeriod: 30\n")[0].contains("duration"));
        assert!(problems("authorization: {mode: Maybe}\n")[0].contains("AlwaysAllow, Webhook"));
        assert!(problems("containerRuntimeEndpoint: /run/containerd.sock\n")[0].contains("unix:///"));
        assert!(problems("tlsCertFile: /x\n")[0].contains("kubelet.tlsCertFile: is kubeforge's to set"));
        let p = problems("authentication: {x509: {clientCAFile: /x}}\n");
        assert!(p.iter().any(|m| m.starts_with("kubelet.authentication.x509.clientCAFile: is kubeforge's")), "{p:?}");
        assert!(problems("authentication: null\n")[0].contains("kubeforge's to set"));
        assert!(problems("authentication: {anonymous: {enabled: true}}\n").is_empty());
        assert!(problems("kind: KubeletConfiguration\n")[0].contains("apiVersion and kind"));
        assert!(problems("registerWithTaints: []\n")[0].contains("nodes[].taints"));
    }

    #[test]
    fn go_durations_and_quantities() {
        for ok in ["0", "5m0s", "1h30m", "100ms", "1.5s", "-2s", "10us", "3µs"] {
            assert!(go_duration(ok), "{ok}");
        }
        for bad in ["", "5", "5x", "m", "1..5s", "1h 2m"] {
            assert!(!go_duration(bad), "{bad}");
        }
        for ok in ["100Mi", "500m", "1", "1.5Gi", "1e3", "2E-2"] {
            assert!(quantity(ok), "{ok}");
        }
        for bad in ["", "Mi", "1 Gi", "1GB", "1e"] {
            assert!(!quantity(bad), "{bad}");
        }
    }

    #[test]
    fn merging_is_deep_and_null_removes() {
        let mut base: Value = serde_yaml::from_str("a: {b: 1, c: 2}\nd: [1]\ne: x\n").unwrap();
        let over: Mapping = serde_yaml::from_str("a: {c: 3}\nd: [2]\ne: null\nf: y\n").unwrap();
        merge(&mut base, &over);
        let want: Value = serde_yaml::from_str("a: {b: 1, c: 3}\nd: [2]\nf: y\n").unwrap();
        assert_eq!(base, want);
    }
}
