//! Rotating a CA (`ca`, `front-proxy-ca`, `etcd-ca`) or the service-account key (`sa`) in three reviewable
//! stages, one spec edit each: `pki.rotation.<name>: add | switch | remove`.
//!
//! - **add**: a new CA (or key) is made and kept beside the current one (`<name>.next.crt|key`, `sa.next.key|pub`);
//!   every trust point carries both; the current one still signs; no leaf changes.
//! - **switch**: the incoming one becomes `<name>.crt|key` and signs: every leaf under it is reissued, with new keys.
//!   The outgoing CA's certificate (or public key) stays trusted as `<name>.prev.crt` (`sa.prev.pub`); its private
//!   key is deleted, since nothing is signed with it any more.
//! - **remove**: the outgoing certificate (public key) leaves every trust point and is archived as
//!   `archive/<name>-<serial|fingerprint>.crt|pub`. The spec may then drop the entry.
//!
//! The stage a rotation is at is read from the store alone (which of those files exist), never remembered: a spec
//! stage that does not follow from it is refused with the stage that comes next. Where the bytes differ from a
//! cluster without rotation: a node's CA file (`ca.crt`, `front-proxy-ca.crt`, `etcd/ca.crt`) and the kubeconfigs'
//! CA data hold both certificates, the signing one first (so the node's `<ca>.key` always pairs with the file's
//! first certificate); `sa.pub` holds both public keys; and, for `ca` only, the controller-manager's
//! `--cluster-signing-cert-file` names `ca-signing.crt`, which holds the signing certificate alone (the
//! controller-manager refuses a file of several). Outside a rotation nothing differs.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::inspect::CertInfo;
use super::keys::{Key, KeySource};
use super::plan::CertRequest;
use super::store::Store;
use super::{Material, Pki, ServiceAccountKey};
use crate::Error;
use crate::layout;
use crate::output::{CertRef, Kind, Tree};
use crate::pki::profile::ProfileId;
use crate::spec::Cluster;

/// What can be rotated, in the order reports list them.
pub const NAMES: [&str; 4] = ["ca", "front-proxy-ca", "etcd-ca", "sa"];

/// The service-account key's name in `pki.rotation`.
pub const SA: &str = "sa";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Add,
    Switch,
    Remove,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Add, Stage::Switch, Stage::Remove];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Add => "add",
            Stage::Switch => "switch",
            Stage::Remove => "remove",
        }
    }

    fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }
}

/// Where a rotation stands, read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No rotation in progress; `completed`: the archive holds what an earlier one retired.
    Idle { completed: bool },
    /// `add` is done: the incoming CA (key) is beside the current one, which still signs.
    Added,
    /// `switch` is done: the incoming one signs; the outgoing one is only trusted.
    Switched,
}

/// What a run does to a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// No rotation, none in the store.
    Nothing,
    /// A rerun at the stage the store is at.
    Stay,
    /// Idle -> add.
    Start,
    /// Add -> switch.
    Switch,
    /// Switch -> remove (idle, with the outgoing one archived).
    Finish,
}

/// `pki.rotation` validated: every key one of [`NAMES`], every value a stage. Problems go to `fail` with their path.
pub fn validate(
    raw: &BTreeMap<String, String>,
    external_etcd: bool,
    provided: &dyn Fn(&str) -> bool,
    fail: &mut dyn FnMut(String, String),
) -> BTreeMap<String, Stage> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        let at = format!("pki.rotation.{name}");
        if !NAMES.contains(&name.as_str()) {
            fail(at, format!("{name:?} is not one of {}", NAMES.join(", ")));
            continue;
        }
        let Some(stage) = Stage::parse(value) else {
            let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
            fail(at, format!("{value:?} is not one of {}", stages.join(", ")));
            continue;
        };
        if name == "etcd-ca" && external_etcd {
            fail(at, "with etcd.external there is no etcd CA of kubeforge's to rotate (rotate the external etcd's CA where it is run)".into());
            continue;
        }
        if provided(name) {
            fail(
                at,
                format!(
                    "{name} is given in pki.cas: kubeforge rotates only CAs it created; a CA brought in pki.cas is \
                     changed where it comes from"
                ),
            );
            continue;
        }
        out.insert(name.clone(), stage);
    }
    out
}

/// The store file whose presence says a rotation is at `add` (the incoming certificate or public key).
fn incoming(name: &str) -> String {
    layout::store_next(name, if name == SA { "pub" } else { "crt" })
}

/// The store file whose presence says a rotation is at `switch` (the outgoing certificate or public key).
fn outgoing(name: &str) -> String {
    layout::store_prev(name, if name == SA { "pub" } else { "crt" })
}

/// The name an archived file belongs to (`archive/etcd-ca-0a1b.crt` -> `etcd-ca`), for a file kubeforge writes
/// there: a known name, a hex tag, `.crt` for a CA and `.pub` for the service-account key.
fn archive_name(rel: &str) -> Option<&'static str> {
    let (stem, ext) = rel.strip_prefix(&format!("{}/", layout::STORE_ARCHIVE))?.rsplit_once('.')?;
    let (name, tag) = stem.rsplit_once('-')?;
    let name = NAMES.into_iter().find(|n| *n == name)?;
    let ok =
        !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit()) && ext == if name == SA { "pub" } else { "crt" };
    ok.then_some(name)
}

/// Where a rotation of `name` stands in `store` (public files only: a public-only plan reads it too).
pub fn state(name: &str, store: &Store) -> Result<State, Error> {
    let (next, prev) = (incoming(name), outgoing(name));
    match (store.exists(&next), store.exists(&prev)) {
        (true, true) => Err(Error::new(format!(
            "{} and {} both exist: a rotation of {name} is at add (the first) or at switch (the second), never both. \
             Look at how they got there and restore OUT from its last good state.",
            store.show(&next),
            store.show(&prev)
        ))),
        (true, false) => Ok(State::Added),
        (false, true) => Ok(State::Switched),
        (false, false) => {
            let completed = archive_files(store)?.iter().any(|rel| archive_name(rel) == Some(name));
            Ok(State::Idle { completed })
        }
    }
}

/// The files of the store's archive that kubeforge wrote, relative to the store.
fn archive_files(store: &Store) -> Result<Vec<String>, Error> {
    let dir = store.path(layout::STORE_ARCHIVE);
    let mut out = Vec::new();
    for ext in ["crt", "pub"] {
        for p in crate::input::files_with_extension(&dir, ext)? {
            let rel = p.strip_prefix(&store.dir).expect("below the store").to_string_lossy().into_owned();
            if archive_name(&rel).is_some() {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What each stage does, for messages.
fn does(name: &str, stage: Stage) -> &'static str {
    match (name == SA, stage) {
        (false, Stage::Add) => {
            "add creates the incoming CA beside the current one and makes every trust point carry both; nothing is \
             reissued"
        }
        (false, Stage::Switch) => {
            "switch reissues every certificate under it from the incoming CA (new keys) and moves signing there; \
             both CAs stay trusted"
        }
        (false, Stage::Remove) => "remove takes the outgoing CA out of every trust point and archives its certificate",
        (true, Stage::Add) => "add makes a new key and puts its public key beside the current one in sa.pub",
        (true, Stage::Switch) => "switch makes the new key sign; sa.pub keeps both public keys",
        (true, Stage::Remove) => "remove drops the old public key from sa.pub and archives it",
    }
}

/// The move from the store's state to the spec's stage, or why that is out of order.
fn transition(name: &str, stage: Option<Stage>, state: State, store: &Store) -> Result<Move, Error> {
    let at = format!("pki.rotation.{name}");
    let next = |st: Stage| format!("The next stage is {}: {}.", st.name(), does(name, st));
    let what = if name == SA { "key" } else { "CA" };
    let m = match (stage, state) {
        (None, State::Idle { .. }) => Move::Nothing,
        (None, State::Added) => {
            return Err(Error::new(format!(
                "{} holds the incoming {name} of a rotation at stage add, but the spec has no {at}. kubeforge never \
                 drops or replaces a {what} silently: keep `{at}: add`, or move on. {}",
                store.show(&incoming(name)),
                next(Stage::Switch)
            )));
        }
        (None, State::Switched) => {
            return Err(Error::new(format!(
                "{} holds the outgoing {name} of a rotation at stage switch, but the spec has no {at}: keep \
                 `{at}: switch` until every node runs the switch files, then finish. {}",
                store.show(&outgoing(name)),
                next(Stage::Remove)
            )));
        }
        (Some(Stage::Add), State::Idle { .. }) => Move::Start,
        (Some(Stage::Switch), State::Added) => Move::Switch,
        (Some(Stage::Remove), State::Switched) => Move::Finish,
        (Some(Stage::Add), State::Added)
        | (Some(Stage::Switch), State::Switched)
        | (Some(Stage::Remove), State::Idle { completed: true }) => Move::Stay,
        (Some(Stage::Add), State::Switched) => {
            return Err(Error::new(format!(
                "{at}: add is out of order: the rotation of {name} is already at switch (the incoming {what} signs \
                 and the outgoing one's private key is gone), so there is no way back to add. {}",
                next(Stage::Remove)
            )));
        }
        (Some(Stage::Switch), State::Idle { completed }) => {
            let why = if completed {
                format!("the last rotation of {name} is complete (its outgoing {what} is archived)")
            } else {
                format!("there is no incoming {name} to switch to")
            };
            return Err(Error::new(format!(
                "{at}: switch is out of order: {why}. {} Roll it out to every node before switching.",
                next(Stage::Add)
            )));
        }
        (Some(Stage::Remove), State::Idle { completed: false }) => {
            return Err(Error::new(format!(
                "{at}: remove is out of order: no rotation of {name} is in progress or was completed. {}",
                next(Stage::Add)
            )));
        }
        (Some(Stage::Remove), State::Added) => {
            let why = if name == SA {
                "the new key has not signed anything yet and the old one still signs every token".to_string()
            } else {
                format!(
                    "every certificate under {name} is still signed by the outgoing CA; removing it would break them all"
                )
            };
            return Err(Error::new(format!(
                "{at}: remove right after add is out of order: {why}. {}",
                next(Stage::Switch)
            )));
        }
    };
    Ok(m)
}

/// The other CA that every trust point of a rotating CA carries.
pub struct OtherCa {
    pub cert_pem: String,
    pub info: Arc<CertInfo>,
    /// The incoming CA's key, during add; `None` for the outgoing CA (its key is deleted at switch).
    pub key_pem: Option<String>,
}

/// A CA's rotation as this run leaves it.
pub struct CaRotation {
    pub stage: Stage,
    /// Whether this run moves the store into `stage` (false: a rerun at that stage).
    pub entering: bool,
    /// add: the incoming CA; switch: the outgoing CA; remove: none.
    pub other: Option<OtherCa>,
}

/// The service-account key's rotation as this run leaves it.
pub struct SaRotation {
    pub stage: Stage,
    pub entering: bool,
    /// add: the new key (`sa.next.key`), which does not sign yet.
    pub next_key: Option<String>,
    /// add: the new public key; switch: the old one; remove: none.
    pub other_pub: Option<String>,
}

/// A file of the store's archive.
pub struct Archived {
    pub text: String,
    /// For an archived CA certificate: what it is, and the profile it was.
    pub cert: Option<CertRef>,
}

/// Every rotation of the run, and the archive.
#[derive(Default)]
pub struct Rotations {
    pub cas: BTreeMap<String, CaRotation>,
    pub sa: Option<SaRotation>,
    /// By path relative to the store (`archive/ca-0a1b.crt`): what earlier removes archived, and this run's.
    pub archive: BTreeMap<String, Archived>,
}

impl Rotations {
    /// The archive as the store holds it.
    pub(super) fn load(store: &Store) -> Result<Rotations, Error> {
        let mut archive = BTreeMap::new();
        for rel in archive_files(store)? {
            let text = store.read(&rel)?;
            let name = archive_name(&rel).expect("listed");
            let cert = if name == SA {
                None
            } else {
                let info = CertInfo::from_pem(&text).map_err(|e| Error::new(format!("{}: {e}", store.show(&rel))))?;
                Some(CertRef { profile: Some(name_profile(name)), info: Arc::new(info) })
            };
            archive.insert(rel, Archived { text, cert });
        }
        Ok(Rotations { archive, ..Rotations::default() })
    }

    /// Each rotation named in the spec or in progress: (name, stage, entering), in [`NAMES`] order.
    pub fn lines(&self) -> Vec<(&'static str, Stage, bool)> {
        NAMES
            .iter()
            .filter_map(|n| {
                if *n == SA {
                    self.sa.as_ref().map(|r| (*n, r.stage, r.entering))
                } else {
                    self.cas.get(*n).map(|r| (*n, r.stage, r.entering))
                }
            })
            .collect()
    }
}

fn name_profile(name: &str) -> &'static str {
    crate::pki::profile::Profile::by_name(name).map_or("ca", |p| p.name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One CA's side of the rotation, given the CA the store holds as `<id>.crt|key` (`current`, loaded and checked):
/// the CA that signs this run's leaves (the incoming one from switch on), and the rotation as this run leaves it.
#[allow(clippy::type_complexity)]
pub(super) fn ca(
    cluster: &Cluster,
    req: &CertRequest,
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    current: (Material, Key, Vec<u8>),
    rotations: &mut Rotations,
) -> Result<(Material, Key, Vec<u8>), Error> {
    let name = req.profile.name;
    let stage = cluster.rotation.get(name).copied();
    let mv = transition(name, stage, state(name, store)?, store)?;
    let Some(stage) = stage else { return Ok(current) };
    let next_req = CertRequest { id: format!("{}.next", req.id), ..req.clone() };
    let load_next = || -> Result<(Material, Key, Vec<u8>), Error> {
        super::load_ca(&next_req, store, now)?
            .ok_or_else(|| Error::new(format!("{}: missing", store.show(&incoming(name)))))
    };
    let other = |m: &Material, key: bool| OtherCa {
        cert_pem: m.cert_pem.clone(),
        info: m.info.clone(),
        key_pem: if key { m.key_pem.clone() } else { None },
    };
    let (signing, other, entering) = match (mv, stage) {
        (Move::Start, _) => {
            // Key and serial drawn for this rotation alone: even a seeded source gives each rotation a CA of its own
            // (two CAs of one subject must never share a serial).
            let salted = format!("{}.next@{}", req.id, now.unix_timestamp());
            let key = keys.generate(cluster.key_algorithm, &salted);
            let mut m = super::sign(&CertRequest { id: salted, ..req.clone() }, &key, None, keys, now)?;
            m.request = next_req.clone();
            (current, Some(other(&m, true)), true)
        }
        (Move::Stay, Stage::Add) => {
            let (next, _, _) = load_next()?;
            (current, Some(other(&next, true)), false)
        }
        (Move::Switch, _) => {
            let (mut next, key, key_id) = load_next()?;
            next.request = req.clone();
            let outgoing = other(&current.0, false);
            ((next, key, key_id), Some(outgoing), true)
        }
        (Move::Stay, Stage::Switch) | (Move::Finish, _) => {
            let rel = outgoing(name);
            let pem = store.read(&rel)?;
            let info = CertInfo::from_pem(&pem).map_err(|e| Error::new(format!("{}: {e}", store.show(&rel))))?;
            if !info.is_ca || info.subject != format!("CN = {}", req.cn) {
                return Err(Error::new(format!(
                    "{}: not the outgoing {name} (a CA with subject \"CN = {}\"); restore it from OUT's last good state",
                    store.show(&rel),
                    req.cn
                )));
            }
            if mv == Move::Finish {
                let serial = info.serial.replace(':', "");
                rotations.archive.insert(
                    layout::store_archived(name, &serial, "crt"),
                    Archived {
                        text: pem,
                        cert: Some(CertRef { profile: Some(req.profile.name), info: Arc::new(info) }),
                    },
                );
                (current, None, true)
            } else {
                (current, Some(OtherCa { cert_pem: pem, info: Arc::new(info), key_pem: None }), false)
            }
        }
        (Move::Stay, Stage::Remove) => (current, None, false),
        (Move::Nothing, _) => unreachable!("a stage is set"),
    };
    rotations.cas.insert(req.id.clone(), CaRotation { stage, entering, other });
    Ok(signing)
}

/// The service-account key's side of the rotation, given the key the store holds as `sa.key` (`current`).
pub(super) fn sa(
    cluster: &Cluster,
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    current: ServiceAccountKey,
    rotations: &mut Rotations,
) -> Result<ServiceAccountKey, Error> {
    let stage = cluster.rotation.get(SA).copied();
    let mv = transition(SA, stage, state(SA, store)?, store)?;
    let Some(stage) = stage else { return Ok(current) };
    if current.origin != super::Origin::Kept {
        return Err(Error::new(format!(
            "pki.rotation.sa: there is no service-account key to rotate yet ({} does not exist); leave the entry out \
             until the cluster has one",
            store.show(layout::STORE_SA_KEY)
        )));
    }
    let load_next = || -> Result<(String, String), Error> {
        let (key_rel, pub_rel) = (layout::store_next(SA, "key"), incoming(SA));
        let key_pem = store.read_private(&key_rel)?;
        let key = Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{}: {e}", store.show(&key_rel))))?;
        if store.read(&pub_rel)? != key.public_key_pem() {
            return Err(Error::new(format!(
                "{} does not hold the public key of {}; restore both from OUT's last good state",
                store.show(&pub_rel),
                store.show(&key_rel)
            )));
        }
        Ok((key_pem, key.public_key_pem()))
    };
    let read_prev = || -> Result<String, Error> {
        let rel = outgoing(SA);
        let pem = store.read(&rel)?;
        if !pem.starts_with("-----BEGIN PUBLIC KEY-----") || crate::input::looks_secret(&pem) {
            return Err(Error::new(format!(
                "{}: not a PEM public key; restore it from OUT's last good state",
                store.show(&rel)
            )));
        }
        Ok(pem)
    };
    let (signing, rotation) = match (mv, stage) {
        (Move::Start, _) => {
            let key = keys.generate(cluster.key_algorithm, &format!("sa.next@{}", now.unix_timestamp()));
            let pub_pem = key.public_key_pem();
            (current, SaRotation { stage, entering: true, next_key: Some(key.to_pem()), other_pub: Some(pub_pem) })
        }
        (Move::Stay, Stage::Add) => {
            let (key_pem, pub_pem) = load_next()?;
            (current, SaRotation { stage, entering: false, next_key: Some(key_pem), other_pub: Some(pub_pem) })
        }
        (Move::Switch, _) => {
            let (key_pem, pub_pem) = load_next()?;
            let old = current.pub_pem.clone();
            let new = ServiceAccountKey { key_pem, pub_pem, origin: super::Origin::Kept };
            (new, SaRotation { stage, entering: true, next_key: None, other_pub: Some(old) })
        }
        (Move::Stay, Stage::Switch) => {
            (current, SaRotation { stage, entering: false, next_key: None, other_pub: Some(read_prev()?) })
        }
        (Move::Finish, _) => {
            let pem = read_prev()?;
            let tag = hex(&Sha256::digest(pem.as_bytes())[..8]);
            rotations.archive.insert(layout::store_archived(SA, &tag, "pub"), Archived { text: pem, cert: None });
            (current, SaRotation { stage, entering: true, next_key: None, other_pub: None })
        }
        (Move::Stay, Stage::Remove) => {
            (current, SaRotation { stage, entering: false, next_key: None, other_pub: None })
        }
        (Move::Nothing, _) => unreachable!("a stage is set"),
    };
    rotations.sa = Some(rotation);
    Ok(signing)
}

/// A rotation as a plan from public files sees it: the spec's stage (or the store's, when the spec has none and
/// that is an error) and whether the run would enter it; `None` when `name` is not being rotated.
pub fn public_line(cluster: &Cluster, name: &str, store: &Store) -> Result<Option<(Stage, bool)>, Error> {
    let stage = cluster.rotation.get(name).copied();
    let mv = transition(name, stage, state(name, store)?, store)?;
    Ok(stage.map(|st| (st, mv != Move::Stay)))
}

/// The reason a leaf gets when switch reissues it.
pub fn switch_reason(ca: &str) -> String {
    format!("CA rotation of {ca} (switch): signed by the outgoing CA, reissued by the incoming one")
}

/// The first run of a cluster has nothing to rotate.
pub(super) fn nothing_to_rotate(cluster: &Cluster, name: &str) -> Result<(), Error> {
    match cluster.rotation.get(name) {
        None => Ok(()),
        Some(_) => Err(Error::new(format!(
            "pki.rotation.{name}: there is no {name} to rotate yet (the store has none); leave the entry out until \
             the cluster has one"
        ))),
    }
}

impl Pki {
    /// A node's file of CA `id` (`/etc/kubernetes/pki/ca.crt`): its certificate, and during a rotation the other
    /// CA's after it.
    pub fn ca_file_pem(&self, id: &str) -> String {
        let m = self.get(id);
        match self.rotations.cas.get(id).and_then(|r| r.other.as_ref()) {
            Some(o) => format!("{}{}", m.cert_pem, o.cert_pem),
            None => m.cert_pem.clone(),
        }
    }

    /// What clients of CA `id` trust (the kubeconfigs' certificate-authority-data): [`Pki::ca_file_pem`] and the
    /// chain above the CA, if it is an intermediate.
    pub fn ca_bundle(&self, id: &str) -> String {
        format!("{}{}", self.ca_file_pem(id), self.get(id).chain_pem.as_deref().unwrap_or(""))
    }

    /// Whether CA `id` is at add or switch, when its files hold two certificates.
    pub fn ca_rotating(&self, id: &str) -> bool {
        self.rotations.cas.get(id).is_some_and(|r| r.other.is_some())
    }

    /// A control-plane node's `sa.pub`: the signing key's public key, and during a rotation the other one's after it.
    pub fn sa_pub_file(&self) -> String {
        match self.rotations.sa.as_ref().and_then(|r| r.other_pub.as_ref()) {
            Some(o) => format!("{}{o}", self.sa.pub_pem),
            None => self.sa.pub_pem.clone(),
        }
    }
}

/// The controller-manager's `--cluster-signing-cert-file`: `ca.crt`, or `ca-signing.crt` while the cluster CA is at
/// add or switch (then `ca.crt` holds two certificates). Decided from the spec: a run that succeeds leaves the store
/// at the spec's stage.
pub fn signing_cert_file(c: &Cluster) -> String {
    match c.rotation.get(ProfileId::Ca.profile().name) {
        Some(Stage::Add | Stage::Switch) => layout::CA_SIGNING_CRT.to_string(),
        _ => layout::crt(ProfileId::Ca),
    }
}

/// The store's files of every rotation and the archive, added to `tree`.
pub fn store_files(tree: &mut Tree, pki: &Pki) {
    let store = |rel: &str| layout::in_store(rel);
    for (id, r) in &pki.rotations.cas {
        let Some(o) = &r.other else { continue };
        let cert = CertRef { profile: Some(pki.get(id).request.profile.name), info: o.info.clone() };
        match &o.key_pem {
            Some(key) => {
                tree.add(store(&layout::store_next(id, "crt")), o.cert_pem.clone(), Kind::CaCert).cert = Some(cert);
                tree.add(store(&layout::store_next(id, "key")), key.clone(), Kind::Key);
            }
            None => tree.add(store(&layout::store_prev(id, "crt")), o.cert_pem.clone(), Kind::CaCert).cert = Some(cert),
        }
    }
    if let Some(r) = &pki.rotations.sa {
        match (&r.next_key, &r.other_pub) {
            (Some(key), Some(pub_pem)) => {
                tree.add(store(&layout::store_next(SA, "key")), key.clone(), Kind::Key);
                tree.add(store(&layout::store_next(SA, "pub")), pub_pem.clone(), Kind::PublicKey);
            }
            (None, Some(pub_pem)) => {
                tree.add(store(&layout::store_prev(SA, "pub")), pub_pem.clone(), Kind::PublicKey);
            }
            _ => {}
        }
    }
    for (rel, a) in &pki.rotations.archive {
        let kind = if a.cert.is_some() { Kind::CaCert } else { Kind::PublicKey };
        tree.add(store(rel), a.text.clone(), kind).cert = a.cert.clone();
    }
}

/// Whether a store path (relative to the store, without `.crt`) is a rotation's or the archive's, not a leaf's.
pub fn is_rotation_id(id: &str) -> bool {
    id.contains('.') || id.starts_with(&format!("{}/", layout::STORE_ARCHIVE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_spec_stage_against_every_store_state() {
        let store = Store::plain(Path::new("/nonexistent/kubeforge-rotation"));
        let idle = State::Idle { completed: false };
        let done = State::Idle { completed: true };
        let t = |stage, state| transition("ca", stage, state, &store).map_err(|e| e.to_string());
        assert_eq!(t(None, idle), Ok(Move::Nothing));
        assert_eq!(t(None, done), Ok(Move::Nothing));
        assert_eq!(t(Some(Stage::Add), idle), Ok(Move::Start));
        assert_eq!(t(Some(Stage::Add), done), Ok(Move::Start));
        assert_eq!(t(Some(Stage::Add), State::Added), Ok(Move::Stay));
        assert_eq!(t(Some(Stage::Switch), State::Added), Ok(Move::Switch));
        assert_eq!(t(Some(Stage::Switch), State::Switched), Ok(Move::Stay));
        assert_eq!(t(Some(Stage::Remove), State::Switched), Ok(Move::Finish));
        assert_eq!(t(Some(Stage::Remove), done), Ok(Move::Stay));
        let next = |stage, state, want: &str| {
            let e = t(stage, state).unwrap_err();
            assert!(e.contains(&format!("The next stage is {want}:")), "{stage:?} at {state:?}: {e}");
        };
        next(None, State::Added, "switch");
        next(None, State::Switched, "remove");
        next(Some(Stage::Add), State::Switched, "remove");
        next(Some(Stage::Switch), idle, "add");
        next(Some(Stage::Switch), done, "add");
        next(Some(Stage::Remove), idle, "add");
        next(Some(Stage::Remove), State::Added, "switch");
    }

    #[test]
    fn archive_names_are_only_what_remove_writes() {
        assert_eq!(archive_name("archive/ca-0a1b.crt"), Some("ca"));
        assert_eq!(archive_name("archive/front-proxy-ca-ff.crt"), Some("front-proxy-ca"));
        assert_eq!(archive_name("archive/etcd-ca-01.crt"), Some("etcd-ca"));
        assert_eq!(archive_name("archive/sa-00ff.pub"), Some("sa"));
        for other in
            ["archive/sa-00ff.crt", "archive/ca-xyz.crt", "archive/kubelet-01.crt", "ca-01.crt", "archive/ca.crt"]
        {
            assert_eq!(archive_name(other), None, "{other}");
        }
        assert!(
            is_rotation_id("ca.next") && is_rotation_id("archive/ca-01") && !is_rotation_id("nodes/cp-1/apiserver")
        );
    }
}
