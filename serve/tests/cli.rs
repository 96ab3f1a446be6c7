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
        "SERVE_MAX_QUEUE_DELAY_US",
        "--max-body",
        "--max-queue",
        "--threads",
        "--ort-spin",
        "SERVE_ORT_SPIN",
        "SERVE_BIND",
        "SERVE_MODELS",
        "ORT_DYLIB_PATH",
        "/v1/classify",
        "429",
        "--api-key-file",
        "SERVE_API_KEY_FILE",
        "--protect-all",
        "--cors-allow-origin",
        "--log-format",
        "SERVE_LOG_FORMAT",
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
        &["--models", "m", "--ort-spin", "sometimes"],
        &["--models", "m", "--no-such-flag"],
        &["--models", "m", "--cors-allow-origin", "app.example"],
        &["--models", "m", "--cors-allow-origin", "http://app.example/path"],
        &["--models", "m", "--protect-all"],
        &["--models", "m", "--log-format", "xml"],
    ] {
        let out = serve(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_missing_model_folder_is_named_and_its_cause_said_once() {
    let out = serve(&["--models", "/nonexistent/models", "--bind", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/models"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("ServerOptions"), "the configuration is described in words: {err}");
}

#[test]
fn a_bad_key_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("keys");
    std::fs::write(&empty, "# no keys yet\n").unwrap();
    let missing = dir.path().join("missing");
    for (file, says) in [(&empty, "holds no key"), (&missing, "cannot read the API key file")] {
        let out = serve(&["--models", "/nonexistent/models", "--bind", "127.0.0.1:0", "--api-key-file", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.contains(file.to_str().unwrap()), "{err}");
    }
}

#[test]
fn bench_help_and_usage_errors() {
    let out = serve(&["bench", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--models", "--out", "--iters", "--warmup", "--batch-sizes", "--threads", "--url", "--concurrency", "--duration", "--image", "loopback", "report.json"] {
        assert!(help.contains(flag), "bench --help lacks {flag}:\n{help}");
    }
    let usage = |args: &[&str]| {
        let out = serve(&[&["bench", "--models", "m", "--out", "o"][..], args].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(usage(&["--url", "http://192.0.2.1:8080"]).contains("not a loopback address"));
    assert!(usage(&["--url", "http://example.com"]).contains("loopback"));
    assert!(usage(&["--url", "https://127.0.0.1:8443"]).contains("plain HTTP"));
    usage(&["--concurrency", "4"]); // without --url
    usage(&["--image", "cat.png"]); // without --url
    usage(&["--url", "http://127.0.0.1:1", "--concurrency", "1000"]);
    usage(&["--url", "http://127.0.0.1:1", "--duration", "3600"]);
    usage(&["--batch-sizes", "1,0"]);
    usage(&["--iters", "0"]);
    usage(&["--api-key-file", "keys"]); // without --url
    let out = serve(&["bench", "--out", "o"]);
    assert_eq!(out.status.code(), Some(2), "--models is required");
}
