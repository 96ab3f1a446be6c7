//! CIFAR-10 data: the official binary layout (from a folder or the `.tar.gz`), the download,
//! the seed's 45k/5k split, its augmentation and a multi-threaded batch loader.
//!
//! Everything here is plain Rust (`Vec<f32>` batches in NCHW order), so the data side does not
//! depend on candle: the trainer turns a [`Batch`] into a tensor without a copy
//! (`Tensor::from_vec`).

mod augment;
mod cifar;
mod download;
mod loader;
mod split;
mod synthetic;

pub use augment::{Augment, Normalizer, PAD, SIDE};
pub use cifar::{
    channel_mean, locate, BatchFiles, Cifar10, Layout, Records, Source, ARCHIVE_NAME, EXTRACTED_DIR,
    IMAGE_BYTES, META_FILE, RECORD_BYTES, TEST_FILE, TRAIN_FILES,
};
pub use download::{
    download, ensure, extract, fetch, md5_hex, verify_md5, DownloadOptions, CIFAR10_MD5,
    CIFAR10_URL,
};
pub use loader::{Batch, BatchPlan, Epoch, Loader, LoaderConfig};
pub use split::{numpy_shuffle, split_train_val, Mt19937, Split, DEFAULT_SPLIT_SEED, VAL_SIZE};
pub use synthetic::{
    synthetic_records, write_archive, write_synthetic, write_synthetic_archive, SyntheticSpec,
};

use std::path::PathBuf;

/// Everything that can go wrong on the data side. Each message names the file and says what was
/// expected and what to do, because the user meets these at the command line.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "no CIFAR-10 found in {}: expected data_batch_1.bin … data_batch_5.bin, test_batch.bin \
         and batches.meta.txt (there or in {EXTRACTED_DIR}/), or {ARCHIVE_NAME}; \
         pass --data-dir or --download",
        dir.display()
    )]
    NotFound { dir: PathBuf },

    #[error(
        "{source_name}: {file} is missing; expected data_batch_1.bin … data_batch_5.bin, \
         test_batch.bin and batches.meta.txt together: extract {ARCHIVE_NAME} again or use \
         --download with an empty --data-dir"
    )]
    MissingFile { source_name: String, file: String },

    /// The cause is the source (printed after the message by `{:#}`), not repeated in it.
    #[error("cannot read {}", path.display())]
    Io { path: PathBuf, source: std::io::Error },

    #[error(
        "{file} is {bytes} bytes; expected a whole number of 3,073-byte records \
         (1 label + 3,072 pixels): the file is truncated; extract or download it again"
    )]
    Truncated { file: String, bytes: u64 },

    #[error(
        "{file} holds {records} records; expected {expected} (every official batch file holds \
         10,000): extract or download it again"
    )]
    RecordCount { file: String, records: u64, expected: usize },

    #[error(
        "{file}: record {record} has label {label}; expected 0–9 (CIFAR-10 has ten classes): \
         the file is damaged or from another data set; extract or download it again"
    )]
    BadLabel { file: String, record: usize, label: u8 },

    #[error(
        "{file} is not a CIFAR-10 binary batch: it looks like {looks_like}; expected the binary \
         version ({ARCHIVE_NAME}, unpacking to {EXTRACTED_DIR}/)"
    )]
    Foreign { file: String, looks_like: String },

    #[error("{file} names {found} classes; expected 10 class names, one a line, in label order")]
    BadMeta { file: String, found: usize },

    #[error(
        "{} is not a readable .tar.gz ({reason}); expected the official {ARCHIVE_NAME}: \
         delete it and download it again",
        archive.display()
    )]
    BadArchive { archive: PathBuf, reason: String },

    #[error(
        "{} has MD5 {found}; expected {expected}: the file is damaged or not the official \
         archive; download it again (--download removes a copy that fails this check)",
        file.display()
    )]
    Md5Mismatch { file: PathBuf, expected: String, found: String },

    #[error(
        "download of {url} failed: {reason}; check the network, or fetch {ARCHIVE_NAME} by hand \
         and put it in --data-dir"
    )]
    Download { url: String, reason: String },

    #[error(
        "{} already exists; expected an empty place to extract into: remove it or choose \
         another --data-dir",
        path.display()
    )]
    TargetExists { path: PathBuf },

    #[error(
        "no training images in {}: expected any of data_batch_1.bin … data_batch_5.bin (whole \
         3,073-byte records) there or in {EXTRACTED_DIR}/, or {ARCHIVE_NAME}",
        dir.display()
    )]
    NoTrainingImages { dir: PathBuf },

    #[error("invalid data setting: {0}")]
    Config(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), source }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
