//! A program the verifier refuses: the load error names the program and
//! carries the verifier log's tail, and nothing stays loaded. Root only.

mod common;

use std::borrow::Cow;
use std::process::Command;

use ipft_runtime::load::{Config, LoadError, Session};
use ipft_runtime::{Backend, ProbeEntry, ProbeKind};

const BAD: &str = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
char LICENSE[] SEC("license") = "GPL";
struct ipft_config { __u32 mark, mask; __u64 wakeup; __u32 probe, graph; };
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
    std::fs::write(dir.join("bad.bpf.c"), BAD).unwrap();
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
    let table = [ProbeEntry {
        name: Cow::Borrowed("netif_receive_skb"),
        module: None,
        kind: ProbeKind::Tracepoint,
        backend: Backend::TpBtf,
        skb_pos: 0,
        reason_pos: None,
        btf_id: 0,
        program: Cow::Borrowed("ipft_t0"),
        return_program: None,
        frees_skb: false,
        hidden: false,
    }];
    ipft_runtime::load::capture_libbpf_log();
    let cfg = Config {
        mark: 1,
        mask: !0,
        wakeup_bytes: 1,
        graph: false,
    };
    match Session::specialised(&object, &table, &[0], cfg, false, &mut |_| {}) {
        Err(LoadError::Load { program, log, .. }) => {
            assert_eq!(program, "ipft_t0");
            assert!(log.lines().count() <= 30 && !log.trim().is_empty(), "{log}");
            let msg = LoadError::Load {
                program,
                error: "x".into(),
                log,
            }
            .to_string();
            assert!(msg.contains("verifier log (last 30 lines)"), "{msg}");
        }
        Err(e) => panic!("expected a verifier rejection, got {e}"),
        Ok(_) => panic!("the verifier accepted an out-of-range context read"),
    }
    assert!(common::wait_detached().is_empty());
}
