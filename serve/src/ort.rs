//! The ONNX Runtime backend: one session per model file, on the CPU or CUDA execution provider.

use crate::backend::{Backend, BackendError};
use crate::device::Device;
use crate::{IMAGE_LEN, INPUT_NAME, OUTPUT_NAME};
use cifar_models::metadata::{MetadataError, ModelMetadata};
use cifar_onnxrt::ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use cifar_onnxrt::ort::session::Session;
use cifar_onnxrt::ort::value::TensorRef;
use cifar_onnxrt::Environment;

/// How to build a session.
#[derive(Clone, Debug)]
pub struct OrtOptions {
    pub device: Device,
    /// Run on the CPU, with a warning, when the CUDA execution provider cannot be used.
    pub allow_cpu_fallback: bool,
    /// Intra-op threads of each session.
    pub threads: usize,
    /// When the intra-op threads may busy-wait for work.
    pub spin: Spin,
}

/// When ONNX Runtime's intra-op threads busy-wait instead of sleeping between parallel
/// sections. Waking a sleeping thread costs a futex call per section (tens of µs on a VM, where
/// an idle vCPU halts), and a small network has dozens of sections per call; spinning outside
/// a call takes the cores the HTTP workers need to decode the next requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Spin {
    /// Never: every section wakes its threads.
    Off,
    /// While a call runs, stopping the moment it returns (`session.force_spinning_stop`).
    #[default]
    Run,
    /// ONNX Runtime's default: threads keep spinning for a while after a call too.
    Always,
}

impl Spin {
    /// The session config entries that select this behaviour.
    fn config(self) -> [(&'static str, &'static str); 2] {
        match self {
            Spin::Off => [("session.intra_op.allow_spinning", "0"), ("session.force_spinning_stop", "1")],
            Spin::Run => [("session.intra_op.allow_spinning", "1"), ("session.force_spinning_stop", "1")],
            Spin::Always => [("session.intra_op.allow_spinning", "1"), ("session.force_spinning_stop", "0")],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Spin::Off => "off",
            Spin::Run => "run",
            Spin::Always => "always",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    #[error(
        "--device {0} asks for CUDA, but this `serve` was built without CUDA support: rebuild with \
         `cargo build --release -p cifar-serve --features cuda`, or pass --allow-cpu-fallback"
    )]
    CudaNotBuilt(Device),
    #[error(
        "the CUDA execution provider cannot be used on {device}: {reason}. It needs the CUDA build of \
         ONNX Runtime (ORT_DYLIB_PATH or .ort/cuda/), CUDA 12/13 and cuDNN 9 libraries on the loader \
         path and a visible GPU; pass --allow-cpu-fallback to run on the CPU instead"
    )]
    CudaUnavailable { device: Device, reason: String },
    #[error("ONNX Runtime could not load the model: {0}")]
    Session(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("the model's interface is not the one `train export` writes: {0}")]
    Interface(String),
}

pub struct OrtBackend {
    session: Session,
    classes: usize,
    device: Device,
    threads: usize,
}

impl OrtBackend {
    /// Builds a session from an ONNX file's bytes and reads the metadata it carries.
    pub fn load(env: &Environment, onnx: &[u8], opts: &OrtOptions) -> Result<(Self, ModelMetadata), OrtError> {
        let (mut builder, device) = session_builder(env, opts)?;
        let session = builder.commit_from_memory(onnx).map_err(|e| OrtError::Session(e.to_string()))?;
        let meta = read_metadata(&session)?;
        check_interface(&session, meta.classes.len())?;
        let classes = meta.classes.len();
        Ok((Self { session, classes, device, threads: opts.threads }, meta))
    }
}

fn session_builder(env: &Environment, opts: &OrtOptions) -> Result<(SessionBuilder, Device), OrtError> {
    let session_err = |e: cifar_onnxrt::ort::Error<SessionBuilder>| OrtError::Session(e.to_string());
    let cpu = || -> Result<SessionBuilder, OrtError> {
        let mut builder = Session::builder(env)
            .map_err(|e| OrtError::Session(e.to_string()))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(session_err)?
            .with_intra_threads(opts.threads.max(1))
            .map_err(session_err)?
            .with_inter_threads(1)
            .map_err(session_err)?;
        for (key, value) in opts.spin.config() {
            builder = builder.with_config_entry(key, value).map_err(session_err)?;
        }
        Ok(builder)
    };
    match opts.device {
        Device::Cpu => Ok((cpu()?, Device::Cpu)),
        Device::Cuda(ordinal) => match with_cuda(cpu()?, ordinal) {
            Ok(builder) => Ok((builder, opts.device)),
            Err(err) if opts.allow_cpu_fallback => {
                tracing::warn!("{err}; running on the CPU (--allow-cpu-fallback)");
                Ok((cpu()?, Device::Cpu))
            }
            Err(err) => Err(err),
        },
    }
}

#[cfg(feature = "cuda")]
fn with_cuda(builder: SessionBuilder, ordinal: i32) -> Result<SessionBuilder, OrtError> {
    use cifar_onnxrt::ort::ep;
    // error_on_failure: ort's default is to fall back to the CPU silently, which would hide a
    // misconfigured GPU behind a slow server.
    let cuda = ep::CUDA::default().with_device_id(ordinal).build().error_on_failure();
    builder
        .with_execution_providers([cuda])
        .map_err(|e| OrtError::CudaUnavailable { device: Device::Cuda(ordinal), reason: e.to_string() })
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(_builder: SessionBuilder, ordinal: i32) -> Result<SessionBuilder, OrtError> {
    Err(OrtError::CudaNotBuilt(Device::Cuda(ordinal)))
}

fn read_metadata(session: &Session) -> Result<ModelMetadata, OrtError> {
    let meta = session.metadata().map_err(|e| OrtError::Session(e.to_string()))?;
    let keys = meta.custom_keys().map_err(|e| OrtError::Session(e.to_string()))?;
    let props: Vec<(String, String)> = keys.into_iter().filter_map(|k| meta.custom(&k).map(|v| (k, v))).collect();
    Ok(ModelMetadata::from_props(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))?)
}

/// One float input `input` [N,3,32,32] and one output `logits` [N,classes], as exported.
fn check_interface(session: &Session, classes: usize) -> Result<(), OrtError> {
    let names = |outlets: &[cifar_onnxrt::ort::value::Outlet]| outlets.iter().map(|o| o.name().to_string()).collect::<Vec<_>>();
    let inputs = names(session.inputs());
    let outputs = names(session.outputs());
    if inputs != [INPUT_NAME] || outputs != [OUTPUT_NAME] {
        return Err(OrtError::Interface(format!(
            "inputs {inputs:?} and outputs {outputs:?}, expected [\"{INPUT_NAME}\"] and [\"{OUTPUT_NAME}\"]"
        )));
    }
    let shape: Option<Vec<i64>> = session.inputs()[0].dtype().tensor_shape().map(|s| s.to_vec());
    match shape.as_deref() {
        Some([_, 3, 32, 32]) => {}
        other => return Err(OrtError::Interface(format!("input shape {other:?}, expected [N, 3, 32, 32]"))),
    }
    let out: Option<Vec<i64>> = session.outputs()[0].dtype().tensor_shape().map(|s| s.to_vec());
    match out.as_deref() {
        Some([_, c]) if *c == classes as i64 || *c < 0 => Ok(()),
        other => Err(OrtError::Interface(format!("output shape {other:?}, expected [N, {classes}] (one logit per class)"))),
    }
}

impl Backend for OrtBackend {
    fn run(&mut self, input: &[f32], n: usize) -> Result<Vec<f32>, BackendError> {
        let expected = n * IMAGE_LEN;
        if input.len() != expected || n == 0 {
            return Err(BackendError::InputLength { got: input.len(), expected, n });
        }
        let tensor = TensorRef::from_array_view(([n, 3, 32, 32], input)).map_err(|e| BackendError::Runtime(e.to_string()))?;
        let outputs = self
            .session
            .run(cifar_onnxrt::ort::inputs![INPUT_NAME => tensor])
            .map_err(|e| BackendError::Runtime(e.to_string()))?;
        let logits = outputs.get(OUTPUT_NAME).ok_or_else(|| BackendError::Runtime(format!("no `{OUTPUT_NAME}` output")))?;
        let (_, logits) = logits.try_extract_tensor::<f32>().map_err(|e| BackendError::Runtime(e.to_string()))?;
        if logits.len() != n * self.classes {
            return Err(BackendError::OutputLength { got: logits.len(), expected: n * self.classes, n });
        }
        Ok(logits.to_vec())
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn device(&self) -> Device {
        self.device
    }

    fn threads(&self) -> usize {
        self.threads
    }
}
