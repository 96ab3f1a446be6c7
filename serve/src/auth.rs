//! API keys (`--api-key-file`): which routes need one, the key file, and the check.
//!
//! A key file holds one key per line (blank lines and lines starting with `#` are skipped);
//! clients send `Authorization: Bearer KEY`. SIGHUP re-reads the file; a file that cannot be
//! read then, or holds no key, leaves the previous keys in force. Keys are compared in
//! constant time and never logged.

use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};
use subtle::ConstantTimeEq;

/// Why a request was refused; the message tells the client what to send, never the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this server needs an API key: send `Authorization: Bearer KEY`")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the API key file {file}: {source}")]
    Read { file: PathBuf, source: std::io::Error },
    #[error("the API key file {0} holds no key (one key per line; blank and # lines are skipped)")]
    Empty(PathBuf),
    #[error("{file}, line {line}: a key is printable ASCII without spaces (it travels in an HTTP header)")]
    BadKey { file: PathBuf, line: usize },
}

/// The keys in force and the file they came from.
pub struct ApiKeys {
    file: PathBuf,
    keys: RwLock<Vec<Vec<u8>>>,
}

impl ApiKeys {
    pub fn load(file: &Path) -> Result<Self, KeyFileError> {
        Ok(Self { file: file.to_path_buf(), keys: RwLock::new(read_keys(file)?) })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Keys in force.
    pub fn count(&self) -> usize {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Re-reads the file; on error the keys in force stay. Returns how many keys are in force.
    pub fn reload(&self) -> Result<usize, KeyFileError> {
        let keys = read_keys(&self.file)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(count)
    }

    /// Checks an `Authorization` header value. Every key is compared (no early exit), each in
    /// constant time, so the answer's timing says nothing about how close a guess came.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<(), Denied> {
        let token = authorization.and_then(bearer_token).ok_or(Denied::Missing)?;
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let matched = keys.iter().fold(subtle::Choice::from(0), |acc, key| acc | key.as_slice().ct_eq(token));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Denied::Invalid)
        }
    }
}

/// The first key of a key file (what `serve bench --url --api-key-file` sends).
pub fn first_key(file: &Path) -> Result<String, KeyFileError> {
    let keys = read_keys(file)?;
    Ok(String::from_utf8_lossy(&keys[0]).into_owned())
}

/// The token of `Bearer TOKEN` (the scheme is case-insensitive, RFC 7235).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ")).then(|| rest.trim_ascii()).filter(|t| !t.is_empty())
}

fn read_keys(file: &Path) -> Result<Vec<Vec<u8>>, KeyFileError> {
    let text = std::fs::read_to_string(file).map_err(|source| KeyFileError::Read { file: file.to_path_buf(), source })?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let key = line.trim();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyFileError::BadKey { file: file.to_path_buf(), line: i + 1 });
        }
        keys.push(key.as_bytes().to_vec());
    }
    if keys.is_empty() {
        return Err(KeyFileError::Empty(file.to_path_buf()));
    }
    Ok(keys)
}

/// Which requests need a key when keys are set: everything under `/v1/` and `/v2/` except the
/// health routes (orchestrators probe them without credentials); the page and `/metrics` only
/// with `--protect-all`.
pub fn needs_key(path: &str, protect_all: bool) -> bool {
    const OPEN: [&str; 4] = ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"];
    if OPEN.contains(&path) {
        return false;
    }
    let api = path == "/v2" || path.starts_with("/v1/") || path.starts_with("/v2/");
    api || protect_all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> (tempfile::TempDir, Result<ApiKeys, KeyFileError>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, text).unwrap();
        let keys = ApiKeys::load(&file);
        (dir, keys)
    }

    #[test]
    fn bearer_keys_are_checked() {
        let (_dir, keys) = keys("# ops\n\nalpha-1\n  beta_2  \n");
        let keys = keys.unwrap();
        assert_eq!(keys.count(), 2);
        assert_eq!(keys.check(Some(b"Bearer alpha-1")), Ok(()));
        assert_eq!(keys.check(Some(b"bearer beta_2")), Ok(()));
        assert_eq!(keys.check(Some(b"Bearer alpha-")), Err(Denied::Invalid));
        assert_eq!(keys.check(Some(b"Bearer alpha-12")), Err(Denied::Invalid));
        assert_eq!(keys.check(Some(b"Basic alpha-1")), Err(Denied::Missing));
        assert_eq!(keys.check(Some(b"Bearer ")), Err(Denied::Missing));
        assert_eq!(keys.check(None), Err(Denied::Missing));
    }

    #[test]
    fn a_bad_file_is_refused_and_a_bad_reload_keeps_the_keys() {
        assert!(matches!(keys("\n# none\n").1, Err(KeyFileError::Empty(_))));
        assert!(matches!(keys("ok\nwith space\n").1, Err(KeyFileError::BadKey { line: 2, .. })));
        let (dir, keys) = keys("first\n");
        let keys = keys.unwrap();
        std::fs::write(dir.path().join("keys"), "\n").unwrap();
        assert!(keys.reload().is_err());
        assert_eq!(keys.check(Some(b"Bearer first")), Ok(()));
        std::fs::write(dir.path().join("keys"), "second\n").unwrap();
        assert_eq!(keys.reload().unwrap(), 1);
        assert_eq!(keys.check(Some(b"Bearer first")), Err(Denied::Invalid));
        assert_eq!(keys.check(Some(b"Bearer second")), Ok(()));
    }

    #[test]
    fn health_stays_open() {
        for open in ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"] {
            assert!(!needs_key(open, true), "{open}");
        }
        for api in ["/v2", "/v2/models/x/infer", "/v1/classify", "/v1/models"] {
            assert!(needs_key(api, false), "{api}");
        }
        assert!(!needs_key("/", false) && !needs_key("/metrics", false));
        assert!(needs_key("/", true) && needs_key("/metrics", true));
    }
}
