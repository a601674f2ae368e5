//! The cluster's PKI: load what the store already holds (CAs, the service-account key), issue the rest.

pub mod external;
pub mod inspect;
pub mod keys;
pub mod plan;
pub mod profile;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;

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
    pub cert_der: Vec<u8>,
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

/// Everything the PKI stage produced, by store id.
pub struct Pki {
    pub certs: BTreeMap<String, Material>,
    pub sa: ServiceAccountKey,
    /// The external etcd's CA certificate (`etcd.external.clientCA`), installed on control-plane nodes.
    pub external_etcd_ca: Option<String>,
}

impl Pki {
    pub fn get(&self, id: &str) -> &Material {
        self.certs.get(id).unwrap_or_else(|| panic!("no certificate {id} in the plan"))
    }
}

/// Loads the CAs and the service-account key from `store` (usually `OUT/pki`) where they exist, creates them where
/// they do not, and issues every leaf of `requests`.
///
/// A CA in the store is never replaced: if its certificate or key is missing, unreadable, does not match, names
/// another subject, or has expired, this fails and says what to do.
pub fn build(
    cluster: &Cluster,
    requests: &[CertRequest],
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    policy: &Policy,
) -> Result<Pki, Error> {
    let now = now.replace_nanosecond(0).expect("0 is a valid nanosecond");
    let mut certs = BTreeMap::new();
    let mut issuers: BTreeMap<String, Issuer<'static, Key>> = BTreeMap::new();
    let mut ca_infos: BTreeMap<String, inspect::CertInfo> = BTreeMap::new();

    for req in requests.iter().filter(|r| r.profile.usage.is_ca()) {
        if let Some(given) = cluster.provided_cas.get(req.profile.name) {
            let (material, key) = provided_ca(req, given, store, now)?;
            let info =
                inspect::CertInfo::from_der(&material.cert_der).map_err(|e| Error::new(format!("{}: {e}", req.id)))?;
            if let Some(key) = key {
                let key_id = info.ski.clone().unwrap_or_else(|| key.key_id());
                issuers.insert(req.id.clone(), issuer(&info, key, key_id));
            }
            ca_infos.insert(req.id.clone(), info);
            certs.insert(req.id.clone(), material);
            continue;
        }
        let (material, key, key_id) = match load_ca(req, store, now)? {
            Some(found) => found,
            None => {
                let key = keys.generate(cluster.key_algorithm, &req.id);
                let m = sign(req, &key, None, keys, now)?;
                let id = key.key_id();
                (m, key, id)
            }
        };
        let info =
            inspect::CertInfo::from_der(&material.cert_der).map_err(|e| Error::new(format!("{}: {e}", req.id)))?;
        issuers.insert(req.id.clone(), issuer(&info, key, key_id));
        ca_infos.insert(req.id.clone(), info);
        certs.insert(req.id.clone(), material);
    }

    let sa = service_account(cluster.key_algorithm, store, keys)?;

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
        issuers.insert(plan::EXTERNAL_ETCD_CA.to_string(), issuer(&info.clone(), key, key_id));
        ca_infos.insert(plan::EXTERNAL_ETCD_CA.to_string(), info);
        external_etcd_ca = Some(cert_pem.clone());
    }

    let leaves: Vec<&CertRequest> = requests.iter().filter(|r| !r.profile.usage.is_ca()).collect();
    // Key generation dominates (RSA especially) and every leaf is independent: use every core. Each thread takes
    // the next leaf from a shared counter rather than a fixed share of the list, because the leaves that need a
    // key are often neighbours (a renewed profile, a new node): fixed halves would leave one core idle. Keys come
    // from per-id streams and results are put back in list order, so nothing depends on how the work is split.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(leaves.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut issued: Vec<(usize, Result<Material, Unissued>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (issuers, ca_infos, leaves, next) = (&issuers, &ca_infos, &leaves, &next);
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(req) = leaves.get(i) else { break };
                        let signer = req.signer.as_deref().expect("a leaf has a signer");
                        let m = leaf(cluster, req, store, keys, now, policy, issuers.get(signer), &ca_infos[signer]);
                        done.push((i, m));
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("issuing thread panicked")).collect()
    });
    issued.sort_by_key(|(i, _)| *i);
    let issued = issued.into_iter().map(|(_, m)| m);
    let mut unsigned = Vec::new();
    for m in issued {
        match m {
            Ok(m) => {
                certs.insert(m.request.id.clone(), m);
            }
            Err(Unissued::NeedsExternalSigner(id)) => unsigned.push(id),
            Err(Unissued::Failed(e)) => return Err(e),
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
    Ok(Pki { certs, sa, external_etcd_ca })
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

/// Why a leaf could not be had.
enum Unissued {
    /// Its CA's key is not available: an external signer must sign it (the store id).
    NeedsExternalSigner(String),
    Failed(Error),
}

impl From<Error> for Unissued {
    fn from(e: Error) -> Self {
        Unissued::Failed(e)
    }
}

/// One leaf: kept from the store if it still is what the spec asks, otherwise (re)issued, with the reasons.
#[allow(clippy::too_many_arguments)]
fn leaf(
    cluster: &Cluster,
    req: &CertRequest,
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
    policy: &Policy,
    issuer: Option<&Issuer<'static, Key>>,
    ca: &inspect::CertInfo,
) -> Result<Material, Unissued> {
    let forced = policy.forces(req);
    let existing = load_leaf(req, store)?;
    let mut reasons = Vec::new();
    let mut old_key = None;
    if let Some((cert_pem, key_pem, key, info)) = existing {
        // A certificate naming the current CA as issuer whose signature that CA's key did not make is forged, or
        // from another cluster's CA of the same name: stop rather than quietly replace it (a different issuer
        // name, e.g. after bringing a new CA, is an ordinary reason to reissue, below).
        // Checked once here and handed to `differences_given`: verifying a signature is most of a rerun's work.
        let signed = (!forced && info.issuer == ca.subject).then(|| inspect::signed_by(&info.der, &ca.spki_der));
        if signed == Some(false) {
            return Err(Unissued::Failed(Error::new(format!(
                "{}: {} names {} as its issuer but that CA did not sign it (tampered, or from another cluster). \
                 Look at how it got there; to replace it deliberately run `cargo xtask renew {}`.",
                req.id,
                store.show(&format!("{}.crt", req.id)),
                ca.subject,
                req.id
            ))));
        }
        if forced {
            reasons.push("renewal requested".to_string());
        }
        reasons.extend(differences_given(cluster, req, &info, ca, now, signed));
        if reasons.is_empty() {
            return Ok(Material {
                request: req.clone(),
                cert_der: info.der,
                cert_pem,
                key_pem: Some(key_pem),
                chain_pem: None,
                origin: Origin::Kept,
                reasons,
            });
        }
        if policy.keep_keys && forced && key.algorithm() == cluster.key_algorithm {
            old_key = Some(key);
        }
    }
    let Some(issuer) = issuer else { return Err(Unissued::NeedsExternalSigner(req.id.clone())) };
    let key = match old_key {
        Some(k) => k,
        // A first issue draws the key for the id; a reissue salts it with the issue time, so that even a seeded
        // source gives the replacement a key of its own.
        None if reasons.is_empty() => keys.generate(cluster.key_algorithm, &req.id),
        None => keys.generate(cluster.key_algorithm, &format!("{}\0reissued@{}", req.id, now.unix_timestamp())),
    };
    let mut m = sign(req, &key, Some(issuer), keys, now)?;
    m.origin = if reasons.is_empty() { Origin::Issued } else { Origin::Reissued };
    m.reasons = reasons;
    Ok(m)
}

/// A CA from `pki.cas`: checked (a CA, key matches, not expired) and compared with the store, which must hold
/// the same certificate or none: a provided CA never silently replaces another.
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
        return Err(Error::new(format!("{at}: the CA expired at {}", crate::index::rfc3339(info.not_after))));
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
    let stored = store.path(&format!("{}.crt", req.id));
    if let Ok(pem) = std::fs::read_to_string(&stored) {
        let same = inspect::CertInfo::from_pem(&pem).is_ok_and(|s| s.der == info.der);
        if !same {
            return Err(Error::new(format!(
                "{at}: {} holds another CA. kubeforge never replaces a CA silently: to switch CAs on purpose, \
                 move {} away and run again (every certificate will be reissued).",
                stored.display(),
                store.dir.display()
            )));
        }
    }
    let material = Material {
        request: req.clone(),
        cert_der: info.der.clone(),
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
    let subject = match &req.o {
        Some(o) => format!("O = {o}, CN = {}", req.cn),
        None => format!("CN = {}", req.cn),
    };
    if info.subject != subject {
        why.push(format!("subject {:?} -> {subject:?}", info.subject));
    }
    let want: Vec<String> =
        req.dns.iter().map(|d| format!("DNS:{d}")).chain(req.ips.iter().map(|i| format!("IP:{i}"))).collect();
    for s in want.iter().filter(|s| !info.sans.contains(s)) {
        why.push(format!("SAN added: {s}"));
    }
    for s in info.sans.iter().filter(|s| !want.contains(s)) {
        why.push(format!("SAN removed: {s}"));
    }
    let usage = req.profile.usage;
    let want_eku: Vec<&str> = [(usage.server(), "serverAuth"), (usage.client(), "clientAuth")]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if info.ext_key_usage != want_eku || info.is_ca || info.key_usage != ["digitalSignature", "keyEncipherment"] {
        why.push(format!("usages {:?} -> {:?}", info.ext_key_usage, want_eku));
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
            crate::index::rfc3339(info.not_after),
            cluster.renew_before / 3600
        ));
    }
    why
}

/// A leaf from the store: `None` if neither file exists. A half-present pair, an unreadable file or a
/// certificate that does not match its key stops the run: that is damage to look at, not something to paper over.
#[allow(clippy::type_complexity)]
fn load_leaf(req: &CertRequest, store: &Store) -> Result<Option<(String, String, Key, inspect::CertInfo)>, Error> {
    let (crt, key) = (format!("{}.crt", req.id), format!("{}.key", req.id));
    let fix = format!("fix or remove both files (or run `cargo xtask renew {}`) to issue it again", req.id);
    match (store.exists(&crt), store.exists(&key)) {
        (false, false) => return Ok(None),
        (true, true) => {}
        _ => {
            return Err(Error::new(format!(
                "{}: only one of {} and {} exists; {fix}",
                req.id,
                store.show(&crt),
                store.show(&key)
            )));
        }
    }
    let with_fix = |e: Error| Error::new(format!("{e}; {fix}"));
    let (cert_pem, key_pem) = (store.read(&crt).map_err(with_fix)?, store.read_private(&key).map_err(with_fix)?);
    let k = Key::from_pem(&key_pem).map_err(|e| Error::new(format!("{}: {e}; {fix}", store.show(&key))))?;
    let info =
        inspect::CertInfo::from_pem(&cert_pem).map_err(|e| Error::new(format!("{}: {e}; {fix}", store.show(&crt))))?;
    if info.spki_der != k.spki_der() {
        return Err(Error::new(format!("{} does not match its key {}; {fix}", store.show(&crt), store.show(&key))));
    }
    Ok(Some((cert_pem, key_pem, k, info)))
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
    // keyEncipherment even for ECDSA keys, as kubeadm (Go's x509 template) does.
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
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
    Ok(Material {
        request: req.clone(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
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
    let info = inspect::CertInfo::from_pem(&cert_pem).map_err(|e| bad(e))?;
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
            cert_der: info.der.clone(),
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

/// Reads a private key from the store, refusing one that group or others can read: a key that was exposed is
/// not silently used (and kubeforge always writes 0600, so someone changed it).
pub fn read_private(path: &Path) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::new(format!(
            "{} has mode {mode:04o}: a private key must not be readable by group or others. If it may have been \
             exposed, remove it and renew what it belongs to; otherwise `chmod 600 {}` and run again.",
            path.display(),
            path.display()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| Error::new(format!("{}: {e}", path.display())))
}

fn service_account(alg: KeyAlgorithm, store: &Store, keys: &KeySource) -> Result<ServiceAccountKey, Error> {
    if store.exists("sa.key") {
        // kubeadm reuses an existing sa.key (kubeadm-facts §1.7); changing it would invalidate every
        // service-account token in the cluster.
        let key_pem = store.read_private("sa.key")?;
        let key = Key::from_pem(&key_pem).map_err(|e| {
            Error::new(format!(
                "{} exists but cannot be loaded ({e}); restore it or remove it on purpose",
                store.show("sa.key")
            ))
        })?;
        return Ok(ServiceAccountKey { pub_pem: key.public_key_pem(), key_pem, origin: Origin::Kept });
    }
    let key = keys.generate(alg, "sa");
    Ok(ServiceAccountKey { key_pem: key.to_pem(), pub_pem: key.public_key_pem(), origin: Origin::Issued })
}
