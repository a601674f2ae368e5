//! The whole pipeline for one cluster: plan, PKI, render, assemble the output tree.

use std::collections::BTreeMap;
use std::path::Path;

use askama::Template;
use time::OffsetDateTime;

use crate::Error;
use crate::output::{Kind, Tree};
use crate::pki::inspect::CertInfo;
use crate::pki::keys::KeySource;
use crate::pki::profile::{Install, ProfileId, Scope};
use crate::pki::store::Store;
use crate::pki::{self, Pki, Policy, plan};
use crate::render::kubeconfig::{KUBECONFIGS, render as render_kubeconfig, server_url};
use crate::render::manifests;
use crate::render::{ClusterRoleBindings, EncryptionConfig, Inventory, InventoryRow, Provider, finish};
use crate::security::Encryption;
use crate::spec::Cluster;

/// File modes (kubeadm-facts §1.6, §2.3, §3.0).
pub const MODE_CERT: u32 = 0o644;
pub const MODE_SECRET: u32 = 0o600;
pub const MODE_PUBLIC: u32 = 0o644;

/// A 32-byte encryption key, base64: kept from the store, or drawn from the key source the first time its name
/// appears.
fn encryption_key(store: &Store, keys: &KeySource, name: &str) -> Result<String, Error> {
    use base64::Engine;
    let rel = format!("encryption/{name}.key");
    let path = store.show(&rel);
    if store.exists(&rel) {
        let text = store.read_private(&rel)?;
        let secret = text.trim().to_string();
        let ok = base64::engine::general_purpose::STANDARD.decode(&secret).is_ok_and(|b| b.len() == 32);
        if !ok {
            return Err(Error::new(format!(
                "{path}: not a base64 32-byte key; restore it (Secrets encrypted with it are unreadable without it)"
            )));
        }
        return Ok(secret);
    }
    let mut bytes = [0u8; 32];
    rand_core::Rng::fill_bytes(&mut keys.rng(&format!("encryption\0{name}")), &mut bytes);
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The directories each node needs, with owner and mode (CIS 1.1.11/1.1.12 for etcd's data directory, 1.1.19
/// for the PKI directory).
fn directories(cluster: &Cluster) -> Vec<crate::index::DirEntry> {
    let mut out = Vec::new();
    for n in &cluster.nodes {
        let mut add = |dest: &str, owner: (&str, &str), mode: &str| {
            out.push(crate::index::DirEntry {
                node: n.name.clone(),
                dest: dest.into(),
                owner: owner.0.into(),
                group: owner.1.into(),
                mode: mode.into(),
            })
        };
        let root = ("root", "root");
        add("/etc/kubernetes", root, "0755");
        add("/etc/kubernetes/pki", root, "0755");
        add("/var/lib/kubelet", root, "0700");
        add("/var/lib/kubelet/pki", root, "0700");
        // The kubelet's staticPodPath, on every node (kubeadm's layout).
        add("/etc/kubernetes/manifests", root, "0700");
        if n.is_control_plane() {
            let etcd_ca_installed = matches!(&cluster.etcd, crate::spec::Etcd::External(x) if x.client_ca.is_some());
            if cluster.stacked_etcd() || etcd_ca_installed {
                add("/etc/kubernetes/pki/etcd", root, "0755");
            }
            if cluster.stacked_etcd() {
                let (u, g) = &cluster.security.etcd_data_dir_owner;
                add(manifests::ETCD_DATA_DIR, (u.as_str(), g.as_str()), "0700");
            }
            if cluster.security.audit.is_some() {
                add(manifests::AUDIT_LOG_DIR, root, "0700");
            }
        }
    }
    // Sorted like the files, so the index's diff reads well.
    out.sort_by(|a, b| (&a.node, &a.dest).cmp(&(&b.node, &b.dest)));
    out
}

/// The result of a run, before anything is written.
pub struct Generated {
    pub tree: Tree,
    pub pki: Pki,
}

/// Builds the output for `cluster`. `store` is the PKI store (`OUT/pki`) from which existing CAs and the
/// service-account key are reused; nothing is written.
pub fn generate(cluster: &Cluster, store: &Path, keys: &KeySource, now: OffsetDateTime) -> Result<Generated, Error> {
    generate_with(cluster, &Store::plain(store), keys, now, &Policy::default(), None)
}

/// Sealing the secrets of a run (`pki.encryption.age`).
pub struct Sealing {
    pub recipients: Vec<age::x25519::Recipient>,
    /// The previous run's secrets: a secret whose plaintext did not change keeps its ciphertext.
    pub previous: crate::sealed::Unsealed,
    /// Write plain copies of the secrets of this node (`all`: every node and the store) as well.
    pub materialize: Option<String>,
}

/// [`generate`] with a store that may be sealed, a renewal policy (`cargo xtask renew`) and sealing.
pub fn generate_with(
    cluster: &Cluster,
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    policy: &Policy,
    sealing: Option<&Sealing>,
) -> Result<Generated, Error> {
    let requests = plan::requests(cluster);
    let pki = pki::build(cluster, &requests, store, keys, now, policy)?;
    let mut tree = Tree::default();
    tree.dir_modes.insert("pki".into(), 0o700);

    // The store: every certificate and key, the source of truth for later runs.
    for (id, m) in &pki.certs {
        let kind = if m.request.profile.usage.is_ca() { Kind::CaCert } else { Kind::Cert };
        tree.add(format!("pki/{id}.crt"), m.cert_pem.clone(), MODE_CERT, kind);
        if let Some(key) = &m.key_pem {
            tree.add(format!("pki/{id}.key"), key.clone(), MODE_SECRET, Kind::Key);
        }
    }
    // kubeadm writes sa.pub with mode 0600 too (it goes through keyutil.WriteKey).
    tree.add("pki/sa.key", pki.sa.key_pem.clone(), MODE_SECRET, Kind::Key);
    tree.add("pki/sa.pub", pki.sa.pub_pem.clone(), MODE_SECRET, Kind::PublicKey);

    let ca = pki.get(&plan::store_id(ProfileId::Ca.profile(), None));
    // What clients trust: the cluster CA, and the chain above it when the CA is an intermediate.
    let ca_bundle = format!("{}{}", ca.cert_pem, ca.chain_pem.as_deref().unwrap_or(""));
    let ca_pem = &ca_bundle;
    let mut flag_uses: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();

    // Encryption at rest: the keys live in the store like every other secret, one file per key name.
    let encryption_config = match &cluster.security.encryption {
        Encryption::None => None,
        Encryption::Keys { provider, names } => {
            let mut pairs = Vec::new();
            for name in names {
                let secret = encryption_key(store, keys, name)?;
                tree.add(format!("pki/encryption/{name}.key"), format!("{secret}\n"), MODE_SECRET, Kind::Key);
                pairs.push((name.clone(), secret));
            }
            Some(EncryptionConfig { provider: Provider::Keys(provider, pairs) })
        }
        Encryption::Kms(k) => Some(EncryptionConfig { provider: Provider::Kms(k.name.clone(), k.endpoint.clone()) }),
    }
    .map(|c| finish(c.render().expect("encryption config template")));

    // Per-node bundles, laid out like the node's filesystem.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let root = format!("nodes/{}", node.name);
        let cp = node.is_control_plane();
        if cp {
            tree.dir_modes.insert(format!("{root}/etc/kubernetes/manifests"), 0o700);
        }
        for m in pki.certs.values() {
            let p = m.request.profile;
            let Install::Files(dest) = p.install else { continue };
            let mine = match p.scope {
                Scope::Cluster => true,
                Scope::ControlPlane | Scope::Node => m.request.node == Some(i),
            };
            if !mine {
                continue;
            }
            // A worker gets the cluster CA's certificate and its own leaves, nothing else.
            let ca_cert_only = !cp && p.scope == Scope::Cluster;
            if ca_cert_only && p.id != ProfileId::Ca {
                continue;
            }
            let kind = if p.usage.is_ca() { Kind::CaCert } else { Kind::Cert };
            tree.add(format!("{root}{dest}.crt"), m.cert_pem.clone(), MODE_CERT, kind);
            if let (false, Some(key)) = (ca_cert_only, &m.key_pem) {
                tree.add(format!("{root}{dest}.key"), key.clone(), MODE_SECRET, Kind::Key);
            }
        }
        if cp {
            let pki_dir = format!("{root}{}", manifests::PKI_DIR);
            tree.add(format!("{pki_dir}/sa.key"), pki.sa.key_pem.clone(), MODE_SECRET, Kind::Key);
            tree.add(format!("{pki_dir}/sa.pub"), pki.sa.pub_pem.clone(), MODE_SECRET, Kind::PublicKey);
        }
        for k in KUBECONFIGS.iter().filter(|k| cp || k.on_workers) {
            let p = k.profile.profile();
            let id = plan::store_id(p, (p.scope != Scope::Cluster).then_some(node.name.as_str()));
            let server = server_url(cluster, k.server, Some(node));
            let text = render_kubeconfig(cluster, &server, ca_pem, pki.get(&id));
            tree.add(format!("{root}{}/{}", manifests::K8S_DIR, k.file), text, MODE_SECRET, Kind::Kubeconfig);
        }
        let kubelet = crate::render::KubeletConfig {
            node: &node.name,
            cluster_dns: cluster.service_cidrs[0].nth(10).to_string(),
            cluster_domain: &cluster.dns_domain,
            protect_kernel_defaults: cluster.security.protect_kernel_defaults,
            cipher_suites: &cluster.security.cipher_suites,
            tls_min_version: &cluster.security.tls_min_version,
        };
        let text = finish(kubelet.render().expect("kubelet config template"));
        tree.add(format!("{root}/var/lib/kubelet/config.yaml"), text, MODE_SECRET, Kind::KubeletConfig);
        if cp {
            if cluster.security.audit.is_some() {
                let text = finish(crate::render::AuditPolicy.render().expect("audit policy template"));
                tree.add(format!("{root}{}", manifests::AUDIT_POLICY), text, MODE_SECRET, Kind::AuditPolicy);
            }
            if let Some(text) = &encryption_config {
                let path = format!("{root}{}", manifests::ENCRYPTION_CONFIG);
                tree.add(path, text.clone(), MODE_SECRET, Kind::EncryptionConfig);
            }
            if let Some(ca) = &pki.external_etcd_ca {
                tree.add(format!("{root}{}/etcd/ca.crt", manifests::PKI_DIR), ca.clone(), MODE_CERT, Kind::CaCert);
            }
            let mut pods = vec![
                manifests::kube_apiserver(cluster, node),
                manifests::kube_controller_manager(cluster, ca.key_pem.is_some()),
                manifests::kube_scheduler(cluster),
            ];
            if cluster.stacked_etcd() {
                pods.insert(0, manifests::etcd(cluster, node));
            }
            for pod in pods {
                // Which file each flag names, for the index's usedBy.
                for arg in &pod.command[1..] {
                    let Some((flag, value)) = arg.split_once('=') else { continue };
                    for v in value.split(',').filter(|v| v.starts_with('/')) {
                        let use_ = format!("{} {flag}", pod.name);
                        flag_uses.entry((node.name.clone(), v.to_string())).or_default().push(use_);
                    }
                }
                let text = finish(pod.render().expect("static pod template"));
                let path = format!("{root}{}/manifests/{}.yaml", manifests::K8S_DIR, pod.name);
                tree.add(path, text, MODE_SECRET, Kind::Manifest);
            }
        }
    }

    // The operator's kubeconfig.
    let admin = pki.get(&plan::store_id(ProfileId::Admin.profile(), None));
    let server = server_url(cluster, KUBECONFIGS[0].server, None);
    tree.add("admin.conf", render_kubeconfig(cluster, &server, ca_pem, admin), MODE_SECRET, Kind::Kubeconfig);

    tree.add(
        "bootstrap/cluster-role-bindings.yaml",
        finish(ClusterRoleBindings.render().expect("rbac template")),
        MODE_PUBLIC,
        Kind::Rbac,
    );

    let mut rows = Vec::new();
    for (id, m) in &pki.certs {
        let info = CertInfo::from_pem(&m.cert_pem).map_err(|e| Error::new(format!("{id}: {e}")))?;
        let node = m.request.node.map_or("-".to_string(), |i| cluster.nodes[i].name.clone());
        rows.push(InventoryRow { name: m.request.profile.name.to_string(), node, info });
    }
    let inv = Inventory { cluster: &cluster.name, rows };
    tree.add("PKI.md", finish(inv.render().expect("inventory template")), MODE_PUBLIC, Kind::Inventory);

    // Every secret file, for OUT/.gitignore (so `git add OUT` commits only the public half) and, with
    // pki.encryption.age, sealed into OUT/secrets.
    let secret_paths: Vec<String> =
        tree.files.iter().filter(|(_, e)| e.kind.secret()).map(|(p, _)| p.clone()).collect();
    if let Some(s) = sealing {
        for path in &secret_paths {
            let entry = tree.files.get_mut(path).expect("listed above");
            let cipher = match s.previous.get(path) {
                Some((plain, cipher)) if *plain == entry.bytes => cipher.clone(),
                _ => crate::sealed::seal(&s.recipients, &entry.bytes)?,
            };
            let sealed = crate::sealed::sealed_path(path);
            entry.sealed = Some(sealed.clone());
            entry.write = match s.materialize.as_deref() {
                Some("all") => true,
                Some(node) => path.starts_with(&format!("nodes/{node}/")),
                None => false,
            };
            tree.add(sealed, cipher, MODE_PUBLIC, Kind::Sealed);
        }
    }
    let mut ignore = String::from(
        "# Written by kubeforge: every secret file of this tree (private keys, kubeconfigs with client keys, the\n\
         # encryption-at-rest config). `git add` of this directory commits exactly the public half.\n",
    );
    for p in &secret_paths {
        ignore += &format!("/{p}\n");
    }
    tree.add(".gitignore", ignore, MODE_PUBLIC, Kind::Gitignore);

    let index = crate::index::build(cluster, &tree, &pki, &flag_uses, directories(cluster)).map_err(Error::new)?;
    tree.add("index.json", crate::index::to_json(&index), MODE_PUBLIC, Kind::Index);

    Ok(Generated { tree, pki })
}
