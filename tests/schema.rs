//! Schema (issue 3, item 5): every generated Kubernetes object validates against the OpenAPI schema of the spec's
//! Kubernetes version, and every kubeconfig is read by the real kubectl.
//!
//! Objects are checked with `kubernetes-validate --strict -k <version>` (the PyPI package, which bundles the
//! official schemas offline for 1.25 to 1.37; installed by `cargo xtask test`). It is used rather than
//! k8s-openapi types in Rust because it validates the YAML text as written (unknown or misplaced fields included,
//! with `--strict`) against the schema of exactly the version the spec names, where k8s-openapi pins one version
//! per build and ignores unknown fields when deserializing. It reports an object of an unknown kind only as a
//! `WARN` and still exits 0, so any `WARN` (and any `ERROR`) line fails the test.

mod real;
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::TempDir;

fn validate_cmd() -> Command {
    Command::new(support::tool("KUBEFORGE_KUBERNETES_VALIDATE"))
}

/// Every Kubernetes object file of an output: the static pods of every control-plane node and the bootstrap
/// RBAC objects.
fn object_files(out: &Path, cluster: &kubeforge::spec::Cluster) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for n in &cluster.nodes {
        let dir = real::bundle(out, &n.name).join("etc/kubernetes/manifests");
        if !n.is_control_plane() {
            assert!(!dir.exists(), "worker {} has static pods", n.name);
            continue;
        }
        let mut pods: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        pods.sort();
        let names: Vec<String> = pods.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            ["etcd.yaml", "kube-apiserver.yaml", "kube-controller-manager.yaml", "kube-scheduler.yaml"],
            "static pods of {}",
            n.name
        );
        files.extend(pods);
    }
    let bootstrap = out.join("bootstrap");
    let mut rbac: Vec<PathBuf> = fs::read_dir(&bootstrap)
        .unwrap_or_else(|e| panic!("{}: {e}", bootstrap.display()))
        .map(|e| e.unwrap().path())
        .collect();
    rbac.sort();
    assert!(!rbac.is_empty(), "no bootstrap objects");
    files.extend(rbac);
    files
}

/// The number of YAML documents in a file that hold an object (a `kind:` at the top level).
fn objects_in(file: &Path) -> usize {
    let text = fs::read_to_string(file).unwrap();
    text.split("\n---").filter(|doc| doc.lines().any(|l| l.starts_with("kind:"))).count()
}

fn validate_manifests(name: &str, spec: &str) {
    let tmp: TempDir = support::temp_dir(&format!("schema-{name}"));
    let out = tmp.join("out");
    let cluster = real::generate(spec, 41, &out);
    let version = format!("1.{}.{}", cluster.version.minor, cluster.version.patch);
    let files = object_files(&out, &cluster);

    let o = support::output(validate_cmd().arg("--strict").arg("-k").arg(&version).args(&files));
    let text = format!("{}{}", support::stdout(&o), String::from_utf8_lossy(&o.stderr));
    let bad: Vec<&str> = text.lines().filter(|l| l.starts_with("WARN") || l.starts_with("ERROR")).collect();
    assert!(
        o.status.success() && bad.is_empty(),
        "{name}: kubernetes-validate --strict -k {version} rejected generated objects:\n{}\n--- full output ---\n{text}",
        bad.join("\n")
    );
    let minor = format!("against version 1.{}", cluster.version.minor);
    for f in &files {
        let shown = f.display().to_string();
        let passed =
            text.lines().filter(|l| l.starts_with("INFO") && l.contains(&shown) && l.contains(" passed ")).count();
        assert_eq!(passed, objects_in(f), "{name}: {shown}: not every object passed:\n{text}");
        assert!(
            text.lines().filter(|l| l.contains(&shown)).all(|l| l.contains(&minor)),
            "{name}: {shown} was not validated {minor}:\n{text}"
        );
    }
}

#[test]
fn manifests_validate_demo_v1_37() {
    validate_manifests("demo", &support::fixture("demo"));
}

#[test]
fn manifests_validate_rsa_v1_33() {
    validate_manifests("rsa-v1.33", &support::fixture("rsa-v1.33"));
}

#[test]
fn manifests_validate_ipv6_v1_34() {
    validate_manifests("ipv6", &support::fixture("ipv6"));
}

#[test]
fn manifests_validate_edge_v1_35_and_dual_stack_v1_36() {
    validate_manifests("edge-v1.35", &support::fixture("edge-v1.35"));
    validate_manifests("dual-stack", &support::fixture("dual-stack"));
}

#[test]
fn manifests_validate_the_demo_on_every_supported_minor() {
    let demo = support::fixture("demo");
    assert!(demo.contains("kubernetesVersion: v1.37.1"));
    for minor in kubeforge::versions::minors() {
        let v = format!("kubernetesVersion: v1.{minor}.3");
        validate_manifests(&format!("demo-v1.{minor}"), &demo.replace("kubernetesVersion: v1.37.1", &v));
    }
}

/// The customized fixture (extraArgs, extraVolumes, extraEnvs, a bind port, etcd.local, and a patches directory
/// with one patch of each type) validates on every supported minor. (kubernetes-validate has no schema for
/// KubeletConfiguration, a component config that is no API object; tests/customization.rs checks the kubelet
/// configurations against upstream's field table instead.)
#[test]
fn customized_manifests_validate_on_every_supported_minor() {
    let patches = support::fixture_path("customized").with_extension("").join("patches");
    let custom = support::fixture("customized")
        .replace("directory: customized/patches", &format!("directory: {}", patches.display()));
    assert!(custom.contains("kubernetesVersion: v1.37.1"));
    for minor in kubeforge::versions::minors() {
        let v = format!("kubernetesVersion: v1.{minor}.3");
        validate_manifests(&format!("customized-v1.{minor}"), &custom.replace("kubernetesVersion: v1.37.1", &v));
    }
}

fn expected_user(file: &str, node: &str) -> String {
    match file {
        "admin.conf" => "kubernetes-admin".into(),
        "super-admin.conf" => "kubernetes-super-admin".into(),
        "controller-manager.conf" => "system:kube-controller-manager".into(),
        "scheduler.conf" => "system:kube-scheduler".into(),
        "kube-proxy.conf" => "system:kube-proxy".into(),
        "kubelet.conf" => format!("system:node:{node}"),
        other => panic!("unexpected kubeconfig {other}"),
    }
}

fn kubeconfigs_parse(name: &str, spec: &str) {
    let tmp: TempDir = support::temp_dir(&format!("kubeconfig-{name}"));
    let out = tmp.join("out");
    let cluster = real::generate(spec, 42, &out);
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();

    let mut confs = vec![(out.join("admin.conf"), "admin.conf".to_string(), String::new())];
    for n in &cluster.nodes {
        let dir = real::bundle(&out, &n.name).join("etc/kubernetes");
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let f = p.file_name().unwrap().to_string_lossy().into_owned();
            if f.ends_with(".conf") {
                confs.push((p, f, n.name.clone()));
            }
        }
    }
    let cps = cluster.nodes.iter().filter(|n| n.is_control_plane()).count();
    assert_eq!(confs.len(), 1 + 6 * cps + 2 * (cluster.nodes.len() - cps), "{name}: number of kubeconfigs");

    for (path, file, node) in confs {
        // One `kubectl config view` per file: it parses the file, resolves the current context, and shows the
        // embedded credentials as embedded (DATA+OMITTED), not as file references.
        let mut c = real::kubectl(&home);
        c.args(["config", "view", "--minify", "--kubeconfig"]).arg(&path).arg(
            "-o=jsonpath={.current-context} {.contexts[0].context.cluster} {.contexts[0].context.user} \
             {.clusters[0].name} {.users[0].name} {.clusters[0].cluster.certificate-authority-data} \
             {.users[0].user.client-certificate-data} {.users[0].user.client-key-data}",
        );
        let got = support::stdout(&support::run(&mut c));
        let user = expected_user(&file, &node);
        let cl = &cluster.name;
        let want = format!("{user}@{cl} {cl} {user} {cl} {user} DATA+OMITTED DATA+OMITTED DATA+OMITTED");
        assert_eq!(got, want, "{name}: {}: current-context, its cluster and user, embedded data", path.display());
    }
}

#[test]
fn kubeconfigs_parse_with_kubectl_demo() {
    kubeconfigs_parse("demo", &support::fixture("demo"));
}

#[test]
fn kubeconfigs_parse_with_kubectl_rsa_v1_33() {
    kubeconfigs_parse("rsa-v1.33", &support::fixture("rsa-v1.33"));
}

#[test]
fn kubeconfigs_parse_with_kubectl_ipv6() {
    kubeconfigs_parse("ipv6", &support::fixture("ipv6"));
}
