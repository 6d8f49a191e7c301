//! `ipft-gen --build` end to end on this host: generate a tracer for the
//! running kernel's skb tracepoints, build it, and trace a marked ping with
//! it (real BPF, real packets). Root only.

#[path = "../../ipft/tests/common/mod.rs"]
mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn generated_tracepoint_tracer_traces_a_marked_ping() {
    let _g = lock();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-tracepoints");
    let o = build_tracepoints(&out, None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "ipft-gen --build failed: {err}");
    let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    assert_eq!(bin, out.join("ipft-tracepoints"));
    // Deterministic: a second generation gives the same sources.
    let c1 = std::fs::read(out.join("tracer.bpf.c")).unwrap();
    let r1 = std::fs::read(out.join("probe_set.rs")).unwrap();
    let again = out.with_file_name("gen-tracepoints-again");
    let o = Command::new(env!("CARGO_BIN_EXE_ipft-gen"))
        .args([
            "--btf",
            "/sys/kernel/btf/vmlinux",
            "--profile",
            "tracepoints",
            "-o",
        ])
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(std::fs::read(again.join("tracer.bpf.c")).unwrap(), c1);
    assert_eq!(std::fs::read(again.join("probe_set.rs")).unwrap(), r1);

    // Reproducible: the same inputs, generated and built again from
    // scratch (crate and binary removed), give a byte-identical tracer.
    let sha = |m: &std::path::Path| -> String {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(m).unwrap()).unwrap();
        v["tracer"]["sha256"].as_str().unwrap().to_string()
    };
    let first = sha(&out.join("manifest.json"));
    std::fs::remove_dir_all(out.join("crate")).unwrap();
    std::fs::remove_file(&bin).unwrap();
    let o = build_tracepoints(&out, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        sha(&out.join("manifest.json")),
        first,
        "rebuilt tracer differs"
    );

    // One static executable.
    let f = Command::new("file").arg(&bin).output().expect("file(1)");
    let kind = String::from_utf8_lossy(&f.stdout);
    assert!(
        kind.contains("statically linked") || kind.contains("static-pie"),
        "{kind}"
    );
    // Its --version names the kernel and profile it was generated for.
    let v = Command::new(&bin).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.contains("profile tracepoints") && v.contains("BTF checksum"),
        "{v}"
    );
    // -l lists its own probes (not the running kernel's), each with how it
    // attaches here.
    let l = Command::new(&bin).arg("-l").output().unwrap();
    assert!(l.status.success(), "{}", String::from_utf8_lossy(&l.stderr));
    let listing = String::from_utf8_lossy(&l.stdout);
    let rows: Vec<&str> = listing.lines().skip(1).collect();
    let table: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("probes.json")).unwrap()).unwrap();
    let visible = table
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["hidden"] == false)
        .count();
    assert_eq!(rows.len(), visible, "{listing}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("tp_btf:") && r.ends_with("tp_btf")),
        "{listing}"
    );
    // -p other than its own profile is refused, not ignored.
    let p = Command::new(&bin)
        .args(["-m", "1", "-p", "tcp"])
        .output()
        .unwrap();
    assert_eq!(p.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&p.stderr).contains("generated for profile 'tracepoints'"));
    // The tracer's crate links no generator crate.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--manifest-path",
        ])
        .arg(out.join("crate/Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        tree.status.success(),
        "{}",
        String::from_utf8_lossy(&tree.stderr)
    );
    let tree = String::from_utf8_lossy(&tree.stdout);
    for bad in ["ipft-gen", "handlebars", "prettyplease", "toml"] {
        assert!(
            !tree
                .lines()
                .any(|l| l.split_whitespace().next() == Some(bad)),
            "the tracer depends on {bad}:\n{tree}"
        );
    }

    // It needs no library at all: run it in a root holding nothing but the
    // tracer (and /proc, /sys of the host for the kernel's BTF and kallsyms).
    let bare = out.with_file_name("gen-tracepoints-bare");
    let _ = std::process::Command::new("umount")
        .arg(bare.join("sys"))
        .output();
    let _ = std::process::Command::new("umount")
        .arg(bare.join("proc"))
        .output();
    let _ = std::fs::remove_dir_all(&bare);
    for d in ["proc", "sys", "tmp"] {
        std::fs::create_dir_all(bare.join(d)).unwrap();
    }
    std::fs::copy(&bin, bare.join("ipft-tracepoints")).unwrap();
    must(&format!(
        "mount --bind /proc {}/proc && mount --rbind /sys {}/sys",
        bare.display(),
        bare.display()
    ));
    let ns = Netns::new("gen");
    let chrooted = std::process::Command::new("chroot")
        .arg(&bare)
        .args([
            "/ipft-tracepoints",
            "-m",
            "0xdeadbeef",
            "-o",
            "json",
            "--duration",
            "4",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let p = ns.exec(&format!("ping -q -c 1 -m {MARK} 127.0.0.1"));
    assert!(p.status.success());
    let o = chrooted.wait_with_output().unwrap();
    let _ = sh(&format!(
        "umount -l {}/sys; umount {}/proc",
        bare.display(),
        bare.display()
    ));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "in a bare root: {err}");
    let j = journeys(&events(&String::from_utf8_lossy(&o.stdout)));
    assert_eq!(j.len(), 1, "in a bare root: {j:?}\n{err}");
    assert!(wait_detached().is_empty());

    let t = Tracer::start(&bin, &["-m", "0xdeadbeef", "-o", "json"], "gen");
    let p = ns.exec(&format!("ping -q -c 2 -i 0.2 -m {MARK} 127.0.0.1"));
    assert!(p.status.success());
    let p = ns.exec("ping -q -c 2 -i 0.2 127.0.0.1");
    assert!(p.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let j = journeys(&events(&out));
    assert_eq!(j.len(), 2, "{j:?}\n{err}");
    for journey in &j {
        assert_eq!(
            journey,
            &[
                "net_dev_queue",
                "net_dev_start_xmit",
                "netif_rx_entry",
                "netif_rx",
                "net_dev_xmit",
                "netif_receive_skb",
                "consume_skb"
            ]
        );
    }
    assert!(wait_detached().is_empty());

    // The packet filters and --track-skb in the specialised programs: lo
    // passes, another device's name leaves nothing.
    for (args, want) in [
        (&["--filter-ifname", "lo", "--track-skb"][..], 2),
        (&["--filter-ifname", "ipft-none0"], 0),
    ] {
        let mut full = vec!["-m", "0xdeadbeef", "-o", "json"];
        full.extend(args);
        let t = Tracer::start(&bin, &full, "genf");
        let p = ns.exec(&format!("ping -q -c 2 -i 0.2 -m {MARK} 127.0.0.1"));
        assert!(p.status.success());
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let (code, out, err) = t.stop(libc::SIGINT);
        assert_eq!(code, 0, "{err}");
        let j = journeys(&events(&out));
        assert_eq!(j.len(), want, "{args:?}: {j:?}\n{err}");
        assert!(j.iter().all(|j| j[0] == "net_dev_queue"), "{j:?}");
    }
    assert!(wait_detached().is_empty());
}

#[test]
fn clang_failure_names_the_file() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-broken");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    // A clang that always fails stands in for a broken toolchain.
    let fake = out.join("fake-clang");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'fatal error: simulated' >&2\nexit 1\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let o = build_tracepoints(&out, Some(&fake));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("clang failed on")
            && err.contains("tracer.bpf.c")
            && err.contains("simulated"),
        "{err}"
    );
}

/// `ipft-gen --btf <running kernel> --profile tracepoints --build -o OUT`,
/// with $CLANG set to `clang` when given.
fn build_tracepoints(
    out: &std::path::Path,
    clang: Option<&std::path::Path>,
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipft-gen"));
    cmd.args([
        "--btf",
        "/sys/kernel/btf/vmlinux",
        "--profile",
        "tracepoints",
        "--build",
        "-o",
    ])
    .arg(out);
    if let Some(c) = clang {
        cmd.env("CLANG", c);
    }
    cmd.output().unwrap()
}
