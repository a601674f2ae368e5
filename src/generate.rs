//! The pipeline for one cluster, as separate steps: the certificates it needs (`pki::plan`), its secrets loaded or
//! issued (`pki::build`), every file rendered with its metadata ([`files`]), then passes over that list
//! ([`inventory`], [`seal`], [`gitignore`], [`index`]). Nothing here writes: `crate::txn` does, in one transaction.

use std::collections::BTreeMap;
use std::path::Path;

use askama::Template;
use time::OffsetDateTime;

use crate::Error;
use crate::layout;
use crate::output::{CertRef, Kind, Tree};
use crate::pki::keys::KeySource;
use crate::pki::profile::{Install, ProfileId, Scope};
use crate::pki::store::Store;
use crate::pki::{self, Material, Pki, Policy, plan};
use crate::render::kubeconfig::{render as render_kubeconfig, server_url};
use crate::render::manifests;
use crate::render::{ClusterRoleBindings, EncryptionConfig, Inventory, InventoryRow, Provider, finish};
use crate::sealed::Sealing;
use crate::security::Encryption;
use crate::spec::Cluster;

/// The result of a run, before anything is written.
pub struct Generated {
    pub tree: Tree,
    pub pki: Pki,
}

/// Builds the output for `cluster` from a plain store at `store` (usually `OUT/pki`), reusing what it holds;
/// nothing is written.
pub fn generate(cluster: &Cluster, store: &Path, keys: &KeySource, now: OffsetDateTime) -> Result<Generated, Error> {
    generate_with(cluster, &Store::plain(store), keys, now, &Policy::default(), None, None)
}

/// [`generate`] with a store that may be sealed or carry an overlay, a renewal policy (`renew`), sealing, and a
/// progress sink for the issuing (`pki::build`).
pub fn generate_with(
    cluster: &Cluster,
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    policy: &Policy,
    sealing: Option<&Sealing>,
    progress: Option<&dyn pki::Progress>,
) -> Result<Generated, Error> {
    let mut g = generate_unindexed(cluster, store, keys, now, policy, sealing, progress, None)?;
    index(&mut g.tree, cluster);
    Ok(g)
}

/// [`generate_with`] but for index.json, which lists every other file: a caller that writes can stage the files
/// and release their bytes before it renders the index ([`index`]), so that it never holds both; with `settle`,
/// each node's files as soon as they are rendered ([`files_with`]; not with `sealing`, which needs every secret's
/// bytes afterwards).
#[allow(clippy::too_many_arguments)]
pub fn generate_unindexed(
    cluster: &Cluster,
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    policy: &Policy,
    sealing: Option<&Sealing>,
    progress: Option<&dyn pki::Progress>,
    settle: Option<&Settle<'_>>,
) -> Result<Generated, Error> {
    let requests = plan::requests(cluster);
    crate::timing::mark("certificate requests");
    let pki = pki::build(cluster, &requests, store, keys, now, policy, progress)?;
    crate::timing::mark("leaves");
    let mut tree = files_with(cluster, &pki, settle.filter(|_| sealing.is_none()))?;
    read_from_store(&mut tree, &pki, store);
    crate::timing::mark("render");
    inventory(&mut tree, cluster, &pki);
    crate::timing::mark("inventory");
    if let Some(s) = sealing {
        seal(&mut tree, s)?;
    }
    gitignore(&mut tree);
    crate::timing::mark("seal and gitignore");
    Ok(Generated { tree, pki })
}

fn cert_ref(m: &Material) -> CertRef {
    CertRef { profile: Some(m.request.profile.name), info: m.info.clone() }
}

/// Every file of the cluster with its metadata: the store, each node's bundle, the operator's files.
pub fn files(cluster: &Cluster, pki: &Pki) -> Result<Tree, Error> {
    files_with(cluster, pki, None)
}

/// What a caller may do with each node's files as soon as they are rendered, on the rendering thread (compare them
/// with OUT, stage and release them: at 10,000 nodes the node bundles are 100 MB, never all held at once).
pub type Settle<'a> = dyn Fn(&mut Tree) -> Result<(), Error> + Sync + 'a;

/// [`files`], with each node's files handed to `settle` as soon as they are rendered; its first error (in node
/// order) is the result.
pub fn files_with(cluster: &Cluster, pki: &Pki, settle: Option<&Settle<'_>>) -> Result<Tree, Error> {
    let mut tree = Tree::default();
    tree.dir_modes.insert(layout::STORE.into(), 0o700);

    // The store: every certificate and key, the source of truth for later runs.
    for (id, m) in &pki.certs {
        let kind = if m.request.profile.usage.is_ca() { Kind::CaCert } else { Kind::Cert };
        tree.add(layout::in_store(&layout::store_crt(id)), m.cert_pem.clone(), kind).cert = Some(cert_ref(m));
        if let Some(key) = &m.key_pem {
            tree.add(layout::in_store(&layout::store_key(id)), key.clone(), Kind::Key);
        }
    }
    tree.add(layout::in_store(layout::STORE_SA_KEY), pki.sa.key_pem.clone(), Kind::Key);
    tree.add(layout::in_store(layout::STORE_SA_PUB), pki.sa.pub_pem.clone(), Kind::PublicKey);
    for k in &pki.encryption {
        tree.add(layout::in_store(&layout::store_encryption_key(&k.name)), format!("{}\n", k.secret), Kind::Key);
    }
    crate::pki::rotation::store_files(&mut tree, pki);

    let ca = pki.get(&plan::store_id(ProfileId::Ca.profile(), None));
    // What clients trust: the cluster CA (both during a rotation), and the chain above it when it is an intermediate.
    let ca_bundle = pki.ca_bundle(&ca.request.id);
    let encryption_config = encryption_config(cluster, pki);

    // Each node's own certificates, and the cluster's, found once rather than by scanning every certificate for
    // every node (at 1,000 nodes that scan alone took longer than rendering).
    let mut own: Vec<Vec<&Material>> = vec![Vec::new(); cluster.nodes.len()];
    let mut shared: Vec<&Material> = Vec::new();
    for m in pki.certs.values() {
        let p = m.request.profile;
        if !matches!(p.install, Install::Files(_)) {
            continue;
        }
        match (p.scope, m.request.node) {
            (Scope::Cluster, _) => shared.push(m),
            (Scope::ControlPlane | Scope::Node, Some(i)) => own[i].push(m),
            (Scope::ControlPlane | Scope::Node, None) => {}
        }
    }

    // Every node's files, rendered on every core (a node's files depend on nothing another node renders), then
    // put together in one tree.
    let shared = &shared;
    let inputs = NodeInputs {
        cluster,
        pki,
        shared,
        ca,
        ca_bundle: &ca_bundle,
        encryption_config: &encryption_config,
        kubelet_bodies: Default::default(),
    };
    let work: Vec<_> = cluster.nodes.iter().zip(&own).collect();
    let per_node: Vec<Tree> = crate::par::map(&work, |(node, own)| {
        let mut t = node_files(&inputs, node, own)?;
        settle.map_or(Ok(()), |f| f(&mut t))?;
        Ok(t)
    })
    .into_iter()
    .collect::<Result<_, Error>>()?;
    for t in per_node {
        tree.dir_modes.extend(t.dir_modes);
        for (path, entry) in t.files {
            if tree.files.contains_key(&path) {
                panic!("{path} is produced twice");
            }
            tree.files.insert(path, entry);
        }
    }

    // The operator's kubeconfig.
    let admin = pki.get(&plan::store_id(ProfileId::Admin.profile(), None));
    let admin_kind = layout::kubeconfigs().find(|k| k.profile.id == ProfileId::Admin).expect("admin is a kubeconfig");
    let server = server_url(cluster, admin_kind.server, None);
    let entry =
        tree.add(layout::OPERATOR_KUBECONFIG, render_kubeconfig(cluster, &server, &ca_bundle, admin), Kind::Kubeconfig);
    entry.cert = Some(cert_ref(admin));
    entry.used_by.push("kubectl (the operator; group kubeadm:cluster-admins)".into());

    let rbac = finish(ClusterRoleBindings.render().expect("rbac template"));
    tree.add(layout::BOOTSTRAP_RBAC, rbac, Kind::Rbac)
        .used_by
        .push("kubectl apply, once, with super-admin.conf".into());
    Ok(tree)
}

/// What every node's files are made from.
struct NodeInputs<'a> {
    cluster: &'a Cluster,
    pki: &'a Pki,
    /// The cluster's certificates installed as files (the CAs and the cluster-wide leaves).
    shared: &'a [&'a Material],
    ca: &'a Material,
    ca_bundle: &'a str,
    encryption_config: &'a Option<String>,
    /// Kubelet configurations rendered so far in this run, by what they depend on besides the cluster.
    kubelet_bodies: KubeletBodies,
}

type KubeletBodies =
    std::sync::Mutex<std::collections::HashMap<crate::render::kubelet::NodeInputs, crate::render::kubelet::Config>>;

/// The files of `node` (its bundle, `nodes/<name>/...`), with the directories whose mode matters.
fn node_files(inputs: &NodeInputs<'_>, node: &crate::spec::Node, own: &[&Material]) -> Result<Tree, Error> {
    let NodeInputs { cluster, pki, shared, ca, ca_bundle, encryption_config, ref kubelet_bodies } = *inputs;
    let mut tree = Tree::default();
    let cp = node.is_control_plane();
    let path = |dest: &str| layout::node_file(&node.name, dest);
    if cp {
        tree.dir_modes.insert(path(layout::MANIFESTS_DIR), 0o700);
    }
    // dest -> uses, collected as the files that name them are built.
    let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();

    for m in shared.iter().chain(own) {
        let p = m.request.profile;
        // A worker gets the cluster CA's certificate and its own leaves, nothing else.
        let ca_cert_only = !cp && p.scope == Scope::Cluster;
        if ca_cert_only && p.id != ProfileId::Ca {
            continue;
        }
        let (crt, key) = layout::cert_files(p.id).expect("installed as files");
        let (kind, pem) = if p.usage.is_ca() {
            (Kind::CaCert, pki.ca_file_pem(&m.request.id))
        } else {
            (Kind::Cert, m.cert_pem.clone())
        };
        tree.add(path(&crt), pem, kind).cert = Some(cert_ref(m));
        if let (false, Some(k)) = (ca_cert_only, &m.key_pem) {
            tree.add(path(&key), k.clone(), Kind::Key);
        }
    }
    if cp {
        tree.add(path(layout::SA_KEY), pki.sa.key_pem.clone(), Kind::Key);
        tree.add(path(layout::SA_PUB), pki.sa_pub_file(), Kind::PublicKey);
        if pki.ca_rotating(&ca.request.id) {
            // ca.crt holds two certificates; the controller-manager signs with one (its pair is ca.key).
            tree.add(path(layout::CA_SIGNING_CRT), ca.cert_pem.clone(), Kind::CaCert).cert = Some(cert_ref(ca));
        }
    }
    for k in layout::kubeconfigs().filter(|k| cp || k.on_workers()) {
        let p = k.profile;
        let id = plan::store_id(p, (p.scope != Scope::Cluster).then_some(node.name.as_str()));
        let client = pki.get(&id);
        let server = server_url(cluster, k.server, Some(node));
        let text = render_kubeconfig(cluster, &server, ca_bundle, client);
        tree.add(path(&k.dest()), text, Kind::Kubeconfig).cert = Some(cert_ref(client));
    }

    // Rendering was checked with the spec (`render::check`); a problem here would be a bug, still reported.
    let spec_problem = |p: crate::spec::Problem| Error::new(format!("{}: {}", p.path, p.message));
    // The kubelet's configuration is rendered once per distinct input (every worker usually shares one), each node
    // adding its header.
    let kubelet = {
        use crate::render::kubelet;
        let key = kubelet::NodeInputs::of(node);
        let cached = kubelet_bodies.lock().expect("no renderer panics holding it").get(&key).cloned();
        let body = match cached {
            Some(body) => body,
            None => {
                let body = kubelet::body(cluster, &key).map_err(spec_problem)?;
                kubelet_bodies.lock().expect("no renderer panics holding it").insert(key, body.clone());
                body
            }
        };
        kubelet::Config { text: kubelet::with_header(node, &body.text), ..body }
    };
    tree.add(path(layout::KUBELET_CONFIG), kubelet.text, Kind::KubeletConfig);
    tree.add(path(layout::KUBELET_FLAGS), crate::render::kubelet::flags_env(cluster, node), Kind::KubeletFlags);
    let kubelet_uses = kubelet.uses;

    if cp {
        if cluster.security.audit.is_some() {
            let text = finish(crate::render::AuditPolicy.render().expect("audit policy template"));
            tree.add(path(layout::AUDIT_POLICY), text, Kind::AuditPolicy);
        }
        if let Some(text) = encryption_config {
            tree.add(path(layout::ENCRYPTION_CONFIG), text.clone(), Kind::EncryptionConfig);
        }
        if let Some((pem, info)) = &pki.external_etcd_ca {
            tree.add(path(layout::EXTERNAL_ETCD_CA), pem.clone(), Kind::CaCert).cert =
                Some(CertRef { profile: None, info: info.clone() });
        }
        for pod in manifests::pods(cluster, node, ca.key_pem.is_some()).map_err(spec_problem)? {
            for (dest, u) in &pod.uses {
                uses.entry(dest.clone()).or_default().push(u.clone());
            }
            tree.add(path(&layout::manifest(pod.name)), pod.text, Kind::Manifest);
        }
    }
    for (dest, u) in kubelet_uses {
        uses.entry(dest).or_default().push(u);
    }
    let prefix = path("/");
    for (rel, entry) in tree.files.range_mut(prefix.clone()..) {
        let Some(rest) = rel.strip_prefix(&prefix) else { break };
        let dest = format!("/{rest}");
        if let Some(u) = uses.get(&dest) {
            entry.used_by.extend(u.iter().cloned());
        }
        entry.used_by.extend(layout::agent_uses(&dest).map(str::to_string));
    }
    Ok(tree)
}

/// Marks the store's files whose bytes this run read from them, unchanged, so that comparing the tree with OUT
/// does not read them a second time: the leaves it keeps (`pki::build` reads each from `<id>.crt` and `<id>.key`
/// and keeps those very bytes). Not the CAs or the service-account key: a few files, whose material may come from
/// elsewhere (`pki.cas`, a rotation).
fn read_from_store(tree: &mut Tree, pki: &Pki, store: &Store) {
    let mut mark = |rel: String| {
        if store.read_from_disk(&rel)
            && let Some(e) = tree.files.get_mut(&layout::in_store(&rel))
        {
            e.read_from = true;
        }
    };
    for (id, m) in &pki.certs {
        if m.origin != pki::Origin::Kept || m.request.profile.usage.is_ca() {
            continue;
        }
        mark(layout::store_crt(id));
        mark(layout::store_key(id));
    }
}

/// The EncryptionConfiguration every control-plane node gets, if Secrets are encrypted at rest.
fn encryption_config(cluster: &Cluster, pki: &Pki) -> Option<String> {
    let config = match &cluster.security.encryption {
        Encryption::None => return None,
        Encryption::Keys { provider, .. } => {
            let pairs = pki.encryption.iter().map(|k| (k.name.clone(), k.secret.clone())).collect();
            EncryptionConfig { provider: Provider::Keys(provider, pairs) }
        }
        Encryption::Kms(k) => EncryptionConfig { provider: Provider::Kms(k.name.clone(), k.endpoint.clone()) },
    };
    Some(finish(config.render().expect("encryption config template")))
}

/// PKI.md: one row per certificate, from the certificates as issued or found (read back, not from the plan).
pub fn inventory(tree: &mut Tree, cluster: &Cluster, pki: &Pki) {
    let mut rows: Vec<InventoryRow> = pki
        .certs
        .values()
        .map(|m| InventoryRow {
            name: m.request.profile.name.to_string(),
            node: m.request.node.map_or("-".to_string(), |i| cluster.nodes[i].name.clone()),
            info: m.info.clone(),
        })
        .collect();
    // During a rotation, the other CA too.
    for (id, r) in &pki.rotations.cas {
        if let Some(o) = &r.other {
            let role = if o.key_pem.is_some() { "incoming" } else { "outgoing" };
            rows.push(InventoryRow { name: format!("{id} ({role})"), node: "-".into(), info: o.info.clone() });
        }
    }
    let inv = Inventory { cluster: &cluster.name, rows };
    tree.add(layout::INVENTORY, finish(inv.render().expect("inventory template")), Kind::Inventory);
}

/// With `pki.encryption.age`: every secret file is kept as `secrets/<path>.age`; its plain copy is written only
/// when materialized.
pub fn seal(tree: &mut Tree, s: &Sealing) -> Result<(), Error> {
    let secret_paths: Vec<String> =
        tree.files.iter().filter(|(_, e)| e.kind.secret()).map(|(p, _)| p.clone()).collect();
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
        tree.add(sealed, cipher, Kind::Sealed);
    }
    Ok(())
}

/// OUT/.gitignore: every secret file, so that `git add OUT` commits exactly the public half.
pub fn gitignore(tree: &mut Tree) {
    let mut ignore = String::from(
        "# Written by kubeforge: every secret file of this tree (private keys, kubeconfigs with client keys, the\n\
         # encryption-at-rest config). `git add` of this directory commits exactly the public half.\n",
    );
    for (p, _) in tree.files.iter().filter(|(_, e)| e.kind.secret()) {
        ignore += &format!("/{p}\n");
    }
    tree.add(layout::GITIGNORE, ignore, Kind::Gitignore);
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
        add(layout::K8S_DIR, root, "0755");
        add(layout::PKI_DIR, root, "0755");
        add(layout::KUBELET_DIR, root, "0700");
        add(layout::KUBELET_PKI_DIR, root, "0700");
        // The kubelet's staticPodPath, on every node (kubeadm's layout).
        add(layout::MANIFESTS_DIR, root, "0700");
        if n.is_control_plane() {
            let etcd_ca_installed = matches!(&cluster.etcd, crate::spec::Etcd::External(x) if x.client_ca.is_some());
            if cluster.stacked_etcd() || etcd_ca_installed {
                add(layout::ETCD_PKI_DIR, root, "0755");
            }
            if cluster.stacked_etcd() {
                let (u, g) = &cluster.security.etcd_data_dir_owner;
                add(layout::ETCD_DATA_DIR, (u.as_str(), g.as_str()), "0700");
            }
            if cluster.security.audit.is_some() {
                add(layout::AUDIT_LOG_DIR, root, "0700");
            }
        }
    }
    // Sorted like the files, so the index's diff reads well.
    out.sort_by(|a, b| (&a.node, &a.dest).cmp(&(&b.node, &b.dest)));
    out
}

/// index.json: the last pass, over everything else.
pub fn index(tree: &mut Tree, cluster: &Cluster) {
    let text = crate::index::render(cluster, tree, &directories(cluster));
    tree.add(layout::INDEX, text, Kind::Index);
    crate::timing::mark("index");
}
