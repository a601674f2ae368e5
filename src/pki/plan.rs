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

impl CertRequest {
    /// The subject as openssl prints it, O before CN as Go writes it: `O = system:nodes, CN = system:node:cp-1`.
    pub fn subject(&self) -> String {
        match &self.o {
            Some(o) => format!("O = {o}, CN = {}", self.cn),
            None => format!("CN = {}", self.cn),
        }
    }

    /// The SANs as `DNS:name` then `IP:address`, in certificate order.
    pub fn sans(&self) -> Vec<String> {
        self.dns.iter().map(|d| format!("DNS:{d}")).chain(self.ips.iter().map(|i| format!("IP:{i}"))).collect()
    }

    /// The extended key usages, as the inspector names them.
    pub fn ext_key_usage(&self) -> Vec<&'static str> {
        let u = self.profile.usage;
        [(u.server(), "serverAuth"), (u.client(), "clientAuth")].iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cluster(extra: &str) -> Cluster {
        let text = crate::DEMO_SPEC.replace("nodes:\n", &format!("{extra}nodes:\n"));
        crate::spec::parse(Path::new("t.yaml"), &text).unwrap()
    }

    #[test]
    fn one_request_per_scope_and_node() {
        let c = cluster("");
        let r = requests(&c);
        let ids: Vec<&str> = r.iter().map(|r| r.id.as_str()).collect();
        // CAs first, then the table's order; control-plane profiles on cp-1 only, node profiles on every node.
        assert_eq!(&ids[..4], ["ca", "front-proxy-ca", "etcd-ca", "nodes/cp-1/apiserver"]);
        assert_eq!(r.len(), 23);
        assert_eq!(ids.iter().filter(|i| i.ends_with("/kubelet-client")).count(), 3);
        assert_eq!(ids.iter().filter(|i| i.ends_with("/apiserver")).count(), 1);
        let etcd = r.iter().find(|r| r.id == "nodes/cp-1/etcd-peer").unwrap();
        assert_eq!(etcd.signer.as_deref(), Some("etcd-ca"));
        assert_eq!(etcd.cn, "cp-1");
        let kubelet = r.iter().find(|r| r.id == "nodes/worker-2/kubelet-client").unwrap();
        assert_eq!(kubelet.subject(), "O = system:nodes, CN = system:node:worker-2");
        assert_eq!(kubelet.ext_key_usage(), ["clientAuth"]);
    }

    #[test]
    fn san_rules_sort_dns_and_keep_ip_order() {
        let text = crate::DEMO_SPEC.replace("certSANs: []", "certSANs: [zz.example.com, 10.9.9.9, 10.0.0.11]");
        let c = crate::spec::parse(Path::new("t.yaml"), &text).unwrap();
        let r = requests(&c);
        let api = r.iter().find(|r| r.id == "nodes/cp-1/apiserver").unwrap();
        assert_eq!(
            api.dns,
            [
                "cp-1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "zz.example.com"
            ]
        );
        // Service VIP, the advertise address, then certSANs in order, duplicates dropped.
        assert_eq!(api.ips.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["10.96.0.1", "10.0.0.11", "10.9.9.9"]);
        let etcd = r.iter().find(|r| r.id == "nodes/cp-1/etcd-server").unwrap();
        assert_eq!(etcd.sans(), ["DNS:cp-1", "DNS:localhost", "IP:10.0.0.11", "IP:127.0.0.1", "IP:::1"]);
        let ca = r.iter().find(|r| r.id == "ca").unwrap();
        assert_eq!((ca.dns.as_slice(), ca.signer.as_deref()), (&["kubernetes".to_string()][..], None));
    }

    #[test]
    fn external_etcd_drops_the_etcd_ca_and_its_leaves() {
        let c = cluster("etcd:\n  external:\n    endpoints: [https://10.0.1.5:2379]\n");
        let ids: Vec<String> = requests(&c).into_iter().map(|r| r.id).collect();
        assert!(!ids.iter().any(|i| i.contains("etcd")), "{ids:?}");
    }
}
