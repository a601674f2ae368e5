//! The cluster's PKI: load what the store already holds (CAs, the service-account key), issue the rest.

pub mod external;
pub mod inspect;
pub mod keys;
pub mod plan;
pub mod profile;
pub mod rotation;
pub mod store;
pub mod verified;

use std::collections::BTreeMap;
use std::sync::Arc;

use rcgen::string::PrintableString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::Error;
use crate::spec::{Cluster, Etcd, ExternalEtcd, KeyAlgorithm};
use keys::{Key, KeySource};
use plan::CertRequest;
use store::Store;

/// kubeadm backdates NotBefore by five minutes to tolerate clock skew between nodes (`CertificateBackdate`).
pub const BACKDATE: Duration = Duration::minutes(5);

/// Whether a piece of material was made in this run or found in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// New: nothing was in the store.
    Issued,
    /// Replaced what the store held; `Material::reasons` says why.
    Reissued,
    /// Taken from the store unchanged.
    Kept,
}

/// What the caller asks of the leaves beyond what the spec implies.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Reissue these leaves even if they still match: store ids, profile names, or `all`.
    pub renew: Vec<String>,
    /// With `renew`: keep each renewed leaf's key instead of generating a new one.
    pub keep_keys: bool,
}

impl Policy {
    fn forces(&self, req: &CertRequest) -> bool {
        self.renew.iter().any(|r| r == "all" || *r == req.id || r == req.profile.name)
    }
}

/// A certificate with its key.
pub struct Material {
    pub request: CertRequest,
    pub cert_pem: String,
    /// The certificate read back, once: what the inventory, the index and later checks say of it.
    pub info: Arc<inspect::CertInfo>,
    /// `None` only for a CA given without its key (`pki.cas.<name>.cert` alone: external CA mode).
    pub key_pem: Option<String>,
    /// For a CA given with `pki.cas.<name>.chain`: its parents, appended to the CA data of kubeconfigs.
    pub chain_pem: Option<String>,
    pub origin: Origin,
    /// Why a certificate was reissued (empty otherwise), e.g. `SAN added: IP:10.0.0.5`.
    pub reasons: Vec<String>,
}

/// The service-account signing key pair (kubeadm-facts §1.7).
pub struct ServiceAccountKey {
    pub key_pem: String,
    pub pub_pem: String,
    pub origin: Origin,
}

/// An encryption-at-rest key (`security.encryptionAtRest`): a 32-byte secret, base64.
pub struct EncryptionKey {
    pub name: String,
    pub secret: String,
    pub origin: Origin,
}

/// Everything the PKI stage produced, by store id: every secret of the cluster and the certificates.
pub struct Pki {
    pub certs: BTreeMap<String, Material>,
    pub sa: ServiceAccountKey,
    /// The external etcd's CA certificate (`etcd.external.clientCA`), installed on control-plane nodes.
    pub external_etcd_ca: Option<(String, Arc<inspect::CertInfo>)>,
    /// Encryption-at-rest keys, in the spec's order.
    pub encryption: Vec<EncryptionKey>,
    /// CA and service-account key rotations (`pki.rotation`) as this run leaves them, and the store's archive
    /// (boxed: most runs rotate nothing, and `Pki` travels by value).
    pub rotations: Box<rotation::Rotations>,
    /// What this run proved of each leaf it keeps or issued, for the verification record of the next run (see
    /// [`verified`]).
    pub proofs: Vec<verified::Proven>,
}

impl Pki {
    pub fn get(&self, id: &str) -> &Material {
        self.certs.get(id).unwrap_or_else(|| panic!("no certificate {id} in the plan"))
    }

    /// The verification record's lines for this run's leaves, the ones issued in this run made now from their
    /// material (on every core).
    pub fn record_lines(&self) -> Vec<verified::Proven> {
        let make = |p: &verified::Proven| match &p.line {
            verified::Line::Issued { ca, key } => {
                let m = self.get(&p.id);
                let key_pem = m.key_pem.as_deref().expect("an issued leaf has its key");
                let proof = verified::Proof::of(&m.info, &m.cert_pem, key_pem, *ca);
                verified::Proven { id: p.id.clone(), line: verified::Line::New(verified::line(&p.id, &proof, key)) }
            }
            _ => p.clone(),
        };
        crate::par::map(&self.proofs, make)
    }
}

/// Where [`build`] says how far it is, for a progress bar: the library itself never prints. Only certificates that
/// need a key or a signature are counted (a kept one takes no time); `start` is called once, before the first.
pub trait Progress: Send + Sync {
    /// `total` certificates (CAs and leaves) are about to be issued.
    fn start(&self, total: usize);
    /// One more is issued.
    fn advance(&self);
}

/// Loads the CAs, the service-account key and the encryption-at-rest keys from `store` (usually `OUT/pki`) where
/// they exist, creates them where they do not, and issues every leaf of `requests`, telling `progress` how many
/// certificates are issued.
///
/// A CA in the store is never replaced: if its certificate or key is missing, unreadable, does not match, names
/// another subject, or has expired, this fails and says what to do. A CA is never created while leaves it signed
/// are still in the store (it was deleted), nor by a renewal.
pub fn build(
    cluster: &Cluster,
    requests: &[CertRequest],
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    policy: &Policy,
    progress: Option<&dyn Progress>,
) -> Result<Pki, Error> {
    let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
    let mut certs = BTreeMap::new();
    let mut issuers: BTreeMap<String, Issuer<'static, Key>> = BTreeMap::new();
    let mut ca_infos: BTreeMap<String, Arc<inspect::CertInfo>> = BTreeMap::new();
    // CAs to create: after every leaf is decided, so that the progress total is known before the first key.
    let mut new_cas = Vec::new();
    let mut rotations = rotation::Rotations::load(store)?;
    // Per signer: SHA-256 of its certificate as given or stored, and, where its key is known, the key that
    // authenticates the proofs of the leaves it signed.
    let mut signers: BTreeMap<String, Signer> = BTreeMap::new();
    let mut made = new_keys(cluster, requests, store, keys);

    for req in requests.iter().filter(|r| r.profile.usage.is_ca()) {
        if let Some(given) = cluster.provided_cas.get(req.profile.name) {
            let (material, key) = provided_ca(req, given, store, now)?;
            signers.insert(req.id.clone(), Signer::new(&material.cert_pem, material.key_pem.as_deref()));
            if let Some(key) = key {
                let key_id = material.info.ski.clone().unwrap_or_else(|| key.key_id());
                issuers.insert(req.id.clone(), issuer(&material.info, key, key_id));
            }
            ca_infos.insert(req.id.clone(), material.info.clone());
            certs.insert(req.id.clone(), material);
            continue;
        }
        match load_ca(req, store, now)? {
            Some(found) => {
                // The CA that signs this run's leaves: the one the store holds, or the incoming one from switch on.
                let (material, key, key_id) = rotation::ca(cluster, req, store, keys, now, found, &mut rotations)?;
                signers.insert(req.id.clone(), Signer::new(&material.cert_pem, material.key_pem.as_deref()));
                issuers.insert(req.id.clone(), issuer(&material.info, key, key_id));
                ca_infos.insert(req.id.clone(), material.info.clone());
                certs.insert(req.id.clone(), material);
            }
            None => {
                rotation::nothing_to_rotate(cluster, req.profile.name)?;
                refuse_new_ca(req, requests, store, policy)?;
                new_cas.push(req);
            }
        }
    }

    crate::timing::mark("CAs");
    let sa = service_account(cluster.key_algorithm, store, keys, made.remove(SA_KEY_ID))?;
    let sa = rotation::sa(cluster, store, keys, now, sa, &mut rotations)?;
    // The CAs a switch moves away from: their leaves are reissued, not taken for forgeries.
    let outgoing: BTreeMap<String, Arc<inspect::CertInfo>> = rotations
        .cas
        .iter()
        .filter(|(_, r)| r.stage == rotation::Stage::Switch && r.entering)
        .filter_map(|(id, r)| Some((id.clone(), r.other.as_ref()?.info.clone())))
        .collect();
    let encryption = encryption_keys(cluster, store, keys)?;

    let mut external_etcd_ca = None;
    if let Etcd::External(ExternalEtcd { client_ca: Some((cert_pem, key_pem)), .. }) = &cluster.etcd {
        let bad = |why: String| Error::new(format!("etcd.external.clientCA: {why}"));
        let key = Key::from_pem(key_pem).map_err(|e| bad(format!("the key: {e}")))?;
        let info = inspect::CertInfo::from_pem(cert_pem).map_err(|e| bad(format!("the certificate: {e}")))?;
        if !info.is_ca {
            return Err(bad(format!("{:?} is not a CA certificate", info.subject)));
        }
        if info.spki_der != key.spki_der() {
            return Err(bad("the certificate and the key do not belong together".into()));
        }
        if info.not_after <= now {
            return Err(bad(format!("the CA {:?} expired at {}", info.subject, info.not_after)));
        }
        let key_id = info.ski.clone().unwrap_or_else(|| key.key_id());
        let info = Arc::new(info);
        signers.insert(plan::EXTERNAL_ETCD_CA.to_string(), Signer::new(cert_pem, Some(key_pem)));
        issuers.insert(plan::EXTERNAL_ETCD_CA.to_string(), issuer(&info, key, key_id));
        ca_infos.insert(plan::EXTERNAL_ETCD_CA.to_string(), info.clone());
        external_etcd_ca = Some((cert_pem.clone(), info));
    }

    // First decide every leaf (read what the store holds and compare it with the request, verifying its
    // signature: most of a rerun's work), then issue the ones that need it; both on every core. A leaf under a CA
    // created in this run has nothing in the store (`refuse_new_ca`), so its decision needs no CA.
    let leaves: Vec<&CertRequest> = requests.iter().filter(|r| !r.profile.usage.is_ca()).collect();
    fn signer(req: &CertRequest) -> &str {
        req.signer.as_deref().expect("a leaf has a signer")
    }
    let decided = crate::par::map(&leaves, |req| {
        let cas = (ca_infos.get(signer(req)).map(|i| &**i), outgoing.get(signer(req)).map(|i| &**i));
        decide(cluster, req, store, now, policy, cas, signers.get(signer(req)))
    });
    let mut work = Vec::new();
    let mut unsigned = Vec::new();
    let mut proofs = Vec::new();
    for (req, d) in leaves.iter().zip(decided) {
        match d? {
            Decision::Keep(m, line) => {
                if let Some(line) = line {
                    proofs.push(verified::Proven { id: m.request.id.clone(), line });
                }
                certs.insert(m.request.id.clone(), m);
            }
            Decision::Issue { .. }
                if !issuers.contains_key(signer(req)) && !new_cas.iter().any(|c| c.id == signer(req)) =>
            {
                unsigned.push(req.id.clone())
            }
            Decision::Issue { reasons, old_key } => work.push((*req, reasons, old_key)),
        }
    }
    if !unsigned.is_empty() {
        return Err(Error::new(format!(
            "{} certificate{} must be signed by a CA whose key kubeforge does not have (pki.cas without key): {}.\n\
             Run `cargo xtask csr` to write their keys and signing requests, have the external CA sign them, then \
             `cargo xtask import-signed DIR`.",
            unsigned.len(),
            if unsigned.len() == 1 { "" } else { "s" },
            unsigned.join(", ")
        )));
    }

    if let Some(p) = progress {
        p.start(new_cas.len() + work.len());
    }
    for req in new_cas {
        let key = made.remove(&req.id).unwrap_or_else(|| keys.generate(cluster.key_algorithm, &req.id));
        let material = sign(req, &key, None, keys, now)?;
        signers.insert(req.id.clone(), Signer::new(&material.cert_pem, material.key_pem.as_deref()));
        let key_id = key.key_id();
        issuers.insert(req.id.clone(), issuer(&material.info, key, key_id));
        ca_infos.insert(req.id.clone(), material.info.clone());
        certs.insert(req.id.clone(), material);
        if let Some(p) = progress {
            p.advance();
        }
    }
    let issued = crate::par::map(&work, |(req, reasons, old_key)| {
        let m = issue(cluster, req, keys, now, &issuers[signer(req)], reasons, old_key.as_ref());
        if let Some(p) = progress {
            p.advance();
        }
        m
    });
    for m in issued {
        let m = m?;
        // Signed just now by its signer's key: proved by construction; its line is made when the record is
        // written (`Pki::record_lines`).
        if let Some(s) = signers.get(signer(&m.request))
            && let Some(key) = &s.mac
        {
            proofs.push(verified::Proven {
                id: m.request.id.clone(),
                line: verified::Line::Issued { ca: s.cert, key: key.clone() },
            });
        }
        certs.insert(m.request.id.clone(), m);
    }
    Ok(Pki { certs, sa, external_etcd_ca, encryption, rotations: Box::new(rotations), proofs })
}

/// A CA is created only for a new PKI: never by a renewal, and never while the store still holds leaves that a
/// CA of that name signed (the CA's files were deleted: recreating it would orphan every one of them).
fn refuse_new_ca(req: &CertRequest, requests: &[CertRequest], store: &Store, policy: &Policy) -> Result<(), Error> {
    let fresh = format!(
        "to start a new PKI on purpose, move {} away and run again (every certificate, kubeconfig and node bundle \
         will change)",
        store.dir.display()
    );
    let signed: Vec<&str> = requests
        .iter()
        .filter(|r| r.signer.as_deref() == Some(req.id.as_str()) && store.exists(&crate::layout::store_crt(&r.id)))
        .map(|r| r.id.as_str())
        .collect();
    if let Some(first) = signed.first() {
        return Err(Error::new(format!(
            "CA {id}: {crt} and {key} are gone, but {n} certificate{s} it signed {are} still in the store (e.g. {first}): \
             the CA was deleted. kubeforge never replaces a CA silently: restore both files from a backup, or {fresh}.",
            id = req.id,
            crt = store.show(&crate::layout::store_crt(&req.id)),
            key = store.show(&crate::layout::store_key(&req.id)),
            n = signed.len(),
            s = if signed.len() == 1 { "" } else { "s" },
            are = if signed.len() == 1 { "is" } else { "are" },
        )));
    }
    if !policy.renew.is_empty() {
        return Err(Error::new(format!(
            "CA {}: not in {}. `renew` renews leaves of an existing PKI and never creates a CA: run `cargo xtask gen` \
             first.",
            req.id,
            store.dir.display()
        )));
    }
    Ok(())
}

/// The key usages of a leaf with a key of `alg` (a CA adds keyCertSign), as (the inspector's name, rcgen's).
///
/// kubeadm asserts keyEncipherment for every key (Go's x509 template); RFC 8813 §3 forbids it for EC keys, which
/// cannot encipher, and upstream is dropping it for them (kubernetes/kubernetes#142273, #142037). kubeforge
/// asserts it only for RSA keys (see the README's differences from kubeadm).
pub fn key_usages(alg: KeyAlgorithm) -> &'static [(&'static str, KeyUsagePurpose)] {
    match alg {
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => &[
            ("digitalSignature", KeyUsagePurpose::DigitalSignature),
            ("keyEncipherment", KeyUsagePurpose::KeyEncipherment),
        ],
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => &[("digitalSignature", KeyUsagePurpose::DigitalSignature)],
    }
}

/// An rcgen issuer described by what the CA certificate says: its subject, attribute by attribute with the same
/// string types (Go matches a leaf's issuer to its CA's subject byte for byte), and its subject key identifier,
/// which becomes each leaf's authority key identifier.
pub fn issuer(ca: &inspect::CertInfo, key: Key, key_id: Vec<u8>) -> Issuer<'static, Key> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (arcs, printable, value) in &ca.subject_attrs {
        params.distinguished_name.push(dn_type(arcs), dn_value(value, *printable));
    }
    params.key_identifier_method = KeyIdMethod::PreSpecified(key_id);
    Issuer::new(params, key)
}

fn dn_type(arcs: &[u64]) -> DnType {
    match arcs {
        [2, 5, 4, 3] => DnType::CommonName,
        [2, 5, 4, 10] => DnType::OrganizationName,
        [2, 5, 4, 11] => DnType::OrganizationalUnitName,
        [2, 5, 4, 6] => DnType::CountryName,
        [2, 5, 4, 8] => DnType::StateOrProvinceName,
        [2, 5, 4, 7] => DnType::LocalityName,
        other => DnType::CustomDnType(other.to_vec()),
    }
}

/// Go's encoding/asn1 writes a string as PrintableString when every character allows it, else as UTF8String;
/// kubeforge does the same, so its names are the bytes kubeadm's would be.
fn dn_value(s: &str, printable: bool) -> DnValue {
    match (printable, PrintableString::try_from(s)) {
        (true, Ok(p)) => DnValue::PrintableString(p),
        _ => DnValue::Utf8String(s.to_string()),
    }
}

fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b))
}

/// A CA as the leaves it signs see it: SHA-256 of its certificate (what a leaf's proof names) and, where kubeforge
/// holds its key, the key that authenticates those proofs.
struct Signer {
    cert: verified::Sha,
    mac: Option<verified::MacKey>,
}

impl Signer {
    fn new(cert_pem: &str, key_pem: Option<&str>) -> Signer {
        Signer { cert: verified::sha256(cert_pem.as_bytes()), mac: key_pem.map(verified::MacKey::from_ca_key) }
    }
}

/// What a leaf needs: nothing (the store's still is what the spec asks), or a (re)issue, with the reasons.
enum Decision {
    /// With what was proved of it, as the verification record's line for the next run.
    Keep(Material, Option<verified::Line>),
    /// `reasons` empty: new. `old_key`: `renew --keep-keys` keeps the stored key.
    Issue { reasons: Vec<String>, old_key: Option<Key> },
}

/// One leaf: kept from the store if it still is what the spec asks, otherwise to be (re)issued, with the reasons.
/// `ca` is its signer's certificate; `None` for a CA created in this run. `outgoing`: the CA a rotation's switch
/// moves away from, whose leaves are due rather than forged.
fn decide(
    cluster: &Cluster,
    req: &CertRequest,
    store: &Store,
    now: OffsetDateTime,
    policy: &Policy,
    (ca, outgoing): (Option<&inspect::CertInfo>, Option<&inspect::CertInfo>),
    signer: Option<&Signer>,
) -> Result<Decision, Error> {
    let forced = policy.forces(req);
    let Some(Found { cert_pem, key_pem, key, info, proof }) = load_leaf(req, store, signer)? else {
        return Ok(Decision::Issue { reasons: Vec::new(), old_key: None });
    };
    let mut reasons = Vec::new();
    if forced {
        reasons.push("renewal requested".to_string());
    }
    let Some(ca) = ca else {
        // Not reached: a CA is created only when the store holds no leaf it signed (`refuse_new_ca`).
        reasons.push(format!("signer: {} is created in this run", req.signer.as_deref().unwrap_or("its CA")));
        return Ok(Decision::Issue { reasons, old_key: None });
    };
    // A certificate naming the current CA as issuer whose signature that CA's key did not make is forged, or
    // from another cluster's CA of the same name: stop rather than quietly replace it (a different issuer
    // name, e.g. after bringing a new CA, is an ordinary reason to reissue, below).
    // Checked once here and handed to `differences_given`: verifying a signature is most of a rerun's work, and
    // it is skipped where an earlier run proved it for these very bytes and this signer (`proof`).
    let signed = (!forced && info.issuer == ca.subject).then(|| proof || inspect::signed_by(&info.der, &ca.spki_der));
    // Switching a CA: a leaf of the outgoing CA (same subject, another key) is due, not forged.
    let switching = signed == Some(false)
        && outgoing.is_some_and(|o| info.issuer == o.subject && inspect::signed_by(&info.der, &o.spki_der));
    if switching {
        reasons.push(rotation::switch_reason(req.signer.as_deref().unwrap_or("CA")));
    } else if signed == Some(false) {
        return Err(Error::new(format!(
            "{}: {} names {} as its issuer but that CA did not sign it (tampered, or from another cluster). \
             Look at how it got there; to replace it deliberately run `cargo xtask renew {}`.",
            req.id,
            store.show(&format!("{}.crt", req.id)),
            ca.subject,
            req.id
        )));
    }
    // When switching, the reason above says the signer; everything else is compared as usual.
    reasons.extend(differences_given(cluster, req, &info, ca, now, if switching { Some(true) } else { signed }));
    if reasons.is_empty() {
        let line = proof.then_some(verified::Line::Recorded).or_else(|| {
            let mac = signer?.mac.as_ref().filter(|_| signed == Some(true))?;
            let proof = verified::Proof::of(&info, &cert_pem, &key_pem, signer?.cert);
            Some(verified::Line::New(verified::line(&req.id, &proof, mac)))
        });
        let m = Material {
            request: req.clone(),
            info: Arc::new(info),
            cert_pem,
            key_pem: Some(key_pem),
            chain_pem: None,
            origin: Origin::Kept,
            reasons,
        };
        return Ok(Decision::Keep(m, line));
    }
    let old_key = if policy.keep_keys && forced {
        // A proven pair was not parsed: its key is read now, for the renewal that keeps it.
        let key = match key {
            Some(k) => k,
            None => Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{}.key: {e}", req.id)))?,
        };
        (key.algorithm() == cluster.key_algorithm).then_some(key)
    } else {
        None
    };
    Ok(Decision::Issue { reasons, old_key })
}

/// A leaf (re)issued as [`decide`] said: with `old_key`, or a new key.
fn issue(
    cluster: &Cluster,
    req: &CertRequest,
    keys: &KeySource,
    now: OffsetDateTime,
    issuer: &Issuer<'static, Key>,
    reasons: &[String],
    old_key: Option<&Key>,
) -> Result<Material, Error> {
    let fresh;
    let key = match old_key {
        Some(k) => k,
        None => {
            // A first issue draws the key for the id; a reissue salts it with the issue time, so that even a
            // seeded source gives the replacement a key of its own.
            fresh = if reasons.is_empty() {
                keys.generate(cluster.key_algorithm, &req.id)
            } else {
                keys.generate(cluster.key_algorithm, &format!("{}\0reissued@{}", req.id, now.unix_timestamp()))
            };
            &fresh
        }
    };
    let mut m = sign(req, key, Some(issuer), keys, now)?;
    m.origin = if reasons.is_empty() { Origin::Issued } else { Origin::Reissued };
    m.reasons = reasons.to_vec();
    Ok(m)
}

/// A CA from `pki.cas`: checked (a CA, key matches, not expired, a chain of CA certificates and nothing else) and
/// compared with the store, which must hold the same certificate or none: a provided CA never silently replaces
/// another.
fn provided_ca(
    req: &CertRequest,
    given: &crate::spec::ProvidedCa,
    store: &Store,
    now: OffsetDateTime,
) -> Result<(Material, Option<Key>), Error> {
    let at = format!("pki.cas.{} ({})", req.profile.name, given.source);
    let info = inspect::CertInfo::from_pem(&given.cert_pem).map_err(|e| Error::new(format!("{at}: {e}")))?;
    if !info.is_ca {
        return Err(Error::new(format!("{at}: {:?} is not a CA certificate", info.subject)));
    }
    if info.not_after <= now {
        return Err(Error::new(format!("{at}: the CA expired at {}", crate::times::rfc3339(info.not_after))));
    }
    let key = match &given.key_pem {
        None => None,
        Some(pem) => {
            let key = Key::from_pem(pem).map_err(|e| Error::new(format!("{at}: the key: {e}")))?;
            if key.spki_der() != info.spki_der {
                return Err(Error::new(format!("{at}: the certificate and the key do not belong together")));
            }
            Some(key)
        }
    };
    if let Some(chain) = &given.chain_pem {
        let at = format!("pki.cas.{}.chain", req.profile.name);
        let parents = inspect::parse_chain(chain).map_err(|e| Error::new(format!("{at}: {e}")))?;
        if let Some(p) = parents.iter().find(|p| !p.is_ca) {
            return Err(Error::new(format!(
                "{at}: {:?} is not a CA certificate; the chain holds the CAs above {} (intermediates up to the root)",
                p.subject, info.subject
            )));
        }
        if parents.first().is_some_and(|p| p.subject != info.issuer) {
            return Err(Error::new(format!(
                "{at}: starts with {:?}, but {} was issued by {:?}; list the chain from the CA's issuer up to the root",
                parents[0].subject, info.subject, info.issuer
            )));
        }
    }
    let stored = crate::layout::store_crt(&req.id);
    if store.exists(&stored) {
        let same = store
            .read(&stored)
            .ok()
            .and_then(|pem| inspect::CertInfo::from_pem(&pem).ok())
            .is_some_and(|s| s.der == info.der);
        if !same {
            return Err(Error::new(format!(
                "{at}: {} holds another CA. kubeforge never replaces a CA silently: to switch CAs on purpose, \
                 move {} away and run again (every certificate will be reissued).",
                store.show(&stored),
                store.dir.display()
            )));
        }
    }
    let material = Material {
        request: req.clone(),
        info: Arc::new(info),
        cert_pem: given.cert_pem.clone(),
        key_pem: given.key_pem.clone(),
        chain_pem: given.chain_pem.clone(),
        origin: Origin::Kept,
        reasons: Vec::new(),
    };
    Ok((material, key))
}

/// Why a stored leaf no longer matches its request: subject, SANs (added and removed: covering them is not
/// enough), usages, signer, key algorithm, or expiry within `pki.renewBefore`.
pub fn differences(
    cluster: &Cluster,
    req: &CertRequest,
    info: &inspect::CertInfo,
    ca: &inspect::CertInfo,
    now: OffsetDateTime,
) -> Vec<String> {
    differences_given(cluster, req, info, ca, now, None)
}

/// [`differences`], given whether `ca`'s key signed `info` when the caller has already checked it.
fn differences_given(
    cluster: &Cluster,
    req: &CertRequest,
    info: &inspect::CertInfo,
    ca: &inspect::CertInfo,
    now: OffsetDateTime,
    signed: Option<bool>,
) -> Vec<String> {
    let mut why = Vec::new();
    let subject = req.subject();
    if info.subject != subject {
        why.push(format!("subject {:?} -> {subject:?}", info.subject));
    }
    let want = req.sans();
    for s in want.iter().filter(|s| !info.sans.contains(s)) {
        why.push(format!("SAN added: {s}"));
    }
    for s in info.sans.iter().filter(|s| !want.contains(s)) {
        why.push(format!("SAN removed: {s}"));
    }
    let want_eku = req.ext_key_usage();
    let want_ku: Vec<&str> = key_usages(cluster.key_algorithm).iter().map(|u| u.0).collect();
    if info.ext_key_usage != want_eku || info.is_ca {
        why.push(format!("usages {:?} -> {:?}", info.ext_key_usage, want_eku));
    } else if info.key_usage != want_ku {
        why.push(format!("key usages {:?} -> {:?}", info.key_usage, want_ku));
    }
    if info.issuer != ca.subject || !signed.unwrap_or_else(|| inspect::signed_by(&info.der, &ca.spki_der)) {
        why.push(format!(
            "signer: not signed by the current {} ({})",
            req.signer.as_deref().unwrap_or("CA"),
            ca.subject
        ));
    }
    if info.key_algorithm != cluster.key_algorithm.name() {
        why.push(format!("key algorithm {} -> {}", info.key_algorithm, cluster.key_algorithm.name()));
    }
    if info.not_after - now <= Duration::seconds(cluster.renew_before) {
        why.push(format!(
            "expires {} (within pki.renewBefore, {}h)",
            crate::times::rfc3339(info.not_after),
            cluster.renew_before / 3600
        ));
    }
    why
}

/// A leaf as found in the store.
struct Found {
    cert_pem: String,
    key_pem: String,
    /// The key, when it had to be read (not when `proof` vouches for the pair).
    key: Option<Key>,
    info: inspect::CertInfo,
    /// Whether the record proves, for exactly these bytes and the current signer, that the certificate says
    /// `info`, belongs to the key and carries the signer's signature.
    proof: bool,
}

/// The DER inside a certificate's PEM: the base64 between its BEGIN and END lines, 64 characters a line. Only for a
/// PEM that [`inspect::CertInfo::from_pem`] accepted (one CERTIFICATE block), which a proof for its exact bytes
/// guarantees.
fn proven_der(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let body = pem.strip_prefix("-----BEGIN CERTIFICATE-----\n")?;
    let body = &body[..body.find("-----END CERTIFICATE-----")?];
    let mut der = Vec::with_capacity(body.len() * 3 / 4);
    for line in body.lines() {
        base64::engine::general_purpose::STANDARD.decode_vec(line, &mut der).ok()?;
    }
    Some(der)
}

/// The SubjectPublicKeyInfo inside a certificate's DER, as its raw TLV (what the parser's `spki.raw` is): the
/// seventh element of tbsCertificate, after the optional `[0]` version.
fn spki_of(der: &[u8]) -> Option<&[u8]> {
    // (header length, content length) of the TLV at the start of `d`: DER, definite lengths.
    fn tlv(d: &[u8]) -> Option<(usize, usize)> {
        let first = *d.get(1)?;
        if first < 0x80 {
            return Some((2, first as usize));
        }
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < 2 + n {
            return None;
        }
        Some((2 + n, d[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize)))
    }
    let (h, _) = tlv(der)?; // Certificate
    let tbs = der.get(h..)?;
    let (h, len) = tlv(tbs)?; // tbsCertificate
    let mut rest = tbs.get(h..h + len)?;
    if rest.first() == Some(&0xa0) {
        let (h, len) = tlv(rest)?;
        rest = rest.get(h + len..)?;
    }
    // serialNumber, signature, issuer, validity, subject, then subjectPublicKeyInfo.
    for _ in 0..5 {
        let (h, len) = tlv(rest)?;
        rest = rest.get(h + len..)?;
    }
    let (h, len) = tlv(rest)?;
    (rest.first() == Some(&0x30)).then(|| rest.get(..h + len)).flatten()
}

/// A leaf from the store: `None` if neither file exists. A half-present pair, an unreadable file or a
/// certificate that does not match its key stops the run: that is damage to look at, not something to paper over.
/// Where the verification record holds a proof for these exact bytes under the current signer, neither file is
/// parsed.
fn load_leaf(req: &CertRequest, store: &Store, signer: Option<&Signer>) -> Result<Option<Found>, Error> {
    let (crt, key) = (format!("{}.crt", req.id), format!("{}.key", req.id));
    let fix = format!("fix or remove both files (or run `cargo xtask renew {}`) to issue it again", req.id);
    let with_fix = |e: Error| Error::new(format!("{e}; {fix}"));
    let found = (store.read_if_exists(&crt).map_err(with_fix)?, store.read_private_if_exists(&key).map_err(with_fix)?);
    let (cert_pem, key_pem) = match found {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(Error::new(format!(
                "{}: only one of {} and {} exists; {fix}",
                req.id,
                store.show(&crt),
                store.show(&key)
            )));
        }
    };
    let proof = match (store.record(), signer) {
        (Some(record), Some(Signer { cert: ca, mac: Some(mac) })) => {
            let (c, k) = (verified::sha256(cert_pem.as_bytes()), verified::sha256(key_pem.as_bytes()));
            record.proof_for(&req.id, mac, [&c, &k, ca])
        }
        _ => None,
    };
    if let Some(proof) = proof
        && let Some(der) = proven_der(&cert_pem)
        && let Some(spki) = spki_of(&der).map(<[u8]>::to_vec)
    {
        let mut info = proof.facts;
        info.der = der;
        info.spki_der = spki;
        return Ok(Some(Found { cert_pem, key_pem, key: None, info, proof: true }));
    }
    let k = Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{}: {e}; {fix}", store.show(&key))))?;
    let info =
        inspect::CertInfo::from_pem(&cert_pem).map_err(|e| Error::new(format!("{}: {e}; {fix}", store.show(&crt))))?;
    if info.spki_der != k.spki_der() {
        return Err(Error::new(format!("{} does not match its key {}; {fix}", store.show(&crt), store.show(&key))));
    }
    Ok(Some(Found { cert_pem, key_pem, key: Some(k), info, proof: false }))
}

fn sign(
    req: &CertRequest,
    key: &Key,
    issuer: Option<&Issuer<'static, Key>>,
    keys: &KeySource,
    now: OffsetDateTime,
) -> Result<Material, Error> {
    let mut p = CertificateParams::default();
    p.serial_number = Some(keys.serial(&req.id).into());
    p.not_before = now - BACKDATE;
    // NotAfter counts from the issue time, not from the backdated NotBefore (kubeadm-facts §1.5).
    p.not_after = now + Duration::seconds(req.validity);
    let mut dn = DistinguishedName::new();
    // Go writes O before CN: "Subject: O = system:masters, CN = kubernetes-super-admin".
    if let Some(o) = &req.o {
        dn.push(DnType::OrganizationName, dn_value(o, is_printable(o)));
    }
    dn.push(DnType::CommonName, dn_value(&req.cn, is_printable(&req.cn)));
    p.distinguished_name = dn;
    p.key_usages = key_usages(key.algorithm()).iter().map(|u| u.1).collect();
    let usage = req.profile.usage;
    if usage.is_ca() {
        p.key_usages.push(KeyUsagePurpose::KeyCertSign);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
    }
    if usage.server() {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if usage.client() {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for d in &req.dns {
        let name = d.clone().try_into().map_err(|e| Error::new(format!("{}: SAN {d:?}: {e}", req.id)))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    p.subject_alt_names.extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    p.key_identifier_method = KeyIdMethod::PreSpecified(key.key_id());
    let cert = match issuer {
        None => p.self_signed(key),
        Some(i) => p.signed_by(key, i),
    }
    .map_err(|e| Error::new(format!("{}: cannot issue the certificate: {e}", req.id)))?;
    let info = inspect::CertInfo::from_der(cert.der())
        .map_err(|e| Error::new(format!("{}: the issued certificate does not read back: {e}", req.id)))?;
    Ok(Material {
        request: req.clone(),
        cert_pem: cert.pem(),
        info: Arc::new(info),
        key_pem: Some(key.to_pem()),
        chain_pem: None,
        origin: Origin::Issued,
        reasons: Vec::new(),
    })
}

/// Reads an existing CA from the store. `Ok(None)` when neither file exists.
fn load_ca(req: &CertRequest, store: &Store, now: OffsetDateTime) -> Result<Option<(Material, Key, Vec<u8>)>, Error> {
    let (crt, key_rel) = (format!("{}.crt", req.id), format!("{}.key", req.id));
    let (crt_path, key_path) = (store.show(&crt), store.show(&key_rel));
    let keep = "kubeforge never replaces a CA silently";
    let fresh = format!(
        "to start a new PKI on purpose, move {} away and run again (every certificate, kubeconfig and node bundle \
         will change)",
        store.dir.display()
    );
    match (store.exists(&crt), store.exists(&key_rel)) {
        (false, false) => return Ok(None),
        (true, false) => {
            return Err(Error::new(format!(
                "CA {}: {crt_path} exists but its key {key_path} does not. {keep}: restore the key, or {fresh}.",
                req.id
            )));
        }
        (false, true) => {
            return Err(Error::new(format!(
                "CA {}: the key {key_path} exists but the certificate {crt_path} does not. {keep}: restore the \
                 certificate, or {fresh}.",
                req.id
            )));
        }
        (true, true) => {}
    }
    let (cert_pem, key_pem) = (store.read(&crt)?, store.read_private(&key_rel)?);
    let bad = |why: String| Error::new(format!("CA {} in {crt_path}: {why}. {keep}; {fresh}.", req.id));
    let key = Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{key_path}: {e}")))?;
    let info = inspect::CertInfo::from_pem(&cert_pem).map_err(&bad)?;
    if !info.is_ca {
        return Err(bad("it is not a CA certificate".into()));
    }
    if info.subject != format!("CN = {}", req.cn) {
        return Err(bad(format!("its subject is {:?}, the spec needs \"CN = {}\"", info.subject, req.cn)));
    }
    if info.spki_der != key.spki_der() {
        return Err(bad(format!("it does not match its key {key_path}")));
    }
    if info.not_after <= now {
        return Err(bad(format!("it expired at {}", info.not_after)));
    }
    let key_id = info.ski.clone().unwrap_or_else(|| key.key_id());
    Ok(Some((
        Material {
            request: req.clone(),
            info: Arc::new(info),
            cert_pem,
            key_pem: Some(key_pem),
            chain_pem: None,
            origin: Origin::Kept,
            reasons: Vec::new(),
        },
        key,
        key_id,
    )))
}

/// The key source's id of the service-account key.
const SA_KEY_ID: &str = "sa";

/// The keys a run needs before any leaf can be signed (new CAs', a new service-account key), made side by side: an
/// RSA key takes ~80 ms, and one after another they were the only serial part of a first run besides the file
/// system. Each is drawn from its own id's stream, so it is the key a serial run would make.
fn new_keys(cluster: &Cluster, requests: &[CertRequest], store: &Store, keys: &KeySource) -> BTreeMap<String, Key> {
    use crate::layout::{STORE_SA_KEY, store_crt, store_key};
    let mut ids: Vec<&str> = requests
        .iter()
        .filter(|r| r.profile.usage.is_ca() && !cluster.provided_cas.contains_key(r.profile.name))
        .filter(|r| !store.exists(&store_crt(&r.id)) && !store.exists(&store_key(&r.id)))
        .map(|r| r.id.as_str())
        .collect();
    if !store.exists(STORE_SA_KEY) {
        ids.push(SA_KEY_ID);
    }
    if ids.len() < 2 {
        return BTreeMap::new();
    }
    std::thread::scope(|s| {
        let handles: Vec<_> =
            ids.iter().map(|id| s.spawn(move || (id.to_string(), keys.generate(cluster.key_algorithm, id)))).collect();
        handles.into_iter().map(|h| h.join().expect("key thread panicked")).collect()
    })
}

fn service_account(
    alg: KeyAlgorithm,
    store: &Store,
    keys: &KeySource,
    made: Option<Key>,
) -> Result<ServiceAccountKey, Error> {
    let rel = crate::layout::STORE_SA_KEY;
    if store.exists(rel) {
        // kubeadm reuses an existing sa.key (kubeadm-facts §1.7); changing it would invalidate every
        // service-account token in the cluster.
        let key_pem = store.read_private(rel)?;
        let key = Key::from_pem(&key_pem).map_err(|e| {
            Error::new(format!(
                "{} exists but cannot be loaded ({e}); restore it or remove it on purpose",
                store.show(rel)
            ))
        })?;
        return Ok(ServiceAccountKey { pub_pem: key.public_key_pem(), key_pem, origin: Origin::Kept });
    }
    let key = made.unwrap_or_else(|| keys.generate(alg, SA_KEY_ID));
    Ok(ServiceAccountKey { key_pem: key.to_pem(), pub_pem: key.public_key_pem(), origin: Origin::Issued })
}

/// The encryption-at-rest keys the spec lists: each kept from the store, or drawn from the key source the first
/// time its name appears.
fn encryption_keys(cluster: &Cluster, store: &Store, keys: &KeySource) -> Result<Vec<EncryptionKey>, Error> {
    use base64::Engine;
    let crate::security::Encryption::Keys { names, .. } = &cluster.security.encryption else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for name in names {
        let rel = crate::layout::store_encryption_key(name);
        if store.exists(&rel) {
            let secret = store.read_private(&rel)?.trim().to_string();
            let ok = base64::engine::general_purpose::STANDARD.decode(&secret).is_ok_and(|b| b.len() == 32);
            if !ok {
                return Err(Error::new(format!(
                    "{}: not a base64 32-byte key; restore it (Secrets encrypted with it are unreadable without it)",
                    store.show(&rel)
                )));
            }
            out.push(EncryptionKey { name: name.clone(), secret, origin: Origin::Kept });
            continue;
        }
        let mut bytes = [0u8; 32];
        rand_core::Rng::fill_bytes(&mut keys.rng(&format!("encryption\0{name}")), &mut bytes);
        let secret = base64::engine::general_purpose::STANDARD.encode(bytes);
        out.push(EncryptionKey { name: name.clone(), secret, origin: Origin::Issued });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The demo cluster's PKI, issued from an empty store with a seeded key source.
    fn demo() -> (Cluster, Vec<CertRequest>, Pki, OffsetDateTime) {
        let c = crate::spec::parse(Path::new("t.yaml"), crate::DEMO_SPEC).unwrap();
        let requests = plan::requests(&c);
        let now = crate::times::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let store = Store::plain(Path::new("/nonexistent/kubeforge-test-store"));
        let pki = build(&c, &requests, &store, &KeySource::seeded(1), now, &Policy::default(), None).unwrap();
        (c, requests, pki, now)
    }

    #[test]
    fn a_certificate_that_is_what_the_request_asks_has_no_differences() {
        let (c, requests, pki, now) = demo();
        for r in requests.iter().filter(|r| !r.profile.usage.is_ca()) {
            let ca = &pki.get(r.signer.as_deref().unwrap()).info;
            assert_eq!(differences(&c, r, &pki.get(&r.id).info, ca, now), Vec::<String>::new(), "{}", r.id);
        }
    }

    #[test]
    fn every_kind_of_difference_is_a_reason() {
        let (c, requests, pki, now) = demo();
        let req = requests.iter().find(|r| r.id == "nodes/cp-1/apiserver").unwrap();
        let info = &pki.get(&req.id).info;
        let ca = &pki.get("ca").info;
        let why = |c: &Cluster, r: &CertRequest, ca: &inspect::CertInfo, now| differences(c, r, info, ca, now);

        let mut r = req.clone();
        r.ips.push("10.0.0.5".parse().unwrap());
        r.dns.retain(|d| d != "kubernetes");
        assert_eq!(why(&c, &r, ca, now), ["SAN added: IP:10.0.0.5", "SAN removed: DNS:kubernetes"]);

        let mut r = req.clone();
        r.o = Some("system:masters".into());
        assert_eq!(
            why(&c, &r, ca, now),
            ["subject \"CN = kube-apiserver\" -> \"O = system:masters, CN = kube-apiserver\""]
        );

        let mut r = req.clone();
        r.profile = crate::pki::profile::ProfileId::EtcdServer.profile();
        assert_eq!(why(&c, &r, ca, now), ["usages [\"serverAuth\"] -> [\"serverAuth\", \"clientAuth\"]"]);

        let other_ca = &pki.get("front-proxy-ca").info;
        assert_eq!(why(&c, req, other_ca, now), ["signer: not signed by the current ca (CN = front-proxy-ca)"]);

        let mut p384 = c.clone();
        p384.key_algorithm = KeyAlgorithm::EcdsaP384;
        assert_eq!(why(&p384, req, ca, now), ["key algorithm ECDSA-P256 -> ECDSA-P384"]);

        // 8760h validity, 720h window: due exactly 30 days before NotAfter, not a second earlier.
        let edge = crate::times::parse_instant("2026-12-02T00:00:00Z").unwrap();
        assert_eq!(why(&c, req, ca, edge), ["expires 2027-01-01T00:00:00Z (within pki.renewBefore, 720h)"]);
        assert_eq!(why(&c, req, ca, edge - Duration::seconds(1)), Vec::<String>::new());
    }

    #[test]
    fn a_proven_certificates_der_is_what_the_parser_reads() {
        let (_, _, pki, _) = demo();
        for m in pki.certs.values() {
            assert_eq!(proven_der(&m.cert_pem).as_ref(), Some(&m.info.der), "{}", m.request.id);
            assert_eq!(spki_of(&m.info.der), Some(m.info.spki_der.as_slice()), "{}", m.request.id);
        }
        // RSA keys (longer lengths) and a CA given from outside (written by openssl, not rcgen) too.
        let mut c = crate::spec::parse(Path::new("t.yaml"), crate::DEMO_SPEC).unwrap();
        c.key_algorithm = KeyAlgorithm::Rsa2048;
        let requests = plan::requests(&c);
        let store = Store::plain(Path::new("/nonexistent/kubeforge-test-store"));
        let now = crate::times::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let rsa = build(&c, &requests, &store, &KeySource::seeded(2), now, &Policy::default(), None).unwrap();
        for m in rsa.certs.values() {
            assert_eq!(spki_of(&m.info.der), Some(m.info.spki_der.as_slice()), "{}", m.request.id);
        }
        assert_eq!(proven_der("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n"), None);
        assert_eq!(proven_der("no PEM"), None);
    }

    #[test]
    fn renew_never_creates_a_ca() {
        let c = crate::spec::parse(Path::new("t.yaml"), crate::DEMO_SPEC).unwrap();
        let requests = plan::requests(&c);
        let now = crate::times::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let store = Store::plain(Path::new("/nonexistent/kubeforge-test-store"));
        let policy = Policy { renew: vec!["all".into()], keep_keys: false };
        let e = build(&c, &requests, &store, &KeySource::seeded(1), now, &policy, None).err().unwrap().to_string();
        assert!(e.contains("never creates a CA"), "{e}");
    }
}
