//! Records the source commit, so that summaries and ONNX metadata say what code made them:
//! `-dirty` after it when the sources this binary is built from differ from that commit (a
//! run trained from uncommitted code must not name a commit that lacks it).

use std::process::Command;

/// The workspace paths whose sources end up in `train` (relative to the workspace root).
const SOURCES: [&str; 6] = ["models", "onnxrt", "train", "vendor", "Cargo.toml", "Cargo.lock"];

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        Command::new("git").arg("-C").arg(root).arg("--no-optional-locks").args(args).output().ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let changed = git(&[&["status", "--porcelain", "--untracked-files=no", "--"][..], &SOURCES].concat()).is_some_and(|s| !s.is_empty());
    let dirty = if changed && commit != "unknown" { "-dirty" } else { "" };
    println!("cargo:rustc-env=CIFAR_GIT_COMMIT={commit}{dirty}");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
    // An edit to a source makes the tree dirty without touching git's files (cargo watches a
    // directory's whole contents). `--no-optional-locks` above keeps `git status` from
    // refreshing the index, which would otherwise look like a change on every build.
    for path in SOURCES {
        println!("cargo:rerun-if-changed={root}/{path}");
    }
}
