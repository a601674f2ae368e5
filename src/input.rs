//! Reading files that a user names (the spec, the files the spec names, identities, directories to import) and
//! files kubeforge finds in OUT: each is checked to be a regular file of bounded size before it is read, and no
//! message ever quotes its content, since any of them could be a private key in the wrong place.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::Error;

/// The most a cluster spec may hold. A spec of 10,000 nodes is about 1 MB.
pub const SPEC_LIMIT: u64 = 16 << 20;
/// The most a PEM file (a certificate, a key, a chain of certificates) may hold.
pub const PEM_LIMIT: u64 = 1 << 20;
/// The most any other file kubeforge reads may hold (an age identity, a kubeconfig, an index).
pub const FILE_LIMIT: u64 = 64 << 20;

/// Reads `path` as UTF-8 text if it is a regular file of at most `limit` bytes. `what` says what the file is for
/// messages (e.g. "pki.cas.ca.chain"); the content never appears in an error.
pub fn read_text(path: &Path, what: &str, limit: u64) -> Result<String, Error> {
    text(path, limit).map_err(|why| Error::new(format!("{what}: {}: {why}", path.display())))
}

/// [`read_text`] for binary content.
pub fn read_bytes(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, Error> {
    bytes(path, limit).map_err(|why| Error::new(format!("{what}: {}: {why}", path.display())))
}

/// The text of `path`, or why it cannot be had (without the path: the caller says where).
pub fn text(path: &Path, limit: u64) -> Result<String, String> {
    String::from_utf8(bytes(path, limit)?).map_err(|_| "not UTF-8 text (a PEM or YAML file was expected)".to_string())
}

/// The bytes of `path`, or why they cannot be had (without the path).
pub fn bytes(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let fail = |why: String| why;
    let meta = fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a device, pipe or socket)" };
        return Err(fail(format!("{kind}; a regular file was expected")));
    }
    if meta.len() > limit {
        return Err(fail(format!("{} bytes, more than the {} this file may hold", meta.len(), limit)));
    }
    let f = fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the check and the read: never read more than the limit.
    f.take(limit + 1).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > limit {
        return Err(fail(format!("more than the {limit} bytes this file may hold")));
    }
    Ok(bytes)
}

/// [`bytes`] for a file that may be absent (`Ok(None)`), with its metadata; one path lookup instead of three (the
/// store is read this way at every rerun, two files per certificate). The file is opened without blocking, so a
/// FIFO in its place is refused like a device, not waited on.
pub fn bytes_if_exists(path: &Path, limit: u64) -> Result<Option<(Vec<u8>, fs::Metadata)>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = match fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        // Absent, or a file where a directory of its path should be: not there either way (as `Path::exists`
        // says); what is in the way is for the writer to refuse.
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(e) => return Err(e.to_string()),
    };
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a device, pipe or socket)" };
        return Err(format!("{kind}; a regular file was expected"));
    }
    if meta.len() > limit {
        return Err(format!("{} bytes, more than the {} this file may hold", meta.len(), limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("more than the {limit} bytes this file may hold"));
    }
    Ok(Some((bytes, meta)))
}

/// Whether `text` holds private key material (a PEM private key, an age identity), so that a message about it
/// can say so instead of showing it.
pub fn looks_secret(text: &str) -> bool {
    text.contains("PRIVATE KEY-----") || text.contains("AGE-SECRET-KEY-")
}

/// Every file below `dir` whose name ends in `.ext`, sorted; an absent `dir` has none.
pub fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<std::path::PathBuf>, Error> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(|e| Error::new(format!("{}: {e}", d.display())))? {
            let p = e.map_err(|e| Error::new(format!("{}: {e}", d.display())))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_large_files_are_refused_without_reading_them() {
        let e = read_text(Path::new("/dev/zero"), "--spec", SPEC_LIMIT).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        let e = read_text(Path::new("/"), "--spec", SPEC_LIMIT).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let dir = std::env::temp_dir().join(format!("kubeforge-input-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big");
        fs::write(&big, vec![b'a'; 2048]).unwrap();
        let e = read_text(&big, "x", 1024).unwrap_err().to_string();
        assert!(e.contains("2048 bytes"), "{e}");
        let bin = dir.join("bin");
        fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
        let e = read_text(&bin, "x", 1024).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
