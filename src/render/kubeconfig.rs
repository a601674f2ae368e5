//! Client-certificate kubeconfigs (kubeadm-facts §2): everything embedded, context `<user>@<cluster>`.

use askama::Template;

use super::filters;
use base64::Engine;

use crate::net::{Host, https_url};
use crate::pki::Material;
use crate::pki::profile::Server;
use crate::spec::{Cluster, Node};

#[derive(Template)]
#[template(path = "kubeconfig.yml", escape = "none")]
pub struct Kubeconfig<'a> {
    pub cluster: &'a str,
    pub server: &'a str,
    pub user: &'a str,
    pub context: &'a str,
    pub ca_data: String,
    pub cert_data: String,
    pub key_data: String,
}

/// The URL a kubeconfig with `server` uses on `node` (`None`: the operator's machine).
pub fn server_url(c: &Cluster, server: Server, node: Option<&Node>) -> String {
    let local = |n: &Node| https_url(&Host::Ip(n.address), c.bind_port);
    let endpoint = || match &c.endpoint {
        Some(e) => https_url(&e.host, e.port),
        None => local(c.nodes.iter().find(|n| n.is_control_plane()).expect("validated: one control plane")),
    };
    match (server, node) {
        (Server::Local, Some(n)) => local(n),
        (Server::Kubelet, Some(n)) if n.is_control_plane() && c.facts().kubelet_local_apiserver => local(n),
        _ => endpoint(),
    }
}

pub fn render(c: &Cluster, server: &str, ca_pem: &str, client: &Material) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = client.request.cn.as_str();
    let context = format!("{user}@{}", c.name);
    let k = Kubeconfig {
        cluster: &c.name,
        server,
        user,
        context: &context,
        ca_data: b64(ca_pem),
        cert_data: b64(&client.cert_pem),
        key_data: b64(client.key_pem.as_deref().expect("a client certificate has its key")),
    };
    super::finish(k.render().expect("kubeconfig template"))
}
