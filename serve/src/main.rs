//! `serve`: the inference server arrives with the [serve] issue.

fn main() {
    eprintln!("serve: not built yet; see the README for what works today");
    std::process::exit(2);
}
