//! The runtime stands on its own: what every generated tracer links must not
//! pull in the generator or its template and codegen crates.

use std::process::Command;

/// Crates of the generator side that must never reach a tracer.
pub const GENERATOR_CRATES: &[&str] = &["ipft-gen", "handlebars", "prettyplease", "toml"];

#[test]
fn runtime_does_not_depend_on_the_generator() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "ipft-runtime",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(tree.contains("libbpf-rs"), "unexpected tree:\n{tree}");
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(
            !GENERATOR_CRATES.contains(&name),
            "ipft-runtime depends on {name}:\n{tree}"
        );
    }
}
