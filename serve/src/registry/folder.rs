//! The model folder: which files are models, what they are called, and that a name never
//! reaches outside the folder.

use super::LoadError;
use crate::device::Device;
use crate::ort::{OrtError, OrtOptions};
use cifar_onnxrt::Flavor;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// `*.onnx` files of `dir`, sorted by name; a file whose name cannot be a URL segment is an
/// error (at start-up the server refuses to run with it).
pub(crate) fn model_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let mut files = Vec::new();
    for path in onnx_paths(dir)? {
        let name = path.file_stem().and_then(|s| s.to_str()).filter(|s| valid_name(s)).ok_or_else(|| LoadError::BadName(path.clone()))?;
        files.push((name.to_string(), path));
    }
    if files.is_empty() {
        return Err(LoadError::NoModels(dir.to_path_buf()));
    }
    files.sort();
    Ok(files)
}

/// Paths in `dir` ending in `.onnx` (files or links to files).
fn onnx_paths(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Dir { dir: dir.to_path_buf(), source })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| LoadError::Dir { dir: dir.to_path_buf(), source })?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("onnx") && path.is_file() {
            paths.push(path);
        }
    }
    Ok(paths)
}

/// What a folder scan sees of one model file: enough to tell that it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub modified: Option<SystemTime>,
    pub len: u64,
}

/// Every well-named model file of `dir` with its stamp (names that cannot be served are
/// skipped: the watcher reports them once).
pub(crate) fn scan(dir: &Path) -> Result<Vec<(String, Result<FileStamp, PathBuf>)>, LoadError> {
    let mut seen = Vec::new();
    for path in onnx_paths(dir)? {
        match path.file_stem().and_then(|s| s.to_str()).filter(|s| valid_name(s)) {
            Some(name) => {
                let meta = std::fs::metadata(&path).map_err(|source| LoadError::Read { file: path.clone(), source })?;
                seen.push((name.to_string(), Ok(FileStamp { modified: meta.modified().ok(), len: meta.len() })));
            }
            None => seen.push((path.display().to_string(), Err(path))),
        }
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(seen)
}

/// A model name is a URL segment: letters, digits, `-`, `_`, `.`, not starting with a dot (so
/// it can be neither `..` nor a path).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The file that holds model `name`, checked to be a regular file inside `dir` once links are
/// followed: a name never reads a file elsewhere.
pub(crate) fn model_file(dir: &Path, name: &str) -> Result<PathBuf, LoadError> {
    if !valid_name(name) {
        return Err(LoadError::BadName(PathBuf::from(name)));
    }
    let file = dir.join(format!("{name}.onnx"));
    let real = std::fs::canonicalize(&file).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => LoadError::NoFile { name: name.to_string(), dir: dir.to_path_buf() },
        _ => LoadError::Read { file: file.clone(), source },
    })?;
    let real_dir = std::fs::canonicalize(dir).map_err(|source| LoadError::Dir { dir: dir.to_path_buf(), source })?;
    if real.parent() != Some(real_dir.as_path()) {
        return Err(LoadError::OutsideFolder { file, target: real });
    }
    if !real.is_file() {
        return Err(LoadError::NoFile { name: name.to_string(), dir: dir.to_path_buf() });
    }
    Ok(file)
}

/// Loads the library for the requested device; a CUDA request without the CUDA library falls
/// back to the CPU library only when allowed.
pub(crate) fn init_runtime(explicit: Option<&Path>, ort: &mut OrtOptions) -> Result<(PathBuf, cifar_onnxrt::Environment), LoadError> {
    if ort.device != Device::Cpu && !cfg!(feature = "cuda") {
        let err = OrtError::CudaNotBuilt(ort.device);
        if !ort.allow_cpu_fallback {
            return Err(LoadError::Device(err));
        }
        tracing::warn!("{err}; running on the CPU");
        ort.device = Device::Cpu;
    }
    let flavor = if ort.device == Device::Cpu { Flavor::Cpu } else { Flavor::Cuda };
    match cifar_onnxrt::init(explicit, flavor) {
        Ok(loaded) => Ok(loaded),
        Err(err) if flavor == Flavor::Cuda && ort.allow_cpu_fallback => {
            tracing::warn!("no CUDA build of ONNX Runtime ({err}); running on the CPU (--allow-cpu-fallback)");
            ort.device = Device::Cpu;
            Ok(cifar_onnxrt::init(explicit, Flavor::Cpu)?)
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_url_safe() {
        assert!(valid_name("resnet-light"));
        assert!(valid_name("vgg_v2.1"));
        for bad in ["", ".hidden", "..", "a b", "a/b", "../x", "ü", "a?b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn folder_errors_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = model_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains("train export"), "{err}");
        std::fs::write(dir.path().join("bad name.onnx"), b"x").unwrap();
        assert!(matches!(model_files(dir.path()), Err(LoadError::BadName(_))));
        assert!(matches!(model_files(Path::new("/nonexistent/models")), Err(LoadError::Dir { .. })));
    }

    #[test]
    fn names_stay_inside_the_folder() {
        let root = tempfile::tempdir().unwrap();
        let models = root.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::write(root.path().join("outside.onnx"), b"x").unwrap();
        std::fs::write(models.join("inside.onnx"), b"x").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.onnx"), models.join("escape.onnx")).unwrap();
        std::os::unix::fs::symlink(models.join("inside.onnx"), models.join("alias.onnx")).unwrap();
        assert_eq!(model_file(&models, "inside").unwrap(), models.join("inside.onnx"));
        assert_eq!(model_file(&models, "alias").unwrap(), models.join("alias.onnx"));
        assert!(matches!(model_file(&models, "escape"), Err(LoadError::OutsideFolder { .. })));
        assert!(matches!(model_file(&models, "../outside"), Err(LoadError::BadName(_))));
        assert!(matches!(model_file(&models, "missing"), Err(LoadError::NoFile { .. })));
        let stamps = scan(&models).unwrap();
        assert_eq!(stamps.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["alias", "escape", "inside"]);
    }
}
