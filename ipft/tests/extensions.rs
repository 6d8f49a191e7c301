//! Extensions end to end on this host (tp_btf): `-e FILE.c` compiled at
//! start, `-e FILE.o`, `-s FILE.lua`, a module that drops events, and the
//! errors. Real programs, real marked pings in namespaces made here; the
//! payload values are checked against what the packets must carry. Root
//! and clang only.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn ipft() -> PathBuf {
    env!("CARGO_BIN_EXE_ipft").into()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A scratch directory holding the extension header, so fixtures written
/// there find `#include "ipft_extension.h"` beside them.
fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipft-ext-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        repo().join("extensions/ipft_extension.h"),
        d.join("ipft_extension.h"),
    )
    .unwrap();
    d
}

/// clang -target bpf ... as a user would compile an extension for `-e X.o`.
fn compile(src: &Path, obj: &Path) {
    let arch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    must(&format!(
        "clang -target bpf -O2 -g {arch} -I{} -c {} -o {}",
        repo().join("extensions").display(),
        src.display(),
        obj.display()
    ));
}

/// Trace two marked loopback pings with `ext_args`; the JSON events.
fn traced(ext_args: &[&str], tag: &str) -> (Vec<Value>, String) {
    let ns = Netns::new(tag);
    let mut args = vec!["-m", "0xdeadbeef", "-b", "tp_btf", "-o", "json"];
    args.extend(ext_args);
    let t = Tracer::start(&ipft(), &args, tag);
    let o = ns.exec(&format!("ping -q -c 2 -i 0.2 -W 2 -m {MARK} 127.0.0.1"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    assert!(wait_detached().is_empty());
    (events(&out), err)
}

/// The `ext` numbers of the first event at `function`.
fn ext_at(evs: &[Value], function: &str) -> Value {
    evs.iter()
        .find(|e| e["function"] == function)
        .unwrap_or_else(|| panic!("no {function} event: {evs:?}"))["ext"]
        .clone()
}

/// A 64-byte echo request leaves as 98 bytes (Ethernet + IP + ICMP + 56)
/// and is received as 84 once the Ethernet header is pulled.
fn assert_echo_lengths(evs: &[Value], err: &str) {
    assert_eq!(journeys(evs).len(), 2, "{evs:?}\n{err}");
    for e in evs {
        assert!(e["ext"].is_object(), "every event carries ext: {e}");
    }
    assert_eq!(ext_at(evs, "net_dev_queue")["len"], 98, "{evs:?}");
    assert_eq!(ext_at(evs, "netif_receive_skb")["len"], 84, "{evs:?}");
}

#[test]
fn c_source_compiled_at_start() {
    let _g = lock();
    let src = repo().join("extensions/len.bpf.c");
    let (evs, err) = traced(&["-e", src.to_str().unwrap()], "extc");
    assert_echo_lengths(&evs, &err);
    let x = ext_at(&evs, "net_dev_queue");
    assert_eq!(x["data_len"], 0, "a ping is linear: {x}");
    assert!(x["truesize"].as_u64().unwrap() > 98, "{x}");
}

#[test]
fn compiled_object() {
    let _g = lock();
    let d = scratch("obj");
    let obj = d.join("len.bpf.o");
    compile(&repo().join("extensions/len.bpf.c"), &obj);
    let (evs, err) = traced(&["-e", obj.to_str().unwrap()], "exto");
    assert_echo_lengths(&evs, &err);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn lua_script_with_its_object() {
    let _g = lock();
    let d = scratch("lua");
    compile(&repo().join("extensions/gso.bpf.c"), &d.join("gso.bpf.o"));
    std::fs::copy(repo().join("extensions/lua/gso.lua"), d.join("gso.lua")).unwrap();
    let script = d.join("gso.lua");
    let (evs, err) = traced(&["-s", script.to_str().unwrap()], "extl");
    assert_echo_lengths(&evs, &err);
    // A ping is no GSO packet.
    assert_eq!(ext_at(&evs, "net_dev_queue")["gso_segs"], 0, "{evs:?}");
    std::fs::remove_dir_all(&d).unwrap();
}

/// module() returning non-zero drops the event; the release still ends
/// the journey.
#[test]
fn module_verdict_drops_events() {
    let _g = lock();
    let d = scratch("drop");
    let src = d.join("only98.bpf.c");
    std::fs::write(
        &src,
        r#"#include "ipft_extension.h"
struct event { __u32 len; } __ipft_event_struct;
struct sk_buff { unsigned int len; } __attribute__((preserve_access_index));
__hidden int module(void *ctx, struct sk_buff *skb, __u8 data[64])
{
	struct event *ev = (struct event *)data;

	ev->len = BPF_CORE_READ(skb, len);
	return ev->len != 98;
}
"#,
    )
    .unwrap();
    let (evs, err) = traced(&["-e", src.to_str().unwrap()], "extd");
    let j = journeys(&evs);
    assert_eq!(j.len(), 2, "{j:?}\n{err}");
    for journey in &j {
        assert_eq!(
            journey,
            &["net_dev_queue", "net_dev_start_xmit", "consume_skb"],
            "{err}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}

fn refused(args: &[&str], expect: &[&str]) -> String {
    let o = std::process::Command::new(ipft())
        .args(["-m", "0xdeadbeef", "-b", "tp_btf", "--duration", "0.1"])
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    for e in expect {
        assert!(err.contains(e), "{args:?}: want {e:?} in {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(wait_detached().is_empty());
    err
}

#[test]
fn bad_extensions_are_refused_with_the_reason() {
    let _g = lock();
    let d = scratch("bad");
    let w = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    // The compiler's own message, then ipft's line.
    let err = refused(
        &["-e", &w("syntax.c", "int module(\n")],
        &["syntax.c", "clang failed"],
    );
    assert!(err.lines().count() > 1, "clang's messages are shown: {err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("ipft:")).count(),
        1,
        "{err}"
    );
    refused(
        &["-e", &w("junk.o", "not elf")],
        &["junk.o: not an ELF object"],
    );
    // An object without the payload struct.
    let plain = w(
        "plain.c",
        "typedef unsigned char __u8; struct sk_buff; __attribute__((visibility(\"hidden\"))) \
         int module(void *ctx, struct sk_buff *skb, __u8 data[64]) { return 0; }\n",
    );
    refused(&["-e", &plain], &["plain.c", "__ipft_event_struct"]);
    // The verifier refuses a write past the payload: the log tail and the
    // extension's name.
    let oob = w(
        "oob.c",
        r#"#include "ipft_extension.h"
struct event { __u32 len; } __ipft_event_struct;
struct sk_buff { unsigned int len; } __attribute__((preserve_access_index));
__hidden int module(void *ctx, struct sk_buff *skb, __u8 data[64])
{
	data[BPF_CORE_READ(skb, len) & 0xfff] = 1;
	return 0;
}
"#,
    );
    std::env::set_var(
        "CFLAGS",
        format!("-I{}", repo().join("extensions").display()),
    );
    let err = refused(&["-e", &oob], &["extension oob.c", "verifier log"]);
    std::env::remove_var("CFLAGS");
    assert!(!err.is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn gen_prints_the_skeleton_and_header() {
    for (what, want) in [
        ("bpf-module-header", "#define __ipft_fmt_enum_flags(ref)"),
        ("bpf-module-skeleton", "__hidden int\nmodule(void *ctx"),
    ] {
        let o = std::process::Command::new(ipft())
            .args(["--gen", what])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stdout).contains(want), "{what}");
    }
    // The skeleton compiles as it is.
    let d = scratch("skel");
    let o = std::process::Command::new(ipft())
        .args(["--gen", "bpf-module-skeleton"])
        .output()
        .unwrap();
    std::fs::write(d.join("skel.bpf.c"), &o.stdout).unwrap();
    compile(&d.join("skel.bpf.c"), &d.join("skel.bpf.o"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn shipped_extensions_describe_their_payload() {
    let d = scratch("shipped");
    for (name, fields) in [
        ("gso", "len gso_size gso_segs gso_type"),
        ("len", "len data_len truesize"),
    ] {
        let obj = d.join(format!("{name}.bpf.o"));
        compile(&repo().join(format!("extensions/{name}.bpf.c")), &obj);
        let spec = ipft_btf::payload::payload_spec(&std::fs::read(&obj).unwrap()).unwrap();
        let names: Vec<&str> = spec.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.join(" "), fields, "{name}");
    }
    for name in ["tuple", "dev"] {
        let obj = d.join(format!("{name}.bpf.o"));
        compile(&repo().join(format!("extensions/{name}.bpf.c")), &obj);
        let spec = ipft_btf::payload::payload_spec(&std::fs::read(&obj).unwrap()).unwrap();
        assert!(spec.check().is_ok(), "{name}");
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// tuple and dev on a loopback ping in a namespace of our own: addresses,
/// protocol, device and the namespace's inode are what the packet has.
#[test]
fn tuple_and_dev_values_are_the_packets() {
    let _g = lock();
    let tuple = repo().join("extensions/tuple.bpf.c");
    let (evs, err) = traced(&["-e", tuple.to_str().unwrap()], "extt");
    assert_eq!(journeys(&evs).len(), 2, "{err}");
    let x = ext_at(&evs, "netif_receive_skb");
    assert_eq!(x["proto"], "icmp", "{x}");
    assert_eq!(x["saddr"], "127.0.0.1", "{x}");
    assert_eq!(x["daddr"], "127.0.0.1", "{x}");

    let ns = Netns::new("extv");
    let inode = ns.exec("stat -L -c %i /proc/self/ns/net");
    let inode: u64 = String::from_utf8_lossy(&inode.stdout)
        .trim()
        .parse()
        .unwrap();
    let dev = repo().join("extensions/dev.bpf.c");
    let t = Tracer::start(
        &ipft(),
        &[
            "-m",
            "0xdeadbeef",
            "-b",
            "tp_btf",
            "-o",
            "json",
            "-e",
            dev.to_str().unwrap(),
        ],
        "extv",
    );
    let o = ns.exec(&format!("ping -q -c 1 -W 2 -m {MARK} 127.0.0.1"));
    assert!(o.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (code, out, err) = t.stop(libc::SIGINT);
    assert_eq!(code, 0, "{err}");
    let evs = events(&out);
    let x = ext_at(&evs, "net_dev_queue");
    assert_eq!(x["ifname"], "lo", "{x}");
    assert_eq!(x["ifindex"], 1, "{x}");
    assert_eq!(x["netns"], inode, "{x}");
}
