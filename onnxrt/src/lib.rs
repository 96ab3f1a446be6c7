//! Finding and loading ONNX Runtime.
//!
//! `ort` is built with `load-dynamic`: the shared library is loaded at run time from, in order,
//! an explicit path (a `--ort-lib` flag), `ORT_DYLIB_PATH`, or the project-local folder that
//! `scripts/setup.sh` fills (`.ort/cpu/`, or `.ort/cuda/` for the GPU build), looked up from
//! the working directory and from the executable's folders upwards. A missing library is an
//! error that says how to get one, never a panic (`ort::init()` would panic).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use ort;

/// The ONNX Runtime release the project is built against (C API 31 = 1.31).
pub const ORT_VERSION: &str = "1.31.1";

#[derive(Debug, thiserror::Error)]
pub enum OrtLoadError {
    #[error(
        "ONNX Runtime library not found (looked for {looked}).\n\
         Run `bash scripts/setup.sh` to fetch libonnxruntime.so.{ORT_VERSION} from the PyPI wheel \
         onnxruntime=={ORT_VERSION} into .ort/cpu/, or point ORT_DYLIB_PATH (or --ort-lib) at a \
         libonnxruntime.so of version {ORT_VERSION}"
    )]
    NotFound { looked: String },
    #[error("could not load ONNX Runtime from {path}: {reason}")]
    Load { path: PathBuf, reason: String },
}

/// Which build of the library to look for in the project folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Cpu,
    Cuda,
}

impl Flavor {
    fn folder(self) -> &'static str {
        match self {
            Flavor::Cpu => ".ort/cpu",
            Flavor::Cuda => ".ort/cuda",
        }
    }
}

/// Where the library will be loaded from, without loading it.
pub fn locate(explicit: Option<&Path>, flavor: Flavor) -> Result<PathBuf, OrtLoadError> {
    if let Some(p) = explicit {
        return existing(p).ok_or_else(|| OrtLoadError::NotFound { looked: p.display().to_string() });
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return existing(&p).ok_or_else(|| OrtLoadError::NotFound { looked: format!("ORT_DYLIB_PATH={}", p.display()) });
    }
    let file = format!("libonnxruntime.so.{ORT_VERSION}");
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    let candidates: Vec<PathBuf> = roots.iter().map(|r| r.join(flavor.folder()).join(&file)).collect();
    candidates.iter().find_map(|c| existing(c)).ok_or_else(|| OrtLoadError::NotFound {
        looked: format!("{}/{file} in the working directory and above the executable", flavor.folder()),
    })
}

fn existing(p: &Path) -> Option<PathBuf> {
    p.is_file().then(|| p.canonicalize().unwrap_or_else(|_| p.to_path_buf()))
}

/// The process's one ONNX Runtime environment (ONNX Runtime allows one per process).
pub type Environment = ort::environment::Environment;

static LOADED: OnceLock<Result<(PathBuf, Environment), String>> = OnceLock::new();
static VERSION: OnceLock<String> = OnceLock::new();

/// Loads the library once per process and creates ONNX Runtime's environment; later calls
/// return what the first call loaded, whatever they ask for.
pub fn init(explicit: Option<&Path>, flavor: Flavor) -> Result<(PathBuf, Environment), OrtLoadError> {
    if let Some(done) = LOADED.get() {
        return done.clone().map_err(|reason| OrtLoadError::Load { path: PathBuf::new(), reason });
    }
    let path = locate(explicit, flavor)?;
    let result = LOADED.get_or_init(|| {
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        let env = builder.with_name("cifar").build().map_err(|e| e.to_string())?;
        if let Some(v) = version_string(&path) {
            let _ = VERSION.set(v);
        }
        Ok((path.clone(), env))
    });
    result.clone().map_err(|reason| OrtLoadError::Load { path, reason })
}

/// The loaded library's version string, e.g. `1.31.1`; `unknown` before [`init`] succeeded.
pub fn runtime_version() -> String {
    VERSION.get().cloned().unwrap_or_else(|| "unknown".into())
}

/// `OrtApiBase::GetVersionString` of the library at `path`, which is loaded already: the
/// build-info string `ort` exposes carries a git branch and commit but not the release.
fn version_string(path: &Path) -> Option<String> {
    // SAFETY: the library is loaded (this only takes another reference to it), and
    // `OrtGetApiBase` has this signature in every ONNX Runtime release; the returned string is
    // static in the library, and the handle is kept for the life of the process.
    unsafe {
        let lib = libloading::Library::new(path).ok()?;
        let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> = lib.get(b"OrtGetApiBase").ok()?;
        let base = get_base();
        if base.is_null() {
            return None;
        }
        let version = ((*base).GetVersionString)();
        let text = (!version.is_null()).then(|| std::ffi::CStr::from_ptr(version).to_string_lossy().into_owned());
        std::mem::forget(lib);
        text
    }
}

