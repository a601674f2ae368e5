//! The certificate profiles, generated at build time from `src/pki/certificates.md` (see `build.rs`).

include!(concat!(env!("OUT_DIR"), "/profiles.rs"));

/// What a certificate may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A CA: keyCertSign, no extended key usage.
    Ca,
    Server,
    Client,
    ServerClient,
}

impl Usage {
    pub fn is_ca(self) -> bool {
        self == Usage::Ca
    }
    pub fn server(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerClient)
    }
    pub fn client(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerClient)
    }
}

/// Which subject alternative names a certificate gets (see `src/pki/plan.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SanRule {
    Ca,
    ApiServer,
    Etcd,
    Kubelet,
    None,
}

/// How many of a profile a cluster has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    ControlPlane,
    Node,
}

/// Where a certificate lands on a node (paths are built by `crate::layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    /// `<path>.crt` and `<path>.key`.
    Files(&'static str),
    /// Embedded in `/etc/kubernetes/<file>`, a kubeconfig that talks to the given apiserver.
    Kubeconfig(&'static str, Server),
}

/// Which apiserver a kubeconfig talks to (kubeadm-facts §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// `controlPlaneEndpoint`, or the first control-plane node when it is empty.
    ClusterEndpoint,
    /// The apiserver on the same node.
    Local,
    /// kubelet.conf: the local apiserver on a control-plane node where the version's facts say so
    /// (ControlPlaneKubeletLocalMode), the cluster endpoint otherwise and on workers.
    Kubelet,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Profile {
    pub id: ProfileId,
    pub name: &'static str,
    pub signer: Option<ProfileId>,
    /// `{node}` stands for the node name.
    pub cn: &'static str,
    pub o: Option<&'static str>,
    pub usage: Usage,
    pub sans: SanRule,
    pub scope: Scope,
    pub install: Install,
    pub stacked_etcd_only: bool,
}

impl ProfileId {
    pub fn profile(self) -> &'static Profile {
        let p = &PROFILES[self as usize];
        debug_assert_eq!(p.id, self);
        p
    }
}

impl Profile {
    pub fn by_name(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|p| p.name == name)
    }

    /// Whether every node gets one (the rest are control-plane only; cluster-scope leaves such as admin go to
    /// control-plane nodes, as kubeadm puts admin.conf there).
    pub fn on_every_node(&self) -> bool {
        self.scope == Scope::Node
    }
}
