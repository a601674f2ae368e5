//! The examples that consume kubeforge's output, checked by the real tools (installed by `cargo xtask test`, see
//! xtask/src/tools.rs, and handed over in `KUBEFORGE_*` env vars):
//!
//! - `terraform_module_ha_with_workers`, `terraform_module_sealed_secrets`: the module
//!   `examples/terraform/modules/kubeforge-index` applied by Terraform 1.0.3 from a tiny root module in a temp dir
//!   (`terraform init` + `apply`, `CHECKPOINT_DISABLE=1`, its own HOME, data dir and CLI config, inside `unshare -n`
//!   where that works), for 3 control planes + 2 workers and for the demo with its secrets sealed (age). Its outputs
//!   (`terraform output -json`) are compared with index.json both ways: per node the same files with destination,
//!   mode, owner, group, SHA-256, secret flag and sealed path, nothing more; the same directories; a cloud-init
//!   document that creates exactly those directories and writes exactly the node's public files, with their exact
//!   content, mode and owner, and no secret file. No private key material may reach the state file. A node
//!   subset and an unknown node name are applied too.
//! - `terraform_examples_are_formatted`: `terraform fmt -check` over examples/terraform (the root module too, which
//!   needs the null provider and so is not applied here).
//! - `ansible_example_passes_ansible_lint_production`: `ansible-lint --profile production --strict --offline` on
//!   examples/ansible finds nothing, with no configuration but the empty one given, and the one rule skipped in the
//!   playbook is the one expected; a copy without that skip must fail, so the linter is known to bite.
//! - `ci_workflow_passes_actionlint_and_shellcheck`: actionlint on examples/ci/github-actions.yml, then shellcheck on
//!   each `run:` script (as actionlint's own integration does it), and the workflow's promises: pinned actions,
//!   minimal permissions, the triggers, plan's exit status 2 tolerated. Broken copies must fail.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------------------------------
// Generating OUT trees

/// Generates the cluster of `spec_yaml` into `out` as `cargo xtask gen` does, with a fixed seed and clock. The one
/// place in this file that calls kubeforge. The spec is written beside `out`.
fn generate(spec_yaml: &str, out: &Path) {
    support::generate_text(spec_yaml, out, support::SEED, Some(support::now()));
}

/// Three stacked control planes behind a load balancer and two workers.
fn ha_spec() -> String {
    let p = Path::new(ROOT).join("fixtures/ha-3cp.yaml");
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The demo (one control plane, two workers) with its secrets sealed to a fresh age recipient whose identity is
/// thrown away: OUT then holds every secret only as `secrets/<path>.age`.
fn sealed_spec() -> String {
    let recipient = age::x25519::Identity::generate().to_public();
    let anchor = "  certificateValidity: 8760h\n";
    assert!(kubeforge::DEMO_SPEC.contains(anchor), "the demo spec changed: update sealed_spec");
    kubeforge::DEMO_SPEC.replacen(
        anchor,
        &format!("{anchor}  encryption:\n    age:\n      recipients: [{recipient}]\n"),
        1,
    )
}

/// Runs `cmd` and returns its output; panics, showing it, if the command succeeds.
fn fails(cmd: &mut Command) -> Output {
    let out = support::output(cmd);
    assert!(!out.status.success(), "expected to fail: {cmd:?}{}", support::show(&out));
    out
}

fn read_json(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()))
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("{field} is not a string in {v}"))
}

fn arr<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array().unwrap_or_else(|| panic!("{what} is not an array: {v}"))
}

// ---------------------------------------------------------------------------------------------------------------
// Terraform

/// Whether `unshare -n` works here; says once, on stderr, when it does not.
fn netns() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let out = Command::new("unshare").args(["-n", "true"]).output();
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                eprintln!(
                    "note: `unshare -n true` failed ({}: {}): terraform runs with CHECKPOINT_DISABLE=1 but in this \
                     machine's network namespace",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                false
            }
            Err(e) => {
                eprintln!(
                    "note: cannot run unshare ({e}): terraform runs with CHECKPOINT_DISABLE=1 but in this machine's \
                     network namespace"
                );
                false
            }
        }
    })
}

/// A root module in its own directory, run with Terraform kept to itself: no checkpoint call, no network namespace
/// but its own where possible, and HOME, data dir and CLI configuration of its own (nothing of the user's or the
/// machine's Terraform setup is read, and no other test's run is touched).
struct Terraform {
    exe: PathBuf,
    dir: PathBuf,
}

impl Terraform {
    fn new(dir: &Path, main_tf: &str) -> Terraform {
        let exe = support::tool("KUBEFORGE_TERRAFORM");
        for d in ["home", "data"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(dir.join("terraformrc"), "# empty: no plugin cache, no credentials, no provider mirrors\n").unwrap();
        fs::write(dir.join("main.tf"), main_tf).unwrap();
        Terraform { exe, dir: dir.to_path_buf() }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = if netns() {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(&self.exe);
            c
        } else {
            Command::new(&self.exe)
        };
        c.args(args).current_dir(&self.dir);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("TF_") || k == "CHECKPOINT_DISABLE" {
                c.env_remove(k);
            }
        }
        c.env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("HOME", self.dir.join("home"))
            .env("TF_DATA_DIR", self.dir.join("data"))
            .env("TF_CLI_CONFIG_FILE", self.dir.join("terraformrc"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        support::run(&mut self.command(args))
    }

    /// init + apply; returns the value of the output `index` (the module's outputs).
    fn apply(&self) -> Value {
        self.run(&["init", "-input=false", "-no-color"]);
        self.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        let out = self.run(&["output", "-json", "-no-color"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("terraform output -json is JSON");
        v["index"]["value"].clone()
    }

    fn state(&self) -> String {
        let p = self.dir.join("terraform.tfstate");
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }
}

/// A string as an HCL literal (JSON's escapes are HCL's; `${` and `%{` would start a template and must not occur).
fn hcl_string(s: &str) -> String {
    assert!(!s.contains("${") && !s.contains("%{"), "not usable as a literal: {s}");
    serde_json::to_string(s).unwrap()
}

/// A root module that only calls the index module (by absolute path) and exposes all its outputs as `index`.
fn root_module(out: &Path, nodes: Option<&[&str]>) -> String {
    let source = Path::new(ROOT).join("examples/terraform/modules/kubeforge-index");
    let nodes = match nodes {
        None => "null".to_string(),
        Some(n) => format!("[{}]", n.iter().map(|n| hcl_string(n)).collect::<Vec<_>>().join(", ")),
    };
    format!(
        "module \"index\" {{\n  source        = {}\n  kubeforge_out = {}\n  nodes         = {nodes}\n}}\n\n\
         output \"index\" {{\n  value = module.index\n}}\n",
        hcl_string(source.to_str().unwrap()),
        hcl_string(out.to_str().unwrap()),
    )
}

/// The module's file object for an index entry: the index's fields, no other.
fn file_object(e: &Value) -> Value {
    json!({
        "path": e["path"], "dest": e["dest"], "mode": e["mode"], "owner": e["owner"], "group": e["group"],
        "sha256": e["sha256"], "secret": e["secret"], "sealed": e["sealed"],
    })
}

/// `list` (an array of objects) by the string field `key`, asserting that each key occurs once.
fn by_key(list: &Value, key: &str, what: &str) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for v in arr(list, what) {
        let k = s(v, key).to_string();
        assert!(m.insert(k.clone(), v.clone()).is_none(), "{what}: {key} {k} occurs twice");
    }
    m
}

/// Checks the module's outputs `got` against `out/index.json` for the nodes `nodes`, both ways; returns how many
/// public and secret files the nodes have (so that callers can tell the check was not vacuous).
fn check_outputs(out: &Path, got: &Value, nodes: &[&str]) -> (usize, usize) {
    let index = read_json(&out.join("index.json"));
    let files = arr(&index["files"], "index.files");
    let dirs = arr(&index["directories"], "index.directories");
    let want_nodes: BTreeSet<&str> = nodes.iter().copied().collect();
    assert_eq!(got["nodes"], json!(want_nodes.iter().collect::<Vec<_>>()), "output nodes");
    for output in ["files", "directories", "cloud_config", "secret_files"] {
        let keys: BTreeSet<&str> = got[output]
            .as_object()
            .unwrap_or_else(|| panic!("{output}: {}", got[output]))
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, want_nodes, "the nodes of output {output}");
    }

    let words = secret_words(out);
    let (mut public, mut secret) = (0, 0);
    let mut by_path = BTreeMap::new();
    for node in nodes {
        let mine: Vec<&Value> = files.iter().filter(|e| e["node"] == json!(node)).collect();
        assert!(!mine.is_empty(), "{node} has no files in the index");

        // Files: the same entries, field by field, and nothing else.
        let want: BTreeMap<String, Value> = mine.iter().map(|e| (s(e, "path").to_string(), file_object(e))).collect();
        let got_files = by_key(&got["files"][node], "path", &format!("files[{node}]"));
        assert_eq!(got_files, want, "{node}: the module's files against index.json");
        let order: Vec<&str> = arr(&got["files"][node], "files").iter().map(|f| s(f, "path")).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{node}: files are not in index order: {order:?}");
        for (p, f) in &want {
            let mut f = f.clone();
            f["node"] = json!(node);
            by_path.insert(p.clone(), f);
        }

        // Secret files: listed apart, with their sealed copy.
        let want_secret: BTreeMap<String, Value> = mine
            .iter()
            .filter(|e| e["secret"] == json!(true))
            .map(|e| {
                let v = json!({ "path": e["path"], "dest": e["dest"], "mode": e["mode"], "sealed": e["sealed"] });
                (s(e, "path").to_string(), v)
            })
            .collect();
        assert_eq!(by_key(&got["secret_files"][node], "path", "secret_files"), want_secret, "{node}: secret_files");

        // Directories: the same set.
        let want_dirs: Vec<Value> = dirs
            .iter()
            .filter(|d| d["node"] == json!(node))
            .map(|d| json!({ "dest": d["dest"], "mode": d["mode"], "owner": d["owner"], "group": d["group"] }))
            .collect();
        assert!(!want_dirs.is_empty(), "{node} has no directories in the index");
        let got_dirs: BTreeSet<String> =
            arr(&got["directories"][node], "directories").iter().map(|d| d.to_string()).collect();
        assert_eq!(got_dirs, want_dirs.iter().map(|d| d.to_string()).collect(), "{node}: directories");
        assert_eq!(arr(&got["directories"][node], "directories").len(), want_dirs.len(), "{node}: directories twice");

        // cloud-init: the directories, then exactly the public files with their bytes, mode and owner.
        let doc = s(&got["cloud_config"], node);
        let body = doc.strip_prefix("#cloud-config\n").unwrap_or_else(|| panic!("{node}: no #cloud-config line"));
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(body).unwrap_or_else(|e| panic!("{node}: cloud-config is not YAML: {e}\n{doc}"));
        let yaml: Value = serde_json::to_value(&yaml).expect("cloud-config as JSON");
        let keys: BTreeSet<&str> = yaml.as_object().expect("a mapping").keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["bootcmd", "write_files"]), "{node}: cloud-config keys");
        let want_boot: Vec<Value> = want_dirs
            .iter()
            .map(|d| json!(["install", "-d", "-m", d["mode"], "-o", d["owner"], "-g", d["group"], d["dest"]]))
            .collect();
        assert_eq!(yaml["bootcmd"], json!(want_boot), "{node}: bootcmd creates the index's directories in order");
        let mut want_write = BTreeMap::new();
        for e in mine.iter().filter(|e| e["secret"] == json!(false)) {
            let p = out.join(s(e, "path"));
            let content = fs::read_to_string(&p).unwrap_or_else(|err| panic!("{}: {err}", p.display()));
            let owner = format!("{}:{}", s(e, "owner"), s(e, "group"));
            let entry = json!({ "path": e["dest"], "content": content, "permissions": e["mode"], "owner": owner });
            want_write.insert(s(e, "dest").to_string(), entry);
        }
        let got_write = by_key(&yaml["write_files"], "path", &format!("{node}: write_files"));
        // Paths first, so that a secret file written by mistake is named, not shown.
        assert_eq!(
            got_write.keys().collect::<Vec<_>>(),
            want_write.keys().collect::<Vec<_>>(),
            "{node}: the files cloud-config writes (left) against the node's public files (right)"
        );
        for (dest, want) in &want_write {
            assert_eq!(&got_write[dest], want, "{node}: cloud-config write_files entry {dest}");
        }
        // (Secret files' destinations do occur, in the manifests' flags: their content must not.)
        assert_no_key_material(&format!("{node}: cloud-config"), doc, &words);
        public += want_write.len();
        secret += want_secret.len();
    }
    assert_eq!(
        got["files_by_path"].as_object().cloned().unwrap_or_default().into_iter().collect::<BTreeMap<_, _>>(),
        by_path,
        "files_by_path"
    );

    // Certificate expiry: every file with a certificate in the whole index (not only the nodes').
    let want_expiry: BTreeMap<String, Value> = files
        .iter()
        .filter(|e| e["certificate"].is_object())
        .map(|e| (s(e, "path").to_string(), e["certificate"]["notAfter"].clone()))
        .collect();
    let got_expiry: BTreeMap<String, Value> =
        got["certificate_expiry"].as_object().cloned().unwrap_or_default().into_iter().collect();
    assert_eq!(got_expiry, want_expiry, "certificate_expiry");
    (public, secret)
}

/// Whitespace-separated words of at least 32 characters in the secret files of `out` that occur in no public file:
/// pieces of keys (PEM lines, a kubeconfig's client-key-data, encryption keys).
fn secret_words(out: &Path) -> BTreeSet<String> {
    let index = read_json(&out.join("index.json"));
    let mut public = String::new();
    let mut words = BTreeSet::new();
    for e in arr(&index["files"], "files") {
        let Ok(text) = fs::read_to_string(out.join(s(e, "path"))) else { continue };
        if e["secret"] == json!(true) {
            words.extend(text.split_whitespace().filter(|w| w.len() >= 32).map(str::to_string));
        } else {
            public.push_str(&text);
        }
    }
    words.retain(|w| !public.contains(w.as_str()));
    words
}

fn assert_no_key_material(what: &str, text: &str, words: &BTreeSet<String>) {
    for marker in ["PRIVATE KEY", "client-key-data", "secretbox"] {
        assert!(!text.contains(marker), "{what} contains {marker:?}");
    }
    for w in words {
        assert!(!text.contains(w.as_str()), "{what} contains a piece of a secret file: {}…", &w[..16]);
    }
}

#[test]
fn terraform_module_ha_with_workers() {
    let tmp = support::temp_dir("tooling-tf-ha");
    let out = tmp.join("out");
    generate(&ha_spec(), &out);
    let nodes = ["cp-1", "cp-2", "cp-3", "worker-1", "worker-2"];

    let tf = Terraform::new(&tmp.join("all"), &root_module(&out, None));
    let got = tf.apply();
    let (public, secret) = check_outputs(&out, &got, &nodes);
    assert!(public > 20 && secret > 20, "the HA cluster has many public ({public}) and secret ({secret}) node files");
    let words = secret_words(&out);
    assert!(words.len() > 50, "the secret files yield words to look for ({})", words.len());
    let state = tf.state();
    assert!(state.contains("#cloud-config"), "the state holds the outputs");
    assert_no_key_material("terraform.tfstate", &state, &words);

    // A subset of the nodes: only those are described.
    let subset = ["cp-2", "worker-1"];
    let tf = Terraform::new(&tmp.join("subset"), &root_module(&out, Some(&subset)));
    check_outputs(&out, &tf.apply(), &subset);

    // A name that is not a node of the index stops the plan and is named.
    let tf = Terraform::new(&tmp.join("unknown"), &root_module(&out, Some(&["cp-2", "cp-9"])));
    tf.run(&["init", "-input=false", "-no-color"]);
    let failed = fails(&mut tf.command(&["apply", "-auto-approve", "-input=false", "-no-color"]));
    let text = format!("{}{}", String::from_utf8_lossy(&failed.stdout), String::from_utf8_lossy(&failed.stderr));
    assert!(text.contains("not nodes of") && text.contains("cp-9"), "the unknown node is not named:\n{text}");

    // An index of another format is refused.
    let other = tmp.join("other-format");
    fs::create_dir_all(&other).unwrap();
    let mut index = read_json(&out.join("index.json"));
    index["apiVersion"] = json!("kubeforge/v2");
    fs::write(other.join("index.json"), index.to_string()).unwrap();
    let tf = Terraform::new(&tmp.join("refused"), &root_module(&other, None));
    tf.run(&["init", "-input=false", "-no-color"]);
    let failed = fails(&mut tf.command(&["apply", "-auto-approve", "-input=false", "-no-color"]));
    let text = format!("{}{}", String::from_utf8_lossy(&failed.stdout), String::from_utf8_lossy(&failed.stderr));
    assert!(text.contains("kubeforge/v2"), "the wrong apiVersion is not shown:\n{text}");
}

#[test]
fn terraform_module_sealed_secrets() {
    let tmp = support::temp_dir("tooling-tf-sealed");
    let out = tmp.join("out");
    generate(&sealed_spec(), &out);
    let index = read_json(&out.join("index.json"));
    let mut secret_node_files = 0;
    for e in arr(&index["files"], "files").iter().filter(|e| e["secret"] == json!(true)) {
        assert!(e["sealed"].is_string(), "{}: a sealed tree's secret has a sealed copy", e["path"]);
        assert!(!out.join(s(e, "path")).exists(), "{}: the plain secret is in OUT", e["path"]);
        secret_node_files += usize::from(e["node"].is_string());
    }
    assert!(secret_node_files > 10, "the demo gives its nodes secret files ({secret_node_files})");

    let tf = Terraform::new(&tmp.join("all"), &root_module(&out, None));
    let got = tf.apply();
    let (public, secret) = check_outputs(&out, &got, &["cp-1", "worker-1", "worker-2"]);
    assert_eq!(secret, secret_node_files, "every secret file of a node is described, by its sealed copy");
    assert!(public > 10, "public files ({public})");
    let state = tf.state();
    assert!(state.contains(".age"), "the state names the sealed copies");
    assert_no_key_material("terraform.tfstate", &state, &BTreeSet::new());
    assert!(!state.contains("age-encryption.org"), "the state holds a sealed file's content");
}

#[test]
fn terraform_examples_are_formatted() {
    let tmp = support::temp_dir("tooling-tf-fmt");
    let tf = Terraform::new(&tmp, "");
    let dir = Path::new(ROOT).join("examples/terraform");
    let out =
        support::output(&mut tf.command(&["fmt", "-check", "-recursive", "-diff", "-no-color", dir.to_str().unwrap()]));
    assert!(
        out.status.success(),
        "terraform fmt -check found files to reformat (or HCL it cannot parse):{}",
        support::show(&out)
    );
}

// ---------------------------------------------------------------------------------------------------------------
// ansible-lint

/// Runs ansible-lint (production profile, warnings are failures, offline, in its own network namespace where
/// possible) on the directory `dir`, with an empty configuration file so that no `.ansible-lint` of the checkout or
/// the user applies, and Ansible's and ansible-lint's caches in `tmp`.
fn ansible_lint(tmp: &Path, dir: &Path) -> Output {
    let exe = support::tool("KUBEFORGE_ANSIBLE_LINT");
    fs::create_dir_all(tmp).unwrap();
    let config = tmp.join("ansible-lint.yml");
    fs::write(&config, "---\n# nothing but what the command line says too\nprofile: production\noffline: true\n")
        .unwrap();
    for d in ["home", "ansible", "cache", "work"] {
        fs::create_dir_all(tmp.join(d)).unwrap();
    }
    let mut c = if netns() {
        let mut c = Command::new("unshare");
        c.arg("-n").arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    c.args(["--offline", "--strict", "--nocolor", "--profile", "production", "-c"])
        .arg(&config)
        .arg("--project-dir")
        .arg(dir)
        .arg(dir)
        .current_dir(tmp.join("work"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ANSIBLE") {
            c.env_remove(k);
        }
    }
    // ansible-lint runs ansible-playbook --syntax-check from PATH: the one beside it.
    let path = std::env::join_paths(
        std::iter::once(exe.parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    c.env("PATH", path)
        .env("HOME", tmp.join("home"))
        .env("ANSIBLE_HOME", tmp.join("ansible"))
        .env("XDG_CACHE_HOME", tmp.join("cache"))
        .env("NO_COLOR", "1")
        .env("LC_ALL", "C.UTF-8");
    support::output(&mut c)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The `# noqa` comments of the Ansible example: (file, line) for each.
fn noqa_lines(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
                for l in fs::read_to_string(&p).unwrap().lines().filter(|l| l.contains("# noqa")) {
                    found.push((p.strip_prefix(dir).unwrap().display().to_string(), l.trim().to_string()));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn ansible_example_passes_ansible_lint_production() {
    let tmp = support::temp_dir("tooling-ansible-lint");
    let example = Path::new(ROOT).join("examples/ansible");

    // One rule is skipped, on one task, for the reason the playbook gives: a mode on "create missing parents" would
    // also be applied to parents that exist (/etc, /var/lib, ...).
    let noqa = noqa_lines(&example);
    assert_eq!(
        noqa,
        vec![("deploy.yml".to_string(), "ansible.builtin.file: # noqa: risky-file-permissions".to_string())],
        "the skipped ansible-lint rules of examples/ansible"
    );

    let out = ansible_lint(&tmp.join("lint"), &example);
    let all = text(&out);
    assert!(out.status.success(), "ansible-lint --profile production found something in examples/ansible:\n{all}");
    assert!(
        all.contains("Passed: 0 failure(s), 0 warning(s)")
            && all.contains("Profile 'production' was required, and it passed"),
        "unexpected ansible-lint summary:\n{all}"
    );

    // Negative control: without the skip, the production profile must fail on that task.
    let copy = tmp.join("copy");
    fs::create_dir_all(&copy).unwrap();
    for e in fs::read_dir(&example).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
    }
    let playbook = copy.join("deploy.yml");
    let text_without = fs::read_to_string(&playbook).unwrap().replace(" # noqa: risky-file-permissions", "");
    fs::write(&playbook, text_without).unwrap();
    let out = ansible_lint(&tmp.join("lint-copy"), &copy);
    let all = text(&out);
    assert!(!out.status.success(), "ansible-lint passed a playbook with a finding:\n{all}");
    assert!(all.contains("risky-file-permissions"), "ansible-lint did not report risky-file-permissions:\n{all}");
}

// ---------------------------------------------------------------------------------------------------------------
// The CI workflow: actionlint and shellcheck

const WORKFLOW: &str = "examples/ci/github-actions.yml";

/// actionlint on `file`, without its shellcheck and pyflakes integrations (shellcheck runs below, the same way for
/// every actionlint build).
fn actionlint(file: &Path) -> Output {
    let exe = support::tool("KUBEFORGE_ACTIONLINT");
    support::output(Command::new(exe).args(["-no-color", "-shellcheck=", "-pyflakes="]).arg(file))
}

/// The script with each `${{ ... }}` replaced by as many underscores, as actionlint does before it hands a `run:`
/// script to shellcheck.
fn without_expressions(script: &str) -> String {
    let mut out = String::new();
    let mut rest = script;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").map(|j| i + j + 2).unwrap_or_else(|| panic!("unclosed ${{{{ in {script}"));
        out.push_str(&"_".repeat(end - i));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// shellcheck on one `run:` script (written to `file`) as actionlint runs it: bash, the same exclusions (SC1091
/// sourced files, SC2194/SC2050 constant expressions left by the placeholders, SC2154 variables from `env:`,
/// SC2157).
fn shellcheck(file: &Path, script: &str) -> Output {
    let exe = support::tool("KUBEFORGE_SHELLCHECK");
    fs::write(file, without_expressions(script)).unwrap();
    support::output(
        Command::new(exe)
            .args(["--norc", "-f", "gcc", "-s", "bash", "-e", "SC1091,SC2194,SC2050,SC2154,SC2157"])
            .arg(file),
    )
}

/// Every `run:` script of the workflow, with where it is.
fn run_scripts(workflow: &serde_yaml::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    for (name, job) in jobs {
        for (i, step) in job["steps"].as_sequence().expect("steps").iter().enumerate() {
            if let Some(run) = step["run"].as_str() {
                out.push((format!("jobs.{}.steps[{i}]", name.as_str().unwrap()), run.to_string()));
            }
        }
    }
    out
}

#[test]
fn ci_workflow_passes_actionlint_and_shellcheck() {
    let tmp = support::temp_dir("tooling-actionlint");
    let path = Path::new(ROOT).join(WORKFLOW);
    let text_ = fs::read_to_string(&path).unwrap();

    let out = actionlint(&path);
    assert!(out.status.success(), "actionlint found problems in {WORKFLOW}:{}", support::show(&out));

    let workflow: serde_yaml::Value = serde_yaml::from_str(&text_).expect("the workflow is YAML");
    let scripts = run_scripts(&workflow);
    assert!(scripts.len() >= 6, "expected the workflow's run scripts, found {}", scripts.len());
    for (i, (at, script)) in scripts.iter().enumerate() {
        let out = shellcheck(&tmp.join(format!("run-{i}.sh")), script);
        assert!(
            out.status.success(),
            "shellcheck: {at} in {WORKFLOW}:{}\n--- script ---\n{script}",
            support::show(&out)
        );
    }

    // What the workflow promises.
    let on = &workflow["on"];
    let paths: Vec<&str> = on["pull_request"]["paths"]
        .as_sequence()
        .expect("pull_request.paths")
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(paths.contains(&"cluster.yaml"), "pull_request must be filtered on the spec: {paths:?}");
    assert!(on["schedule"][0]["cron"].as_str().is_some(), "a scheduled run");
    assert_eq!(
        workflow["permissions"],
        serde_yaml::from_str::<serde_yaml::Value>("{}").unwrap(),
        "no default permissions"
    );
    let perms = |job: &str| -> BTreeMap<String, String> {
        workflow["jobs"][job]["permissions"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{job} has no permissions"))
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_string(), v.as_str().unwrap().to_string()))
            .collect()
    };
    assert_eq!(perms("plan"), BTreeMap::from([("contents".into(), "read".into())]));
    assert_eq!(
        perms("expiry"),
        BTreeMap::from([("contents".into(), "read".into()), ("issues".into(), "write".into())])
    );
    let mut uses = 0;
    for line in text_.lines().filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("uses: ")) {
        let (_, rev) = line.split_once('@').unwrap_or_else(|| panic!("unpinned action: {line}"));
        let sha = rev.split_whitespace().next().unwrap();
        assert!(sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "not pinned to a commit: {line}");
        assert!(rev.contains("# v"), "say which release the commit is: {line}");
        uses += 1;
    }
    assert!(uses >= 4, "the workflow's actions ({uses})");
    let plan = scripts.iter().find(|(_, s)| s.contains("cargo xtask plan")).expect("a plan step");
    assert!(
        plan.1.contains("--format json") && plan.1.contains("2)"),
        "plan: JSON, and exit status 2 is not a failure"
    );
    assert!(plan.1.contains("GITHUB_STEP_SUMMARY"), "plan: the job summary");
    let check = scripts.iter().find(|(_, s)| s.contains("cargo xtask check")).expect("a check step");
    assert!(check.1.contains("--within"), "check: a window");
    assert!(scripts.iter().any(|(_, s)| s.contains("gh issue create")), "an issue when something expires");

    // Negative controls: a broken copy fails actionlint, a sloppy script fails shellcheck.
    let broken = tmp.join("broken.yml");
    fs::write(&broken, text_.replace("${{ github.token }}", "${{ github.tokn }}")).unwrap();
    let out = actionlint(&broken);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tokn"),
        "actionlint missed a bad property:{}",
        support::show(&out)
    );
    let out = shellcheck(&tmp.join("sloppy.sh"), "f=$1\nrm -rf $f/${{ env.X }}\n");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("SC2086"),
        "shellcheck missed SC2086:{}",
        support::show(&out)
    );
}
