//! Reader for the official CIFAR-10 binary layout, from a folder or from the `.tar.gz` itself.
//!
//! A record is 1 label byte then 3,072 pixel bytes: the red, green and blue planes, each 32×32
//! row-major. Every file is checked (format sniffing, size, record count, labels) before any
//! record is used, so a bad file ends in one [`DataError`] that names it.

use super::{DataError, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

pub const IMAGE_BYTES: usize = 3 * 32 * 32;
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
pub const TEST_FILE: &str = "test_batch.bin";
pub const META_FILE: &str = "batches.meta.txt";
pub const ARCHIVE_NAME: &str = "cifar-10-binary.tar.gz";
/// The folder the official archive unpacks to.
pub const EXTRACTED_DIR: &str = "cifar-10-batches-bin";

/// How many records each batch file must hold. The official set has 10,000; smaller synthetic
/// sets (tests, demos) say so explicitly rather than the reader guessing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub records_per_file: usize,
}

impl Layout {
    pub const OFFICIAL: Layout = Layout { records_per_file: 10_000 };
}

impl Default for Layout {
    fn default() -> Self {
        Layout::OFFICIAL
    }
}

/// Labelled images, stored as the files store them (CHW `u8`), so a sample is a slice.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    labels: Vec<u8>,
    pixels: Vec<u8>,
}

impl Records {
    /// `pixels` holds `labels.len()` images of [`IMAGE_BYTES`] each; every label must be 0–9.
    pub fn new(labels: Vec<u8>, pixels: Vec<u8>) -> Result<Self> {
        if pixels.len() != labels.len() * IMAGE_BYTES {
            return Err(DataError::Config(format!(
                "{} labels need {} pixel bytes, got {}",
                labels.len(),
                labels.len() * IMAGE_BYTES,
                pixels.len()
            )));
        }
        if let Some((record, &label)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
            return Err(DataError::BadLabel { file: "records".into(), record, label });
        }
        Ok(Records { labels, pixels })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// The `i`-th image: R, G, B planes of 32×32 bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_BYTES..(i + 1) * IMAGE_BYTES]
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    fn append(&mut self, other: Records) {
        self.labels.extend_from_slice(&other.labels);
        self.pixels.extend_from_slice(&other.pixels);
    }
}

/// The whole data set: 50,000 training records (the five batches in order), 10,000 test records
/// and the class names from `batches.meta.txt`.
#[derive(Clone, Debug)]
pub struct Cifar10 {
    pub train: Records,
    pub test: Records,
    pub classes: Vec<String>,
}

/// Where a data set was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Dir(PathBuf),
    Archive(PathBuf),
}

/// Finds the data under `path`: the batch files in it, in its `cifar-10-batches-bin/`, or its
/// `cifar-10-binary.tar.gz`; `path` may also be the archive itself. Finding is by name only;
/// [`Cifar10::load`] validates.
pub fn locate(path: &Path) -> Result<Source> {
    if path.is_file() {
        return Ok(Source::Archive(path.to_path_buf()));
    }
    let has_batches =
        |dir: &Path| TRAIN_FILES.iter().chain([&TEST_FILE]).any(|f| dir.join(f).exists());
    if has_batches(path) {
        return Ok(Source::Dir(path.to_path_buf()));
    }
    let sub = path.join(EXTRACTED_DIR);
    if has_batches(&sub) {
        return Ok(Source::Dir(sub));
    }
    let archive = path.join(ARCHIVE_NAME);
    if archive.is_file() {
        return Ok(Source::Archive(archive));
    }
    Err(DataError::NotFound { dir: path.to_path_buf() })
}

impl Cifar10 {
    /// Loads the official set (10,000 records per file) from wherever [`locate`] finds it.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with(path, Layout::OFFICIAL)
    }

    pub fn load_with(path: &Path, layout: Layout) -> Result<Self> {
        match locate(path)? {
            Source::Dir(dir) => Self::from_dir(&dir, layout),
            Source::Archive(archive) => Self::from_archive(&archive, layout),
        }
    }

    pub fn from_dir(dir: &Path, layout: Layout) -> Result<Self> {
        let source_name = dir.display().to_string();
        let read = |name: &str| read_batch(dir, name, Some(layout));
        let mut train = Records::default();
        for name in TRAIN_FILES {
            train.append(read(name)?);
        }
        let test = read(TEST_FILE)?;
        let meta_path = dir.join(META_FILE);
        let meta = std::fs::read(&meta_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                DataError::MissingFile { source_name: source_name.clone(), file: META_FILE.into() }
            }
            _ => DataError::io(&meta_path, e),
        })?;
        let classes = parse_meta(&meta_path.display().to_string(), &meta)?;
        Ok(Cifar10 { train, test, classes })
    }

    /// Reads the records straight from the `.tar.gz`, without unpacking it to disk.
    pub fn from_archive(archive: &Path, layout: Layout) -> Result<Self> {
        let mut members = read_archive(archive, layout)?;
        let mut take = |name: &str| {
            members.remove(name).ok_or_else(|| DataError::MissingFile {
                source_name: archive.display().to_string(),
                file: format!("{EXTRACTED_DIR}/{name}"),
            })
        };
        let mut raw_train = Vec::new();
        for name in TRAIN_FILES {
            raw_train.push((name, take(name)?));
        }
        let raw_test = take(TEST_FILE)?;
        let raw_meta = take(META_FILE)?;
        let label = |name: &str| format!("{}:{EXTRACTED_DIR}/{name}", archive.display());
        let mut train = Records::default();
        for (name, bytes) in raw_train {
            train.append(parse_batch(&label(name), &bytes, layout)?);
        }
        let test = parse_batch(&label(TEST_FILE), &raw_test, layout)?;
        let classes = parse_meta(&label(META_FILE), &raw_meta)?;
        Ok(Cifar10 { train, test, classes })
    }
}

/// Reads one batch file of `dir`; with `layout` None, any whole number of records (at least one).
fn read_batch(dir: &Path, name: &str, layout: Option<Layout>) -> Result<Records> {
    let path = dir.join(name);
    let mut file = File::open(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            DataError::MissingFile { source_name: dir.display().to_string(), file: name.into() }
        }
        _ => DataError::io(&path, e),
    })?;
    let size = file.metadata().map_err(|e| DataError::io(&path, e))?.len();
    let layout = layout.unwrap_or(Layout { records_per_file: (size / RECORD_BYTES as u64) as usize });
    let label = path.display().to_string();
    // The sniff and size checks come first so that a large foreign file is never read.
    let mut head = vec![0; HEAD_BYTES.min(size as usize)];
    file.read_exact(&mut head).map_err(|e| DataError::io(&path, e))?;
    check_batch(&label, &head, size, layout)?;
    let mut bytes = head;
    bytes.reserve_exact(size as usize - bytes.len());
    file.read_to_end(&mut bytes).map_err(|e| DataError::io(&path, e))?;
    parse_batch(&label, &bytes, layout)
}

/// The training images of a folder, and its test images when it has them: whichever of
/// `data_batch_1.bin` … `data_batch_5.bin` are there, of any size (a calibration set of a few
/// hundred images is a valid folder), or the official archive.
#[derive(Clone, Debug)]
pub struct BatchFiles {
    pub train: Records,
    pub test: Option<Records>,
}

impl BatchFiles {
    pub fn load(path: &Path) -> Result<Self> {
        let no_training = || DataError::NoTrainingImages { dir: path.to_path_buf() };
        let dir = match locate(path) {
            Ok(Source::Dir(dir)) => dir,
            Ok(Source::Archive(archive)) => {
                let set = Cifar10::from_archive(&archive, Layout::OFFICIAL)?;
                return Ok(BatchFiles { train: set.train, test: Some(set.test) });
            }
            Err(DataError::NotFound { .. }) => return Err(no_training()),
            Err(e) => return Err(e),
        };
        let mut train = Records::default();
        for name in TRAIN_FILES.iter().filter(|n| dir.join(n).exists()) {
            train.append(read_batch(&dir, name, None)?);
        }
        if train.is_empty() {
            return Err(no_training());
        }
        let test = match dir.join(TEST_FILE).exists() {
            true => Some(read_batch(&dir, TEST_FILE, None)?),
            false => None,
        };
        Ok(BatchFiles { train, test })
    }
}

/// The members of the archive that the layout names, by file name, each already checked for
/// format and size (labels are checked when parsed). Other members (`readme.html`) are skipped.
pub(crate) fn read_archive(archive: &Path, layout: Layout) -> Result<HashMap<String, Vec<u8>>> {
    let bad = |reason: String| DataError::BadArchive { archive: archive.to_path_buf(), reason };
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut head = [0u8; 2];
    let gz_magic = (&file).read_exact(&mut head).is_ok() && head == [0x1f, 0x8b];
    if !gz_magic {
        return Err(bad("no gzip header".into()));
    }
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let mut members = HashMap::new();
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        let is_batch = TRAIN_FILES.contains(&name.as_str()) || name == TEST_FILE;
        if !is_batch && name != META_FILE {
            continue;
        }
        let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
        let label = format!("{}:{}", archive.display(), path.display());
        if is_batch {
            // Peek without consuming: the tar entry is a forward-only stream.
            let mut bytes = Vec::with_capacity(size.min(64 << 20) as usize);
            (&mut entry)
                .take(HEAD_BYTES as u64)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(e.to_string()))?;
            check_batch(&label, &bytes, size, layout)?;
            entry.read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
            if bytes.len() as u64 != size {
                return Err(bad(format!("{} ends early", path.display())));
            }
            members.insert(name, bytes);
        } else {
            // Ten short names: a bound keeps a hostile archive from filling memory here.
            let mut bytes = Vec::new();
            (&mut entry)
                .take(MAX_META_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(e.to_string()))?;
            members.insert(name, bytes);
        }
    }
    Ok(members)
}

const HEAD_BYTES: usize = 512;
const MAX_META_BYTES: u64 = 1 << 16;

/// Checks what can be checked before reading the whole file: its format and its size.
/// The first byte of a CIFAR-10 batch is a label (0–9), so anything else is a foreign file;
/// `head` helps say what it is.
#[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` is newer than the MSRV (1.85)
pub(crate) fn check_batch(file: &str, head: &[u8], size: u64, layout: Layout) -> Result<()> {
    if size == 0 {
        return Err(DataError::Truncated { file: file.into(), bytes: 0 });
    }
    if head.first().is_some_and(|&b| b > 9) {
        return Err(DataError::Foreign { file: file.into(), looks_like: sniff(head) });
    }
    if size % RECORD_BYTES as u64 != 0 {
        return Err(DataError::Truncated { file: file.into(), bytes: size });
    }
    let records = size / RECORD_BYTES as u64;
    if records != layout.records_per_file as u64 {
        return Err(DataError::RecordCount {
            file: file.into(),
            records,
            expected: layout.records_per_file,
        });
    }
    Ok(())
}

/// Splits a checked batch file into labels and pixels, validating every label.
pub(crate) fn parse_batch(file: &str, bytes: &[u8], layout: Layout) -> Result<Records> {
    check_batch(file, bytes, bytes.len() as u64, layout)?;
    check_labels(file, bytes)?;
    let n = bytes.len() / RECORD_BYTES;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * IMAGE_BYTES);
    for chunk in bytes.chunks_exact(RECORD_BYTES) {
        labels.push(chunk[0]);
        pixels.extend_from_slice(&chunk[1..]);
    }
    Ok(Records { labels, pixels })
}

/// Every record's label byte must be 0–9.
pub(crate) fn check_labels(file: &str, bytes: &[u8]) -> Result<()> {
    match bytes.chunks(RECORD_BYTES).enumerate().find(|(_, r)| r[0] > 9) {
        Some((record, r)) => Err(DataError::BadLabel { file: file.into(), record, label: r[0] }),
        None => Ok(()),
    }
}

/// `batches.meta.txt`: ten class names, one a line; blank lines (the official file ends with
/// some) are ignored.
pub(crate) fn parse_meta(file: &str, bytes: &[u8]) -> Result<Vec<String>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| DataError::Foreign { file: file.into(), looks_like: sniff(bytes) })?;
    let names: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    if names.len() != 10 {
        return Err(DataError::BadMeta { file: file.into(), found: names.len() });
    }
    Ok(names)
}

/// A best guess at what a foreign file is, for the error message.
fn sniff(head: &[u8]) -> String {
    let lower: Vec<u8> = head.iter().take(256).map(u8::to_ascii_lowercase).collect();
    let contains = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if head.starts_with(&[0x1f, 0x8b]) {
        "a gzip file (an archive not yet unpacked?)".into()
    } else if head.len() > 1 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        "a Python pickle (the CIFAR-10 python version, not the binary version)".into()
    } else if head.starts_with(b"PK\x03\x04") {
        "a zip archive".into()
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        "a tar archive (unpack it first)".into()
    } else if contains(b"<html") || contains(b"<!doctype") {
        "an HTML page (a failed download?)".into()
    } else if head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) {
        "a text file".into()
    } else {
        format!("unknown data (first byte {}, but a record starts with a label 0–9)", head[0])
    }
}

/// Per-channel mean of the selected images, on the [0, 1] scale (the numbers `Normalize` uses).
/// `indices` come from [`crate::data::split_train_val`], so each is below `records.len()`.
pub fn channel_mean(records: &Records, indices: &[u32]) -> [f64; 3] {
    let plane = IMAGE_BYTES / 3;
    let mut sums = [0u64; 3];
    for &i in indices {
        let image = records.image(i as usize);
        for (c, sum) in sums.iter_mut().enumerate() {
            *sum += image[c * plane..(c + 1) * plane].iter().map(|&b| b as u64).sum::<u64>();
        }
    }
    let count = (indices.len() * plane) as f64 * 255.0;
    sums.map(|s| if count > 0.0 { s as f64 / count } else { 0.0 })
}
