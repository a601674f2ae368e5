//! The consumers of `OUT/index.json` (issue 4, "Consumers, proven"): its JSON Schema, the invariants automation
//! relies on, and the Ansible example run for real. (The Terraform module is applied for real in tests/tooling.rs.)
//!
//! - `index_validates_against_its_schema`: the index of every fixture validates against `schema/index.schema.json`
//!   with the `jsonschema` package (Draft 2020-12, format checking on), and a set of tampered indexes is rejected,
//!   each for the reason it was tampered with, so the schema is known to bite.
//! - `index_invariants`: checked in Rust against the files on disk: one entry per file (an entry without a file
//!   only for a secret kept sealed), checksums and modes match, no key material, `secret` exactly for keys,
//!   kubeconfigs and the encryption config, node files only under kubeadm's directories, certificate facts those
//!   of the file.
//! - `ansible_playbook_deploys_every_node`: `examples/ansible/deploy.yml` run by the real `ansible-playbook`
//!   (ansible-core from PyPI, installed by `cargo xtask test`) with the local connection, each node's `/` being a
//!   temp directory: every file lands with its bytes, mode and owner, every directory of the index with its mode
//!   and owner, nothing else is written, secrets stay out of the output, and a rerun repairs drift and changes
//!   nothing elsewhere. No host is contacted. `ansible_playbook_refuses_sealed_secrets`: with the secrets sealed
//!   (age) and not materialized, the playbook stops before writing anything and says to materialize.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The kinds whose files hold secret material (private keys, a kubeconfig's client key, encryption-at-rest keys).
const SECRET_KINDS: [&str; 3] = ["key", "kubeconfig", "encryption-config"];
/// The demo spec with `pki.encryption.age`: its secret files are only in OUT sealed (`secrets/<path>.age`).
const SEALED: &str = "demo-sealed";
/// The fixtures whose index is validated and checked. `ha-3cp` and `external-etcd-ca` have several control-plane
/// nodes, `external-etcd-ca` a CA the user provided (a certificate without a profile), `dual-stack` IPv6 SANs,
/// `rsa-v1.33` RSA keys, `SEALED` sealed secrets.
const FIXTURES: [&str; 6] = ["demo", "ha-3cp", "external-etcd-ca", "dual-stack", "rsa-v1.33", SEALED];
/// The fixture the Ansible test deploys: one control-plane node and two workers (each `ansible-playbook` run costs
/// about half a second of CPU per file, so the larger HA fixtures would make this test minutes long on 2 cores).
const ANSIBLE_FIXTURE: &str = "demo";
/// How long one `ansible-playbook` run may take (generous: CI runs other tests beside it on 2 cores).
const ANSIBLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

// ---------------------------------------------------------------------------------------------------------------
// Helpers

fn spec_path(fixture: &str) -> PathBuf {
    Path::new(ROOT).join("fixtures").join(format!("{fixture}.yaml"))
}

/// The spec of `fixture`: a file of fixtures/, or for `SEALED` the demo spec with an age recipient (a fresh one;
/// its identity is thrown away, so the secrets stay sealed), written beside `out`.
fn spec_for(fixture: &str, out: &Path) -> PathBuf {
    if fixture != SEALED {
        return spec_path(fixture);
    }
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    let anchor = "  certificateValidity: 8760h\n";
    assert!(kubeforge::DEMO_SPEC.contains(anchor), "the demo spec changed: update spec_for");
    let text = kubeforge::DEMO_SPEC.replacen(
        anchor,
        &format!("{anchor}  encryption:\n    age:\n      recipients: [{recipient}]\n"),
        1,
    );
    let path = out.with_extension("yaml");
    fs::write(&path, text).unwrap();
    path
}

/// Generates `fixture` into `out` the way `cargo xtask gen` does (fixed seed and clock); returns its spec.
fn generate(fixture: &str, out: &Path) -> PathBuf {
    let spec = spec_for(fixture, out);
    support::generate_into(&spec, out, support::SEED, Some(support::now()));
    spec
}

fn read_index(out: &Path) -> Value {
    let p = out.join("index.json");
    let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

fn files(index: &Value) -> &Vec<Value> {
    index["files"].as_array().expect("index.files is an array")
}

fn s<'a>(entry: &'a Value, field: &str) -> &'a str {
    entry[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {entry}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn mode_of(p: &Path) -> String {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    format!("{:04o}", m.permissions().mode() & 0o7777)
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().nth(1).map(|x| x == "0"))
        })
        .unwrap_or(false)
}

#[test]
fn index_validates_against_its_schema() {
    let tmp = support::temp_dir("consumers-schema");
    for f in FIXTURES {
        let out = tmp.join(f);
        generate(f, &out);
        let errors = support::schema_errors("index.schema.json", &read_index(&out));
        assert!(errors.is_empty(), "{f}: index.json does not validate against schema/index.schema.json: {errors:#?}");
    }

    // Negative controls: each tampered copy of a real index must be rejected, at the place tampered with.
    let index = read_index(&tmp.join("ha-3cp"));
    let pos =
        |pred: &dyn Fn(&Value) -> bool| files(&index).iter().position(pred).expect("the fixture has such an entry");
    let key = pos(&|e| e["kind"] == "key" && !e["node"].is_null());
    let cert = pos(&|e| e["kind"] == "cert" && !e["node"].is_null());
    let manifest = pos(&|e| e["kind"] == "manifest");
    type Tamper = Box<dyn Fn(&mut Value)>;
    fn t(f: impl Fn(&mut Value) + 'static) -> Tamper {
        Box::new(f)
    }
    let cases: Vec<(&str, Tamper, String, &str)> = vec![
        ("extra-top-level-field", t(|v| v["generatedBy"] = json!("x")), "/".into(), "'generatedBy' was unexpected"),
        (
            "extra-entry-field",
            t(move |v| v["files"][key]["content"] = json!("-----BEGIN PRIVATE KEY-----")),
            format!("/files/{key}"),
            "'content' was unexpected",
        ),
        (
            "extra-certificate-field",
            t(move |v| v["files"][cert]["certificate"]["pem"] = json!("x")),
            format!("/files/{cert}/certificate"),
            "'pem' was unexpected",
        ),
        (
            "mode-without-leading-zero",
            t(move |v| v["files"][key]["mode"] = json!("600")),
            format!("/files/{key}/mode"),
            "does not match",
        ),
        (
            "mode-not-octal",
            t(move |v| v["files"][key]["mode"] = json!("0680")),
            format!("/files/{key}/mode"),
            "does not match",
        ),
        (
            "mode-as-number",
            t(move |v| v["files"][key]["mode"] = json!(384)),
            format!("/files/{key}/mode"),
            "is not of type \"string\"",
        ),
        (
            "unknown-kind",
            t(move |v| v["files"][key]["kind"] = json!("private-key")),
            format!("/files/{key}/kind"),
            "is not one of",
        ),
        (
            "key-not-secret",
            t(move |v| v["files"][key]["secret"] = json!(false)),
            format!("/files/{key}/secret"),
            "true was expected",
        ),
        (
            "manifest-secret",
            t(move |v| v["files"][manifest]["secret"] = json!(true)),
            format!("/files/{manifest}/secret"),
            "false was expected",
        ),
        (
            "short-sha256",
            t(move |v| v["files"][key]["sha256"] = json!("abc")),
            format!("/files/{key}/sha256"),
            "does not match",
        ),
        (
            "missing-sha256",
            t(move |v| {
                v["files"][key].as_object_mut().unwrap().remove("sha256");
            }),
            format!("/files/{key}"),
            "\"sha256\" is a required property",
        ),
        (
            "node-without-dest",
            t(move |v| v["files"][key]["dest"] = Value::Null),
            format!("/files/{key}/dest"),
            "null is not of type \"string\"",
        ),
        (
            "relative-dest",
            t(move |v| v["files"][key]["dest"] = json!("etc/kubernetes/x.key")),
            format!("/files/{key}/dest"),
            "does not match",
        ),
        (
            "dest-escapes",
            t(move |v| v["files"][key]["dest"] = json!("/etc/kubernetes/../../root/x")),
            format!("/files/{key}/dest"),
            "does not match",
        ),
        (
            "key-with-certificate",
            t(move |v| v["files"][key]["certificate"] = v["files"][cert]["certificate"].clone()),
            format!("/files/{key}/certificate"),
            "is not of type \"null\"",
        ),
        (
            "cert-without-certificate",
            t(move |v| v["files"][cert]["certificate"] = Value::Null),
            format!("/files/{cert}/certificate"),
            "null is not of type \"object\"",
        ),
        (
            "impossible-date",
            t(move |v| v["files"][cert]["certificate"]["notAfter"] = json!("2027-02-30T00:00:00Z")),
            format!("/files/{cert}/certificate/notAfter"),
            "is not a \"date-time\"",
        ),
        (
            "date-with-offset",
            t(move |v| v["files"][cert]["certificate"]["notBefore"] = json!("2026-01-01T00:00:00+01:00")),
            format!("/files/{cert}/certificate/notBefore"),
            "does not match",
        ),
        (
            "unknown-key-usage",
            t(move |v| v["files"][cert]["certificate"]["keyUsage"] = json!(["digitalSignature", "codeSigning"])),
            format!("/files/{cert}/certificate/keyUsage/1"),
            "is not one of",
        ),
        ("wrong-api-version", t(|v| v["apiVersion"] = json!("kubeforge/v1")), "/apiVersion".into(), "was expected"),
        (
            "public-file-sealed",
            t(move |v| v["files"][cert]["sealed"] = json!("secrets/x.crt.age")),
            format!("/files/{cert}/sealed"),
            "is not of type \"null\"",
        ),
        (
            "no-directories",
            t(|v| {
                v.as_object_mut().unwrap().remove("directories");
            }),
            "/".into(),
            "\"directories\" is a required property",
        ),
        (
            "extra-directory-field",
            t(|v| v["directories"][0]["recursive"] = json!(true)),
            "/directories/0".into(),
            "'recursive' was unexpected",
        ),
        (
            "directory-mode",
            t(|v| v["directories"][0]["mode"] = json!("rwx------")),
            "/directories/0/mode".into(),
            "does not match",
        ),
        (
            "directory-without-node",
            t(|v| v["directories"][0]["node"] = Value::Null),
            "/directories/0/node".into(),
            "null is not of type \"string\"",
        ),
    ];
    for (name, tamper, at, msg) in &cases {
        let mut v = index.clone();
        tamper(&mut v);
        assert_ne!(v, index, "{name}: the tampering changed nothing");
        let errors = support::schema_errors("index.schema.json", &v);
        let at = if at == "/" { "" } else { at.as_str() };
        assert!(
            errors.iter().any(|(p, m)| p == at && m.contains(msg)),
            "tampered index {name:?} must be rejected at {at:?} with {msg:?}; the validator said: {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// (b) Invariants, against the files on disk

#[test]
fn index_invariants() {
    let tmp = support::temp_dir("consumers-invariants");
    for fixture in FIXTURES {
        let out = tmp.join(fixture);
        let spec = generate(fixture, &out);
        let text = fs::read_to_string(out.join("index.json")).unwrap();
        let index: Value = serde_json::from_str(&text).unwrap();
        let cluster = kubeforge::spec::load(&spec).unwrap();
        let ctx = |path: &str| format!("{fixture}: {path}");

        assert_eq!(index["cluster"], json!(cluster.name), "{fixture}: cluster");
        assert_eq!(index["kubernetesVersion"], json!(cluster.version.to_string()), "{fixture}: kubernetesVersion");

        // Exactly one entry per file under OUT except index.json, in path order. The only entries without a file
        // are secrets kept sealed (not materialized), whose `sealed` names their encrypted copy.
        // kubeforge's own locks (`.kubeforge/`, ignored by git) are not output.
        let on_disk: BTreeSet<String> =
            support::Tree::output(&out).files().into_keys().filter(|p| p != "index.json").collect();
        let paths: Vec<String> = files(&index).iter().map(|e| s(e, "path").to_string()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(paths, sorted, "{fixture}: entries must be sorted by path, each path once");
        let listed: BTreeSet<String> = paths.into_iter().collect();
        let unlisted: Vec<&String> = on_disk.difference(&listed).collect();
        assert!(unlisted.is_empty(), "{fixture}: files in OUT without an entry: {unlisted:?}");
        let kind_of: BTreeMap<&str, &str> = files(&index).iter().map(|e| (s(e, "path"), s(e, "kind"))).collect();
        let mut sealed_only = 0;
        for e in files(&index).iter().filter(|e| !on_disk.contains(s(e, "path"))) {
            let path = s(e, "path");
            let sealed = e["sealed"].as_str().unwrap_or_else(|| panic!("{fixture}: {path}: an entry without a file"));
            assert_eq!(e["secret"], json!(true), "{fixture}: {path}: only a secret is kept sealed");
            assert!(on_disk.contains(sealed), "{fixture}: {path}: its sealed copy {sealed} is not in OUT");
            assert_eq!(
                kind_of.get(sealed),
                Some(&"sealed"),
                "{fixture}: {path}: {sealed} must be an entry of kind sealed"
            );
            sealed_only += 1;
        }
        assert_eq!(sealed_only > 0, fixture == SEALED, "{fixture}: {sealed_only} secrets kept only sealed");

        let node_names: BTreeSet<&str> = cluster.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut nodes_with_files = BTreeSet::new();
        let mut key_lines = Vec::new();
        for e in files(&index) {
            let path = s(e, "path");
            let file = out.join(path);
            // A sealed secret is checked above; its plain bytes are not in OUT.
            let bytes = if file.exists() { fs::read(&file).unwrap() } else { Vec::new() };
            if file.exists() {
                assert_eq!(s(e, "sha256"), sha256_hex(&bytes), "{}: sha256", ctx(path));
                assert_eq!(s(e, "mode"), mode_of(&file), "{}: mode", ctx(path));
            }
            if !e["sealed"].is_null() {
                assert!(e["secret"] == json!(true), "{}: sealed but not secret", ctx(path));
            }

            let kind = s(e, "kind");
            let secret = e["secret"].as_bool().expect("secret is a boolean");
            assert_eq!(secret, SECRET_KINDS.contains(&kind), "{}: secret for kind {kind}", ctx(path));
            // Independently of the kind: a file with key material in it is marked secret.
            let content = String::from_utf8_lossy(&bytes);
            if content.contains("PRIVATE KEY") || content.contains("client-key-data") || content.contains("secret: ") {
                assert!(secret, "{}: holds key material but is not marked secret", ctx(path));
            }
            if kind == "key" {
                // The lines of the key (PEM body, or a bare base64 key): none may appear in the index.
                key_lines.extend(
                    String::from_utf8(bytes.clone())
                        .unwrap()
                        .lines()
                        .filter(|l| !l.starts_with("-----"))
                        .map(String::from),
                );
            }

            match (e["node"].as_str(), e["dest"].as_str()) {
                (Some(node), Some(dest)) => {
                    assert!(node_names.contains(node), "{}: node {node:?} is not in the spec", ctx(path));
                    nodes_with_files.insert(node.to_string());
                    assert!(
                        dest.starts_with("/etc/kubernetes/") || dest.starts_with("/var/lib/kubelet/"),
                        "{}: dest {dest} is outside /etc/kubernetes/ and /var/lib/kubelet/",
                        ctx(path)
                    );
                    assert!(!dest.split('/').any(|c| c == ".." || c == "."), "{}: dest {dest}", ctx(path));
                    assert_eq!(path, format!("nodes/{node}{dest}"), "{}: path must be nodes/<node><dest>", ctx(path));
                }
                (None, None) => assert!(!path.starts_with("nodes/"), "{}: a node's file without node/dest", ctx(path)),
                _ => panic!("{}: node and dest must be both set or both null: {e}", ctx(path)),
            }

            // The certificate facts are those of the file itself.
            if matches!(kind, "cert" | "ca-cert") && file.exists() {
                let pem = String::from_utf8(bytes).unwrap();
                let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
                let fp = Sha256::digest(&der).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                assert_eq!(e["certificate"]["sha256Fingerprint"], json!(fp), "{}: fingerprint", ctx(path));
                assert_eq!(e["certificate"]["isCa"], json!(kind == "ca-cert"), "{}: isCa", ctx(path));
            }
            assert_eq!(
                e["certificate"].is_object(),
                matches!(kind, "cert" | "ca-cert" | "kubeconfig"),
                "{}: certificate for kind {kind}",
                ctx(path)
            );
        }
        assert_eq!(
            nodes_with_files,
            node_names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
            "{fixture}: every node of the spec gets files"
        );

        // Directories: for nodes of the spec, absolute, each once per node.
        let mut seen = BTreeSet::new();
        for d in index["directories"].as_array().expect("index.directories is an array") {
            let (node, dest) = (s(d, "node"), s(d, "dest"));
            assert!(node_names.contains(node), "{fixture}: directory {dest}: node {node:?} is not in the spec");
            assert!(
                dest.starts_with('/') && !dest.ends_with('/') && !dest.split('/').any(|c| c == ".." || c == "."),
                "{fixture}: directory {dest} of {node}"
            );
            assert!(seen.insert((node, dest)), "{fixture}: directory {dest} of {node} is listed twice");
        }

        // No key material anywhere in the index: no PEM key, no base64 of a PEM header, no line of any key.
        assert!(!text.contains("PRIVATE KEY"), "{fixture}: index.json contains a PEM private key");
        assert!(!text.contains("LS0tLS1CRUdJTi"), "{fixture}: index.json contains base64 of a PEM block");
        for l in key_lines.iter().filter(|l| l.len() >= 16) {
            assert!(!text.contains(l.as_str()), "{fixture}: index.json contains a line of a private key");
        }
        if fixture != SEALED {
            assert!(!key_lines.is_empty(), "{fixture}: no keys found, so the key check above checked nothing");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// (c) Ansible, for real

/// Runs `cmd` with output to `log`, up to `ANSIBLE_TIMEOUT`; returns whether it succeeded and what it printed.
fn run_logged(cmd: Command, log: &Path) -> (bool, String) {
    let mut p = support::spawn(cmd, log);
    let start = Instant::now();
    loop {
        if let Some(status) = p.exited() {
            return (status.success(), p.log());
        }
        if start.elapsed() > ANSIBLE_TIMEOUT {
            panic!("ansible-playbook still running after {ANSIBLE_TIMEOUT:?}; its output:\n{}", p.stop());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `host => changed` from the PLAY RECAP of an `ansible-playbook` run.
fn recap(output: &str) -> BTreeMap<String, u32> {
    let lines = output.lines().skip_while(|l| !l.starts_with("PLAY RECAP"));
    lines
        .filter_map(|l| {
            let (host, rest) = l.split_once(" : ")?;
            let changed = rest.split_whitespace().find_map(|w| w.strip_prefix("changed="))?.parse().ok()?;
            Some((host.trim().to_string(), changed))
        })
        .collect()
}

/// The id of a user (`/etc/passwd`) or group (`/etc/group`) by name.
fn id_of(db: &str, name: &str) -> u32 {
    let text = fs::read_to_string(db).unwrap_or_else(|e| panic!("{db}: {e}"));
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == name)
        .and_then(|f| f[2].parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in {db}"))
}

/// Checks a file or directory that landed under a node's root against its index entry: mode, and owner and group
/// (the entry's when `set_owner`, else the test's own user's).
fn check_landed(what: &str, landed: &Path, e: &Value, set_owner: bool, me: (u32, u32)) {
    let meta = fs::symlink_metadata(landed).unwrap_or_else(|err| panic!("{what} did not land ({err})"));
    assert_eq!(mode_of(landed), s(e, "mode"), "{what}: mode");
    let want = if set_owner { (id_of("/etc/passwd", s(e, "owner")), id_of("/etc/group", s(e, "group"))) } else { me };
    assert_eq!((meta.uid(), meta.gid()), want, "{what}: owner and group");
}

/// Checks that `roots/<node>` holds exactly what the index gives the node: each file with its bytes, mode and
/// owner, each directory of `directories` with its mode and owner, and no other file or directory except the
/// parents of those.
fn check_roots(index: &Value, roots: &Path, nodes: &[String], set_owner: bool) {
    let me = (fs::metadata(roots).unwrap().uid(), fs::metadata(roots).unwrap().gid());
    let dirs = index["directories"].as_array().expect("index.directories is an array");
    for node in nodes {
        let root = roots.join(node);
        let mut expected_files = BTreeSet::new();
        let mut expected_dirs = BTreeSet::new();
        let parents = |dest: &str, set: &mut BTreeSet<String>| {
            let mut p = Path::new(dest);
            while let Some(parent) = p.parent().filter(|p| *p != Path::new("/")) {
                set.insert(format!("{}/", parent.to_str().unwrap().trim_start_matches('/')));
                p = parent;
            }
        };
        for e in files(index).iter().filter(|e| e["node"] == json!(node)) {
            let dest = s(e, "dest");
            let landed = root.join(dest.trim_start_matches('/'));
            let bytes = fs::read(&landed).unwrap_or_else(|err| panic!("{node}: {dest} did not land ({err})"));
            assert_eq!(sha256_hex(&bytes), s(e, "sha256"), "{node}: {dest}: sha256");
            check_landed(&format!("{node}: {dest}"), &landed, e, set_owner, me);
            expected_files.insert(dest.trim_start_matches('/').to_string());
            parents(dest, &mut expected_dirs);
        }
        assert!(!expected_files.is_empty(), "{node} has no files in the index");
        for d in dirs.iter().filter(|d| d["node"] == json!(node)) {
            let dest = s(d, "dest");
            let landed = root.join(dest.trim_start_matches('/'));
            assert!(landed.is_dir(), "{node}: directory {dest} was not created");
            check_landed(&format!("{node}: {dest}/"), &landed, d, set_owner, me);
            parents(dest, &mut expected_dirs);
            expected_dirs.insert(format!("{}/", dest.trim_start_matches('/')));
        }
        // Nothing else was written.
        let got = support::Tree::of(&root).0;
        let got_files: BTreeSet<String> =
            got.iter().filter(|(_, n)| n.bytes.is_some()).map(|(p, _)| p.clone()).collect();
        assert_eq!(got_files, expected_files, "{node}: the files under its root must be exactly its index entries");
        let got_dirs: BTreeSet<String> =
            got.iter().filter(|(_, n)| n.bytes.is_none()).map(|(p, _)| p.clone()).collect();
        assert_eq!(got_dirs, expected_dirs, "{node}: directories other than the index's and their parents");
    }
    let extra: Vec<String> = fs::read_dir(roots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !nodes.contains(n))
        .collect();
    assert!(extra.is_empty(), "written outside the nodes' roots: {extra:?}");
}

/// `examples/ansible/deploy.yml` set up to run against `out`, with one host per node of the spec, each with the
/// local connection and its `/` at `roots/<node>`, and Ansible configured from the environment only.
struct Ansible {
    exe: PathBuf,
    dir: PathBuf,
    inventory: PathBuf,
    roots: PathBuf,
    nodes: Vec<String>,
    extra_vars: String,
    set_owner: bool,
}

impl Ansible {
    fn new(tmp: &Path, out: &Path, spec: &Path) -> Ansible {
        let exe = support::tool("KUBEFORGE_ANSIBLE_PLAYBOOK");
        // The venv's Python runs the modules, as a node's Python would.
        let python = {
            let sibling = exe.parent().unwrap().join("python");
            if sibling.is_file() { sibling } else { PathBuf::from("python3") }
        };
        let nodes: Vec<String> = kubeforge::spec::load(spec).unwrap().nodes.into_iter().map(|n| n.name).collect();
        let roots = tmp.join("roots");
        fs::create_dir_all(&roots).unwrap();
        let hosts: serde_json::Map<String, Value> = nodes
            .iter()
            .map(|n| {
                let vars = json!({
                    "ansible_connection": "local",
                    "ansible_python_interpreter": python,
                    "kubeforge_root": roots.join(n),
                });
                (n.clone(), vars)
            })
            .collect();
        let inventory = tmp.join("inventory.json");
        fs::write(&inventory, serde_json::to_string_pretty(&json!({ "all": { "hosts": hosts } })).unwrap()).unwrap();
        // Root (as in CI) can set the index's owner and group; another user cannot chown to root.
        let set_owner = is_root();
        let extra_vars = json!({ "kubeforge_out": out, "kubeforge_set_owner": set_owner }).to_string();
        let dir = tmp.join("ansible");
        for d in ["home", "local-tmp", "remote-tmp", "collections", "roles"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("ansible.cfg"), "# empty: every setting comes from the environment\n").unwrap();
        Ansible { exe, dir, inventory, roots, nodes, extra_vars, set_owner }
    }

    /// Runs the playbook with `extra` arguments, its output logged to `<dir>/<log>`; returns whether it succeeded
    /// and its output.
    fn run(&self, log: &str, extra: &[&str]) -> (bool, String) {
        let mut c = Command::new(&self.exe);
        c.arg("-i")
            .arg(&self.inventory)
            .arg(Path::new(ROOT).join("examples/ansible/deploy.yml"))
            .arg("-e")
            .arg(&self.extra_vars)
            .args(extra)
            .current_dir(&self.dir);
        // Only the settings below: nothing from the user's or the machine's Ansible configuration.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ANSIBLE_") {
                c.env_remove(k);
            }
        }
        c.env("ANSIBLE_CONFIG", self.dir.join("ansible.cfg"))
            .env("ANSIBLE_HOME", self.dir.join("home"))
            .env("HOME", self.dir.join("home"))
            .env("ANSIBLE_LOCAL_TEMP", self.dir.join("local-tmp"))
            .env("ANSIBLE_REMOTE_TEMP", self.dir.join("remote-tmp"))
            .env("ANSIBLE_COLLECTIONS_PATH", self.dir.join("collections"))
            .env("ANSIBLE_ROLES_PATH", self.dir.join("roles"))
            .env("ANSIBLE_GATHERING", "explicit")
            .env("ANSIBLE_PIPELINING", "true")
            .env("ANSIBLE_FORKS", self.nodes.len().to_string())
            .env("ANSIBLE_RETRY_FILES_ENABLED", "false")
            .env("ANSIBLE_NOCOLOR", "true")
            .env("ANSIBLE_FORCE_COLOR", "false")
            .env("ANSIBLE_LOCALHOST_WARNING", "false")
            .env("ANSIBLE_DEPRECATION_WARNINGS", "true")
            // Ansible refuses to start unless the locale's encoding is UTF-8.
            .env("LC_ALL", "C.UTF-8");
        run_logged(c, &self.dir.join(log))
    }
}

#[test]
fn ansible_playbook_deploys_every_node() {
    let tmp = support::temp_dir("consumers-ansible");
    let out = tmp.join("out");
    let spec = generate(ANSIBLE_FIXTURE, &out);
    let index = read_index(&out);
    let ansible = Ansible::new(&tmp, &out, &spec);
    let (nodes, roots, set_owner) = (&ansible.nodes, &ansible.roots, ansible.set_owner);
    assert!(nodes.len() >= 3, "the Ansible fixture should have several nodes");

    let secret_dests: BTreeSet<&str> = files(&index)
        .iter()
        .filter(|e| e["secret"] == json!(true) && e["node"].is_string())
        .map(|e| s(e, "dest"))
        .collect();
    let check_output = |what: &str, output: &str| {
        assert!(
            !output.contains("[WARNING]") && !output.contains("[DEPRECATION WARNING]"),
            "{what}: ansible-playbook warned:\n{output}"
        );
        assert!(
            !output.contains("PRIVATE KEY") && !output.contains("client-key-data"),
            "{what}: a secret in the output"
        );
        // Public files show as `(item=<dest> <mode>)`; a secret file must not show at all.
        for line in output.lines().filter(|l| l.contains("(item=")) {
            for d in &secret_dests {
                assert!(!line.contains(d), "{what}: the secret file {d} shows (no_log): {line}");
            }
        }
        assert!(output.contains("censored due to no_log"), "{what}: the secret files' task is not no_log:\n{output}");
    };

    // 1. Deploy.
    let (ok, output) = ansible.run("deploy.log", &[]);
    assert!(ok, "ansible-playbook failed:\n{output}");
    check_output("first run", &output);
    let changed = recap(&output);
    assert_eq!(changed.keys().cloned().collect::<Vec<_>>(), {
        let mut n = nodes.clone();
        n.sort();
        n
    });
    check_roots(&index, roots, nodes, set_owner);

    // 2. Drift on one node (a key's bytes, a certificate's mode, a missing file, a directory's mode), then a rerun
    //    with --diff: the drift is repaired, nothing on the other nodes changes, and no secret shows even in diff
    //    mode.
    let drifted = &nodes[0];
    let by_kind = |kind: &str| {
        files(&index)
            .iter()
            .find(|e| e["node"] == json!(drifted) && e["kind"] == kind)
            .map(|e| roots.join(drifted).join(s(e, "dest").trim_start_matches('/')))
            .unwrap_or_else(|| panic!("{drifted} has no {kind}"))
    };
    fs::write(by_kind("key"), "-----BEGIN PRIVATE KEY-----\nnot the key\n-----END PRIVATE KEY-----\n").unwrap();
    fs::set_permissions(by_kind("cert"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::remove_file(by_kind("manifest")).unwrap();
    fs::set_permissions(roots.join(drifted).join("etc/kubernetes/manifests"), fs::Permissions::from_mode(0o755))
        .unwrap();
    let (ok, output) = ansible.run("rerun.log", &["--diff"]);
    assert!(ok, "the second ansible-playbook run failed:\n{output}");
    check_output("rerun", &output);
    assert!(!output.contains("not the key"), "rerun: the drifted key's content shows in the diff:\n{output}");
    check_roots(&index, roots, nodes, set_owner);
    for (host, n) in recap(&output) {
        if &host == drifted {
            assert!(n > 0, "rerun: {host} had drifted but nothing changed:\n{output}");
        } else {
            assert_eq!(n, 0, "rerun: {host} was as deployed, yet {n} task(s) changed something:\n{output}");
        }
    }
}

/// With the secrets sealed and not materialized, the playbook stops before touching any node, and says what to do.
#[test]
fn ansible_playbook_refuses_sealed_secrets() {
    let tmp = support::temp_dir("consumers-ansible-sealed");
    let out = tmp.join("out");
    let spec = generate(SEALED, &out);
    let ansible = Ansible::new(&tmp, &out, &spec);
    let (ok, output) = ansible.run("sealed.log", &[]);
    assert!(!ok, "the playbook must fail when a node's secret files are sealed only:\n{output}");
    for node in &ansible.nodes {
        assert!(
            output.contains(&format!("--materialize {node} (or all)")),
            "the failure must say to materialize {node}:\n{output}"
        );
    }
    let written: Vec<String> = support::Tree::of(&ansible.roots).0.into_keys().collect();
    assert!(written.is_empty(), "nothing may be written before the check: {written:?}");
}
