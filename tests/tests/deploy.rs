//! deploy/: the container entrypoint serves like the image would, the manifests validate
//! offline, the Dockerfiles pass hadolint, and nothing the deployment uses has drifted from
//! `serve` (every flag and variable exists; the probe paths answer).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    let path = repo_root().join(".venv-tools/bin").join(name);
    assert!(path.is_file(), "{} is missing: run `bash scripts/setup.sh`", path.display());
    path
}

/// The text files of deploy/ (manifests, Dockerfiles, the entrypoint).
fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_none_or(|e| e == "yaml" || e == "sh" || e == "cuda") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("deploy"), &mut files);
    files.sort();
    files
}

#[test]
fn manifests_validate_against_kubernetes_and_kserve_schemas() {
    let out = Command::new(tool("python")).arg(repo_root().join("deploy/check-manifests.py")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for kind in ["Deployment", "Service", "HorizontalPodAutoscaler", "PodMonitor", "ServingRuntime", "InferenceService", "Kustomization"] {
        assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains(&format!(" {kind}"))), "{kind} was checked:\n{stdout}");
    }
}

#[test]
fn dockerfiles_pass_hadolint() {
    let out = Command::new(tool("hadolint")).args(["--no-color"]).arg(repo_root().join("deploy/Dockerfile")).arg(repo_root().join("deploy/Dockerfile.cuda")).output().unwrap();
    assert!(out.status.success(), "hadolint:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// `--flag` arguments the manifests pass (YAML list items) and `SERVE_*` names anywhere in deploy/.
fn used_flags_and_variables() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut flags, mut vars) = (BTreeSet::new(), BTreeSet::new());
    for file in deploy_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            if let Some(arg) = line.trim().strip_prefix("- --") {
                flags.insert(format!("--{}", arg.split(['=', ' ']).next().unwrap()));
            }
            let mut rest = line;
            while let Some(at) = rest.find("SERVE_") {
                let name: String = rest[at..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                vars.insert(name);
            }
        }
    }
    // The entrypoint's own variable (which binary to run), not one of serve's.
    vars.remove("SERVE_BIN");
    (flags, vars)
}

#[test]
fn every_flag_and_variable_the_deployment_uses_exists_in_serve() {
    let help = Command::new(binary("cifar-serve", "serve")).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let (flags, vars) = used_flags_and_variables();
    assert!(flags.len() >= 5 && vars.len() >= 8, "the scan found what the manifests use: {flags:?} {vars:?}");
    for flag in &flags {
        assert!(help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")), "{flag} (used in deploy/) is not a `serve` flag");
    }
    for var in &vars {
        assert!(help.contains(&format!("[env: {var}=")), "{var} (used in deploy/) is not a variable `serve` reads");
    }
}

/// The probe paths of deploy/k8s/deployment.yaml.
fn probe_paths() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("deploy/k8s/deployment.yaml")).unwrap();
    text.lines().filter_map(|l| l.trim().strip_prefix("path: ")).filter(|p| p.starts_with("/v2/health")).map(str::to_string).collect()
}

fn entrypoint(models: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(repo_root().join("deploy/entrypoint.sh"))
        .env("SERVE_BIN", binary("cifar-serve", "serve"))
        .env("SERVE_MODELS", models)
        .env("SERVE_BIND", "127.0.0.1:0")
        .env_remove("SERVE_DEFAULT_MODEL")
        .current_dir(repo_root());
    cmd
}

#[test]
fn the_entrypoint_serves_the_zoo_default_and_the_probes_answer() {
    // The shipped default model and DEFAULT, as the image bakes them with WITH_ZOO=true.
    let zoo = repo_root().join("model-zoo");
    let default = std::fs::read_to_string(zoo.join("DEFAULT")).unwrap().trim().to_string();
    let models = process_temp_dir("entrypoint");
    std::fs::copy(zoo.join("DEFAULT"), models.join("DEFAULT")).unwrap();
    std::fs::copy(zoo.join(format!("{default}.onnx")), models.join(format!("{default}.onnx"))).unwrap();
    let s = Server::spawn(entrypoint(&models), &models);

    let probes = probe_paths();
    assert_eq!(probes, BTreeSet::from(["/v2/health/live".to_string(), "/v2/health/ready".to_string()]));
    for path in &probes {
        assert_eq!(get(&s.u(path)).status, 200, "{path}");
    }
    let r = post(&s.u("/v1/classify"), "image/png", &std::fs::read(zoo.join("cat.png")).unwrap());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], default.as_str(), "DEFAULT chose the model");
    assert_eq!(v["results"][0]["predictions"][0]["label"], "cat", "{v}");

    // SIGTERM reaches serve itself (the entrypoint execs it): it drains and exits 0.
    unsafe { libc::kill(s.pid(), libc::SIGTERM) };
    assert_eq!(s.wait_exit(std::time::Duration::from_secs(30)), Some(0), "{}", s.log());
}

#[test]
fn the_entrypoint_says_what_is_missing() {
    let empty = process_temp_dir("empty-models");
    for (dir, needle) in [(empty.join("nope"), "does not exist"), (empty.clone(), "no *.onnx files")] {
        let out = entrypoint(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{stderr}");
    }
}
