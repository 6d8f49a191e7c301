//! Golden tests: generated C and Rust for tests/fixtures/btf/mini.btf.
//! Bless new output with IPFT_BLESS=1.

#[path = "../../ipft/tests/common/mod.rs"]
mod common;

use common::check_file;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipft_abi::{policy, KernelOffer};
use ipft_gen::btf::KernelBtf;
use ipft_gen::codegen::{self, Plan};
use ipft_gen::probe::{Backend, ProbeKind, Profile};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mini() -> (KernelBtf, Vec<ipft_gen::Probe>) {
    let mut k = KernelBtf::from_file(&root().join("tests/fixtures/btf/mini.btf")).unwrap();
    k.identity.source = "tests/fixtures/btf/mini.btf".into();
    let (mut probes, _) = ipft_gen::btf::scan(&k).unwrap();
    let all = Profile::load("all").unwrap();
    probes.retain(|p| all.keeps(p, None));
    for p in probes.iter_mut() {
        p.backends = policy::reaching(&p.shape(), true, &KernelOffer::everything(None));
    }
    probes.retain(|p| !p.backends.is_empty());
    (k, probes)
}

fn generate(backend: Backend) -> codegen::Generated {
    let (k, probes) = mini();
    let probes: Vec<_> = probes
        .into_iter()
        .filter(|p| p.kind == ProbeKind::Tracepoint || p.backends.contains(&backend))
        .map(|mut p| {
            if p.kind == ProbeKind::Function {
                p.backends = vec![backend];
            }
            p
        })
        .collect();
    // A hidden clone function row (--track-skb), as discovery adds one.
    let hidden_from = probes.len();
    let mut probes = probes;
    probes.push(ipft_gen::Probe {
        name: "skb_clone".into(),
        kind: ProbeKind::Function,
        skb_positions: vec![0],
        nargs: 2,
        backends: vec![backend],
        ..Default::default()
    });
    let plan = Plan {
        profile: "all",
        identity: &k.identity,
        probes: &probes,
        hidden_from,
        returns: backend == Backend::Fentry,
        pcap: None,
    };
    codegen::generate(&plan).unwrap()
}

fn check(name: &str, actual: &str) {
    check_file(&root().join("tests/golden").join(name), actual)
}

#[test]
fn golden_fentry_and_kprobe() {
    for (b, tag) in [
        (Backend::Fentry, "fentry"),
        (Backend::Kprobe, "kprobe"),
        (Backend::KprobeMulti, "kprobe-multi"),
    ] {
        let g = generate(b);
        check(&format!("mini-{tag}.bpf.c"), &g.c);
        check(&format!("mini-{tag}.rs"), &g.rust);
        if b == Backend::Kprobe {
            // The ipft-macros doc test includes this probe set: keep it the
            // golden output (its tracer.bpf.o recipe is in that folder).
            check("../fixtures/probe_set/probe_set.rs", &g.rust);
        }
        // Odd BTF names (keywords, 200 characters) still give valid Rust.
        syn::parse_file(&g.rust).expect("generated Rust parses");
    }
}

#[test]
fn deterministic() {
    let a = generate(Backend::Fentry);
    let b = generate(Backend::Fentry);
    assert_eq!(a.c, b.c);
    assert_eq!(a.rust, b.rust);
}

#[test]
fn positions_and_flags() {
    let (_, probes) = mini();
    let get = |n: &str| {
        probes
            .iter()
            .find(|p| p.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    assert_eq!(get("ip_finish_output").skb_positions, vec![2]);
    assert_eq!(
        get("const_skb").skb_positions,
        vec![0],
        "const struct sk_buff * is an skb"
    );
    assert_eq!(
        get("typedef_skb").skb_positions,
        vec![1],
        "typedef + const + volatile stripped"
    );
    assert_eq!(get("two_skbs").skb_positions, vec![0, 1]);
    assert_eq!(get("sixth_skb").skb_positions, vec![5]);
    assert!(get("variadic_skb").variadic);
    assert_eq!(get("kfree_skb_reason").drop_reason_pos, Some(1));
    let tp = probes
        .iter()
        .find(|p| p.name == "kfree_skb" && p.kind == ProbeKind::Tracepoint)
        .unwrap();
    assert_eq!(
        (tp.skb_positions.clone(), tp.drop_reason_pos, tp.nargs),
        (vec![0], Some(2), 3)
    );
    assert!(!probes
        .iter()
        .any(|p| p.name == "no_skb" || p.name == "no_skb_tp"));
    assert!(!get("variadic_skb").backends.contains(&Backend::Fentry));
}

/// The generated C compiles with clang against the host's vmlinux.h, odd
/// names included.
#[test]
fn generated_c_compiles() {
    let dir = std::env::temp_dir().join(format!("ipft-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let btf = Path::new("/sys/kernel/btf/vmlinux");
    ipft_gen::compile::vmlinux_h(btf, "host", &dir).expect("bpftool vmlinux.h");
    for b in [Backend::Fentry, Backend::Kprobe, Backend::KprobeMulti] {
        let g = generate(b);
        let src = dir.join(format!("{b}.bpf.c"));
        std::fs::write(&src, &g.c).unwrap();
        ipft_gen::compile::compile_bpf(&src, &dir.join(format!("{b}.bpf.o")), &[&dir])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let _ = Command::new("rm").arg("-rf").arg(&dir).status();
}

/// The generic object's C is checked in (ipft's build script compiles it
/// without depending on the generator); it must stay what ipft-gen renders.
#[test]
fn golden_generic_object() {
    let c = codegen::c::render_generic().unwrap();
    check_file(&root().join("ipft/bpf/generic.bpf.c"), &c);
}
