//! What the real-component tests (`real_etcd.rs`, `real_kubectl.rs`, `schema.rs`) share: generating a cluster
//! into a temp dir through the library, reading a static pod's command line, mapping a node's paths into its
//! bundle, and starting the real tools with an environment that cannot reach anything but loopback.
//! Uses `crate::support` (the process/port/tempdir helpers).
#![allow(dead_code)]

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{self, Proc};

/// Generates `spec_yaml` into `out` (`out/pki` is the store, `out/nodes/<n>/...` the bundles), with `seed`
/// for the keys and the real current time: TLS peers check validity against the wall clock.
pub fn generate(spec_yaml: &str, seed: u64, out: &Path) -> kubeforge::spec::Cluster {
    support::generate_text(spec_yaml, out, seed, None)
}

/// `<out>/nodes/<node>`: the node's bundle, laid out like its filesystem.
pub fn bundle(out: &Path, node: &str) -> PathBuf {
    out.join("nodes").join(node)
}

/// `/etc/kubernetes/manifests/<pod>.yaml` in a node's bundle.
pub fn manifest(bundle: &Path, pod: &str) -> PathBuf {
    bundle.join(format!("etc/kubernetes/manifests/{pod}.yaml"))
}

/// `spec.containers[0].command` of a static pod manifest, exactly as written.
pub fn container_command(manifest: &Path) -> Vec<String> {
    let text = fs::read_to_string(manifest).unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let pod: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", manifest.display()));
    let cmd = pod["spec"]["containers"][0]["command"]
        .as_sequence()
        .unwrap_or_else(|| panic!("{}: no spec.containers[0].command", manifest.display()));
    cmd.iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("{}: a non-string command item {v:?}", manifest.display())))
        .map(str::to_string)
        .collect()
}

/// The value of `--name=value` in a command line; panics if the flag is missing or given twice.
pub fn flag<'a>(command: &'a [String], name: &str) -> &'a str {
    let prefix = format!("--{name}=");
    let found: Vec<&str> = command.iter().filter_map(|a| a.strip_prefix(prefix.as_str())).collect();
    match found.as_slice() {
        [v] => v,
        [] => panic!("--{name} is missing from {command:?}"),
        _ => panic!("--{name} is given {} times in {command:?}", found.len()),
    }
}

/// A node-local path (`/etc/kubernetes/...`, `/var/lib/kubelet/...`) in the node's bundle. Panics for any other
/// path: the tests only ever read what kubeforge ships.
pub fn on_node(bundle: &Path, path: &str) -> PathBuf {
    assert!(
        path.starts_with("/etc/kubernetes/") || path.starts_with("/var/lib/kubelet/"),
        "{path:?} is not a path that kubeforge ships in a node bundle"
    );
    let p = bundle.join(path.trim_start_matches('/'));
    assert!(p.is_file(), "{path} is referenced but the bundle has no {}", p.display());
    p
}

/// `scheme://host:port` split into its parts (host without brackets, as an IP). Panics unless the host is a
/// loopback address: no test ever talks to a spec's real addresses.
pub fn parse_url(url: &str) -> (String, IpAddr, u16) {
    let (scheme, rest) = url.split_once("://").unwrap_or_else(|| panic!("{url:?} is not a URL"));
    let (host, port) = rest.rsplit_once(':').unwrap_or_else(|| panic!("{url:?} has no port"));
    let port: u16 = port.trim_end_matches('/').parse().unwrap_or_else(|_| panic!("{url:?}: bad port"));
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .unwrap_or_else(|_| panic!("{url:?}: the host is not an IP address"));
    (scheme.to_string(), ip, port)
}

/// `scheme://host:port`, with brackets for IPv6.
pub fn make_url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// The openssl CLI installed by `cargo xtask test`.
pub fn openssl() -> Command {
    Command::new(support::tool("KUBEFORGE_OPENSSL"))
}

/// The real kubectl installed by `cargo xtask test` (never `/usr/bin/kubectl`, which on some machines is a
/// cloud-SDK dispatcher that goes to the network), with `home` as its HOME (for its cache), no KUBECONFIG from
/// the environment and no proxy.
pub fn kubectl(home: &Path) -> Command {
    let path = support::tool("KUBEFORGE_KUBECTL");
    let real = fs::canonicalize(&path).unwrap_or(path.clone());
    assert!(
        path != Path::new("/usr/bin/kubectl") && real != Path::new("/usr/bin/kubectl"),
        "$KUBEFORGE_KUBECTL is /usr/bin/kubectl: refusing to run it (it may be a network-using dispatcher)"
    );
    let mut c = Command::new(path);
    c.env("HOME", home).env_remove("KUBECONFIG");
    for v in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        c.env_remove(v);
    }
    c.env("NO_PROXY", "*");
    c
}

/// `openssl s_server` on a free loopback port: presents `cert`/`key`, requires a client certificate that
/// verifies against `client_ca` (`-Verify 1 -verify_return_error`), and answers any request with its `-www`
/// status page, which shows the verified client certificate. Returns the server (stopped on drop) and its port.
pub fn s_server(log: &Path, cert: &Path, key: &Path, client_ca: &Path) -> (Proc, u16) {
    let port = support::free_port();
    let mut cmd = openssl();
    cmd.arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-CAfile")
        .arg(client_ca)
        .args(["-Verify", "1", "-verify_return_error", "-www"]);
    let mut p = support::spawn(cmd, log);
    let log_path = log.to_path_buf();
    p.wait_until("openssl s_server to listen", Duration::from_secs(20), || {
        fs::read_to_string(&log_path).is_ok_and(|l| l.contains("ACCEPT"))
    });
    (p, port)
}

/// The subject line that openssl's `-www` page shows for a client certificate, e.g.
/// `Subject: O=system:nodes, CN=system:node:worker-1`.
pub fn www_subject(subject: &str) -> String {
    format!("Subject: {subject}")
}

/// The lines of an etcd member's log that say a TLS handshake failed (a connection it rejected, a certificate it
/// could not verify), the first five: empty while the members trust each other.
pub fn etcd_tls_failures(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("rejected connection") || l.contains("x509")).take(5).collect()
}
