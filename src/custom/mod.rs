//! What an operator changes in the rendered files beyond kubeforge's defaults, in kubeadm v1beta4's names and
//! shapes: `extraArgs`, `extraVolumes` and `extraEnvs` of each control-plane component, kubelet settings
//! ([`kubelet`]), and a kubeadm `--patches` directory ([`patches`]).
//!
//! The line kubeforge holds: everything may be changed except what carries its PKI (certificate, key and CA
//! paths, the kubeconfigs, mTLS switches) and what another spec field decides (addresses, ports, the data
//! directory): those are refused with the field that controls them. Turning off a secure default is allowed and
//! warned about on every run ([`secure`]).
//!
//! Checked here, with the spec: the shape of every value (names, characters, paths, feature gates for the
//! cluster's version). Checked where the files are rendered, against what kubeforge itself writes: overrides of
//! owned flags and fields, volume collisions, and the result of patches (`crate::render`).

pub mod kubelet;
pub mod patches;
pub mod secure;

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer};

use crate::versions::Facts;

/// A control-plane component that the spec customizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    ApiServer,
    ControllerManager,
    Scheduler,
    Etcd,
}

impl Component {
    pub const ALL: [Component; 4] =
        [Component::Etcd, Component::ApiServer, Component::ControllerManager, Component::Scheduler];

    /// Where its settings are in the spec.
    pub fn field(self) -> &'static str {
        match self {
            Component::ApiServer => "apiServer",
            Component::ControllerManager => "controllerManager",
            Component::Scheduler => "scheduler",
            Component::Etcd => "etcd.local",
        }
    }

    /// The binary, the static pod's name and kubeadm's patch target.
    pub fn binary(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::Etcd => "etcd",
        }
    }

    /// Whether it takes Kubernetes' component feature gates (etcd has its own).
    fn kubernetes_gates(self) -> bool {
        self != Component::Etcd
    }
}

/// A component's settings as written (kubeadm's `ControlPlaneComponent`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExtras {
    pub extra_args: Vec<RawArg>,
    pub extra_volumes: Vec<RawVolume>,
    pub extra_envs: Vec<RawEnv>,
}

/// `{name, value}`; a number or boolean value is taken as the string YAML shows (`value: 32222`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArg {
    pub name: String,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
}

/// kubeadm's `HostPathMount`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawVolume {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub path_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnv {
    pub name: String,
    #[serde(deserialize_with = "scalar_string")]
    pub value: String,
}

fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match serde_yaml::Value::deserialize(d)? {
        serde_yaml::Value::String(s) => Ok(s),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(D::Error::custom("expected a string (or a number or boolean, taken as written)")),
    }
}

/// One command-line argument: `--name=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub host_path: String,
    pub mount_path: String,
    pub read_only: bool,
    /// Empty: no check on the host (Kubernetes' default).
    pub path_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub name: String,
    pub value: String,
}

/// A component's validated extras.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub args: Vec<Arg>,
    pub volumes: Vec<Volume>,
    pub envs: Vec<Env>,
}

impl Extras {
    pub fn is_empty(&self) -> bool {
        self.args.is_empty() && self.volumes.is_empty() && self.envs.is_empty()
    }
}

/// Kubernetes' hostPath types (`HostPathType`); empty means none.
pub const PATH_TYPES: [&str; 8] =
    ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"];

/// The longest argument or environment value accepted (a very long flag is a mistake, not a setting).
pub const VALUE_LIMIT: usize = 8192;

/// Flags no component of kubeforge's may get, whatever kubeforge itself sets: they replace its PKI.
const NEVER: [(Component, &str, &str); 2] = [
    (Component::Etcd, "auto-tls", "self-signed certificates instead of kubeforge's etcd-server certificate"),
    (Component::Etcd, "peer-auto-tls", "self-signed certificates instead of kubeforge's etcd-peer certificates"),
];

/// Why `value` cannot be an argument's or an environment variable's value, if it cannot.
pub fn bad_value(value: &str) -> Option<String> {
    if value.len() > VALUE_LIMIT {
        return Some(format!("is {} bytes long; the limit is {VALUE_LIMIT}", value.len()));
    }
    if let Some(c) = value.chars().find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')) {
        return Some(format!(
            "contains the control character U+{:04X}: a value is one line of printable text",
            c as u32
        ));
    }
    None
}

/// A flag's name as the components spell them: lowercase letters, digits and '-', without the leading `--`.
fn bad_flag_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("--") {
        return Some(format!("write the flag without its leading \"--\": name: {rest:?}"));
    }
    let ok = !name.is_empty()
        && name.len() <= 100
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    (!ok).then(|| {
        "is not a flag name (lowercase letters, digits, '-' and '.', starting with a letter or digit, at most 100)"
            .to_string()
    })
}

/// Checks one component's extras; `fail(path, message)` collects problems. Values are never quoted in messages:
/// an extraArg may hold a secret (e.g. an OIDC client secret), so a message says what is wrong with it instead.
pub fn validate(comp: Component, raw: &RawExtras, facts: &Facts, fail: &mut dyn FnMut(String, String)) -> Extras {
    let base = comp.field();
    let mut args = Vec::new();
    for (i, a) in raw.extra_args.iter().enumerate() {
        let at = format!("{base}.extraArgs[{i}]");
        if let Some(m) = bad_flag_name(&a.name) {
            fail(format!("{at}.name"), format!("{:?} {m}", shown(&a.name)));
            continue;
        }
        if let Some(m) = bad_value(&a.value) {
            fail(format!("{at}.value"), format!("the value of --{} {m}", a.name));
            continue;
        }
        if let Some((_, _, why)) = NEVER.iter().find(|(c, n, _)| *c == comp && *n == a.name) {
            fail(at.clone(), format!("--{} is refused: it would give {} {why}", a.name, comp.binary()));
            continue;
        }
        if a.name == "feature-gates" && comp.kubernetes_gates() {
            check_gates(&a.value, facts, &mut |m| fail(format!("{at}.value"), m));
        }
        args.push(Arg { name: a.name.clone(), value: a.value.clone() });
    }
    let mut volumes = Vec::new();
    let (mut names, mut hosts, mut mounts) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (i, v) in raw.extra_volumes.iter().enumerate() {
        let at = |f: &str| format!("{base}.extraVolumes[{i}].{f}");
        let mut ok = true;
        if !crate::net::is_dns_label(&v.name) {
            fail(at("name"), format!("{:?} is not a volume name (a DNS-1123 label)", shown(&v.name)));
            ok = false;
        } else if !names.insert(v.name.clone()) {
            fail(at("name"), format!("{:?} names another extraVolume too; names are unique", v.name));
            ok = false;
        }
        for (field, path, seen) in [("hostPath", &v.host_path, &mut hosts), ("mountPath", &v.mount_path, &mut mounts)] {
            if !crate::net::is_clean_abs_path(path) || path.len() > 4096 {
                fail(at(field), format!("{:?} is not a clean absolute path", shown(path)));
                ok = false;
            } else if !seen.insert(path.clone()) {
                fail(at(field), format!("{path:?} is used by another extraVolume too"));
                ok = false;
            }
        }
        if !PATH_TYPES.contains(&v.path_type.as_str()) {
            fail(at("pathType"), format!("{:?} is not one of {}", shown(&v.path_type), PATH_TYPES[1..].join(", ")));
            ok = false;
        }
        if ok {
            volumes.push(Volume {
                name: v.name.clone(),
                host_path: v.host_path.clone(),
                mount_path: v.mount_path.clone(),
                read_only: v.read_only,
                path_type: v.path_type.clone(),
            });
        }
    }
    let mut envs = Vec::new();
    let mut env_names = BTreeSet::new();
    for (i, e) in raw.extra_envs.iter().enumerate() {
        let at = |f: &str| format!("{base}.extraEnvs[{i}].{f}");
        let name_ok = !e.name.is_empty()
            && e.name.len() <= 256
            && !e.name.as_bytes()[0].is_ascii_digit()
            && e.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !name_ok {
            fail(
                at("name"),
                format!(
                    "{:?} is not an environment variable name (letters, digits, '_', '.', '-', not starting with a digit)",
                    shown(&e.name)
                ),
            );
        } else if !env_names.insert(e.name.clone()) {
            fail(at("name"), format!("{:?} is set twice", e.name));
        } else if let Some(m) = bad_value(&e.value) {
            fail(at("value"), format!("the value of {} {m}", e.name));
        } else {
            envs.push(Env { name: e.name.clone(), value: e.value.clone() });
        }
    }
    Extras { args, volumes, envs }
}

/// A name as a message may show it: at most 64 characters, control characters escaped by `{:?}`.
fn shown(s: &str) -> String {
    if s.chars().count() > 64 { format!("{}…", s.chars().take(64).collect::<String>()) } else { s.to_string() }
}

/// `--feature-gates=A=true,B=false` for the cluster's version: every entry `Name=bool`, no gate the version
/// removed, no locked gate set to the value it cannot take.
pub fn check_gates(value: &str, facts: &Facts, fail: &mut dyn FnMut(String)) {
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((gate, v)) = entry.split_once('=') else {
            fail(format!("{:?} is not a feature gate setting of the form Name=true or Name=false", shown(entry)));
            continue;
        };
        let on = match v.trim() {
            "true" => true,
            "false" => false,
            _ => {
                fail(format!("the feature gate {:?} must be set to true or false", shown(gate)));
                continue;
            }
        };
        if let Some(minor) = facts.removed_gate(gate) {
            fail(format!(
                "the feature gate {gate} was removed in Kubernetes v1.{minor}: a v1.{} component exits on it; \
                 drop it",
                facts.minor
            ));
        } else if let Some((locked, minor)) = facts.locked_gate(gate)
            && locked != on
        {
            fail(format!(
                "the feature gate {gate} is locked to {locked} since Kubernetes v1.{minor}: setting it to {on} \
                 makes a v1.{} component exit",
                facts.minor
            ));
        }
    }
}

/// The command line of a component, as kubeadm v1.36 assembles it (v1.35–v1.37 sheet §2.1): kubeforge's flags
/// minus every name the user sets, sorted by name, then value; then the user's arguments in the user's order,
/// repeats kept. Without extraArgs this is the plain sorted list, as every supported kubeadm writes it.
pub fn command_args(mut base: Vec<(String, String)>, extra: &[Arg]) -> Vec<(String, String)> {
    let overridden: BTreeSet<&str> = extra.iter().map(|a| a.name.as_str()).collect();
    base.retain(|(n, _)| !overridden.contains(n.as_str()));
    base.sort();
    base.extend(extra.iter().map(|a| (a.name.clone(), a.value.clone())));
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(n: &str, v: &str) -> Arg {
        Arg { name: n.into(), value: v.into() }
    }

    #[test]
    fn user_args_follow_the_sorted_defaults_in_the_users_order() {
        let base = vec![("b".to_string(), "1".to_string()), ("a".into(), "2".into()), ("c".into(), "3".into())];
        let out = command_args(base.clone(), &[arg("z", "9"), arg("b", "7"), arg("b", "8")]);
        let names: Vec<String> = out.iter().map(|(n, v)| format!("{n}={v}")).collect();
        assert_eq!(names, ["a=2", "c=3", "z=9", "b=7", "b=8"]);
        let plain: Vec<String> = command_args(base, &[]).iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(plain, ["a", "b", "c"]);
    }

    #[test]
    fn gates_are_checked_for_the_version() {
        let errors = |v: &str, minor: u32| {
            let mut out = Vec::new();
            check_gates(v, crate::versions::facts(minor).unwrap(), &mut |m| out.push(m));
            out
        };
        assert!(errors("ComponentSLIs=true", 34).is_empty());
        let e = errors("ComponentSLIs=true", 36);
        assert!(e[0].contains("removed in Kubernetes v1.35"), "{e:?}");
        assert!(errors("JobManagedBy=true", 35).is_empty());
        assert!(errors("JobManagedBy=false", 36)[0].contains("locked to true since Kubernetes v1.35"));
        assert!(errors("SeparateCacheWatchRPC=true", 37)[0].contains("locked to false"));
        assert!(errors("A=yes", 37)[0].contains("true or false"));
        assert!(errors("A", 37)[0].contains("Name=true"));
        assert!(errors("SomeGate=false, Other=true", 37).is_empty());
    }

    #[test]
    fn values_are_one_printable_line() {
        assert!(bad_value("https://issuer.example.com").is_none());
        assert!(bad_value("a b c").is_none());
        for bad in ["a\nb", "a\0b", "a\rb", "\u{1b}[31m", "a\u{2028}b"] {
            assert!(bad_value(bad).is_some(), "{bad:?}");
        }
        assert!(bad_value(&"x".repeat(VALUE_LIMIT + 1)).is_some());
        assert!(bad_flag_name("--oidc-issuer-url").unwrap().contains("without its leading"));
        assert!(bad_flag_name("oidc-issuer-url").is_none());
        assert!(bad_flag_name("Bad_Name").is_some());
    }
}
