//! From a validated cluster to the list of certificates it needs: subject, SANs, signer and validity of each.
//! Pure: no keys, no clock, no disk.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::profile::{PROFILES, Profile, ProfileId, SanRule, Scope};
use crate::net::Host;
use crate::spec::{Cluster, Etcd, Node};

/// One certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    /// Store path below `OUT/pki`, without extension: `ca`, `nodes/cp-1/apiserver`.
    pub id: String,
    pub profile: &'static Profile,
    /// Index into `Cluster::nodes` for per-node certificates.
    pub node: Option<usize>,
    pub cn: String,
    pub o: Option<String>,
    /// Sorted ascending, without duplicates (kubeadm's `RemoveDuplicateAltNames`).
    pub dns: Vec<String>,
    /// Without duplicates, in insertion order (kubeadm's rule).
    pub ips: Vec<IpAddr>,
    /// The `id` of the signing CA; `None` for a self-signed CA.
    pub signer: Option<String>,
    /// Seconds from the issue time to NotAfter.
    pub validity: i64,
}

/// The store id of a profile for a node (`None` for cluster scope).
pub fn store_id(profile: &Profile, node: Option<&str>) -> String {
    match node {
        None => profile.name.to_string(),
        Some(n) => format!("nodes/{n}/{}", profile.name),
    }
}

/// The signer id of kube-apiserver's etcd client certificate when kubeforge issues it from an external etcd's CA
/// (`etcd.external.clientCA`). That CA is only read, never written to the store.
pub const EXTERNAL_ETCD_CA: &str = "external-etcd-ca";

/// Every certificate of the cluster: CAs first, then per profile in table order, nodes in spec order.
pub fn requests(cluster: &Cluster) -> Vec<CertRequest> {
    let mut out = Vec::new();
    let external_client_ca = matches!(&cluster.etcd, Etcd::External(x) if x.client_ca.is_some());
    for p in PROFILES {
        if p.stacked_etcd_only && !cluster.stacked_etcd() {
            if p.id == ProfileId::ApiserverEtcdClient && external_client_ca {
                for i in (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].is_control_plane()) {
                    let mut r = request(cluster, p, Some(i));
                    r.signer = Some(EXTERNAL_ETCD_CA.to_string());
                    out.push(r);
                }
            }
            continue;
        }
        match p.scope {
            Scope::Cluster => out.push(request(cluster, p, None)),
            Scope::ControlPlane | Scope::Node => {
                for (i, n) in cluster.nodes.iter().enumerate() {
                    if p.scope == Scope::Node || n.is_control_plane() {
                        out.push(request(cluster, p, Some(i)));
                    }
                }
            }
        }
    }
    out
}

fn request(c: &Cluster, p: &'static Profile, node: Option<usize>) -> CertRequest {
    let n = node.map(|i| &c.nodes[i]);
    let subst = |s: &str| match n {
        Some(n) => s.replace("{node}", &n.name),
        None => s.to_string(),
    };
    let cn = subst(p.cn);
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    match p.sans {
        SanRule::None => {}
        SanRule::Ca => dns.push(cn.clone()),
        SanRule::ApiServer => apiserver_sans(c, n.expect("per-node"), &mut dns, &mut ips),
        SanRule::Etcd => {
            let n = n.expect("per-node");
            dns.extend([n.name.clone(), "localhost".into()]);
            ips.extend([n.address, IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
            push_sans(&n.sans, &mut dns, &mut ips);
        }
        SanRule::Kubelet => {
            let n = n.expect("per-node");
            dns.push(n.name.clone());
            ips.push(n.address);
            push_sans(&n.sans, &mut dns, &mut ips);
        }
    }
    dns.sort();
    dns.dedup();
    let mut seen = Vec::new();
    ips.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    CertRequest {
        id: store_id(p, n.map(|n| n.name.as_str())),
        profile: p,
        node,
        cn,
        o: p.o.map(subst),
        dns,
        ips,
        signer: p.signer.map(|s| store_id(s.profile(), None)),
        validity: if p.usage.is_ca() { c.ca_validity } else { c.cert_validity },
    }
}

/// kubeadm's `GetAPIServerAltNames` (kubeadm-facts §1.3), plus two things kubeadm cannot know at `init`: the
/// addresses of the other control-plane nodes (so any apiserver answers for any of them behind a load balancer
/// that health-checks by address) and the node's own `sans`.
fn apiserver_sans(c: &Cluster, n: &Node, dns: &mut Vec<String>, ips: &mut Vec<IpAddr>) {
    dns.push(n.name.clone());
    for d in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        dns.push(d.into());
    }
    dns.push(format!("kubernetes.default.svc.{}", c.dns_domain));
    ips.push(c.service_cidrs[0].nth(1));
    ips.push(n.address);
    ips.extend(c.nodes.iter().filter(|o| o.is_control_plane() && o.name != n.name).map(|o| o.address));
    if let Some(e) = &c.endpoint {
        push_sans(std::slice::from_ref(&e.host), dns, ips);
    }
    push_sans(&c.cert_sans, dns, ips);
    push_sans(&n.sans, dns, ips);
}

fn push_sans(sans: &[Host], dns: &mut Vec<String>, ips: &mut Vec<IpAddr>) {
    for s in sans {
        match s {
            Host::Ip(ip) => ips.push(*ip),
            Host::Dns(d) => dns.push(d.clone()),
        }
    }
}
