//! External signers: certificates under a CA whose key kubeforge does not have (`pki.cas.<name>` without `key`,
//! kubeadm's "external CA mode"). kubeforge writes each such leaf's key and a certificate signing request, the
//! operator's CA signs them, and kubeforge takes the results back only after checking them like its own.

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, SanType};
use time::OffsetDateTime;

use super::inspect::CertInfo;
use super::keys::{Key, KeySource};
use super::plan::CertRequest;
use super::store::Store;
use crate::Error;
use crate::spec::Cluster;

/// A key and CSR for one leaf.
pub struct SigningRequest {
    pub request: CertRequest,
    pub key_pem: String,
    pub csr_pem: String,
}

/// The CA certificate of every keyless CA, by store id.
pub fn keyless_cas(cluster: &Cluster, requests: &[CertRequest]) -> Vec<(String, CertInfo)> {
    requests
        .iter()
        .filter(|r| r.profile.usage.is_ca())
        .filter_map(|r| {
            let given = cluster.provided_cas.get(r.profile.name)?;
            if given.key_pem.is_some() {
                return None;
            }
            Some((r.id.clone(), CertInfo::from_pem(&given.cert_pem).ok()?))
        })
        .collect()
}

/// Keys and CSRs for every leaf under a keyless CA that the store does not already hold, valid and matching.
/// A key already in the store is reused (so a CSR can be re-sent); otherwise a new one is drawn.
pub fn signing_requests(
    cluster: &Cluster,
    requests: &[CertRequest],
    store: &Store,
    keys: &KeySource,
    now: OffsetDateTime,
) -> Result<Vec<SigningRequest>, Error> {
    let cas = keyless_cas(cluster, requests);
    let mut out = Vec::new();
    for req in requests.iter().filter(|r| !r.profile.usage.is_ca()) {
        let Some((_, ca)) = cas.iter().find(|(id, _)| Some(id) == req.signer.as_ref()) else { continue };
        let (key_rel, crt_rel) = (crate::layout::store_key(&req.id), crate::layout::store_crt(&req.id));
        let existing_key = if store.exists(&key_rel) {
            Some(Key::from_pem(&store.read_private(&key_rel)?).map_err(|e| {
                Error::new(format!("{}: {e}; remove it to have a new key and CSR made", store.show(&key_rel)))
            })?)
        } else {
            None
        };
        let existing_crt = if store.exists(&crt_rel) { Some(store.read(&crt_rel)?) } else { None };
        if let (Some(k), Some(pem)) = (&existing_key, existing_crt)
            && check_signed(cluster, req, &pem, k, ca, now).is_empty()
        {
            continue; // already signed and still right
        }
        let key = match existing_key {
            Some(k) if k.algorithm() == cluster.key_algorithm => k,
            _ => keys.generate(cluster.key_algorithm, &format!("{}\0csr@{}", req.id, now.unix_timestamp())),
        };
        out.push(SigningRequest { request: req.clone(), key_pem: key.to_pem(), csr_pem: csr(req, &key)? });
    }
    Ok(out)
}

fn csr(req: &CertRequest, key: &Key) -> Result<String, Error> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(o) = &req.o {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, req.cn.as_str());
    p.distinguished_name = dn;
    // Usages travel as requested extensions; many signers ignore them, so SIGNING.md says what to add.
    p.key_usages = super::key_usages(key.algorithm()).iter().map(|u| u.1).collect();
    if req.profile.usage.server() {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if req.profile.usage.client() {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    for d in &req.dns {
        p.subject_alt_names.push(SanType::DnsName(d.clone().try_into().map_err(|e| Error::new(format!("{d}: {e}")))?));
    }
    p.subject_alt_names.extend(req.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let r = p.serialize_request(key).map_err(|e| Error::new(format!("{}: cannot write the CSR: {e}", req.id)))?;
    r.pem().map_err(|e| Error::new(format!("{}: {e}", req.id)))
}

/// Everything wrong with a certificate an external CA returned for `req`: key, chain, subject, SANs, usages,
/// algorithm, validity. Empty when it can be used.
pub fn check_signed(
    cluster: &Cluster,
    req: &CertRequest,
    cert_pem: &str,
    key: &Key,
    ca: &CertInfo,
    now: OffsetDateTime,
) -> Vec<String> {
    let info = match CertInfo::from_pem(cert_pem) {
        Ok(i) => i,
        Err(e) => return vec![e],
    };
    let mut why = Vec::new();
    if info.spki_der != key.spki_der() {
        why.push("it is not for the key kubeforge made for it (the CSR's key)".to_string());
    }
    if info.not_before > now {
        why.push(format!("it is not valid yet (not before {})", crate::times::rfc3339(info.not_before)));
    }
    why.extend(super::differences(cluster, req, &info, ca, now));
    why
}
