//! What earlier runs proved about the leaves in the store, so that a rerun proves again only what changed.
//!
//! Keeping a leaf from the store means checking three things that need parsing or cryptography: what the
//! certificate says (an X.509 parse), that it belongs to its key (a private-key parse: for P-256 a scalar
//! multiplication, for RSA its CRT values) and that its CA signed it (a signature verification). At 1,000 nodes
//! that was nearly all of a rerun. All three depend only on bytes: the certificate file's, the key file's and the
//! CA certificate's. So a run records, per leaf, SHA-256 of those three files with the certificate's facts as
//! parsed, and the next run takes a leaf whose three files hash to what was recorded without parsing or verifying
//! anything. What depends on the spec or the clock (subject, SANs, usages, key algorithm, the signer's name, the
//! renewal window) is compared again on every run, from those facts; none of it needs cryptography.
//!
//! The record is a cache, never a source of truth: `OUT/.kubeforge/verified`, next to the locks, not part of the
//! tree or its index. A missing, stale, damaged or foreign record costs a full check and nothing else:
//! - a line counts only for the exact bytes it names: an edited, replaced or truncated certificate, key or CA
//!   certificate hashes differently and is checked in full (and refused if it is wrong, as before);
//! - each line is authenticated (HMAC-SHA-256) under a key derived from the private key of the CA that signed the
//!   leaf: a line can only be forged by someone who holds that key, who could sign a genuine certificate anyway.
//!   Leaves of a CA whose key kubeforge does not hold (an external CA) are always checked in full;
//! - the record is tied to the build's parsing and checking code ([`CODE_ID`]): another kubeforge, or this one
//!   with a changed parser, starts afresh.
//!
//! Only commands that hold the writer lock write it (`gen`, `renew`, the imports), after their transaction, and
//! only when it differs; `plan` reads it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::inspect::CertInfo;

/// The file, relative to OUT.
pub const FILE: &str = ".kubeforge/verified";
const MAGIC: &str = "kubeforge-verified v1";
/// The code whose results the record holds: the certificate parser, the key reader and this format. build.rs
/// hashes their sources (and Cargo.lock, for the parsing crates), so a change to any of them starts a new record.
pub const CODE_ID: &str = env!("KUBEFORGE_VERIFY_CODE_ID");

pub type Sha = [u8; 32];

pub fn sha256(bytes: &[u8]) -> Sha {
    Sha256::digest(bytes).into()
}

/// What a run proved about one leaf: the certificate with SHA-256 `cert` parses to `facts`, its public key is the
/// one of the private key with SHA-256 `key`, and the public key of the CA certificate with SHA-256 `ca` verifies
/// its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    pub cert: Sha,
    pub key: Sha,
    pub ca: Sha,
    pub facts: CertInfo,
}

impl Proof {
    /// The proof for a leaf whose certificate parsed to `info`, for the exact bytes of its certificate and key files
    /// and of its CA's certificate (SHA-256 `ca`).
    pub fn of(info: &CertInfo, cert_pem: &str, key_pem: &str, ca: Sha) -> Proof {
        Proof { cert: sha256(cert_pem.as_bytes()), key: sha256(key_pem.as_bytes()), ca, facts: recorded(info) }
    }
}

/// The facts a line records of `info`: all of them but the DER and the SubjectPublicKeyInfo in it, which the
/// certificate file itself gives back.
pub fn recorded(info: &CertInfo) -> CertInfo {
    let mut facts = info.clone();
    facts.der.clear();
    facts.spki_der.clear();
    facts
}

/// What to keep for the next run about one leaf.
#[derive(Clone)]
pub struct Proven {
    pub id: String,
    pub line: Line,
}

#[derive(Clone)]
pub enum Line {
    /// The record's own line for the leaf, written back as it is (not copied meanwhile: at 10,000 nodes the
    /// record is 20 MB).
    Recorded,
    /// A line made now ([`line`]).
    New(String),
    /// A leaf issued in this run, signed by the CA whose certificate has SHA-256 `ca`, with the key that
    /// authenticates its line: the line is made from its material when the record is written
    /// (`Pki::record_lines`), not held as text meanwhile.
    Issued { ca: Sha, key: MacKey },
}

/// The key that authenticates the proofs of leaves signed by one CA, from that CA's private key.
#[derive(Clone)]
pub struct MacKey([u8; 32]);

impl MacKey {
    pub fn from_ca_key(ca_key_pem: &str) -> MacKey {
        let mut h = Sha256::new();
        h.update(MAGIC.as_bytes());
        h.update([0]);
        h.update(CODE_ID.as_bytes());
        h.update([0]);
        h.update(ca_key_pem.as_bytes());
        MacKey(h.finalize().into())
    }

    fn tag(&self, body: &str) -> String {
        let mut m = hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(body.as_bytes());
        hex(&m.finalize().into_bytes())
    }
}

/// The record as read: each leaf's line, authenticated only when used ([`Record::proof`]), with the key of the CA
/// that signed it.
#[derive(Default)]
pub struct Record {
    lines: BTreeMap<String, (String, String)>,
}

impl Record {
    /// Reads `OUT/.kubeforge/verified`; anything unreadable or from another build is an empty record.
    pub fn load(out: &Path) -> Record {
        let Ok(text) = fs::read_to_string(out.join(FILE)) else { return Record::default() };
        Record::parse(&text)
    }

    fn parse(text: &str) -> Record {
        let mut lines = text.lines();
        if lines.next() != Some(&format!("{MAGIC} {CODE_ID}")) {
            return Record::default();
        }
        let mut out = BTreeMap::new();
        for line in lines {
            let Some((body, tag)) = line.rsplit_once('\t') else { continue };
            let Some((id, _)) = body.split_once('\t') else { continue };
            out.insert(unescape(id), (body.to_string(), tag.to_string()));
        }
        Record { lines: out }
    }

    /// The proof recorded for leaf `id`, if its line is authentic under `key` and well formed, with that line.
    pub fn proof(&self, id: &str, key: &MacKey) -> Option<(Proof, String)> {
        let (body, tag) = self.lines.get(id)?;
        if !constant_time_eq(key.tag(body).as_bytes(), tag.as_bytes()) {
            return None;
        }
        let (i, proof) = decode(body)?;
        (i == id).then(|| (proof, format!("{body}\t{tag}")))
    }

    /// [`Record::proof`], only if it names these certificate, key and CA digests: those are compared first, so a
    /// line about other bytes costs neither its authentication nor its decoding.
    pub fn proof_for(&self, id: &str, key: &MacKey, [cert, leaf_key, ca]: [&Sha; 3]) -> Option<Proof> {
        let (body, _) = self.lines.get(id)?;
        let mut fields = body.split('\t').skip(1);
        for want in [cert, leaf_key, ca] {
            if fields.next()? != hex(want) {
                return None;
            }
        }
        let (body, tag) = self.lines.get(id)?;
        if !constant_time_eq(key.tag(body).as_bytes(), tag.as_bytes()) {
            return None;
        }
        decode(body).filter(|(i, _)| i == id).map(|(_, p)| p)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes the proofs of this run's leaves to `OUT/.kubeforge/verified` (with `record`, the one they were read
/// with, for the lines kept as they were), unless the file already says exactly that. Atomic (a temporary file
/// renamed over it); not synced: losing it costs a full check, nothing more.
pub fn save(out: &Path, record: Option<&Record>, proofs: &[Proven]) -> Result<(), String> {
    // Every line as read, and as many as were read (ids are unique): the file already says exactly this.
    let unchanged = proofs.iter().all(|p| matches!(p.line, Line::Recorded));
    if unchanged && record.is_some_and(|r| r.lines.len() == proofs.len()) {
        return Ok(());
    }
    let mut text = format!("{MAGIC} {CODE_ID}\n");
    let mut sorted: Vec<&Proven> = proofs.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for p in sorted {
        match &p.line {
            Line::New(line) => text.push_str(line),
            Line::Issued { .. } => continue,
            Line::Recorded => match record.and_then(|r| r.lines.get(&p.id)) {
                Some((body, tag)) => {
                    text.push_str(body);
                    text.push('\t');
                    text.push_str(tag);
                }
                None => continue,
            },
        }
        text.push('\n');
    }
    let path = out.join(FILE);
    if fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    let dir = path.parent().expect("FILE has a parent");
    if !dir.is_dir() {
        return Ok(()); // no OUT/.kubeforge: nothing was written, nothing to remember
    }
    let tmp: PathBuf = dir.join(format!("verified.{}.tmp", std::process::id()));
    let r = (|| {
        crate::fault::point("record")?;
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(text.as_bytes())?;
        drop(f);
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = r {
        let _ = fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}

/// The record's line for `proof` of leaf `id`, authenticated under `key` (the key of the CA that signed the leaf).
pub fn line(id: &str, proof: &Proof, key: &MacKey) -> String {
    let mut line = encode(id, proof);
    let tag = key.tag(&line);
    line.push('\t');
    line.push_str(&tag);
    line
}

// The line format: tab-separated fields, each escaped (`\\`, `\t`, `\n`, `\r`, and `\s` for the list separator
// U+001F); list fields join their escaped items with U+001F. Byte strings are lowercase hex.

const LIST: char = '\u{1f}';

fn escape(s: &str) -> String {
    // A plain loop over the bytes (every special character is ASCII): the pattern search is slow unoptimised.
    let plain = s.as_bytes().iter().all(|&b| !matches!(b, b'\\' | b'\t' | b'\n' | b'\r' | 0x1f));
    if plain {
        return s.to_string();
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '\t' => o.push_str("\\t"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            LIST => o.push_str("\\s"),
            c => o.push(c),
        }
    }
    o
}

fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut o = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            o.push(c);
            continue;
        }
        match it.next() {
            Some('t') => o.push('\t'),
            Some('n') => o.push('\n'),
            Some('r') => o.push('\r'),
            Some('s') => o.push(LIST),
            Some(other) => o.push(other),
            None => {}
        }
    }
    o
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.map(escape).collect::<Vec<_>>().join(&LIST.to_string())
}

fn unlist(field: &str) -> Vec<String> {
    if field.is_empty() { Vec::new() } else { field.split(LIST).map(unescape).collect() }
}

pub fn hex(b: &[u8]) -> String {
    // Into a buffer, then one string: pushing characters one by one is slow unoptimised.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = vec![0u8; b.len() * 2];
    let mut i = 0;
    while i < b.len() {
        out[2 * i] = DIGITS[(b[i] >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b[i] & 15) as usize];
        i += 1;
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    // A table and a plain loop: this runs for every digest of the record, in the unoptimised dev profile.
    const BAD: u8 = 0xff;
    const DIGIT: [u8; 256] = {
        let mut t = [BAD; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = 0;
    while i < b.len() {
        let (hi, lo) = (DIGIT[b[i] as usize], DIGIT[b[i + 1] as usize]);
        if hi == BAD || lo == BAD {
            return None;
        }
        out.push(hi << 4 | lo);
        i += 2;
    }
    Some(out)
}

/// The usage names the parser produces, back as the `'static` strings `CertInfo` holds.
fn usage_name(s: &str) -> Option<&'static str> {
    const NAMES: [&str; 10] = [
        "digitalSignature",
        "nonRepudiation",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "keyCertSign",
        "cRLSign",
        "serverAuth",
        "clientAuth",
        "other",
    ];
    NAMES.into_iter().find(|n| *n == s)
}

/// A proof as one line (without its tag). Every field of `CertInfo` but its DER and the public key in it (which the
/// certificate file itself gives back) is written; destructuring it here makes a new field a compile error until it
/// is recorded too.
fn encode(id: &str, p: &Proof) -> String {
    let CertInfo {
        der: _,
        subject,
        subject_cn,
        issuer,
        serial,
        not_before,
        not_after,
        sans,
        key_usage,
        ext_key_usage,
        is_ca,
        key_algorithm,
        spki_der: _,
        subject_attrs,
        ski,
        fingerprint,
    } = &p.facts;
    let attrs = subject_attrs.iter().map(|(arcs, printable, value)| {
        let arcs: Vec<String> = arcs.iter().map(u64::to_string).collect();
        format!("{}:{}:{value}", arcs.join("."), if *printable { "p" } else { "u" })
    });
    let attrs: Vec<String> = attrs.collect();
    [
        escape(id),
        hex(&p.cert),
        hex(&p.key),
        hex(&p.ca),
        escape(subject),
        escape(subject_cn),
        escape(issuer),
        escape(serial),
        not_before.unix_timestamp().to_string(),
        not_after.unix_timestamp().to_string(),
        list(sans.iter().map(String::as_str)),
        list(key_usage.iter().copied()),
        list(ext_key_usage.iter().copied()),
        (if *is_ca { "ca" } else { "leaf" }).to_string(),
        escape(key_algorithm),
        list(attrs.iter().map(String::as_str)),
        ski.as_ref().map_or("-".to_string(), |k| hex(k)),
        escape(fingerprint),
    ]
    .join("\t")
}

/// A line back as (id, proof); `None` if it is not exactly what [`encode`] writes. The DER and the
/// SubjectPublicKeyInfo are left empty for the caller to fill from the certificate file.
fn decode(body: &str) -> Option<(String, Proof)> {
    let f: Vec<&str> = body.split('\t').collect();
    let [id, cert, key, ca, subject, cn, issuer, serial, nb, na, sans, ku, eku, ca_flag, alg, attrs, ski, fp] =
        f.as_slice()
    else {
        return None;
    };
    let sha = |s: &str| -> Option<Sha> { unhex(s)?.try_into().ok() };
    let time = |s: &str| OffsetDateTime::from_unix_timestamp(s.parse().ok()?).ok();
    let usages = |s: &str| unlist(s).iter().map(|u| usage_name(u)).collect::<Option<Vec<_>>>();
    let subject_attrs = unlist(attrs)
        .into_iter()
        .map(|a| {
            let (arcs, rest) = a.split_once(':')?;
            let (kind, value) = rest.split_once(':')?;
            let arcs = arcs.split('.').map(|n| n.parse().ok()).collect::<Option<Vec<u64>>>()?;
            let printable = match kind {
                "p" => true,
                "u" => false,
                _ => return None,
            };
            Some((arcs, printable, value.to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    let facts = CertInfo {
        der: Vec::new(),
        subject: unescape(subject),
        subject_cn: unescape(cn),
        issuer: unescape(issuer),
        serial: unescape(serial),
        not_before: time(nb)?,
        not_after: time(na)?,
        sans: unlist(sans),
        key_usage: usages(ku)?,
        ext_key_usage: usages(eku)?,
        is_ca: match *ca_flag {
            "ca" => true,
            "leaf" => false,
            _ => return None,
        },
        key_algorithm: unescape(alg),
        spki_der: Vec::new(),
        subject_attrs,
        ski: if *ski == "-" { None } else { Some(unhex(ski)?) },
        fingerprint: unescape(fp),
    };
    Some((unescape(id), Proof { cert: sha(cert)?, key: sha(key)?, ca: sha(ca)?, facts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo_proofs() -> Vec<(String, Proof)> {
        let c = crate::spec::parse(Path::new("t.yaml"), crate::DEMO_SPEC).unwrap();
        let now = crate::times::parse_instant("2026-01-01T00:00:00Z").unwrap();
        let store = super::super::store::Store::plain(Path::new("/nonexistent/kubeforge-verified-test"));
        let requests = super::super::plan::requests(&c);
        let keys = super::super::keys::KeySource::seeded(1);
        let pki = super::super::build(&c, &requests, &store, &keys, now, &Default::default(), None).unwrap();
        pki.certs
            .values()
            .map(|m| {
                let proof =
                    Proof { cert: sha256(m.cert_pem.as_bytes()), key: [7; 32], ca: [9; 32], facts: recorded(&m.info) };
                (m.request.id.clone(), proof)
            })
            .collect()
    }

    #[test]
    fn every_fact_but_the_der_survives_the_line_format() {
        let mut proofs = demo_proofs();
        // Strings that need escaping, and an unusual subject.
        let tricky = &mut proofs[0].1.facts;
        tricky.subject = "O = a\tb\\c\u{1f}d, CN = x\ny\r".into();
        tricky.subject_attrs.push((vec![2, 5, 4, 11], false, "ünï:cödé\t1".into()));
        tricky.sans.push("DNS:with\u{1f}separator".into());
        tricky.ski = None;
        for (id, p) in &proofs {
            let line = encode(id, p);
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(decode(&line), Some((id.clone(), p.clone())), "{line}");
        }
    }

    #[test]
    fn only_authentic_lines_for_the_asked_id_count() {
        let proofs = demo_proofs();
        let key = MacKey::from_ca_key("ca key");
        let other = MacKey::from_ca_key("another ca key");
        let with_key: Vec<_> =
            proofs.iter().map(|(i, p)| Proven { id: i.clone(), line: Line::New(line(i, p, &key)) }).collect();
        let dir = std::env::temp_dir().join(format!("kubeforge-verified-{}", std::process::id()));
        fs::create_dir_all(dir.join(".kubeforge")).unwrap();
        save(&dir, None, &with_key).unwrap();
        let text = fs::read_to_string(dir.join(FILE)).unwrap();
        let record = Record::parse(&text);
        for (id, p) in &proofs {
            assert_eq!(record.proof(id, &key).map(|(p, _)| p).as_ref(), Some(p), "{id}");
            assert!(record.proof(id, &other).is_none(), "a line under another CA's key: {id}");
            let names = [&p.cert, &p.key, &p.ca];
            assert_eq!(record.proof_for(id, &key, names).as_ref(), Some(p), "{id}");
            for i in 0..3 {
                let mut wrong = [p.cert, p.key, p.ca];
                wrong[i][0] ^= 1;
                let names = [&wrong[0], &wrong[1], &wrong[2]];
                assert!(record.proof_for(id, &key, names).is_none(), "{id}: digest {i} differs");
            }
        }
        // Written back from the lines as read, the file is the same.
        let again: Vec<_> = with_key.iter().map(|p| Proven { line: Line::Recorded, ..p.clone() }).collect();
        save(&dir, Some(&record), &again).unwrap();
        assert_eq!(fs::read_to_string(dir.join(FILE)).unwrap(), text);
        // A line edited in any field (here: a SAN added) no longer authenticates.
        let edited = text.replacen("DNS:kubernetes\u{1f}", "DNS:evil.example\u{1f}DNS:kubernetes\u{1f}", 1);
        assert_ne!(edited, text);
        let record = Record::parse(&edited);
        let bad = proofs.iter().filter(|(id, _)| record.proof(id, &key).is_none()).count();
        assert_eq!(bad, 1);
        // A line moved to another id does not count for it.
        let (a, b) = (&proofs[0].0, &proofs[1].0);
        let moved = text
            .lines()
            .map(|l| if l.starts_with(&format!("{}\t", escape(b))) { "" } else { l })
            .map(|l| l.replacen(&format!("{}\t", escape(a)), &format!("{}\t", escape(b)), 1))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(Record::parse(&moved).proof(b, &key).is_none());
        // Another build's record, or garbage, is empty.
        assert!(Record::parse(&text.replacen(CODE_ID, "other", 1)).lines.is_empty());
        assert!(Record::parse("").lines.is_empty());
        // Writing the same proofs again leaves the file alone.
        let before = fs::metadata(dir.join(FILE)).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        save(&dir, None, &with_key).unwrap();
        assert_eq!(fs::metadata(dir.join(FILE)).unwrap().modified().unwrap(), before);
        fs::remove_dir_all(&dir).unwrap();
    }
}
