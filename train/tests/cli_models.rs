//! `train --list-models` and `--summary` as a user runs them.

use std::process::Command;

fn train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_train")).args(args).output().expect("run train")
}

#[test]
fn list_models_json_has_the_seven_with_exact_figures() {
    let out = train(&["--list-models", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, cifar_models::MODEL_NAMES);
    let params: Vec<u64> = rows.iter().map(|r| r["params"].as_u64().unwrap()).collect();
    assert_eq!(params, [1_110_826, 310_474, 3_921_994, 1_087_114, 3_090_058, 508_447, 1_098_724]);
    let gmacs: Vec<String> =
        rows.iter().map(|r| format!("{:.2}", r["seed_gmacs_batch128"].as_f64().unwrap())).collect();
    assert_eq!(gmacs, ["11.28", "8.95", "16.73", "19.19", "21.23", "16.30", "28.75"]);
    assert_eq!(rows[1]["macs_per_image"].as_u64(), Some(69_437_952));
}

#[test]
fn list_models_table_is_readable() {
    let out = train(&["--list-models"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let line = text.lines().find(|l| l.starts_with("resnet-heavy")).expect("resnet-heavy row");
    assert!(line.contains("3,921,994") && line.contains("130.20") && line.contains("16.73"), "{line}");
}

#[test]
fn summary_lists_every_layer_and_totals() {
    let out = train(&["--model", "densenet-large", "--summary"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert!(text.contains("fblock.convs.7.conv"));
    assert!(text.contains("Total params: 1,098,724"));
    assert!(text.contains("28.75 G"));
}

#[test]
fn unknown_model_is_a_usage_error_listing_valid_names() {
    let out = train(&["--model", "resnet50", "--summary"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown model `resnet50`") && err.contains("resnext-small"), "{err}");
}
