//! `train quantize` on the shipped resnet-light: calibrated on the committed fixture of 500
//! training images (`tests/fixtures/quantize/`, written by `cargo run -p cifar-train --example
//! zoo_fixture -- DATA OUT 500 80 train`), measured on the 1,000 test images of the model-zoo
//! fixture; the folder without a test file; and the inputs it must refuse.

use cifar_models::metadata::{ModelMetadata, Precision};
use cifar_onnxrt::ort::session::Session;
use cifar_onnxrt::ort::value::TensorRef;
use cifar_onnxrt::Flavor;
use cifar_train::data::{Normalizer, IMAGE_BYTES, TEST_FILE, TRAIN_FILES};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn shipped() -> PathBuf {
    repo_root().join("model-zoo/resnet-light.onnx")
}

/// A fixture sprite (32×32 tiles in rows) as CHW images, and its labels.
fn sprite(jpeg: &str, labels: &str) -> (Vec<u8>, Vec<u8>) {
    let dir = repo_root().join("tests/fixtures");
    let img = image::open(dir.join(jpeg)).expect("fixture sprite").to_rgb8();
    let labels: Vec<u8> = std::fs::read_to_string(dir.join(labels)).unwrap().trim().bytes().map(|b| b - b'0').collect();
    let per_row = img.width() / 32;
    let mut pixels = Vec::with_capacity(labels.len() * IMAGE_BYTES);
    for i in 0..labels.len() as u32 {
        let (tx, ty) = ((i % per_row) * 32, (i / per_row) * 32);
        for c in 0..3 {
            for y in 0..32 {
                pixels.extend((0..32).map(|x| img.get_pixel(tx + x, ty + y)[c]));
            }
        }
    }
    (pixels, labels)
}

fn training_fixture() -> (Vec<u8>, Vec<u8>) {
    sprite("quantize/train-images.jpg", "quantize/train-labels.txt")
}

fn test_fixture() -> (Vec<u8>, Vec<u8>) {
    sprite("model-zoo/test-images.jpg", "model-zoo/test-labels.txt")
}

/// A CIFAR-10 batch file: label byte, then the image, per record.
fn write_batch(path: &Path, (pixels, labels): &(Vec<u8>, Vec<u8>)) {
    let bytes: Vec<u8> = labels.iter().zip(pixels.chunks_exact(IMAGE_BYTES)).flat_map(|(&l, p)| std::iter::once(l).chain(p.iter().copied())).collect();
    std::fs::write(path, bytes).unwrap();
}

/// The training fixture as data_batch_1.bin and, `with_test`, the test fixture as test_batch.bin.
fn data_dir(with_test: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_batch(&dir.path().join(TRAIN_FILES[0]), &training_fixture());
    if with_test {
        write_batch(&dir.path().join(TEST_FILE), &test_fixture());
    }
    dir
}

fn quantize(onnx: &Path, out: &Path, data: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .arg("quantize")
        .arg("--onnx")
        .arg(onnx)
        .arg("--out")
        .arg(out)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("CIFAR10_DIR")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn metadata(onnx: &Path) -> ModelMetadata {
    let model = candle_onnx::onnx::ModelProto::decode(std::fs::read(onnx).unwrap().as_slice()).unwrap();
    ModelMetadata::from_props(model.metadata_props.iter().map(|p| (p.key.as_str(), p.value.as_str()))).unwrap()
}

/// ONNX Runtime's class for each test-fixture image, normalised as the metadata says.
fn predictions(onnx: &Path, (pixels, labels): &(Vec<u8>, Vec<u8>)) -> Vec<usize> {
    let (_, env) = cifar_onnxrt::init(None, Flavor::Cpu).expect("ONNX Runtime (run scripts/setup.sh)");
    let meta = metadata(onnx);
    let norm = Normalizer::new(meta.mean, meta.std);
    let mut input = vec![0f32; pixels.len()];
    for (src, dst) in pixels.chunks_exact(IMAGE_BYTES).zip(input.chunks_exact_mut(IMAGE_BYTES)) {
        norm.normalize(src, dst);
    }
    let mut session = Session::builder(&env).unwrap().commit_from_file(onnx).expect("ORT loads the model");
    let mut classes = Vec::new();
    for chunk in input.chunks(100 * IMAGE_BYTES) {
        let n = chunk.len() / IMAGE_BYTES;
        let tensor = TensorRef::from_array_view(([n, 3, 32, 32], chunk)).unwrap();
        let outputs = session.run(cifar_onnxrt::ort::inputs!["input" => tensor]).unwrap();
        let (_, logits) = outputs["logits"].try_extract_tensor::<f32>().unwrap();
        classes.extend(logits.chunks_exact(logits.len() / n).map(|l| (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap()));
    }
    assert_eq!(classes.len(), labels.len());
    classes
}

fn accuracy(predicted: &[usize], labels: &[u8]) -> f64 {
    predicted.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count() as f64 / labels.len() as f64
}

/// `onnx.checker` (full check), opset 17, and every Conv reading a dequantized input and weight.
fn check_qdq(onnx: &Path) {
    let python = repo_root().join(".venv-tools/bin/python");
    assert!(python.exists(), "missing {} (run scripts/setup.sh)", python.display());
    let script = r#"
import sys, onnx
m = onnx.load(sys.argv[1])
onnx.checker.check_model(m, full_check=True)
assert m.opset_import[0].version == 17, m.opset_import
produced = {o: n.op_type for n in m.graph.node for o in n.output}
convs = [n for n in m.graph.node if n.op_type == "Conv"]
assert convs and all(produced.get(i) == "DequantizeLinear" for n in convs for i in n.input), "a Conv reads f32"
ops = {n.op_type for n in m.graph.node}
assert {"QuantizeLinear", "DequantizeLinear"} <= ops, ops
print("ok")
"#;
    let out = Command::new(&python).arg("-c").arg(script).arg(onnx).output().unwrap();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn the_shipped_resnet_light_quantizes_and_agrees_with_f32() {
    let data = data_dir(true);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("resnet-light-int8.onnx");
    let run = quantize(&shipped(), &out, data.path(), &["--calibration-images", "500", "--max-accuracy-drop", "3"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).starts_with("wrote "), "{}", text(&run.stdout));
    check_qdq(&out);

    let tests = test_fixture();
    let (f32_classes, int8_classes) = (predictions(&shipped(), &tests), predictions(&out, &tests));
    let agree = f32_classes.iter().zip(&int8_classes).filter(|(a, b)| a == b).count() as f64 / tests.1.len() as f64;
    assert!(agree >= 0.97, "int8 agrees with f32 on {:.1} % of the 1,000 test images", agree * 100.0);

    let meta = metadata(&out);
    let q = meta.quantization.as_ref().expect("cifar.quantization");
    assert_eq!(meta.precision, Precision::Int8);
    assert_eq!((q.calibration_images, q.weights.as_str(), q.test_images), (500, "per-channel", Some(1000)));
    // The file's accuracies are the two models' own on the test file it was given.
    let (int8_acc, f32_acc) = (accuracy(&int8_classes, &tests.1), accuracy(&f32_classes, &tests.1));
    assert!((meta.test_acc_frac.unwrap() - int8_acc).abs() <= 0.001, "{:?} vs {int8_acc}", meta.test_acc_frac);
    assert!((meta.f32_test_acc_frac.unwrap() - f32_acc).abs() <= 0.001, "{:?} vs {f32_acc}", meta.f32_test_acc_frac);
    assert_eq!(meta.val_acc_frac, None, "no int8 validation accuracy was measured");

    // A limit below the drop it measured refuses, and writes nothing.
    let drop = (meta.f32_test_acc_frac.unwrap() - meta.test_acc_frac.unwrap()) * 100.0;
    if drop > 0.05 {
        let refused = out_dir.path().join("refused.onnx");
        let limit = format!("{:.2}", drop / 2.0);
        let run = quantize(&shipped(), &refused, data.path(), &["--calibration-images", "500", "--max-accuracy-drop", &limit]);
        assert_eq!(run.status.code(), Some(1), "{}", text(&run.stderr));
        assert!(text(&run.stderr).contains("not written") && !refused.exists(), "{}", text(&run.stderr));
    }
}

#[test]
fn a_folder_without_test_images_quantizes_only_with_the_check_off() {
    let data = data_dir(false);
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("int8.onnx");
    let refused = quantize(&shipped(), &out, data.path(), &["--calibration-images", "64"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = text(&refused.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("test_batch.bin") && err.contains("--max-accuracy-drop off"), "{err}");
    assert!(!out.exists());

    let run = quantize(&shipped(), &out, data.path(), &["--calibration-images", "64", "--max-accuracy-drop", "off", "--method", "entropy"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("not measured"), "{}", text(&run.stdout));
    let meta = metadata(&out);
    let q = meta.quantization.as_ref().unwrap();
    assert_eq!((q.method.as_str(), q.calibration_images, q.test_images), ("entropy", 64, None));
    assert_eq!(meta.test_acc_frac, None, "the int8 accuracy was not measured");
    assert_eq!(meta.f32_test_acc_frac, metadata(&shipped()).test_acc_frac, "the source's own figure");
}

#[test]
fn bad_inputs_fail_in_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(true);
    let text_file = dir.path().join("notes.onnx");
    std::fs::write(&text_file, "this is not a model\n").unwrap();
    let mut model = candle_onnx::onnx::ModelProto::decode(std::fs::read(shipped()).unwrap().as_slice()).unwrap();
    model.metadata_props.clear();
    let bare = dir.path().join("bare.onnx");
    std::fs::write(&bare, model.encode_to_vec()).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let only_test = tempfile::tempdir().unwrap();
    write_batch(&only_test.path().join(TEST_FILE), &test_fixture());
    let cases: [(&Path, &Path, &str); 4] = [
        (&text_file, data.path(), "not an ONNX model"),
        (&bare, data.path(), "cifar.model"),
        (&shipped(), empty.path(), "no training images"),
        (&shipped(), only_test.path(), "no training images"),
    ];
    for (onnx, data, expected) in cases {
        let out = dir.path().join("out.onnx");
        let run = quantize(onnx, &out, data, &[]);
        let err = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{}: {err}", onnx.display());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: ") && err.contains(expected), "{expected}: {err}");
        assert!(!out.exists(), "{} was written", out.display());
    }
}

/// `--run-dir`: the int8 file gets the zoo's folder beside it, holding the run's summary with the
/// int8 model's own test figures, and the run's recipe and curves, not its f32 confusion matrix.
#[test]
fn with_the_run_folder_the_int8_file_gets_its_reports() {
    let data = data_dir(true);
    let zoo_run = repo_root().join("model-zoo/resnet-light");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("resnet-light-int8.onnx");
    let run_dir = ["--run-dir", zoo_run.to_str().unwrap()];
    let run = quantize(&shipped(), &out, data.path(), &[&["--calibration-images", "64", "--max-accuracy-drop", "5"][..], &run_dir].concat());
    assert!(run.status.success(), "{}", text(&run.stderr));
    let reports = out_dir.path().join("resnet-light-int8");
    assert!(text(&run.stdout).contains(&format!("wrote {}", reports.display())), "{}", text(&run.stdout));

    let json = |dir: &Path| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap() };
    let (s, f32_run) = (json(&reports), json(&zoo_run));
    let meta = metadata(&out);
    assert_eq!(s["test_acc"].as_f64(), meta.test_acc_frac, "the int8 model's own accuracy");
    assert_eq!(s["test_images"], 1000);
    assert!(s["test_loss"].as_f64().unwrap() > 0.0 && s["test_loss"] != f32_run["test_loss"]);
    assert!(s["best_val_acc"].is_null() && s["final_val_acc"].is_null() && s["onnx_parity_max_abs_diff"].is_null());
    let q = &s["quantized"];
    assert_eq!((q["from"].as_str(), q["calibration_images"].as_u64(), q["weights"].as_str()), (Some("resnet-light.onnx"), Some(64), Some("per-channel")));
    assert_eq!(q["f32_test_acc"].as_f64(), meta.f32_test_acc_frac);
    assert_eq!(s["onnx"], "resnet-light-int8.onnx");
    // (The recipe is re-serialised with the fields added since, at their defaults.)
    for same in ["model", "epochs", "params", "train_seconds", "threads", "git_commit"] {
        assert_eq!(s[same], f32_run[same], "{same} is the training run's");
    }
    for copied in ["recipe.json", "metrics.csv", "curves.svg"] {
        assert_eq!(std::fs::read(reports.join(copied)).unwrap(), std::fs::read(zoo_run.join(copied)).unwrap(), "{copied}");
    }
    assert!(!reports.join("confusion.svg").exists(), "the f32 confusion matrix is not the int8 model's");
}

/// `--run-dir` refuses, writing nothing, when the run is of another model or there is no test
/// file to measure the int8 model on (even with the accuracy check off).
#[test]
fn the_run_folder_must_be_the_files_and_needs_test_images() {
    let (with_test, without_test) = (data_dir(true), data_dir(false));
    let vgg_run = repo_root().join("model-zoo/vgg");
    let light_run = repo_root().join("model-zoo/resnet-light");
    let cases: [(&Path, &Path, &str); 2] = [(with_test.path(), &vgg_run, "vgg run"), (without_test.path(), &light_run, "test_batch.bin")];
    for (data, run_dir, expected) in cases {
        let out_dir = tempfile::tempdir().unwrap();
        let out = out_dir.path().join("int8.onnx");
        let run = quantize(&shipped(), &out, data, &["--calibration-images", "64", "--max-accuracy-drop", "off", "--run-dir", run_dir.to_str().unwrap()]);
        let err = text(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(expected) && err.contains("--run-dir"), "{expected}: {err}");
        assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0, "nothing written");
    }
}
