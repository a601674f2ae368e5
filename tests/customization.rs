//! Customization (issue 12): a private registry, extraArgs, extraVolumes and extraEnvs, etcd.local, a bind port,
//! kubelet settings, labels and taints, and a kubeadm patches directory.
//!
//! - `fixtures/customized.yaml` generates what kubeadm would write for the same ClusterConfiguration: each setting
//!   of the spec is looked up in the output field by field, with expectations written from the spec here (not
//!   read from kubeforge), and everything else is kubeforge's default (compared with the same spec without the
//!   customization).
//! - Every guard rail is an error that names the spec field (or the patch file) and writes nothing.
//! - A changed extraArg is a plan that names the manifests and touches no certificate.
//! - `images` lists exactly the images the manifests and kubeadm-flags.env name.
//!
//! Elsewhere: kubernetes-validate on customized manifests in tests/schema.rs, a real etcd with etcd.local in
//! tests/real_etcd.rs, the warnings against the CIS checks in tests/cis.rs, hostile values in the new fields in
//! tests/hostile.rs.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml::Value;
use support::Cluster;

/// The customized fixture with its patches directory made absolute, so the spec can live in a temp dir.
fn customized() -> String {
    let patches = support::fixture_path("customized").with_extension("").join("patches");
    support::fixture("customized")
        .replace("directory: customized/patches", &format!("directory: {}", patches.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn node(out: &Path, node: &str, dest: &str) -> PathBuf {
    out.join("nodes").join(node).join(dest.trim_start_matches('/'))
}

fn command(pod: &Value) -> Vec<String> {
    pod["spec"]["containers"][0]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn named<'a>(list: &'a Value, key: &str, name: &str) -> &'a Value {
    list.as_sequence()
        .unwrap()
        .iter()
        .find(|v| v[key].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in {list:?}"))
}

#[test]
fn the_customized_fixture_is_what_kubeadm_would_write() {
    let c = Cluster::new("custom-fixture", &customized());
    c.generate_seeded();
    let out = &c.out;
    let m = |pod: &str| yaml(&node(out, "cp-1", &format!("/etc/kubernetes/manifests/{pod}.yaml")));
    let (api, kcm, sched, etcd) = (m("kube-apiserver"), m("kube-controller-manager"), m("kube-scheduler"), m("etcd"));

    // imageRepository for every image; etcd's tag is kubeadm's for v1.37.
    let reg = "registry.corp.example:5000/k8s";
    for (pod, image) in [
        (&api, format!("{reg}/kube-apiserver:v1.37.1")),
        (&kcm, format!("{reg}/kube-controller-manager:v1.37.1")),
        (&sched, format!("{reg}/kube-scheduler:v1.37.1")),
        (&etcd, format!("{reg}/etcd:3.7.0-0")),
    ] {
        assert_eq!(pod["spec"]["containers"][0]["image"].as_str(), Some(image.as_str()));
    }

    // extraArgs: after kubeforge's flags (sorted), in the spec's order.
    let cmd = command(&api);
    let user = [
        "--oidc-issuer-url=https://sso.corp.example/realms/k8s",
        "--oidc-client-id=kubernetes",
        "--oidc-username-claim=email",
        "--oidc-groups-claim=groups",
        "--oidc-ca-file=/etc/kubernetes/oidc/ca.crt",
        "--service-node-port-range=30000-32999",
        "--feature-gates=MutableCSINodeAllocatableCount=true",
    ];
    assert_eq!(&cmd[cmd.len() - user.len()..], user, "{cmd:#?}");
    let defaults = &cmd[1..cmd.len() - user.len()];
    let mut sorted = defaults.to_vec();
    sorted.sort();
    assert_eq!(defaults, sorted, "kubeforge's flags stay sorted");
    assert_eq!(command(&sched).last().map(String::as_str), Some("--v=2"));
    assert_eq!(command(&kcm).last().map(String::as_str), Some("--node-monitor-grace-period=50s"));
    let etcd_cmd = command(&etcd);
    assert_eq!(&etcd_cmd[etcd_cmd.len() - 2..], ["--quota-backend-bytes=8589934592", "--auto-compaction-retention=8h"]);

    // The OIDC CA's volume, read-only, and the env.
    let ctr = &api["spec"]["containers"][0];
    let mount = named(&ctr["volumeMounts"], "name", "oidc-ca");
    assert_eq!((mount["mountPath"].as_str(), mount["readOnly"].as_bool()), (Some("/etc/kubernetes/oidc"), Some(true)));
    let vol = named(&api["spec"]["volumes"], "name", "oidc-ca");
    assert_eq!(vol["hostPath"]["path"].as_str(), Some("/etc/kubernetes/oidc"));
    assert_eq!(vol["hostPath"]["type"].as_str(), Some("DirectoryOrCreate"));
    assert_eq!(named(&ctr["env"], "name", "GOMAXPROCS")["value"].as_str(), Some("4"));

    // bindPort 8443: the flag, the probes' port, the annotation, and the local kubeconfigs.
    assert!(cmd.contains(&"--secure-port=8443".to_string()));
    assert_eq!(named(&ctr["ports"], "name", "probe-port")["containerPort"].as_u64(), Some(8443));
    assert_eq!(
        api["metadata"]["annotations"]["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"].as_str(),
        Some("10.0.0.11:8443")
    );
    for kc in ["/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf", "/etc/kubernetes/scheduler.conf"] {
        assert_eq!(
            yaml(&node(out, "cp-1", kc))["clusters"][0]["cluster"]["server"].as_str(),
            Some("https://10.0.0.11:8443")
        );
    }
    assert_eq!(
        yaml(&node(out, "gpu-1", "/etc/kubernetes/kubelet.conf"))["clusters"][0]["cluster"]["server"].as_str(),
        Some("https://10.0.0.11:8443")
    );

    // etcd.local.dataDir: the flag and the etcd-data volume.
    assert!(etcd_cmd.contains(&"--data-dir=/data/etcd".to_string()));
    assert_eq!(named(&etcd["spec"]["volumes"], "name", "etcd-data")["hostPath"]["path"].as_str(), Some("/data/etcd"));
    assert_eq!(
        named(&etcd["spec"]["containers"][0]["volumeMounts"], "name", "etcd-data")["mountPath"].as_str(),
        Some("/data/etcd")
    );

    // The patches, one of each type.
    let req = &ctr["resources"]["requests"];
    assert_eq!((req["cpu"].as_str(), req["memory"].as_str()), (Some("500m"), Some("512Mi")), "strategic");
    assert_eq!(kcm["metadata"]["annotations"]["corp.example/owner"].as_str(), Some("platform-team"), "merge");
    assert_eq!(etcd["spec"]["containers"][0]["resources"]["requests"]["memory"].as_str(), Some("1Gi"), "json");
    assert_eq!(
        etcd["spec"]["containers"][0]["resources"]["requests"]["cpu"].as_str(),
        Some("100m"),
        "json kept the rest"
    );

    // Kubelet settings (cluster, then node), the patch, taints and labels.
    let cp = yaml(&node(out, "cp-1", "/var/lib/kubelet/config.yaml"));
    let gpu = yaml(&node(out, "gpu-1", "/var/lib/kubelet/config.yaml"));
    assert_eq!((cp["maxPods"].as_i64(), gpu["maxPods"].as_i64()), (Some(200), Some(64)));
    for k in [&cp, &gpu] {
        assert_eq!(k["systemReserved"]["memory"].as_str(), Some("1Gi"));
        assert_eq!(k["evictionHard"]["nodefs.available"].as_str(), Some("10%"));
        assert_eq!(k["shutdownGracePeriod"].as_str(), Some("30s"));
        assert_eq!(k["tlsCertFile"].as_str(), Some("/var/lib/kubelet/pki/kubelet.crt"), "kubeforge's own stay");
    }
    assert_eq!(gpu["containerRuntimeEndpoint"].as_str(), Some("unix:///run/containerd/containerd.sock"));
    let taint = |k: &Value| serde_yaml::to_string(&k["registerWithTaints"]).unwrap();
    assert_eq!(taint(&cp), "- effect: NoSchedule\n  key: node-role.kubernetes.io/control-plane\n", "kubeadm's default");
    assert_eq!(taint(&gpu), "- effect: NoSchedule\n  key: corp.example/gpu\n  value: 'true'\n");
    assert_eq!(
        fs::read_to_string(node(out, "gpu-1", "/var/lib/kubelet/kubeadm-flags.env")).unwrap(),
        "KUBELET_KUBEADM_ARGS=\"--node-labels=corp.example/team=ml,node.kubernetes.io/instance-type=gpu-large\"\n"
    );
    assert_eq!(
        fs::read_to_string(node(out, "cp-1", "/var/lib/kubelet/kubeadm-flags.env")).unwrap(),
        "KUBELET_KUBEADM_ARGS=\"\"\n"
    );
}

/// Everything the customization does not touch is kubeforge's default: the customized output, with each
/// setting undone in the YAML, equals the output of the same spec without customization.
#[test]
fn nothing_else_changes() {
    let plain_spec = "apiVersion: kubeforge/v1alpha1\nkind: Cluster\nname: custom\nkubernetesVersion: v1.37.1\n\
        networking:\n  serviceSubnet: 10.96.0.0/12\n  podSubnet: 10.244.0.0/16\napiServer:\n  certSANs: [api.corp.example]\n\
        nodes:\n  - name: cp-1\n    role: control-plane\n    address: 10.0.0.11\n  - name: gpu-1\n    role: worker\n    address: 10.0.0.21\n";
    let plain = Cluster::new("custom-plain", plain_spec);
    plain.generate_seeded();
    let custom = Cluster::new("custom-undo", &customized());
    custom.generate_seeded();
    let m = |c: &Cluster, pod: &str| yaml(&node(&c.out, "cp-1", &format!("/etc/kubernetes/manifests/{pod}.yaml")));
    let strip = |mut v: Value, undo: &dyn Fn(&mut Value)| {
        undo(&mut v);
        v
    };
    let reimage = |v: &mut Value| {
        let img = v["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .replace("registry.corp.example:5000/k8s", "registry.k8s.io");
        v["spec"]["containers"][0]["image"] = Value::String(img);
    };
    let drop_flags = |v: &mut Value, n: usize| {
        let cmd = v["spec"]["containers"][0]["command"].as_sequence_mut().unwrap();
        cmd.truncate(cmd.len() - n);
    };
    // The scheduler: only its image and its one extraArg differ.
    let sched = strip(m(&custom, "kube-scheduler"), &|v| {
        reimage(v);
        drop_flags(v, 1);
    });
    assert_eq!(sched, m(&plain, "kube-scheduler"));
    // The controller-manager: the image, one extraArg, the merge patch's annotation.
    let kcm = strip(m(&custom, "kube-controller-manager"), &|v| {
        reimage(v);
        drop_flags(v, 1);
        v["metadata"].as_mapping_mut().unwrap().remove("annotations");
    });
    assert_eq!(kcm, m(&plain, "kube-controller-manager"));
    // A worker's kubelet configuration: its settings, the cluster's and the patch's removed.
    let mut k = yaml(&node(&custom.out, "gpu-1", "/var/lib/kubelet/config.yaml"));
    let want = yaml(&node(&plain.out, "gpu-1", "/var/lib/kubelet/config.yaml"));
    for f in [
        "maxPods",
        "systemReserved",
        "evictionHard",
        "shutdownGracePeriod",
        "shutdownGracePeriodCriticalPods",
        "registerWithTaints",
    ] {
        k.as_mapping_mut().unwrap().shift_remove(f).unwrap_or_else(|| panic!("{f} is set"));
    }
    // The node's own runtime endpoint, here the same socket under /run instead of /var/run.
    k["containerRuntimeEndpoint"] = want["containerRuntimeEndpoint"].clone();
    assert_eq!(k, want);
    // Certificates do not depend on customization (other than the SANs the spec gives both).
    let certs = |c: &Cluster| -> Vec<String> {
        let idx: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(c.out.join("index.json")).unwrap()).unwrap();
        idx["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "cert")
            .map(|f| f["certificate"]["sans"].to_string())
            .collect()
    };
    assert_eq!(certs(&custom), certs(&plain));
}

/// One spec edit and what it must be refused with: the field path and a fragment of the message.
fn refused(name: &str, spec: &str, path: &str, why: &str) {
    let c = Cluster::new(&format!("refused-{name}"), spec);
    let err = support::try_apply(&c.seeded()).expect_err(&format!("{name}: accepted"));
    assert!(err.contains(path) && err.contains(why), "{name}: want {path:?} and {why:?} in:\n{err}");
    assert!(!c.out.exists() || support::Tree::of(&c.out).files().is_empty(), "{name}: something was written");
}

const BASE: &str = "apiVersion: kubeforge/v1alpha1\nkind: Cluster\nname: g\nkubernetesVersion: v1.37.1\n";
const NODES: &str = "nodes:\n  - name: cp-1\n    role: control-plane\n    address: 10.0.0.11\n  - name: w-1\n    role: worker\n    address: 10.0.0.21\n";

fn with(section: &str) -> String {
    format!("{BASE}{section}{NODES}")
}

#[test]
fn guard_rails_name_the_field_and_write_nothing() {
    let arg = |comp: &str, name: &str, value: &str| {
        // etcd's are one level deeper, under etcd.local.
        let head = if comp == "etcd" { "etcd:\n  local:\n".to_string() } else { format!("{comp}:\n") };
        let pad = if comp == "etcd" { "    " } else { "  " };
        with(&format!("{head}{pad}extraArgs:\n{pad}  - name: {name}\n{pad}    value: {value}\n"))
    };
    let vol = |host: &str, mount: &str| {
        with(&format!(
            "apiServer:\n  extraVolumes:\n    - name: extra\n      hostPath: {host}\n      mountPath: {mount}\n"
        ))
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("tls-cert-file", arg("apiServer", "tls-cert-file", "/x.crt"), "apiServer.extraArgs[0]", "kubeforge's PKI"),
        (
            "client-ca-file",
            arg("controllerManager", "client-ca-file", "/x"),
            "controllerManager.extraArgs[0]",
            "kubeforge's PKI",
        ),
        ("kubeconfig", arg("scheduler", "kubeconfig", "/x"), "scheduler.extraArgs[0]", "kubeforge's PKI"),
        ("etcd trusted-ca", arg("etcd", "trusted-ca-file", "/x"), "etcd.local.extraArgs[0]", "kubeforge's PKI"),
        ("secure-port", arg("apiServer", "secure-port", "1"), "apiServer.extraArgs[0]", "apiServer.bindPort"),
        ("data-dir", arg("etcd", "data-dir", "/x"), "etcd.local.extraArgs[0]", "etcd.local.dataDir"),
        ("auto-tls", arg("etcd", "auto-tls", "true"), "etcd.local.extraArgs[0]", "self-signed"),
        ("leading dashes", arg("apiServer", "--v", "2"), "apiServer.extraArgs[0].name", "without its leading"),
        (
            "newline",
            arg("apiServer", "v", "\"2\\n- --anonymous-auth=true\""),
            "apiServer.extraArgs[0].value",
            "control character",
        ),
        (
            "removed gate",
            arg("apiServer", "feature-gates", "SidecarContainers=true"),
            "apiServer.extraArgs[0].value",
            "removed in Kubernetes v1.37",
        ),
        (
            "locked gate",
            arg("controllerManager", "feature-gates", "JobManagedBy=false"),
            "controllerManager.extraArgs[0].value",
            "locked to true",
        ),
        (
            "relative host path",
            vol("etc/oidc", "/etc/oidc"),
            "apiServer.extraVolumes[0].hostPath",
            "clean absolute path",
        ),
        (
            "mount over the PKI",
            vol("/srv/x", "/etc/kubernetes/pki/oidc"),
            "apiServer.extraVolumes[0].mountPath",
            "collides with kubeforge's mount",
        ),
        (
            "host path of the PKI",
            vol("/etc/kubernetes/pki", "/pki"),
            "apiServer.extraVolumes[0].hostPath",
            "mounted by kubeforge already",
        ),
        (
            "duplicate host paths",
            with(
                "apiServer:\n  extraVolumes:\n    - {name: a, hostPath: /srv/a, mountPath: /a}\n    - {name: b, hostPath: /srv/a, mountPath: /b}\n",
            ),
            "apiServer.extraVolumes[1].hostPath",
            "used by another extraVolume",
        ),
        (
            "volume name",
            with("scheduler:\n  extraVolumes:\n    - {name: kubeconfig, hostPath: /srv/a, mountPath: /a}\n"),
            "scheduler.extraVolumes[0].name",
            "kubeforge's volumes",
        ),
        (
            "path type",
            with("scheduler:\n  extraVolumes:\n    - {name: a, hostPath: /srv/a, mountPath: /a, pathType: Dir}\n"),
            "scheduler.extraVolumes[0].pathType",
            "DirectoryOrCreate",
        ),
        (
            "env name",
            with("apiServer:\n  extraEnvs:\n    - {name: \"A B\", value: x}\n"),
            "apiServer.extraEnvs[0].name",
            "environment variable name",
        ),
        ("kubelet PKI", with("kubelet:\n  tlsCertFile: /x.crt\n"), "kubelet.tlsCertFile", "kubeforge's to set"),
        (
            "kubelet client CA",
            with("kubelet:\n  authentication:\n    x509:\n      clientCAFile: /x\n"),
            "kubelet.authentication.x509.clientCAFile",
            "kubeforge's to set",
        ),
        ("kubelet typo", with("kubelet:\n  maxPod: 10\n"), "kubelet.maxPod", "did you mean \"maxPods\""),
        ("kubelet type", with("kubelet:\n  maxPods: lots\n"), "kubelet.maxPods", "whole number"),
        (
            "image repository",
            with("imageRepository: https://registry.example.com\n"),
            "imageRepository",
            "without scheme",
        ),
        ("etcd tag", with("etcd:\n  local:\n    imageTag: \"3.6.8 -0\"\n"), "etcd.local.imageTag", "not an image tag"),
        ("bind port", with("apiServer:\n  bindPort: 0\n"), "apiServer.bindPort", "not a port"),
        (
            "local and external",
            with("etcd:\n  local: {}\n  external:\n    endpoints: [https://10.0.0.5:2379]\n"),
            "etcd",
            "not both",
        ),
    ];
    for (name, spec, path, why) in cases {
        refused(name, &spec, path, why);
    }
    // Node-level fields.
    let node =
        |extra: &str| format!("{BASE}nodes:\n  - name: cp-1\n    role: control-plane\n    address: 10.0.0.11\n{extra}");
    refused(
        "restricted label",
        &node("    labels:\n      node-role.kubernetes.io/worker: \"\"\n"),
        "nodes[0].labels.node-role.kubernetes.io/worker",
        "kubectl label",
    );
    refused(
        "taint effect",
        &node("    taints:\n      - {key: a, effect: NoWay}\n"),
        "nodes[0].taints[0].effect",
        "NoSchedule",
    );
    refused(
        "node kubelet",
        &node("    kubelet:\n      serverTLSBootstrap: true\n"),
        "nodes[0].kubelet.serverTLSBootstrap",
        "kubeforge's to set",
    );
    // The same gate is fine where it still exists.
    let ok = Cluster::new(
        "gate-v1.36",
        &arg("apiServer", "feature-gates", "SidecarContainers=true").replace("v1.37.1", "v1.36.2"),
    );
    ok.generate_seeded();
}

/// A patches directory made of `files`, and the spec that uses it.
fn with_patches(name: &str, files: &[(&str, &str)]) -> Cluster {
    let c = Cluster::new(name, "");
    let dir = c.tmp.path().join("patches");
    fs::create_dir_all(&dir).unwrap();
    for (f, text) in files {
        fs::write(dir.join(f), text).unwrap();
    }
    fs::write(&c.spec, with("patches:\n  directory: patches\n")).unwrap();
    c
}

#[test]
fn patches_that_do_not_apply_or_break_something_stop_the_run() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 9] = [
        ("unknown target", &[("coredns+merge.yaml", "a: 1\n")], "does not start with a patch target"),
        ("unknown type", &[("etcd+xml.yaml", "a: 1\n")], "patch type"),
        ("not yaml", &[("etcd.yaml", "a: [\n")], "not YAML or JSON"),
        (
            "json op on nothing",
            &[("etcd+json.yaml", "- {op: replace, path: /spec/nothing/0, value: 1}\n")],
            "etcd+json.yaml: the patch does not apply",
        ),
        (
            "test op",
            &[("kube-scheduler+json.json", "[{\"op\": \"test\", \"path\": \"/kind\", \"value\": \"Deployment\"}]")],
            "kube-scheduler+json.json",
        ),
        (
            "PKI flag",
            &[(
                "kube-apiserver+json.yaml",
                "- {op: add, path: /spec/containers/0/command/-, value: --tls-cert-file=/evil.crt}\n",
            )],
            "change --tls-cert-file",
        ),
        (
            "PKI volume",
            &[("kube-apiserver.yaml", "spec:\n  volumes:\n  - name: k8s-certs\n    $patch: delete\n")],
            "mount volume \"k8s-certs\"",
        ),
        (
            "no image",
            &[("kube-scheduler+merge.yaml", "spec:\n  containers: [{name: kube-scheduler}]\n")],
            "without an image",
        ),
        (
            "kubelet PKI",
            &[("kubeletconfiguration+merge.yaml", "tlsPrivateKeyFile: /evil.key\n")],
            "change tlsPrivateKeyFile",
        ),
    ];
    for (name, files, why) in cases {
        let c = with_patches(&format!("patch-{}", name.replace(' ', "-")), files);
        let err = support::try_apply(&c.seeded()).expect_err(&format!("{name}: accepted"));
        assert!(err.contains("patches.directory") && err.contains(why), "{name}: want {why:?} in:\n{err}");
        assert!(!c.out.exists(), "{name}: something was written");
    }
    // A patch for a pod kubeforge does not write (etcd is external) would do nothing: refused.
    let c = with_patches("patch-external-etcd", &[("etcd+merge.yaml", "metadata: {labels: {a: b}}\n")]);
    fs::write(
        &c.spec,
        with("etcd:\n  external:\n    endpoints: [https://10.0.0.5:2379]\npatches:\n  directory: patches\n"),
    )
    .unwrap();
    let err = support::try_apply(&c.seeded()).unwrap_err();
    assert!(err.contains("etcd+merge.yaml patches etcd, but etcd is external"), "{err}");
    // A kubelet patch adding an unknown field is refused as the kubelet would not read it.
    let c = with_patches("patch-kubelet-field", &[("kubeletconfiguration.yaml", "maxPodz: 3\n")]);
    let err = support::try_apply(&c.seeded()).unwrap_err();
    assert!(err.contains("maxPodz") && err.contains("did you mean \"maxPods\""), "{err}");
}

/// kubeadm's documentation example layout (one file per patch type) applied to an existing tree; then the same
/// directory with a broken patch added stops the run and leaves the tree as it was.
#[test]
fn a_broken_patch_leaves_the_tree_as_it_was() {
    let c = with_patches(
        "patch-broken-later",
        &[
            (
                "kube-apiserver0+strategic.yaml",
                "spec:\n  containers:\n  - name: kube-apiserver\n    resources:\n      requests:\n        cpu: 400m\n",
            ),
            ("kube-apiserver1+merge.yaml", "metadata:\n  labels:\n    team: platform\n"),
            ("kube-apiserver2+json.yaml", "- {op: add, path: /spec/dnsPolicy, value: ClusterFirstWithHostNet}\n"),
        ],
    );
    c.generate_seeded();
    let api = yaml(&node(&c.out, "cp-1", "/etc/kubernetes/manifests/kube-apiserver.yaml"));
    assert_eq!(api["spec"]["containers"][0]["resources"]["requests"]["cpu"].as_str(), Some("400m"));
    assert_eq!(api["metadata"]["labels"]["team"].as_str(), Some("platform"));
    assert_eq!(api["metadata"]["labels"]["tier"].as_str(), Some("control-plane"));
    assert_eq!(api["spec"]["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    let before = c.tree();
    fs::write(c.tmp.path().join("patches/kube-apiserver3+json.yaml"), "- {op: remove, path: /spec/nodeSelector}\n")
        .unwrap();
    let err = support::try_apply(&c.seeded()).unwrap_err();
    assert!(err.contains("kube-apiserver3+json.yaml"), "{err}");
    assert!(before.touched(&c.tree()).is_empty(), "a failed run touched {:?}", before.touched(&c.tree()));
}

/// Changing an extraArg is a plan that names the manifest and keeps every certificate.
#[test]
fn a_changed_extra_arg_touches_no_certificate() {
    let c = Cluster::new("extra-arg-plan", &with("scheduler:\n  extraArgs:\n    - {name: v, value: \"2\"}\n"));
    c.generate_seeded();
    c.edit("value: \"2\"", "value: \"4\"");
    let plan = c.plan();
    assert!(support::reissued(&plan).is_empty(), "{:?}", support::reissued(&plan));
    let files = plan.files.as_ref().expect("a full plan lists files");
    assert_eq!(files.write, ["index.json", "nodes/cp-1/etc/kubernetes/manifests/kube-scheduler.yaml"]);
    assert!(files.remove.is_empty());
    let before = c.tree();
    c.generate_seeded();
    assert_eq!(
        before.changed_files(&c.tree()),
        ["index.json", "nodes/cp-1/etc/kubernetes/manifests/kube-scheduler.yaml"]
    );
}

/// Turning off a secure default is allowed and said on every gen and plan.
#[test]
fn secure_defaults_turned_off_are_warned_about() {
    let c = Cluster::new(
        "warn",
        &with("apiServer:\n  extraArgs:\n    - {name: profiling, value: \"true\"}\nkubelet:\n  readOnlyPort: 10255\n"),
    );
    let g = c.generate_seeded();
    let p = c.plan();
    for r in [&g, &p] {
        let w = r.warnings.join("\n");
        assert!(w.contains("kube-apiserver: --profiling=true") && w.contains("CIS 1.2.15"), "{w}");
        assert!(
            w.contains("kubelet readOnlyPort: 10255") && w.contains("CIS 4.2.4") && w.contains("(every node)"),
            "{w}"
        );
        assert_eq!(r.warnings.len(), 2, "{w}");
    }
    let text = support::kubeforge(&["plan", "--spec", c.spec.to_str().unwrap(), "--out", c.out.to_str().unwrap()]).text;
    assert!(text.contains("CIS 1.2.15"), "{text}");
}

/// `images` lists exactly the images the nodes are told to run: the static pods' (both ways), the sandbox image
/// of kubeadm-flags.env where the version writes it, and the add-ons kubeadm lists.
#[test]
fn images_lists_what_the_manifests_name() {
    for version in ["v1.37.1", "v1.34.3"] {
        let c = Cluster::new(&format!("images-{version}"), &customized().replace("v1.37.1", version));
        c.generate_seeded();
        let report = support::kubeforge(&["images", "--spec", c.spec.to_str().unwrap(), "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&report.text).unwrap();
        assert!(support::schema_errors("report.schema.json", &v).is_empty());
        let listed = |source: &str| -> BTreeSet<String> {
            v["images"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["source"] == source)
                .map(|i| i["image"].as_str().unwrap().to_string())
                .collect()
        };
        let mut in_manifests = BTreeSet::new();
        for n in ["cp-1"] {
            for pod in fs::read_dir(node(&c.out, n, "/etc/kubernetes/manifests")).unwrap() {
                let pod = yaml(&pod.unwrap().path());
                for ctr in pod["spec"]["containers"].as_sequence().unwrap() {
                    in_manifests.insert(ctr["image"].as_str().unwrap().to_string());
                }
            }
        }
        assert_eq!(listed("static-pod"), in_manifests, "{version}");
        let sandbox = listed("sandbox");
        assert_eq!(sandbox.len(), 1);
        let flags = fs::read_to_string(node(&c.out, "gpu-1", "/var/lib/kubelet/kubeadm-flags.env")).unwrap();
        let pause = sandbox.iter().next().unwrap();
        assert_eq!(flags.contains(&format!("--pod-infra-container-image={pause}")), version == "v1.34.3", "{flags}");
        for i in v["images"].as_array().unwrap() {
            assert!(i["image"].as_str().unwrap().starts_with("registry.corp.example:5000/k8s/"), "{i}");
        }
        let text = support::kubeforge(&["images", "--spec", c.spec.to_str().unwrap()]).text;
        assert_eq!(text.lines().count(), v["images"].as_array().unwrap().len());
    }
}

/// kubernetes-validate has no schema for KubeletConfiguration (it is a component config, not an API object), so
/// every kubelet configuration of every fixture, the customized one included, is checked against the field table
/// of upstream's `types.go` (src/custom/kubelet-fields.tsv): every field known, of the right type.
#[test]
fn every_kubelet_configuration_has_only_upstream_fields() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut checked = 0;
    for e in fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        let spec = if name == "customized" { customized() } else { fs::read_to_string(&p).unwrap() };
        let c = Cluster::new(&format!("kubelet-fields-{name}"), &spec);
        if name == "external-etcd-ca" {
            // Its CA files are relative to the fixture.
            fs::write(&c.spec, spec.replace("external-etcd-ca/", &format!("{}/external-etcd-ca/", dir.display())))
                .unwrap();
        }
        c.generate_seeded();
        for n in fs::read_dir(c.out.join("nodes")).unwrap() {
            let config = n.unwrap().path().join("var/lib/kubelet/config.yaml");
            let mut doc: serde_yaml::Mapping = serde_yaml::from_str(&fs::read_to_string(&config).unwrap()).unwrap();
            assert_eq!(
                doc.shift_remove("apiVersion").and_then(|v| v.as_str().map(String::from)).as_deref(),
                Some("kubelet.config.k8s.io/v1beta1")
            );
            assert_eq!(
                doc.shift_remove("kind").and_then(|v| v.as_str().map(String::from)).as_deref(),
                Some("KubeletConfiguration")
            );
            let mut problems = Vec::new();
            kubeforge::custom::kubelet::check_fields(&doc, "", &mut |p, m| problems.push(format!("{p}: {m}")));
            assert!(problems.is_empty(), "{}: {problems:#?}", config.display());
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} configurations");
}
