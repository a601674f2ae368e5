//! Private keys: generation from an injectable key source, kubeadm's PEM encodings, and signing for rcgen.
//!
//! rcgen's own backends (ring, aws-lc) cannot write or read the PEM forms kubeadm uses (PKCS#1 `RSA PRIVATE KEY`,
//! SEC 1 `EC PRIVATE KEY`), ring cannot generate RSA keys, and both sign ECDSA with a random nonce, so no two runs
//! give the same certificate. kubeforge therefore brings its own keys, built on the RustCrypto crates, and hands
//! rcgen a [`rcgen::SigningKey`]: ECDSA signs deterministically (RFC 6979), RSA with PKCS#1 v1.5 (deterministic
//! by design). The same key and the same certificate fields give the same bytes, which is what makes snapshot
//! tests exact and reruns byte-identical.

use std::fmt;

use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePublicKey, LineEnding};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use sha2::{Digest, Sha256};

use crate::spec::KeyAlgorithm;

/// Where key material and serial numbers come from.
///
/// Every key is drawn from its own ChaCha20 stream seeded with SHA-256(master seed, key id), so the keys do not
/// depend on the order in which they are generated (issuance can run in parallel) and a seeded source gives the
/// same keys on every machine. Production uses a master seed from the operating system's RNG
/// ([`KeySource::from_os`]); tests use [`KeySource::seeded`]. The master seed lives only in memory.
#[derive(Clone)]
pub struct KeySource {
    master: [u8; 32],
}

impl KeySource {
    pub fn from_os() -> Result<Self, String> {
        let mut master = [0u8; 32];
        getrandom::fill(&mut master).map_err(|e| format!("the operating system's random source failed: {e}"))?;
        Ok(Self { master })
    }

    /// A deterministic source, for tests and reproducible demos: never for a real cluster.
    pub fn seeded(seed: u64) -> Self {
        let mut master = [0u8; 32];
        master[..8].copy_from_slice(&seed.to_le_bytes());
        Self { master }
    }

    pub fn rng(&self, purpose: &str) -> ChaCha20Rng {
        let mut h = Sha256::new();
        h.update(self.master);
        h.update(purpose.as_bytes());
        ChaCha20Rng::from_seed(h.finalize().into())
    }

    /// A serial number uniform in [1, 2^63 - 1), as kubeadm draws them.
    pub fn serial(&self, id: &str) -> u64 {
        let mut h = Sha256::new();
        h.update(self.master);
        h.update(b"serial\0");
        h.update(id.as_bytes());
        let d = h.finalize();
        let n = u64::from_be_bytes(d[..8].try_into().unwrap());
        n % ((1u64 << 63) - 2) + 1
    }

    pub fn generate(&self, alg: KeyAlgorithm, id: &str) -> Key {
        let mut rng = self.rng(&format!("key\0{id}"));
        let inner = match alg {
            KeyAlgorithm::EcdsaP256 => Inner::P256(p256::ecdsa::SigningKey::generate_from_rng(&mut rng)),
            KeyAlgorithm::EcdsaP384 => Inner::P384(p384::ecdsa::SigningKey::generate_from_rng(&mut rng)),
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096 => {
                let bits = match alg {
                    KeyAlgorithm::Rsa2048 => 2048,
                    KeyAlgorithm::Rsa3072 => 3072,
                    _ => 4096,
                };
                Inner::Rsa(Box::new(rsa::PrivateKey::new(&mut rng, bits).expect("RSA key generation")))
            }
        };
        Key::new(inner)
    }
}

enum Inner {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Rsa(Box<rsa::PrivateKey>),
}

/// A private key with its public half precomputed in the forms rcgen needs.
pub struct Key {
    inner: Inner,
    /// The subjectPublicKey BIT STRING contents (EC point, or PKCS#1 RSAPublicKey DER).
    public_bits: Vec<u8>,
    /// The whole SubjectPublicKeyInfo, DER.
    spki: Vec<u8>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        write!(f, "Key({})", self.algorithm().name())
    }
}

impl Key {
    fn new(inner: Inner) -> Self {
        let (public_bits, spki) = match &inner {
            Inner::P256(k) => {
                let vk = k.verifying_key();
                (vk.to_sec1_point(false).as_bytes().to_vec(), vk.to_public_key_der().unwrap().into_vec())
            }
            Inner::P384(k) => {
                let vk = k.verifying_key();
                (vk.to_sec1_point(false).as_bytes().to_vec(), vk.to_public_key_der().unwrap().into_vec())
            }
            Inner::Rsa(k) => {
                let pk = k.to_public_key();
                (pk.to_pkcs1_der().unwrap().into_vec(), pk.to_public_key_der().unwrap().into_vec())
            }
        };
        Key { inner, public_bits, spki }
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.inner {
            Inner::P256(_) => KeyAlgorithm::EcdsaP256,
            Inner::P384(_) => KeyAlgorithm::EcdsaP384,
            Inner::Rsa(k) => match rsa::traits::PublicKeyParts::size(k.as_ref()) * 8 {
                2048 => KeyAlgorithm::Rsa2048,
                3072 => KeyAlgorithm::Rsa3072,
                _ => KeyAlgorithm::Rsa4096,
            },
        }
    }

    /// The private key as kubeadm writes it: SEC 1 `EC PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` (kubeadm-facts §1.6).
    pub fn to_pem(&self) -> String {
        match &self.inner {
            Inner::P256(k) => sec1_pem(&k.to_bytes(), &P256_OID, &self.public_bits),
            Inner::P384(k) => sec1_pem(&k.to_bytes(), &P384_OID, &self.public_bits),
            Inner::Rsa(k) => k.to_pkcs1_pem(LineEnding::LF).unwrap().to_string(),
        }
    }

    /// Reads a key written by [`Key::to_pem`] (or by kubeadm).
    pub fn from_pem(pem: &str) -> Result<Key, String> {
        let label = pem
            .lines()
            .find_map(|l| l.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")))
            .ok_or("not a PEM private key")?;
        let inner = match label {
            "EC PRIVATE KEY" => {
                if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
                    Inner::P256(k.into())
                } else if let Ok(k) = p384::SecretKey::from_sec1_pem(pem) {
                    Inner::P384(k.into())
                } else {
                    return Err("an EC private key that is neither a valid P-256 nor P-384 key".into());
                }
            }
            "RSA PRIVATE KEY" => {
                let k = rsa::PrivateKey::from_pkcs1_pem(pem).map_err(|e| format!("a broken RSA private key: {e}"))?;
                Inner::Rsa(Box::new(k))
            }
            "PRIVATE KEY" => {
                use p256::pkcs8::DecodePrivateKey;
                if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
                    Inner::P256(k.into())
                } else if let Ok(k) = p384::SecretKey::from_pkcs8_pem(pem) {
                    Inner::P384(k.into())
                } else if let Ok(k) = rsa::PrivateKey::from_pkcs8_pem(pem) {
                    Inner::Rsa(Box::new(k))
                } else {
                    return Err("a PKCS#8 private key that is not P-256, P-384 or RSA".into());
                }
            }
            other if other.contains("PRIVATE") => {
                return Err("an unsupported kind of private key; expected SEC 1 (EC), PKCS#1 (RSA) or PKCS#8".into());
            }
            other => return Err(format!("a PEM block {other:?}, not a private key")),
        };
        Ok(Key::new(inner))
    }

    /// The public key as PKIX `PUBLIC KEY` PEM (what kubeadm writes to `sa.pub`).
    pub fn public_key_pem(&self) -> String {
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &self.spki);
        let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(chunk).unwrap());
            s.push('\n');
        }
        s.push_str("-----END PUBLIC KEY-----\n");
        s
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits, the key identifier Go computes for CAs.
    pub fn key_id(&self) -> Vec<u8> {
        sha1(&self.public_bits).to_vec()
    }
}

impl rcgen::PublicKeyData for Key {
    fn der_bytes(&self) -> &[u8] {
        &self.public_bits
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match &self.inner {
            Inner::P256(_) => &rcgen::PKCS_ECDSA_P256_SHA256,
            Inner::P384(_) => &rcgen::PKCS_ECDSA_P384_SHA384,
            Inner::Rsa(_) => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl rcgen::SigningKey for Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(match &self.inner {
            // RFC 6979 deterministic nonces; X.509 wants the DER (ASN.1) signature form.
            Inner::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_der().to_vec()
            }
            Inner::P384(k) => {
                let sig: p384::ecdsa::Signature = k.sign(msg);
                sig.to_der().to_vec()
            }
            Inner::Rsa(k) => {
                let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(k.as_ref().clone());
                signer.sign(msg).to_vec()
            }
        })
    }
}

/// The named-curve OIDs of SEC 1 `parameters`, DER (tag, length, value).
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A SEC 1 `EC PRIVATE KEY` PEM (RFC 5915: version 1, the private scalar, the curve, the public point), written
/// from the public point the key already holds: the elliptic-curve crates' `to_sec1_pem` derives it again, a
/// scalar multiplication per key, a tenth of a first run's CPU time. The bytes are the same (a test compares).
fn sec1_pem(scalar: &[u8], curve_oid: &[u8], point: &[u8]) -> String {
    fn der(tag: u8, content: &[u8], out: &mut Vec<u8>) {
        out.push(tag);
        match content.len() {
            n @ 0..=0x7f => out.push(n as u8),
            n @ 0x80..=0xff => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
    }
    let mut body = vec![0x02, 0x01, 0x01];
    der(0x04, scalar, &mut body);
    der(0xa0, curve_oid, &mut body);
    let mut bits = vec![0x00];
    bits.extend_from_slice(point);
    let mut bit_string = Vec::new();
    der(0x03, &bits, &mut bit_string);
    der(0xa1, &bit_string, &mut body);
    let mut seq = Vec::new();
    der(0x30, &body, &mut seq);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &seq);
    let mut s = String::from("-----BEGIN EC PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        s.push('\n');
    }
    s.push_str("-----END EC PRIVATE KEY-----\n");
    s
}

/// SHA-1, only for key identifiers (RFC 5280 method 1); not used for any signature.
fn sha1(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_answers() {
        let hex = |b: [u8; 20]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn sec1_keys_are_what_the_curve_crates_write() {
        let src = KeySource::seeded(11);
        for i in 0..64 {
            for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
                let k = src.generate(alg, &format!("k{i}"));
                let theirs = match &k.inner {
                    Inner::P256(k) => p256::SecretKey::from(k).to_sec1_pem(LineEnding::LF).unwrap().to_string(),
                    Inner::P384(k) => p384::SecretKey::from(k).to_sec1_pem(LineEnding::LF).unwrap().to_string(),
                    Inner::Rsa(_) => unreachable!(),
                };
                assert_eq!(k.to_pem(), theirs, "{alg:?} k{i}");
            }
        }
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let src = KeySource::seeded(7);
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
            let k = src.generate(alg, "x");
            let pem = k.to_pem();
            let back = Key::from_pem(&pem).unwrap();
            assert_eq!(back.spki_der(), k.spki_der());
            assert_eq!(back.algorithm(), alg);
            assert_eq!(src.generate(alg, "x").to_pem(), pem, "a seeded source is deterministic");
            assert_ne!(src.generate(alg, "y").to_pem(), pem, "each id gets its own key");
        }
    }
}
