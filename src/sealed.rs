//! The encrypted key store (`pki.encryption.age`): every secret file kubeforge writes (private keys,
//! kubeconfigs, the encryption-at-rest config) is kept in OUT as `secrets/<path>.age`, encrypted to the spec's
//! age recipients, so the whole of OUT can be committed. Plain secret files appear only when asked for
//! (`gen --materialize NODE|all`), and OUT/.gitignore keeps them out of git.
//!
//! Reruns, renewals and plans decrypt the store in memory with an identity given on the command line or by
//! environment variable, never from the spec. A secret whose content did not change keeps its ciphertext byte
//! for byte (age encryption is randomized), so a rerun with nothing changed changes nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::armor::{ArmoredReader, ArmoredWriter, Format};

use crate::Error;

/// Sealing the secrets of a run (`pki.encryption.age`).
pub struct Sealing {
    pub recipients: Vec<age::x25519::Recipient>,
    /// The previous run's secrets: a secret whose plaintext did not change keeps its ciphertext.
    pub previous: Unsealed,
    /// Write plain copies of the secrets of this node (`all`: every node and the store) as well.
    pub materialize: Option<String>,
}

/// Where the sealed copies live, relative to OUT.
pub const SECRETS_DIR: &str = "secrets";

/// The environment variable naming an age identity file.
pub const IDENTITY_ENV: &str = "KUBEFORGE_AGE_IDENTITY";

pub fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, String> {
    s.parse::<age::x25519::Recipient>().map_err(|e| format!("{s:?} is not an age X25519 recipient (age1...): {e}"))
}

/// Reads an identity file as age-keygen writes it (comments and `AGE-SECRET-KEY-1...` lines).
pub fn load_identities(path: &Path) -> Result<Vec<age::x25519::Identity>, Error> {
    let text = crate::input::read_text(path, "age identity", crate::input::PEM_LIMIT)?;
    let ids: Vec<age::x25519::Identity> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .map(|l| l.parse::<age::x25519::Identity>())
        .collect::<Result<_, _>>()
        .map_err(|_| Error::new(format!("age identity {}: a malformed AGE-SECRET-KEY line", path.display())))?;
    if ids.is_empty() {
        return Err(Error::new(format!("age identity {}: no AGE-SECRET-KEY-1... line in it", path.display())));
    }
    Ok(ids)
}

/// The identity file from `--identity`, else from `$KUBEFORGE_AGE_IDENTITY`.
pub fn identity_path(flag: Option<&Path>) -> Option<PathBuf> {
    flag.map(Path::to_path_buf).or_else(|| std::env::var_os(IDENTITY_ENV).map(PathBuf::from))
}

pub fn seal(recipients: &[age::x25519::Recipient], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let err = |e: &dyn std::fmt::Display| Error::new(format!("age encryption failed: {e}"));
    let enc =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient)).map_err(|e| err(&e))?;
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor).map_err(|e| err(&e))?;
    let mut w = enc.wrap_output(armor).map_err(|e| err(&e))?;
    w.write_all(plaintext).map_err(|e| err(&e))?;
    w.finish().and_then(|a| a.finish()).map_err(|e| err(&e))?;
    Ok(out)
}

fn open(ids: &[age::x25519::Identity], ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    let dec = age::Decryptor::new_buffered(ArmoredReader::new(ciphertext)).map_err(|e| e.to_string())?;
    let mut r = dec.decrypt(ids.iter().map(|i| i as &dyn age::Identity)).map_err(|e| e.to_string())?;
    let mut plain = Vec::new();
    r.read_to_end(&mut plain).map_err(|e| e.to_string())?;
    Ok(plain)
}

/// Every `OUT/secrets/**.age`, as (sealed path relative to OUT, ciphertext).
pub fn sealed_files(out: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut found = Vec::new();
    for p in crate::input::files_with_extension(&out.join(SECRETS_DIR), "age")? {
        let bytes = crate::input::read_bytes(&p, "sealed secret", crate::input::PEM_LIMIT)?;
        found.push((p.strip_prefix(out).unwrap().to_string_lossy().into_owned(), bytes));
    }
    Ok(found)
}

/// The plain path (relative to OUT) a sealed file stands for: `secrets/pki/ca.key.age` -> `pki/ca.key`.
pub fn plain_path(sealed: &str) -> Option<&str> {
    sealed.strip_prefix(SECRETS_DIR)?.strip_prefix('/')?.strip_suffix(".age")
}

pub fn sealed_path(plain: &str) -> String {
    format!("{SECRETS_DIR}/{plain}.age")
}

/// The previous run's secrets: plain path -> (plaintext, ciphertext as stored).
pub type Unsealed = BTreeMap<String, (Vec<u8>, Vec<u8>)>;

/// Decrypts the whole store. Fails, naming the file, if any secret cannot be decrypted with `ids`.
pub fn unseal_all(out: &Path, ids: &[age::x25519::Identity]) -> Result<Unsealed, Error> {
    let mut map = BTreeMap::new();
    for (path, cipher) in sealed_files(out)? {
        let plain = open(ids, &cipher).map_err(|e| {
            Error::new(format!(
                "{}: cannot decrypt with the given age identity ({e}); is it the identity of one of \
                 pki.encryption.age.recipients?",
                out.join(&path).display()
            ))
        })?;
        let Some(p) = plain_path(&path) else { continue };
        map.insert(p.to_string(), (plain, cipher));
    }
    Ok(map)
}
