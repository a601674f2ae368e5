//! kubeadm's `--patches` directory: files named `target[suffix][+patchtype].{json,yaml}`, applied in file name
//! order to the documents kubeforge renders, so that a kubeadm patches directory works unchanged.
//!
//! Targets: `etcd`, `kube-apiserver`, `kube-controller-manager`, `kube-scheduler` (the static pods) and
//! `kubeletconfiguration` (every node's `config.yaml`). Patch types: `strategic` (the default; kubeforge merges the
//! Pod fields kubeadm users patch by their keys: containers, volumes and env by name, volumeMounts by mountPath,
//! ports by containerPort; `$patch: delete` and `$patch: replace`), `merge` (RFC 7386) and `json` (RFC 6902),
//! the last two by the `json-patch` crate. A file may hold several patches as YAML documents (`---`).
//!
//! Where kubeadm skips a file it does not understand, kubeforge refuses it: a misspelt patch must not quietly do
//! nothing. A patched document is re-emitted with its keys sorted, as kubeadm writes it.

use std::path::Path;

use serde_json::Value as Json;

/// The targets and the documents they patch.
pub const TARGETS: [&str; 5] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubeletconfiguration"];
const TYPES: [&str; 3] = ["strategic", "merge", "json"];
/// More files than this in a patches directory is a mistake (a wrong directory), not a configuration.
const MAX_FILES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Strategic,
    Merge,
    Json,
}

#[derive(Debug, Clone)]
pub struct Patch {
    /// The file's name, for messages.
    pub file: String,
    pub target: &'static str,
    pub kind: Kind,
    /// The patches of the file, one per YAML document.
    pub docs: Vec<Json>,
}

/// `target[suffix][+patchtype].{json,yaml}`, or why a name is not that.
fn parse_name(name: &str) -> Result<(&'static str, Kind), String> {
    let stem = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".json")).ok_or_else(|| {
        "is not a patch file: kubeadm's patch files are named target[suffix][+patchtype].yaml or .json".to_string()
    })?;
    let (stem, kind) = match stem.split_once('+') {
        None => (stem, Kind::Strategic),
        Some((s, t)) => (
            s,
            match t {
                "strategic" => Kind::Strategic,
                "merge" => Kind::Merge,
                "json" => Kind::Json,
                _ => return Err(format!("has the patch type {t:?}; the types are {}", TYPES.join(", "))),
            },
        ),
    };
    let target = TARGETS.iter().copied().filter(|t| stem.starts_with(t)).max_by_key(|t| t.len()).ok_or_else(|| {
        format!(
            "does not start with a patch target; the targets are {} (kubeforge renders no CoreDNS or kube-proxy)",
            TARGETS.join(", ")
        )
    })?;
    Ok((target, kind))
}

/// Reads every patch in `dir`, in file name order; problems go to `fail`, each naming its file.
pub fn load(dir: &Path, fail: &mut dyn FnMut(String)) -> Vec<Patch> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            fail(format!("{}: cannot read the directory: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut names: Vec<String> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    if names.len() > MAX_FILES {
        fail(format!("{}: {} files; a patches directory holds at most {MAX_FILES}", dir.display(), names.len()));
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let shown = path.display().to_string();
        let (target, kind) = match parse_name(&name) {
            Ok(x) => x,
            Err(m) => {
                fail(format!("{shown} {m}"));
                continue;
            }
        };
        let text = match crate::input::text(&path, crate::input::PEM_LIMIT) {
            Ok(t) => t,
            Err(why) => {
                fail(format!("{shown}: cannot read: {why}"));
                continue;
            }
        };
        if crate::input::looks_secret(&text) {
            fail(format!("{shown}: holds private key material; a patch carries no secrets (nothing of it is shown)"));
            continue;
        }
        match parse_docs(&text, kind) {
            Ok(docs) if docs.is_empty() => fail(format!("{shown}: holds no patch")),
            Ok(docs) => out.push(Patch { file: shown, target, kind, docs }),
            Err(m) => fail(format!("{shown}: {m}")),
        }
    }
    out
}

fn parse_docs(text: &str, kind: Kind) -> Result<Vec<Json>, String> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = serde_yaml::Value::deserialize(de)
            .map_err(|e| format!("document {}: not YAML or JSON: {}", i + 1, without_quotes(&e.to_string())))?;
        if v.is_null() {
            continue;
        }
        let j: Json = serde_json::to_value(&v).map_err(|e| {
            format!("document {}: cannot be a JSON document: {}", i + 1, without_quotes(&e.to_string()))
        })?;
        match kind {
            Kind::Json => {
                serde_json::from_value::<json_patch::Patch>(j.clone()).map_err(|e| {
                    format!(
                        "document {}: not an RFC 6902 JSON patch (a list of {{op, path, value}}): {}",
                        i + 1,
                        without_quotes(&e.to_string())
                    )
                })?;
            }
            Kind::Strategic | Kind::Merge => {
                if !j.is_object() {
                    return Err(format!("document {}: a {} patch is a mapping", i + 1, kind_name(kind)));
                }
            }
        }
        docs.push(j);
    }
    Ok(docs)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Strategic => "strategic merge",
        Kind::Merge => "merge",
        Kind::Json => "json",
    }
}

/// A parser's message without the document text it may quote.
fn without_quotes(m: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in m.chars() {
        if c == '"' || c == '`' {
            if !quoted {
                out.push_str("(…)");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// Whether any patch targets `target`.
pub fn any_for(patches: &[Patch], target: &str) -> bool {
    patches.iter().any(|p| p.target == target)
}

/// Applies every patch for `target` to `doc`, in order, and sorts its keys. Err: the file and why it does not
/// apply.
pub fn apply(patches: &[Patch], target: &str, doc: &mut serde_yaml::Value) -> Result<(), String> {
    let mut j: Json = serde_json::to_value(&*doc).map_err(|e| format!("internal: {e}"))?;
    let pod = target != "kubeletconfiguration";
    for p in patches.iter().filter(|p| p.target == target) {
        for (i, d) in p.docs.iter().enumerate() {
            let at = if p.docs.len() > 1 { format!("{} (document {})", p.file, i + 1) } else { p.file.clone() };
            match p.kind {
                Kind::Strategic => strategic(&mut j, d, pod).map_err(|m| format!("{at}: {m}"))?,
                Kind::Merge => json_patch::merge(&mut j, d),
                Kind::Json => {
                    let ops: json_patch::Patch = serde_json::from_value(d.clone()).expect("checked when loaded");
                    json_patch::patch(&mut j, &ops).map_err(|e| format!("{at}: the patch does not apply: {e}"))?;
                }
            }
        }
    }
    let mut v: serde_yaml::Value = serde_yaml::to_value(&j).map_err(|e| format!("internal: {e}"))?;
    super::kubelet::sort_keys(&mut v);
    *doc = v;
    Ok(())
}

/// The key that identifies an element of a Pod's list field, for a strategic merge.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => "name",
        "volumeMounts" | "volumeDevices" => "mountPath",
        "ports" => "containerPort",
        "hostAliases" => "ip",
        _ => return None,
    })
}

/// A strategic merge patch: mappings merge, `null` removes, lists with a merge key merge element by element
/// (`$patch: delete` removes one, `$patch: replace` as an element replaces the whole list), other lists are
/// replaced. `pod`: whether Pod merge keys apply (a KubeletConfiguration has none).
fn strategic(target: &mut Json, patch: &Json, pod: bool) -> Result<(), String> {
    let Json::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if let Some(d) = p.get("$patch") {
        match d.as_str() {
            Some("replace") => {
                let mut clean = p.clone();
                clean.remove("$patch");
                *target = Json::Object(clean);
                return Ok(());
            }
            Some("merge") => {}
            _ => {
                return Err(
                    "a mapping's $patch is replace or merge here ($patch: delete belongs in a list element)".into()
                );
            }
        }
    }
    if !target.is_object() {
        *target = Json::Object(Default::default());
    }
    let t = target.as_object_mut().expect("an object");
    for (k, v) in p {
        if k == "$patch" {
            continue;
        }
        if k.starts_with('$') {
            return Err(format!(
                "the directive {k:?} is not supported (kubeforge's strategic merge knows $patch: delete and replace)"
            ));
        }
        match v {
            Json::Null => {
                t.remove(k);
            }
            Json::Object(_) => strategic(t.entry(k.clone()).or_insert(Json::Null), v, pod)?,
            Json::Array(items) => match (pod.then(|| merge_key(k)).flatten(), t.get_mut(k)) {
                (Some(key), Some(Json::Array(existing))) => merge_list(existing, items, key, pod)?,
                (Some(key), _) => {
                    let mut fresh = Vec::new();
                    merge_list(&mut fresh, items, key, pod)?;
                    t.insert(k.clone(), Json::Array(fresh));
                }
                (None, _) => {
                    t.insert(k.clone(), v.clone());
                }
            },
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(existing: &mut Vec<Json>, items: &[Json], key: &str, pod: bool) -> Result<(), String> {
    if items.iter().any(|i| i.get("$patch").and_then(Json::as_str) == Some("replace")) {
        *existing = items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect();
        return Ok(());
    }
    for item in items {
        let Some(id) = item.get(key) else {
            return Err(format!("a list element has no {key:?}, the key this list merges by"));
        };
        let pos = existing.iter().position(|e| e.get(key) == Some(id));
        match (item.get("$patch").and_then(Json::as_str), pos) {
            (Some("delete"), Some(i)) => {
                existing.remove(i);
            }
            (Some("delete"), None) => {}
            (Some(other), _) if other != "merge" => {
                return Err(format!("a list element's $patch is delete or replace, not {other:?}"));
            }
            (_, Some(i)) => strategic(&mut existing[i], item, pod)?,
            (_, None) => {
                let mut fresh = Json::Null;
                strategic(&mut fresh, item, pod)?;
                existing.push(fresh);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_kubeadm() {
        assert_eq!(parse_name("kube-apiserver.yaml").unwrap(), ("kube-apiserver", Kind::Strategic));
        assert_eq!(parse_name("kube-apiserver0+merge.yaml").unwrap(), ("kube-apiserver", Kind::Merge));
        assert_eq!(parse_name("etcd-quota+json.json").unwrap(), ("etcd", Kind::Json));
        assert_eq!(
            parse_name("kubeletconfiguration+strategic.yaml").unwrap(),
            ("kubeletconfiguration", Kind::Strategic)
        );
        assert!(parse_name("kube-apiserver+xml.yaml").unwrap_err().contains("patch type"));
        assert!(parse_name("corednsdeployment.yaml").unwrap_err().contains("no CoreDNS"));
        assert!(parse_name("kube-apiserver.yml").unwrap_err().contains("not a patch file"));
        assert!(parse_name("README.md").is_err());
    }

    #[test]
    fn strategic_merge_by_keys() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}],
            "volumeMounts": [{"mountPath": "/m", "name": "v"}]}], "volumes": [{"name": "v"}, {"name": "w"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}],
            "volumeMounts": [{"mountPath": "/m", "readOnly": true}]}], "volumes": [{"name": "w", "$patch": "delete"}],
            "dnsPolicy": "None"}});
        strategic(&mut pod, &patch, true).unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                "volumeMounts": [{"mountPath": "/m", "name": "v", "readOnly": true}]}], "volumes": [{"name": "v"}],
                "dnsPolicy": "None"}})
        );
        let mut kc = json!({"a": [1, 2], "b": {"c": 1}});
        strategic(&mut kc, &json!({"a": [3], "b": {"d": 2}}), false).unwrap();
        assert_eq!(kc, json!({"a": [3], "b": {"c": 1, "d": 2}}));
        assert!(strategic(&mut kc, &json!({"$retainKeys": ["a"]}), false).unwrap_err().contains("not supported"));
    }
}
