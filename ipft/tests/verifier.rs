//! A program the verifier refuses: the load error names the program and
//! carries the verifier log's tail, and nothing stays loaded. Root only.

mod common;

use std::process::Command;

use ipft_abi::Layout;
use ipft_runtime::attach::{capture_libbpf_log, LoadError, LoadOptions, Session};
use ipft_runtime::{Config, ProbeEntry, ProgramId, TypedKind};

const BAD: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
CONFIG_STRUCT
const volatile struct ipft_config CONFIG = {};
struct { __uint(type, BPF_MAP_TYPE_RINGBUF); __uint(max_entries, 4096); } ipft_events SEC(".maps");
SEC("tp_btf/netif_receive_skb")
int ipft_t0(__u64 *ctx)
{
	/* netif_receive_skb has one argument: reading the 20th is refused. */
	return ctx[20] != CONFIG.mark;
}
"#;

#[test]
fn verifier_rejection_names_program_and_log() {
    let _g = common::lock();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("verifier");
    std::fs::create_dir_all(&dir).unwrap();
    let h = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "bpftool btf dump file /sys/kernel/btf/vmlinux format c > {}/vmlinux.h",
            dir.display()
        ))
        .status()
        .unwrap();
    assert!(h.success());
    let src = BAD.replace("CONFIG_STRUCT", &Config::c_struct());
    std::fs::write(dir.join("bad.bpf.c"), src).unwrap();
    let o = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-D__TARGET_ARCH_x86", "-I"])
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("bad.bpf.c"))
        .arg("-o")
        .arg(dir.join("bad.bpf.o"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let object = std::fs::read(dir.join("bad.bpf.o")).unwrap();
    let table = netif_receive_skb();
    capture_libbpf_log();
    let cfg = Config {
        mark: 1,
        mask: !0,
        wakeup_bytes: 1,
        ..Config::default()
    };
    let opts = LoadOptions {
        config: cfg,
        ring_buffer_bytes: None,
        btf: None,
        pcap: None,
    };
    match Session::specialised(&object, &table, &[0], opts, &mut |_| true) {
        Err(e @ LoadError::Load { .. }) => {
            let msg = e.to_string();
            let LoadError::Load { program, log, .. } = e else {
                unreachable!()
            };
            assert_eq!(program, "ipft_t0");
            assert!(log.lines().count() <= 30 && !log.trim().is_empty(), "{log}");
            assert!(msg.contains("verifier log (last 30 lines)"), "{msg}");
        }
        Err(e) => panic!("expected a verifier rejection, got {e}"),
        Ok(_) => panic!("the verifier accepted an out-of-range context read"),
    }
    assert!(common::wait_detached().is_empty());
}

/// An object whose .rodata cannot hold `struct ipft_config` is refused: it
/// would trace without the mark filter.
#[test]
fn an_object_without_the_config_is_refused() {
    let _g = common::lock();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("noconfig");
    std::fs::create_dir_all(&dir).unwrap();
    let src = r#"
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef int __s32;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
SEC("tp_btf/netif_receive_skb")
int ipft_t0(__u64 *ctx)
{
	return 0;
}
"#;
    std::fs::write(dir.join("noconfig.bpf.c"), src).unwrap();
    let o = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(dir.join("noconfig.bpf.c"))
        .arg("-o")
        .arg(dir.join("noconfig.bpf.o"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let object = std::fs::read(dir.join("noconfig.bpf.o")).unwrap();
    let table = netif_receive_skb();
    match Session::specialised(&object, &table, &[0], LoadOptions::default(), &mut |_| true) {
        Err(LoadError::NoConfig { found: 0, want }) if want == std::mem::size_of::<Config>() => {}
        Err(e) => panic!("expected NoConfig, got {e}"),
        Ok(_) => panic!("an object without the config was loaded"),
    }
    assert!(common::wait_detached().is_empty());
}

/// The one-row table of both objects: program ipft_t0 on netif_receive_skb.
fn netif_receive_skb() -> [ProbeEntry; 1] {
    [ProbeEntry::tracepoint(
        "netif_receive_skb",
        0,
        1,
        ProgramId::Typed {
            kind: TypedKind::Tracepoint,
            row: 0,
        },
    )]
}
