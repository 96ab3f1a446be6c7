//! The command line of `serve`, without models: help, usage errors, start-up errors.

use std::process::Command;

fn serve(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_serve")).args(args).env_remove("SERVE_MODELS").output().unwrap()
}

#[test]
fn help_names_every_flag_and_its_environment_variable() {
    let out = serve(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--models",
        "--default",
        "--bind",
        "--device",
        "--allow-cpu-fallback",
        "--max-batch",
        "--max-queue-delay-us",
        "--max-body",
        "--max-queue",
        "--threads",
        "SERVE_BIND",
        "SERVE_MODELS",
        "ORT_DYLIB_PATH",
        "/v1/classify",
        "429",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["--models", "m", "--device", "tpu"],
        &["--models", "m", "--max-body", "lots"],
        &["--models", "m", "--max-batch", "0"],
        &["--models", "m", "--no-such-flag"],
    ] {
        let out = serve(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_missing_model_folder_is_named() {
    let out = serve(&["--models", "/nonexistent/models", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/models"), "{err}");
}
