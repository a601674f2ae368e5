//! The real kubectl with every generated kubeconfig, and the kubelet leg, against TLS servers that present the
//! generated certificates (issue 3, items 3 and 4).
//!
//! The TLS server is `openssl s_server -Verify 1 -verify_return_error -www`: it presents a generated serving
//! certificate, requires a client certificate that verifies against the CA file the real component would use,
//! and answers every request with a status page that shows the verified client certificate. So a passing request
//! proves both directions of the handshake and the client's identity. Every server listens on 127.0.0.1; the
//! kubeconfig copies are pointed at it with `tls-server-name` set to the kubeconfig's original host, so kubectl
//! verifies the certificate for the name or address the real cluster would use, without ever connecting to it.

mod real;
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use kubeforge::spec::Cluster;
use real::{bundle, container_command, flag, manifest, on_node};
use support::{Proc, TempDir};

/// A cluster generated into `<tmp>/<name>`.
struct Gen {
    out: PathBuf,
    cluster: Cluster,
}

fn gen_into(tmp: &Path, name: &str, spec: &str, seed: u64) -> Gen {
    let out = tmp.join(name);
    let cluster = real::generate(spec, seed, &out);
    Gen { out, cluster }
}

/// A spec with two control-plane nodes behind an IP control-plane endpoint, on v1.35 (kubelet.conf points at the
/// local apiserver on control-plane nodes and at the endpoint on workers).
const HA_V1_35: &str = "\
apiVersion: kubeforge/v1alpha1
kind: Cluster
name: ha
kubernetesVersion: v1.35.3
controlPlaneEndpoint: 10.0.0.100
networking:
  serviceSubnet: 10.96.0.0/12
pki:
  keyAlgorithm: ECDSA-P256
nodes:
  - name: cp-1
    role: control-plane
    address: 10.0.0.11
  - name: cp-2
    role: control-plane
    address: 10.0.0.12
  - name: worker-1
    role: worker
    address: 10.0.0.21
";

/// The kubeconfigs kubeadm writes on a control-plane node, and on a worker.
const CP_KUBECONFIGS: [&str; 6] =
    ["admin.conf", "super-admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf", "kube-proxy.conf"];
const WORKER_KUBECONFIGS: [&str; 2] = ["kubelet.conf", "kube-proxy.conf"];

/// The client certificate subject of a kubeconfig (kubeadm-facts §2.1), as openssl prints it.
fn expected_subject(file: &str, node: &str) -> String {
    match file {
        "admin.conf" => "O=kubeadm:cluster-admins, CN=kubernetes-admin".into(),
        "super-admin.conf" => "O=system:masters, CN=kubernetes-super-admin".into(),
        "controller-manager.conf" => "CN=system:kube-controller-manager".into(),
        "scheduler.conf" => "CN=system:kube-scheduler".into(),
        "kube-proxy.conf" => "CN=system:kube-proxy".into(),
        "kubelet.conf" => format!("O=system:nodes, CN=system:node:{node}"),
        other => panic!("unexpected kubeconfig {other}"),
    }
}

fn https(ip: std::net::IpAddr, port: u16) -> String {
    real::make_url("https", ip, port)
}

/// The server a kubeconfig must name (kubeadm-facts §2.1, §2.2): `endpoint` is the cluster endpoint URL
/// (controlPlaneEndpoint, or the first control-plane node's address, port 6443).
fn expected_server(c: &Cluster, endpoint: &str, file: &str, node: Option<&kubeforge::spec::Node>) -> String {
    match (file, node) {
        ("controller-manager.conf" | "scheduler.conf", Some(n)) => https(n.address, 6443),
        // kubeadm-facts §2.1: from v1.33 (every supported version) the local apiserver on a control-plane node.
        ("kubelet.conf", Some(n)) if n.is_control_plane() && c.version.minor >= 33 => https(n.address, 6443),
        _ => endpoint.to_string(),
    }
}

/// `https://host:port` → host, without brackets.
fn url_host(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or_else(|| panic!("{url:?} is not an https URL"));
    let (host, _port) = rest.rsplit_once(':').unwrap_or_else(|| panic!("{url:?} has no port"));
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// One control-plane node's apiserver, impersonated by s_server with the files of the node's own
/// `--tls-cert-file`, `--tls-private-key-file` and `--client-ca-file`.
struct Apiserver {
    node: String,
    port: u16,
    proc: Proc,
}

fn start_apiservers(tmp: &Path, g: &Gen) -> Vec<Apiserver> {
    g.cluster
        .nodes
        .iter()
        .filter(|n| n.is_control_plane())
        .map(|n| {
            let b = bundle(&g.out, &n.name);
            let cmd = container_command(&manifest(&b, "kube-apiserver"));
            let (proc, port) = real::s_server(
                &tmp.join(format!("s_server-apiserver-{}.log", n.name)),
                &on_node(&b, flag(&cmd, "tls-cert-file")),
                &on_node(&b, flag(&cmd, "tls-private-key-file")),
                &on_node(&b, flag(&cmd, "client-ca-file")),
            );
            Apiserver { node: n.name.clone(), port, proc }
        })
        .collect()
}

/// Every kubeconfig of the output: (label, file name, node, path). Fails if a node lacks one kubeadm writes, or
/// has one more.
fn kubeconfigs(g: &Gen) -> Vec<(String, &'static str, Option<&kubeforge::spec::Node>, PathBuf)> {
    let mut v = vec![("admin.conf".to_string(), "admin.conf", None, g.out.join("admin.conf"))];
    for n in &g.cluster.nodes {
        let dir = bundle(&g.out, &n.name).join("etc/kubernetes");
        let expected: &[&'static str] = if n.is_control_plane() { &CP_KUBECONFIGS } else { &WORKER_KUBECONFIGS };
        let mut present: Vec<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".conf"))
            .collect();
        present.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(present, want, "kubeconfigs of node {}", n.name);
        for f in expected {
            v.push((format!("{}-{f}", n.name), *f, Some(n), dir.join(f)));
        }
    }
    v
}

struct Kubectl {
    home: PathBuf,
}

impl Kubectl {
    fn cmd(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut c = real::kubectl(&self.home);
        c.arg("--kubeconfig").arg(kubeconfig).args(args);
        c
    }

    fn run(&self, kubeconfig: &Path, args: &[&str]) -> String {
        support::stdout(&support::run(&mut self.cmd(kubeconfig, args)))
    }

    fn get_root(&self, kubeconfig: &Path) -> Output {
        support::output(&mut self.cmd(kubeconfig, &["get", "--raw", "/", "--request-timeout=30s"]))
    }

    /// (cluster name, server, user name) of the current context.
    fn current(&self, kubeconfig: &Path) -> (String, String, String) {
        let s = self.run(
            kubeconfig,
            &[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].name}{\"\\n\"}{.clusters[0].cluster.server}{\"\\n\"}{.users[0].name}",
            ],
        );
        let mut l = s.lines().map(str::to_string);
        (l.next().unwrap_or_default(), l.next().unwrap_or_default(), l.next().unwrap_or_default())
    }

    fn raw_field(&self, kubeconfig: &Path, jsonpath: &str) -> String {
        self.run(kubeconfig, &["config", "view", "--minify", "--raw", "-o", &format!("jsonpath={jsonpath}")])
    }
}

/// A passing request: kubectl completed the handshake (it verified the server) and got s_server's page, which
/// says the server verified the client certificate and shows its subject.
fn assert_served(what: &str, o: &Output, subject: &str, server: &Apiserver) {
    let body = support::stdout(o);
    assert!(
        o.status.success() && body.contains("Verify return code: 0 (ok)"),
        "{what}: kubectl did not complete a verified request:{}\n--- s_server log ---\n{}",
        support::show(o),
        server.proc.log()
    );
    let line = real::www_subject(subject);
    assert!(
        body.lines().any(|l| l.trim() == line),
        "{what}: the server saw another client certificate than {subject:?}:\n{body}"
    );
}

fn assert_refused(what: &str, o: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{what}: kubectl succeeded but must fail:{}", support::show(o));
    assert!(!support::stdout(o).contains("Verify return code"), "{what}: kubectl got a response:{}", support::show(o));
    assert!(
        needles.iter().all(|n| err.contains(n)),
        "{what}: expected {needles:?} in kubectl's error:{}",
        support::show(o)
    );
}

/// Issue 3 item 3 for one generated cluster: every kubeconfig, pointed at the apiserver that would serve its
/// server URL, verifies that server for the original host and is accepted with the right identity. With
/// `foreign`, each also runs the three negative controls.
fn every_kubeconfig(name: &str, spec: &str, endpoint: &str, foreign: bool) {
    let tmp: TempDir = support::temp_dir(&format!("kubectl-{name}"));
    let g = gen_into(&tmp, "out", spec, 21);
    let other = foreign.then(|| gen_into(&tmp, "foreign", spec, 22));
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let k = Kubectl { home };
    let servers = start_apiservers(&tmp, &g);
    let work = tmp.join("kubeconfigs");
    fs::create_dir_all(&work).unwrap();
    let first_cp = g.cluster.nodes.iter().find(|n| n.is_control_plane()).unwrap();

    for (label, file, node, path) in kubeconfigs(&g) {
        let subject = expected_subject(file, node.map_or("", |n| n.name.as_str()));
        let copy = work.join(&label);
        fs::copy(&path, &copy).unwrap();
        let (cluster_name, server, user) = k.current(&copy);
        assert_eq!(cluster_name, g.cluster.name, "{label}: cluster name");
        let want_server = expected_server(&g.cluster, endpoint, file, node);
        assert_eq!(server, want_server, "{label}: server");
        let host = url_host(&server);
        // The apiserver that answers at that address: the node whose address it is, or (for the control-plane
        // endpoint) this node's own apiserver if it has one, else the first control-plane node's.
        let serving = g
            .cluster
            .nodes
            .iter()
            .find(|n| n.is_control_plane() && n.address.to_string() == host)
            .or(node.filter(|n| n.is_control_plane()))
            .unwrap_or(first_cp);
        let apiserver = servers.iter().find(|s| s.node == serving.name).unwrap();
        let local = format!("https://127.0.0.1:{}", apiserver.port);
        k.run(&copy, &["config", "set-cluster", &cluster_name, "--server", &local, "--tls-server-name", &host]);
        let what = format!("{name}: {label} (server {server}, served by {}'s apiserver)", serving.name);
        assert_served(&what, &k.get_root(&copy), &subject, apiserver);

        let Some(f) = &other else { continue };
        let variant = |suffix: &str| {
            let v = work.join(format!("{label}-{suffix}"));
            fs::copy(&copy, &v).unwrap();
            v
        };
        // Wrong server name: the apiserver certificate is not valid for it.
        let v = variant("wrong-name");
        k.run(&v, &["config", "set-cluster", &cluster_name, "--tls-server-name", "kubernetes.invalid"]);
        assert_refused(
            &format!("{what} with tls-server-name kubernetes.invalid"),
            &k.get_root(&v),
            &["x509: certificate is valid for", "not kubernetes.invalid"],
        );
        // Another cluster's CA as certificate-authority-data.
        let v = variant("foreign-ca");
        let foreign_ca = fs::read(f.out.join("pki/ca.crt")).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(foreign_ca);
        k.run(&v, &["config", "set", &format!("clusters.{cluster_name}.certificate-authority-data"), &b64]);
        assert_refused(
            &format!("{what} trusting a foreign CA"),
            &k.get_root(&v),
            &["x509: certificate signed by unknown authority"],
        );
        // The same kubeconfig's client certificate and key, but from the other cluster.
        let v = variant("foreign-client");
        let foreign_path = match node {
            None => f.out.join("admin.conf"),
            Some(n) => bundle(&f.out, &n.name).join("etc/kubernetes").join(file),
        };
        for field in ["client-certificate-data", "client-key-data"] {
            let data = k.raw_field(&foreign_path, &format!("{{.users[0].user.{field}}}"));
            assert!(!data.is_empty(), "{}: no {field}", foreign_path.display());
            k.run(&v, &["config", "set", &format!("users.{user}.{field}"), &data]);
        }
        let o = k.get_root(&v);
        assert_refused(&format!("{what} with a foreign client certificate"), &o, &["remote error: tls:"]);
        assert!(!String::from_utf8_lossy(&o.stderr).contains("x509"), "{what}: kubectl rejected the server instead");
    }
    // s_server verified every client it served; the refusals are its own.
    for s in &servers {
        let log = s.proc.log();
        if foreign {
            assert!(log.contains("certificate verify failed"), "s_server of {} refused nobody:\n{log}", s.node);
        } else {
            assert!(!log.contains("verify error"), "s_server of {}:\n{log}", s.node);
        }
    }
}

#[test]
fn kubectl_every_kubeconfig_demo_v1_37_with_negative_controls() {
    every_kubeconfig("demo", &support::fixture("demo"), "https://10.0.0.11:6443", true);
}

#[test]
fn kubectl_every_kubeconfig_rsa_v1_33_behind_a_dns_endpoint() {
    every_kubeconfig("rsa-v1.33", &support::fixture("rsa-v1.33"), "https://api.prod-eu.example.com:8443", false);
}

#[test]
fn kubectl_every_kubeconfig_ipv6() {
    every_kubeconfig("ipv6", &support::fixture("ipv6"), "https://[fd00:1::11]:6443", false);
}

#[test]
fn kubectl_every_kubeconfig_two_control_planes_v1_35() {
    every_kubeconfig("ha-v1.35", HA_V1_35, "https://10.0.0.100:6443", false);
}

/// `openssl s_client` as kube-apiserver's kubelet client: presents `client` and verifies the server against
/// `ca` for `check` (`-verify_hostname NAME` or `-verify_ip ADDR`), then sends one request.
fn kubelet_client(port: u16, client: &(PathBuf, PathBuf), ca: &Path, check: (&str, &str)) -> Output {
    let mut c = real::openssl();
    c.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-ign_eof")
        .arg("-CAfile")
        .arg(ca)
        .arg("-cert")
        .arg(&client.0)
        .arg("-key")
        .arg(&client.1)
        .arg("-verify_return_error")
        .args([check.0, check.1]);
    support::output_with_stdin(&mut c, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(30))
}

/// Issue 3 item 4 for one generated cluster: each node's kubelet serving certificate, served with the kubelet's
/// client CA (`/etc/kubernetes/pki/ca.crt`, kubeadm's `clientCAFile`), accepts every apiserver's
/// `--kubelet-client-certificate` and verifies against the cluster CA (`--client-ca-file`, what
/// `--kubelet-certificate-authority` would be) for the node's own name and address, and for no other node's.
fn kubelet_leg(name: &str, spec: &str, foreign: bool) {
    let tmp: TempDir = support::temp_dir(&format!("kubelet-{name}"));
    let g = gen_into(&tmp, "out", spec, 31);
    let f = foreign.then(|| gen_into(&tmp, "foreign", spec, 32));
    // Every apiserver's kubelet client, and the CA it would verify kubelets with.
    let mut clients: BTreeMap<String, ((PathBuf, PathBuf), PathBuf)> = BTreeMap::new();
    for n in g.cluster.nodes.iter().filter(|n| n.is_control_plane()) {
        let b = bundle(&g.out, &n.name);
        let cmd = container_command(&manifest(&b, "kube-apiserver"));
        let client =
            (on_node(&b, flag(&cmd, "kubelet-client-certificate")), on_node(&b, flag(&cmd, "kubelet-client-key")));
        clients.insert(n.name.clone(), (client, on_node(&b, flag(&cmd, "client-ca-file"))));
    }
    // The v1.35–v1.37 sheet §4: no Organization any more; the kubelet API comes from the ClusterRoleBinding
    // kubeadm:apiserver-kubelet-client, not from group kubeadm:cluster-admins.
    let kubelet_client_subject = real::www_subject("CN=kube-apiserver-kubelet-client");

    for n in &g.cluster.nodes {
        let b = bundle(&g.out, &n.name);
        let (server, port) = real::s_server(
            &tmp.join(format!("s_server-kubelet-{}.log", n.name)),
            &on_node(&b, "/var/lib/kubelet/pki/kubelet.crt"),
            &on_node(&b, "/var/lib/kubelet/pki/kubelet.key"),
            &on_node(&b, "/etc/kubernetes/pki/ca.crt"),
        );
        let addr = n.address.to_string();
        for (cp, (client, ca)) in &clients {
            for check in [("-verify_hostname", n.name.as_str()), ("-verify_ip", addr.as_str())] {
                let o = kubelet_client(port, client, ca, check);
                let out = support::stdout(&o);
                assert!(
                    o.status.success() && out.contains("HTTP/1.0 200 ok") && out.contains("Verify return code: 0 (ok)"),
                    "{name}: {cp}'s apiserver → kubelet of {} ({} {}) failed:{}\n--- s_server ---\n{}",
                    n.name,
                    check.0,
                    check.1,
                    support::show(&o),
                    server.log()
                );
                assert!(
                    out.lines().any(|l| l.trim() == kubelet_client_subject),
                    "{name}: the kubelet of {} saw another client than kube-apiserver-kubelet-client:\n{out}",
                    n.name
                );
            }
            for o_node in g.cluster.nodes.iter().filter(|o| o.name != n.name) {
                let other_addr = o_node.address.to_string();
                for (check, reason) in [
                    (("-verify_hostname", o_node.name.as_str()), "hostname mismatch"),
                    (("-verify_ip", other_addr.as_str()), "IP address mismatch"),
                ] {
                    let o = kubelet_client(port, client, ca, check);
                    let all = format!("{}{}", support::stdout(&o), String::from_utf8_lossy(&o.stderr));
                    assert!(
                        !o.status.success() && all.contains(reason) && !all.contains("HTTP/1.0 200 ok"),
                        "{name}: the kubelet certificate of {} was accepted for {} ({} {}):{}",
                        n.name,
                        o_node.name,
                        check.0,
                        check.1,
                        support::show(&o)
                    );
                }
            }
        }
        if let Some(f) = &f {
            // A kubelet client certificate from another cluster's CA is refused by the kubelet.
            let fb = bundle(&f.out, &g.cluster.nodes.iter().find(|n| n.is_control_plane()).unwrap().name);
            let foreign_client = (
                on_node(&fb, "/etc/kubernetes/pki/apiserver-kubelet-client.crt"),
                on_node(&fb, "/etc/kubernetes/pki/apiserver-kubelet-client.key"),
            );
            let (_, ca) = clients.values().next().unwrap();
            let o = kubelet_client(port, &foreign_client, ca, ("-verify_hostname", &n.name));
            let all = format!("{}{}", support::stdout(&o), String::from_utf8_lossy(&o.stderr));
            assert!(
                !o.status.success() && !all.contains("HTTP/1.0 200 ok") && all.contains("alert unknown ca"),
                "{name}: the kubelet of {} accepted a foreign apiserver-kubelet-client:{}",
                n.name,
                support::show(&o)
            );
        }
        drop(server);
    }
}

#[test]
fn kubelet_leg_demo() {
    kubelet_leg("demo", &support::fixture("demo"), true);
}

#[test]
fn kubelet_leg_rsa_v1_33_and_ipv6_and_two_control_planes() {
    kubelet_leg("rsa-v1.33", &support::fixture("rsa-v1.33"), false);
    kubelet_leg("ipv6", &support::fixture("ipv6"), false);
    kubelet_leg("ha-v1.35", HA_V1_35, false);
}
