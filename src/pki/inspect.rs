//! Reading a certificate back: what `openssl x509 -text` would tell a reviewer, as plain data.
//!
//! Used to check CAs found in the store and to write the readable inventory (`PKI.md`), so that both speak of the
//! bytes on disk, not of what the generator meant to write.

use std::net::IpAddr;

use ::time::OffsetDateTime;
use sha2::{Digest, Sha256};
use x509_parser::prelude::*;

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// `O = …, CN = …` in the certificate's order, as openssl prints it.
    pub subject: String,
    pub subject_cn: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// `DNS:name` and `IP:address`, in the certificate's order.
    pub sans: Vec<String>,
    pub key_usage: Vec<&'static str>,
    pub ext_key_usage: Vec<&'static str>,
    pub is_ca: bool,
    /// kubeadm's algorithm names: `ECDSA-P256`, `RSA-2048`, …
    pub key_algorithm: String,
    pub spki_der: Vec<u8>,
    /// The subject's attributes in order: OID arcs, whether the value is a PrintableString (else UTF8String or
    /// another string type read as text), and the value. Enough to write the same DN bytes as an issuer name.
    pub subject_attrs: Vec<(Vec<u64>, bool, String)>,
    /// The subject key identifier, if the certificate has one.
    pub ski: Option<Vec<u8>>,
    /// SHA-256 of the DER, lowercase hex with colons.
    pub fingerprint: String,
}

impl CertInfo {
    pub fn from_pem(pem: &str) -> Result<CertInfo, String> {
        let (rest, block) = parse_x509_pem(pem.as_bytes()).map_err(|e| format!("not a PEM certificate ({e})"))?;
        if block.label.contains("PRIVATE") {
            // Never echo anything of a private key, not even its PEM label, into a message.
            return Err("a private key, not a certificate".into());
        }
        if block.label != "CERTIFICATE" {
            return Err(format!("a PEM block {:?}, not CERTIFICATE", block.label));
        }
        if rest.iter().any(|b| !b.is_ascii_whitespace()) {
            return Err("more than one PEM block; a .crt holds exactly one certificate".into());
        }
        Self::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<CertInfo, String> {
        Self::parse(der)
    }
}

/// A chain of PEM certificates (a CA's parents): one or more `CERTIFICATE` blocks and nothing else: no private key,
/// no other PEM block, no text between blocks. Messages never quote the content.
pub fn parse_chain(pem: &str) -> Result<Vec<CertInfo>, String> {
    if crate::input::looks_secret(pem) {
        return Err("holds a private key; a chain holds only the certificates of the CAs above".into());
    }
    let mut rest = pem.as_bytes();
    let mut out = Vec::new();
    loop {
        let trimmed = rest.iter().position(|b| !b.is_ascii_whitespace()).map_or(&[][..], |i| &rest[i..]);
        if trimmed.is_empty() {
            break;
        }
        if !trimmed.starts_with(b"-----BEGIN ") {
            return Err(format!(
                "certificate {} is preceded by text that is not PEM; a chain holds PEM certificates and nothing else",
                out.len() + 1
            ));
        }
        let (next, block) =
            parse_x509_pem(trimmed).map_err(|_| format!("certificate {} is not a valid PEM block", out.len() + 1))?;
        if block.label != "CERTIFICATE" {
            return Err(format!("block {} is a {:?}, not a CERTIFICATE", out.len() + 1, block.label));
        }
        out.push(CertInfo::parse(&block.contents).map_err(|e| format!("certificate {}: {e}", out.len() + 1))?);
        rest = next;
    }
    if out.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(out)
}

impl CertInfo {
    fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (rest, c) = parse_x509_certificate(der).map_err(|e| format!("not a valid X.509 certificate ({e})"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate".into());
        }
        let name = |n: &X509Name<'_>| {
            n.iter_rdn()
                .flat_map(|r| r.iter())
                .map(|a| {
                    let key = match a.attr_type().to_id_string().as_str() {
                        "2.5.4.3" => "CN".to_string(),
                        "2.5.4.10" => "O".to_string(),
                        "2.5.4.11" => "OU".to_string(),
                        "2.5.4.6" => "C".to_string(),
                        "2.5.4.8" => "ST".to_string(),
                        "2.5.4.7" => "L".to_string(),
                        other => other.to_string(),
                    };
                    format!("{key} = {}", a.as_str().unwrap_or("?"))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cn = c.subject().iter_common_name().next().and_then(|a| a.as_str().ok()).unwrap_or("").to_string();
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = c.subject_alternative_name() {
            for g in &ext.value.general_names {
                match g {
                    GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                    GeneralName::IPAddress(b) => {
                        let ip = match b.len() {
                            4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                            16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                            _ => return Err("a SAN IP address of bad length".into()),
                        };
                        sans.push(format!("IP:{ip}"));
                    }
                    other => sans.push(format!("{other:?}")),
                }
            }
        }
        let mut key_usage = Vec::new();
        if let Ok(Some(ku)) = c.key_usage() {
            let k = ku.value;
            for (on, n) in [
                (k.digital_signature(), "digitalSignature"),
                (k.non_repudiation(), "nonRepudiation"),
                (k.key_encipherment(), "keyEncipherment"),
                (k.data_encipherment(), "dataEncipherment"),
                (k.key_agreement(), "keyAgreement"),
                (k.key_cert_sign(), "keyCertSign"),
                (k.crl_sign(), "cRLSign"),
            ] {
                if on {
                    key_usage.push(n);
                }
            }
        }
        let mut ext_key_usage = Vec::new();
        if let Ok(Some(eku)) = c.extended_key_usage() {
            if eku.value.server_auth {
                ext_key_usage.push("serverAuth");
            }
            if eku.value.client_auth {
                ext_key_usage.push("clientAuth");
            }
            if eku.value.any || eku.value.code_signing || !eku.value.other.is_empty() {
                ext_key_usage.push("other");
            }
        }
        let spki = c.public_key();
        let key_algorithm = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("RSA-{}", r.key_size()),
            Ok(x509_parser::public_key::PublicKey::EC(_)) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    "1.2.840.10045.3.1.7" => "ECDSA-P256".into(),
                    "1.3.132.0.34" => "ECDSA-P384".into(),
                    other => format!("ECDSA-{other}"),
                }
            }
            _ => "unknown".into(),
        };
        let mut subject_attrs = Vec::new();
        for a in c.subject().iter_rdn().flat_map(|r| r.iter()) {
            let arcs: Vec<u64> = a.attr_type().iter().ok_or("a subject attribute OID too large")?.collect();
            let printable = a.attr_value().tag() == x509_parser::der_parser::asn1_rs::Tag::PrintableString;
            let value = a.as_str().map_err(|_| "a subject attribute that is not text")?.to_string();
            subject_attrs.push((arcs, printable, value));
        }
        let ski = c.iter_extensions().find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
        let fingerprint = Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        Ok(CertInfo {
            der: der.to_vec(),
            subject: name(c.subject()),
            subject_cn: cn,
            issuer: name(c.issuer()),
            serial: c.raw_serial_as_string(),
            not_before: c.validity().not_before.to_datetime(),
            not_after: c.validity().not_after.to_datetime(),
            sans,
            key_usage,
            ext_key_usage,
            is_ca: c.is_ca(),
            key_algorithm,
            spki_der: spki.raw.to_vec(),
            subject_attrs,
            ski,
            fingerprint,
        })
    }
}

/// Whether the certificate `der` carries a valid signature by the key whose SubjectPublicKeyInfo is `issuer_spki`
/// (P-256/SHA-256, P-384/SHA-384, RSA PKCS#1 v1.5/SHA-256: what kubeforge and kubeadm issue).
pub fn signed_by(der: &[u8], issuer_spki: &[u8]) -> bool {
    use p256::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let Ok((_, c)) = parse_x509_certificate(der) else { return false };
    let tbs = c.tbs_certificate.as_ref();
    let sig = c.signature_value.data.as_ref();
    if let Ok(vk) = p256::ecdsa::VerifyingKey::from_public_key_der(issuer_spki) {
        return p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| vk.verify(tbs, &s).is_ok());
    }
    if let Ok(vk) = p384::ecdsa::VerifyingKey::from_public_key_der(issuer_spki) {
        return p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| vk.verify(tbs, &s).is_ok());
    }
    if let Ok(pk) = rsa::PublicKey::from_public_key_der(issuer_spki) {
        let vk = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(pk);
        return rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|s| vk.verify(tbs, &s).is_ok());
    }
    false
}
