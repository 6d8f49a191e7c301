//! tests/vm/kernels.sh is safe to run concurrently: two fetches of one
//! kernel into one empty cache both succeed and agree (the lab and the BTF
//! cross-check fetch the 6.1 kernel at the same time on a fresh machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn concurrent_fetches_into_an_empty_cache() {
    let cache = std::env::temp_dir().join(format!("ipft-fetch-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    std::fs::create_dir_all(&cache).unwrap();
    let script = root().join("tests/vm/kernels.sh");
    let spawn = || {
        Command::new(&script)
            .args(["fetch", "6.1"])
            .env("IPFT_CACHE", &cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()))
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let dirs: Vec<String> = outs
        .iter()
        .map(|o| {
            assert!(
                o.status.success(),
                "a concurrent fetch failed (exit {:?}):\n{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr)
            );
            String::from_utf8(o.stdout.clone())
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    assert_eq!(dirs[0], dirs[1], "both fetches name the same entry");
    let dir = Path::new(&dirs[0]);
    assert_eq!(dir, cache.join("kernels/6.1"));
    for f in [".complete", "vmlinuz", "vmlinux", "btf/vmlinux", "release"] {
        assert!(dir.join(f).is_file(), "{} missing", dir.join(f).display());
    }
    // Only the entry and its lock are left: no staging directory survives.
    let mut left: Vec<String> = std::fs::read_dir(cache.join("kernels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, [".6.1.lock", "6.1"]);
    std::fs::remove_dir_all(&cache).unwrap();
}
