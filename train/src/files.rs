//! Reading and writing run artifacts, with errors that name the file. Every write goes through
//! the workspace's one atomic writer ([`cifar_models::fsutil::write_atomically`]), so a reader
//! (or a resumed run after a kill) sees either the old file or the new one.

use serde::{de::DeserializeOwned, Serialize};
use std::path::{Path, PathBuf};

/// Any error, boxed, as the cause of a [`FileError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A file that could not be written, read or understood. The message names the file; the
/// cause is the error's source (printed after it by `{:#}`), never repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot write {}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot encode {}", path.display())]
    Encode { path: PathBuf, source: BoxError },
    #[error("{} is not a valid {what}", path.display())]
    Decode { path: PathBuf, what: &'static str, source: BoxError },
}

impl FileError {
    pub fn encode(path: &Path, source: impl Into<BoxError>) -> Self {
        FileError::Encode { path: path.to_path_buf(), source: source.into() }
    }

    pub fn decode(path: &Path, what: &'static str, source: impl Into<BoxError>) -> Self {
        FileError::Decode { path: path.to_path_buf(), what, source: source.into() }
    }
}

/// Writes `bytes` to `path` atomically (the folder is created if missing).
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    cifar_models::fsutil::write_atomically(path, bytes).map_err(|source| FileError::Write { path: path.to_path_buf(), source })
}

/// Writes `value` as pretty-printed JSON, atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), FileError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| FileError::encode(path, e))?;
    write(path, text.as_bytes())
}

pub fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|source| FileError::Read { path: path.to_path_buf(), source })
}

/// Reads a JSON file into `T`; `what` names the file's role in a decoding error.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T, FileError> {
    serde_json::from_slice(&read(path)?).map_err(|e| FileError::decode(path, what, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{:#}` (how `train` prints errors) shows the file once and the cause once.
    #[test]
    fn a_missing_file_names_the_file_and_its_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let err = read_json::<serde_json::Value>(&path, "run summary").unwrap_err();
        let text = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(text.matches("summary.json").count(), 1, "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
    }

    #[test]
    fn json_round_trips_and_a_bad_file_says_what_it_should_be() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.json");
        write_json(&path, &vec![1, 2, 3]).unwrap();
        assert_eq!(read_json::<Vec<u32>>(&path, "list").unwrap(), [1, 2, 3]);
        std::fs::write(&path, b"{").unwrap();
        let err = read_json::<Vec<u32>>(&path, "list").unwrap_err();
        assert!(err.to_string().ends_with("b.json is not a valid list"), "{err}");
    }
}
