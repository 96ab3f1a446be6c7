//! ONNX export: parity with ONNX Runtime for all seven models, dynamic batch, metadata,
//! the ONNX checker, and the CLI's error paths.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::{loss::cross_entropy, AdamW, ModuleT, Optimizer, ParamsAdamW};
use cifar_models::metadata::ModelMetadata;
use cifar_models::nn::Network;
use cifar_onnxrt::ort::session::Session;
use cifar_models::testdata::images as parity_input;
use cifar_onnxrt::{Environment, Flavor};
use cifar_train::export::{check_parity, run_ort, to_onnx_bytes, PARITY_TOLERANCE};
use cifar_train::recipe::Tta;
use std::path::{Path, PathBuf};
use std::process::Command;

fn env() -> Environment {
    cifar_onnxrt::init(None, Flavor::Cpu).expect("ONNX Runtime (run scripts/setup.sh)").1
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A network after a few AdamW steps on a fixed batch, so BatchNorm statistics and weights
/// are no longer at their initial values.
fn trained(name: &str) -> Result<Network> {
    let net = Network::new(cifar_models::build(name)?, 5, DType::F32, &Device::Cpu)?;
    let x = Tensor::from_vec(parity_input(8, 3), (8, 3, 32, 32), &Device::Cpu)?;
    let y = Tensor::new(&[0u32, 1, 2, 3, 4, 5, 6, 7], &Device::Cpu)?;
    let mut opt = AdamW::new(net.trainable_vars(), ParamsAdamW { lr: 1e-3, weight_decay: 0.1, ..Default::default() })?;
    for _ in 0..3 {
        let loss = cross_entropy(&net.forward_t(&x, true)?, &y)?;
        opt.backward_step(&loss)?;
    }
    let rv = net.tensor("fc.weight").or_else(|| net.tensor("fc2.weight")).unwrap();
    assert!(rv.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
    Ok(net)
}

#[test]
fn parity_for_all_seven_after_training_steps() -> Result<()> {
    let env = env();
    for name in cifar_models::MODEL_NAMES {
        let net = trained(name)?;
        let bytes = to_onnx_bytes(&net, &ModelMetadata::for_model(name)?, Tta::None)?;
        let parity = check_parity(&env, &net, Tta::None, &bytes, 8)?;
        assert!(parity.ok(), "{name}: max |diff| {:e} > {PARITY_TOLERANCE:e}", parity.max_abs_diff);
        // A dynamic batch dimension: 1 and 7 images run through the same file.
        for n in [1, 7] {
            let p = check_parity(&env, &net, Tta::None, &bytes, n)?;
            assert!(p.ok(), "{name} batch {n}: {:e}", p.max_abs_diff);
        }
    }
    Ok(())
}

#[test]
fn parity_check_detects_a_wrong_export() -> Result<()> {
    let env = env();
    let net = trained("resnet-light")?;
    let bytes = to_onnx_bytes(&net, &ModelMetadata::for_model("resnet-light")?, Tta::None)?;
    // Change the network after exporting: the file no longer matches it.
    let w = net.tensor("conv1.weight").unwrap();
    let mut all: std::collections::HashMap<_, _> = net.named_tensors().into_iter().collect();
    all.insert("conv1.weight".into(), (w * 1.5)?);
    net.load(&all)?;
    let parity = check_parity(&env, &net, Tta::None, &bytes, 8)?;
    assert!(!parity.ok(), "a changed stem must break parity ({:e})", parity.max_abs_diff);
    Ok(())
}

#[test]
fn metadata_round_trips_through_onnx_runtime() -> Result<()> {
    let env = env();
    let net = Network::new(cifar_models::build("densenet-small")?, 1, DType::F32, &Device::Cpu)?;
    let mut meta = ModelMetadata::for_model("densenet-small")?;
    meta.val_acc_frac = Some(0.91);
    meta.test_acc_frac = Some(0.905);
    meta.epochs = Some(12);
    meta.source_commit = Some("0123abcd".into());
    let bytes = to_onnx_bytes(&net, &meta, Tta::None)?;
    let session = Session::builder(&env).unwrap().commit_from_memory(&bytes)?;
    let md = session.metadata()?;
    let keys = md.custom_keys()?;
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), md.custom(k).unwrap())).collect();
    let back = ModelMetadata::from_props(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    assert_eq!(back, meta);
    assert_eq!(back.facts.params, 508_447);
    assert_eq!(back.classes[3], "cat");
    // Input and output as documented.
    assert_eq!(session.inputs()[0].name(), "input");
    assert_eq!(session.outputs()[0].name(), "logits");
    Ok(())
}

#[test]
fn files_pass_the_onnx_checker_and_fold_batch_norm() -> Result<()> {
    let python = repo_root().join(".venv-tools/bin/python");
    assert!(python.exists(), "missing {} (run scripts/setup.sh)", python.display());
    let dir = tempfile::tempdir()?;
    let mut files = Vec::new();
    for name in ["vgg", "resnext-small", "densenet-small"] {
        let net = Network::new(cifar_models::build(name)?, 2, DType::F32, &Device::Cpu)?;
        let path = dir.path().join(format!("{name}.onnx"));
        std::fs::write(&path, to_onnx_bytes(&net, &ModelMetadata::for_model(name)?, Tta::None)?)?;
        files.push(path);
    }
    let script = r#"
import sys, onnx
for f in sys.argv[1:]:
    m = onnx.load(f)
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert m.opset_import[0].version == 17 and m.ir_version >= 8, f
    assert "BatchNormalization" not in ops and "Dropout" not in ops, (f, ops)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32], f
    assert m.graph.output[0].name == "logits"
    if "vgg" not in f:
        assert "GlobalAveragePool" in ops, f
    print("ok", f)
"#;
    let out = Command::new(&python).arg("-c").arg(script).args(&files).output()?;
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// candle-onnx's own evaluator as a second opinion where its op coverage allows (it has no
/// GlobalAveragePool, so only the VGG).
#[test]
fn candle_onnx_simple_eval_agrees_on_vgg() -> Result<()> {
    use prost::Message;
    let net = trained("vgg")?;
    let bytes = to_onnx_bytes(&net, &ModelMetadata::for_model("vgg")?, Tta::None)?;
    let model = candle_onnx::onnx::ModelProto::decode(bytes.as_slice())?;
    let x = Tensor::from_vec(parity_input(4, 9), (4, 3, 32, 32), &Device::Cpu)?;
    let inputs = std::collections::HashMap::from([("input".to_string(), x.clone())]);
    let out = candle_onnx::simple_eval(&model, inputs)?;
    let theirs = out["logits"].flatten_all()?.to_vec1::<f32>()?;
    let ours = net.forward_t(&x, false)?.flatten_all()?.to_vec1::<f32>()?;
    let ort = run_ort(&env(), &bytes, &parity_input(4, 9), 4)?;
    for ((a, b), c) in ours.iter().zip(&theirs).zip(&ort) {
        assert!((a - b).abs() <= 1e-4 && (a - c).abs() <= 1e-4, "{a} {b} {c}");
    }
    Ok(())
}

fn train_bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train")).args(args).env_remove("ORT_DYLIB_PATH").output().unwrap()
}

#[test]
fn cli_exports_a_checkpoint_with_parity() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let net = trained("resnet-light")?;
    let ckpt = dir.path().join("best.safetensors");
    candle_core::safetensors::save(&net.named_tensors().into_iter().collect(), &ckpt)?;
    let out_file = dir.path().join("out/model.onnx");
    let out = train_bin(&["export", "--model", "resnet-light", "--checkpoint", ckpt.to_str().unwrap(), "--out", out_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("parity: max |logit difference|"));
    // The file holds the checkpoint's weights: ORT on it equals the trained network.
    let bytes = std::fs::read(&out_file)?;
    assert!(check_parity(&env(), &net, Tta::None, &bytes, 3)?.ok());
    Ok(())
}

#[test]
fn cli_errors_are_clear() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out_file = dir.path().join("m.onnx");
    let o = out_file.to_str().unwrap();
    // No ONNX Runtime library: a message saying how to get one, no file written.
    let out = train_bin(&["export", "--model", "vgg", "--out", o, "--ort-lib", "/nonexistent/libonnxruntime.so"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/setup.sh") && err.contains("ORT_DYLIB_PATH"), "{err}");
    assert!(!out_file.exists());
    // A checkpoint of another model.
    let other = Network::new(cifar_models::build("vgg")?, 0, DType::F32, &Device::Cpu)?;
    let ckpt = dir.path().join("vgg.safetensors");
    candle_core::safetensors::save(&other.named_tensors().into_iter().collect(), &ckpt)?;
    let out = train_bin(&["export", "--model", "resnet-light", "--checkpoint", ckpt.to_str().unwrap(), "--out", o]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not fit model `resnet-light`"));
    // Unknown model: usage error.
    let out = train_bin(&["export", "--model", "alexnet", "--out", o]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out_file.exists());
    Ok(())
}

/// A TTA export's logits are the mean of the candle forwards of the views (the image, its
/// mirror, and for flip-translate both shifted one pixel down-right with edges repeated),
/// computed here view by view; ONNX Runtime agrees, at any batch size; the metadata names the
/// augmentation and counts every view's MACs.
#[test]
fn tta_exports_average_the_views() -> Result<()> {
    let net = flip_sensitive("resnet-light")?;
    let base = ModelMetadata::for_model("resnet-light")?;
    for (tta, views) in [(Tta::Flip, 2u64), (Tta::FlipTranslate, 4)] {
        let mut meta = base.clone();
        cifar_train::export::describe_tta(&mut meta, tta);
        assert_eq!(meta.tta.as_deref(), Some(tta.to_string().as_str()));
        assert_eq!(meta.facts.macs_per_image, base.facts.macs_per_image * views);
        let bytes = to_onnx_bytes(&net, &meta, tta)?;
        for n in [1, 3] {
            let input = parity_input(n, 21);
            let x = Tensor::from_vec(input.clone(), (n, 3, 32, 32), &Device::Cpu)?;
            let mirror = x.flip(&[3])?;
            let mut shifted = vec![0f32; input.len()];
            for (i, v) in shifted.iter_mut().enumerate() {
                let (img, y, x) = (i / 1024, i % 1024 / 32, i % 32);
                *v = input[img * 1024 + y.saturating_sub(1) * 32 + x.saturating_sub(1)];
            }
            let shifted = Tensor::from_vec(shifted, (n, 3, 32, 32), &Device::Cpu)?;
            let mut view_list = vec![x.clone(), mirror];
            if tta == Tta::FlipTranslate {
                view_list.push(shifted.flip(&[3])?);
                view_list.push(shifted);
            }
            let mut sum = net.forward_t(&view_list[0], false)?;
            for v in &view_list[1..] {
                sum = (sum + net.forward_t(v, false)?)?;
            }
            let want = (sum / view_list.len() as f64)?.flatten_all()?.to_vec1::<f32>()?;
            let ours = cifar_train::tta::logits(&net, &x, tta)?.flatten_all()?.to_vec1::<f32>()?;
            let theirs = run_ort(&env(), &bytes, &input, n)?;
            for ((w, o), t) in want.iter().zip(&ours).zip(&theirs) {
                assert!((w - o).abs() <= 1e-5, "{tta}: candle TTA {o} vs views by hand {w}");
                assert!((w - t).abs() <= PARITY_TOLERANCE, "{tta}: ONNX Runtime {t} vs {w}");
            }
            // Augmenting changes the answer: the test would notice a graph that ignored it.
            let plain = net.forward_t(&x, false)?.flatten_all()?.to_vec1::<f32>()?;
            let moved = plain.iter().zip(&ours).map(|(p, o)| (p - o).abs()).fold(0f32, f32::max);
            assert!(moved > 1e-3, "{tta}: TTA moved the logits by at most {moved}");
        }
        assert!(check_parity(&env(), &net, tta, &bytes, 3)?.ok());
    }
    Ok(())
}

/// A network trained to tell images whose left half is bright (class 0) from their mirror
/// images (class 1): its logits move a lot under a flip, so a TTA graph that ignored the views
/// could not pass for one that averages them.
fn flip_sensitive(name: &str) -> Result<Network> {
    let net = Network::new(cifar_models::build(name)?, 5, DType::F32, &Device::Cpu)?;
    let noise = Tensor::from_vec(parity_input(8, 4), (8, 3, 32, 32), &Device::Cpu)?;
    let left: Vec<f32> = (0..8 * 3 * 1024).map(|i| if i % 32 < 16 { 1.5 } else { -1.5 }).collect();
    let left = Tensor::from_vec(left, (8, 3, 32, 32), &Device::Cpu)?;
    let bright_left = (noise.narrow(0, 0, 4)? * 0.3 + left.narrow(0, 0, 4)?)?;
    let x = Tensor::cat(&[bright_left.clone(), bright_left.flip(&[3])?], 0)?;
    let y = Tensor::new(&[0u32, 0, 0, 0, 1, 1, 1, 1], &Device::Cpu)?;
    let mut opt = AdamW::new(net.trainable_vars(), ParamsAdamW { lr: 3e-3, ..Default::default() })?;
    for _ in 0..15 {
        opt.backward_step(&cross_entropy(&net.forward_t(&x, true)?, &y)?)?;
    }
    Ok(net)
}
