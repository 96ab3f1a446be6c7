//! `--download`: fetch the official archive, check its MD5, unpack it atomically.
//!
//! Nothing lands under its final name until it is complete and checked: the archive streams
//! into a temporary file beside the data, and the batches are validated, written into a
//! temporary folder and only then renamed to `cifar-10-batches-bin/`. An interrupted run leaves
//! at most a temporary file or folder behind (removed on the normal error paths), never a
//! half-written data set that a later run would trust.

use super::cifar::{
    check_labels, locate, parse_meta, read_archive, Layout, Source, EXTRACTED_DIR, META_FILE,
    TEST_FILE, TRAIN_FILES,
};
use super::{DataError, Result};
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The dataset's home: the binary version of CIFAR-10.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// MD5 of the official `cifar-10-binary.tar.gz`, as published next to it.
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadOptions {
    pub url: String,
    /// Lowercase hex MD5 the archive must have.
    pub md5: String,
    /// Show an indicatif progress bar on stderr.
    pub progress: bool,
    pub layout: Layout,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            url: CIFAR10_URL.into(),
            md5: CIFAR10_MD5.into(),
            progress: true,
            layout: Layout::OFFICIAL,
        }
    }
}

/// Finds the data under `data_dir` ([`locate`]); when there is none and `download` is given,
/// downloads it there first.
pub fn ensure(data_dir: &Path, download_with: Option<&DownloadOptions>) -> Result<Source> {
    match (locate(data_dir), download_with) {
        (Err(DataError::NotFound { .. }), Some(options)) => {
            Ok(Source::Dir(download(data_dir, options)?))
        }
        (found, _) => found,
    }
}

/// Downloads, verifies and unpacks the archive into `data_dir/cifar-10-batches-bin`, which it
/// returns. The archive itself is not kept.
pub fn download(data_dir: &Path, options: &DownloadOptions) -> Result<PathBuf> {
    std::fs::create_dir_all(data_dir).map_err(|e| DataError::io(data_dir, e))?;
    let target = data_dir.join(EXTRACTED_DIR);
    if target.exists() {
        return Err(DataError::TargetExists { path: target });
    }
    let mut partial = tempfile::Builder::new()
        .prefix(".cifar-10-download-")
        .tempfile_in(data_dir)
        .map_err(|e| DataError::io(data_dir, e))?;
    let path = partial.path().to_path_buf();
    let md5 = fetch_into(&options.url, partial.as_file_mut(), &path, options.progress)?;
    if !md5.eq_ignore_ascii_case(&options.md5) {
        return Err(DataError::Md5Mismatch {
            file: path,
            expected: options.md5.clone(),
            found: md5,
        });
    }
    extract(partial.path(), data_dir, options.layout)
}

/// Streams `url` into `dest`, which appears only once complete; returns the MD5 of the bytes.
pub fn fetch(url: &str, dest: &Path, progress: bool) -> Result<String> {
    let dir = dest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut partial = tempfile::Builder::new()
        .prefix(".cifar-10-download-")
        .tempfile_in(dir)
        .map_err(|e| DataError::io(dir, e))?;
    let path = partial.path().to_path_buf();
    let md5 = fetch_into(url, partial.as_file_mut(), &path, progress)?;
    partial.persist(dest).map_err(|e| DataError::io(dest, e.error))?;
    Ok(md5)
}

fn fetch_into(url: &str, out: &mut File, out_path: &Path, progress: bool) -> Result<String> {
    let failed = |reason: String| DataError::Download { url: url.into(), reason };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        // A stalled transfer fails instead of hanging forever; a slow one carries on.
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = response.into_body().into_reader();
    let bar = progress_bar(length, progress);
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut written = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(format!("after {written} bytes: {e}"))),
        };
        md5.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| DataError::io(out_path, e))?;
        written += n as u64;
        bar.set_position(written);
    }
    if let Some(expected) = length.filter(|&l| l != written) {
        return Err(failed(format!("got {written} of {expected} bytes")));
    }
    out.sync_all().map_err(|e| DataError::io(out_path, e))?;
    bar.finish_and_clear();
    Ok(hex(&md5.finalize()))
}

fn progress_bar(length: Option<u64>, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = match length {
        Some(len) => indicatif::ProgressBar::new(len),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template =
        "downloading CIFAR-10 [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Lowercase hex MD5 of a file.
pub fn md5_hex(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => md5.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DataError::io(path, e)),
        }
    }
    Ok(hex(&md5.finalize()))
}

/// Fails with [`DataError::Md5Mismatch`] unless the file's MD5 is `expected` (hex, any case).
pub fn verify_md5(path: &Path, expected: &str) -> Result<()> {
    let found = md5_hex(path)?;
    if found.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(DataError::Md5Mismatch { file: path.into(), expected: expected.into(), found })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unpacks the data files of `archive` into `data_dir/cifar-10-batches-bin` (returned). The
/// archive is validated in full first, so a bad one writes nothing; other members (readme) and
/// any paths inside the archive are ignored, so no member can write outside the target.
pub fn extract(archive: &Path, data_dir: &Path, layout: Layout) -> Result<PathBuf> {
    let target = data_dir.join(EXTRACTED_DIR);
    if target.exists() {
        return Err(DataError::TargetExists { path: target });
    }
    let members = read_archive(archive, layout)?;
    let member = |name: &str| {
        members.get(name).ok_or_else(|| DataError::MissingFile {
            source_name: archive.display().to_string(),
            file: format!("{EXTRACTED_DIR}/{name}"),
        })
    };
    let label = |name: &str| format!("{}:{EXTRACTED_DIR}/{name}", archive.display());
    let names: Vec<&str> = TRAIN_FILES.iter().chain([&TEST_FILE, &META_FILE]).copied().collect();
    for &name in &names {
        let bytes = member(name)?;
        if name == META_FILE {
            parse_meta(&label(name), bytes)?;
        } else {
            check_labels(&label(name), bytes)?;
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|e| DataError::io(data_dir, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".cifar-10-extract-")
        .tempdir_in(data_dir)
        .map_err(|e| DataError::io(data_dir, e))?;
    let unpacked = staging.path().join(EXTRACTED_DIR);
    std::fs::create_dir(&unpacked).map_err(|e| DataError::io(&unpacked, e))?;
    for &name in &names {
        let path = unpacked.join(name);
        let mut file = File::create(&path).map_err(|e| DataError::io(&path, e))?;
        file.write_all(member(name)?).map_err(|e| DataError::io(&path, e))?;
        file.sync_all().map_err(|e| DataError::io(&path, e))?;
    }
    std::fs::rename(&unpacked, &target).map_err(|e| DataError::io(&target, e))?;
    Ok(target)
}
