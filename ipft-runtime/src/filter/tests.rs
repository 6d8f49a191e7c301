//! The translations held against libpcap's own interpreter
//! (pcap_offline_filter) on real frames: the C of `ipft-gen --filter`
//! compiled with the system cc, the eBPF of `ipft EXPR` run in rbpf (an
//! independent eBPF interpreter) with bpf_probe_read_kernel as a helper.

mod packets;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::PathBuf;

use super::cbpf::RawInsn;
use super::{ebpf, libpcap, splice, PcapFilter};
use packets::{samples, Sample};

const EXPRESSIONS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip6",
    "arp",
    "not arp",
    "udp port 53",
    "host 10.0.0.2 and tcp port 80",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "len > 100",
    "less 64",
    "greater 1000",
    "vlan",
    "vlan and udp port 53",
    "portrange 1000-2000",
    "ip6 and tcp port 80",
    "src net 10.0.0.0/24 and dst port 443",
    "src host 200.0.0.1",
    "ip[16:4] > 0xf0000000 or ip[12:4] > 0xc0000000",
    "ether src 02:00:00:00:00:01",
    "ip[0] & 0xf != 5",
    "ip[6:2] & 0x1fff != 0",
    "tcp[((tcp[12] & 0xf0) >> 2):1] = 0x47",
    "ip[8] + ip[9] = 70",
    "ip[8] - ip[9] = 47",
    "ip[8] * ip[9] = 1088",
    "ip[8] / ip[9] = 10",
    "ip[8] % ip[1] = 0",
    "tcp[0:2] % 7 = 2",
    "ip[1] ^ 0xff = 0xff",
    "ip[8] << 1 = 128",
    "ip[8] >> 1 = 32",
    "ip[8] << (ip[9] * 2) = 0",
    "ip[8] >> ip[9] = 1",
    "-ip[8] = 0xffffffc0",
    "ip[8] | ip[9] = 0x51",
    "ip[8] & ip[9] = 0",
    "tcp[13] & 2 != 0 or udp dst port 53",
    "ip and not tcp",
    "ether[12:2] = 0x800 and ip[9] = 6",
    "len - 14 > 50",
    // Equality at the boundary tells > from >=: tcp syn is 54 bytes, SYN is 2.
    "len > 54",
    "greater 54",
    "tcp[13] > 2",
    "ip[9] >= 17",
    "ip[9] < 17",
];

/// libpcap's verdict, the C translation's and the eBPF one's.
struct Verdicts {
    pcap: bool,
    c: bool,
    ebpf: bool,
}

/// Both programs of one expression on one sample, cut at `caplen`.
fn reference(f: &PcapFilter, s: &Sample, l2: bool, caplen: usize) -> bool {
    let (prog, bytes): (&[RawInsn], &[u8]) = if l2 {
        (&f.raw_l2, &s.frame)
    } else {
        (&f.raw_l3, &s.frame[s.l3..])
    };
    libpcap::offline_filter(prog, &bytes[..caplen.min(bytes.len())], bytes.len() as u32)
}

// --- C: one translation unit per expression, one shared object ----------

const USER_PRELUDE: &str = r#"#include <stdint.h>
#include <stdbool.h>
#include <string.h>
typedef uint8_t __u8;
typedef uint32_t __u32;
typedef uint64_t __u64;
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
#define IPFT_PCAP_READ(dst, addr, n) (memcpy((dst), (const void *)(uintptr_t)(addr), (n)), 0)
"#;

type CFilter = unsafe extern "C" fn(i32, *const u8, u32, u32) -> i32;

struct CFilters {
    _lib: *mut libc::c_void,
    fns: Vec<CFilter>,
}

fn build_c(filters: &[PcapFilter]) -> CFilters {
    let dir = std::env::temp_dir().join(format!("ipft-pcap-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut srcs: Vec<PathBuf> = Vec::new();
    for (n, f) in filters.iter().enumerate() {
        let src = format!(
            "{USER_PRELUDE}\n{}\nint f{n}(int l2, const uint8_t *p, uint32_t caplen, uint32_t wirelen)\n\
             {{\n\treturn l2 ? ipft_pcap_l2((uintptr_t)p, caplen, wirelen) : ipft_pcap_l3((uintptr_t)p, caplen, wirelen);\n}}\n",
            f.to_c()
        );
        let path = dir.join(format!("f{n}.c"));
        std::fs::write(&path, src).unwrap();
        srcs.push(path);
    }
    let so = dir.join("filters.so");
    // Warnings are errors: the BPF build compiles the same text with -Wall.
    let out = std::process::Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args([
            "-O1",
            "-Wall",
            "-Werror",
            "-Wno-unused-function",
            "-shared",
            "-fPIC",
            "-o",
        ])
        .arg(&so)
        .args(&srcs)
        .output()
        .expect("running cc");
    assert!(
        out.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = CString::new(so.to_str().unwrap()).unwrap();
    // SAFETY: a shared object we just built, kept open for the test.
    let lib = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
    assert!(!lib.is_null(), "dlopen {}", so.display());
    let fns = (0..filters.len())
        .map(|n| {
            let name = CString::new(format!("f{n}")).unwrap();
            // SAFETY: the symbol has the CFilter signature (written above).
            unsafe {
                let p = libc::dlsym(lib, name.as_ptr());
                assert!(!p.is_null());
                std::mem::transmute::<*mut libc::c_void, CFilter>(p)
            }
        })
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    CFilters { _lib: lib, fns }
}

// --- eBPF: rbpf with bpf_probe_read_kernel ------------------------------

thread_local! {
    /// The "kernel memory" the helper may read: the whole sample.
    static READABLE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

fn probe_read_kernel(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    let (lo, hi) = READABLE.with(|r| r.get());
    if src < lo || src.saturating_add(size) > hi || size > 8 {
        return (-libc::EFAULT) as i64 as u64;
    }
    // SAFETY: src is inside the sample; dst is rbpf's stack slot of 8 bytes
    // (the translation passes fp-8 and at most 4 bytes).
    unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, size as usize) };
    0
}

fn bytes(insns: &[libbpf_rs::libbpf_sys::bpf_insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * 8);
    for i in insns {
        out.push(i.code);
        out.push(i.dst_reg() | (i.src_reg() << 4));
        out.extend_from_slice(&i.off.to_le_bytes());
        out.extend_from_slice(&i.imm.to_le_bytes());
    }
    out
}

/// Run the translated function on `pkt[..]` with the given lengths: a
/// prologue sets r2-r4 (rbpf sets r1 to the memory it is given).
fn run_ebpf(
    prog: &[libbpf_rs::libbpf_sys::bpf_insn],
    pkt: &mut [u8],
    caplen: u32,
    l2: bool,
) -> bool {
    let wirelen = pkt.len() as u32;
    let mut all = vec![
        ebpf::insn(0xb4, 2, 0, 0, caplen as i32),
        ebpf::insn(0xb4, 3, 0, 0, wirelen as i32),
        ebpf::insn(0xb4, 4, 0, 0, i32::from(l2)),
    ];
    all.extend_from_slice(prog);
    let code = bytes(&all);
    let lo = pkt.as_ptr() as u64;
    READABLE.with(|r| r.set((lo, lo + pkt.len() as u64)));
    let mut vm = rbpf::EbpfVmRaw::new(Some(&code)).expect("rbpf accepts the program");
    vm.register_helper(ebpf_probe_read_id(), probe_read_kernel)
        .unwrap();
    vm.execute_program(pkt).expect("rbpf runs the program") != 0
}

fn ebpf_probe_read_id() -> u32 {
    libbpf_rs::libbpf_sys::BPF_FUNC_probe_read_kernel
}

fn verdicts(
    f: &PcapFilter,
    c: CFilter,
    prog: &[libbpf_rs::libbpf_sys::bpf_insn],
    s: &Sample,
    l2: bool,
    caplen: usize,
) -> Verdicts {
    let mut bytes = if l2 {
        s.frame.clone()
    } else {
        s.frame[s.l3..].to_vec()
    };
    let caplen = caplen.min(bytes.len()) as u32;
    let wirelen = bytes.len() as u32;
    // SAFETY: the function reads at most caplen bytes of `bytes`.
    let cv = unsafe { c(i32::from(l2), bytes.as_ptr(), caplen, wirelen) } != 0;
    Verdicts {
        pcap: reference(f, s, l2, caplen as usize),
        c: cv,
        ebpf: run_ebpf(prog, &mut bytes, caplen, l2),
    }
}

#[test]
fn translations_agree_with_libpcap() {
    let filters: Vec<PcapFilter> = EXPRESSIONS
        .iter()
        .map(|e| PcapFilter::compile(e).unwrap_or_else(|err| panic!("{e}: {err}")))
        .collect();
    let c = build_c(&filters);
    let samples = samples();
    let (mut checks, mut matched) = (0, 0);
    for (n, f) in filters.iter().enumerate() {
        let prog = &f.ebpf;
        let mut outcomes = BTreeSet::new();
        for s in &samples {
            for l2 in [true, false] {
                // Whole, cut inside the headers, and cut to nothing.
                for caplen in [usize::MAX, s.l3 + 24, 20, 0] {
                    let v = verdicts(f, c.fns[n], prog, s, l2, caplen);
                    assert_eq!(
                        (v.c, v.ebpf),
                        (v.pcap, v.pcap),
                        "'{}' on {} ({}, caplen {caplen}): libpcap {}, C {}, eBPF {}",
                        f.expr,
                        s.name,
                        if l2 { "Ethernet" } else { "raw IP" },
                        v.pcap,
                        v.c,
                        v.ebpf
                    );
                    outcomes.insert(v.pcap);
                    checks += 1;
                    matched += usize::from(v.pcap);
                }
            }
        }
        // Every expression both matches and rejects something: the samples
        // exercise it.
        assert_eq!(outcomes.len(), 2, "'{}' is constant on the samples", f.expr);
    }
    assert!(
        checks > 3000 && matched > 300,
        "{checks} checks, {matched} matched"
    );
}

/// libpcap itself selects what the expressions say on full Ethernet frames.
#[test]
fn samples_are_what_they_say() {
    let matching = |e: &str| -> Vec<&'static str> {
        let f = PcapFilter::compile(e).unwrap();
        samples()
            .iter()
            .filter(|s| reference(&f, s, true, usize::MAX))
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(matching("icmp"), ["icmp echo"]);
    assert_eq!(matching("arp"), ["arp request"]);
    assert_eq!(matching("vlan"), ["vlan udp 53"]);
    assert_eq!(
        matching("host 10.0.0.2 and tcp port 80"),
        ["tcp syn :80", "tcp syn-ack from :80", "tcp :80 ip options"]
    );
    assert_eq!(matching("ip6 and tcp port 80"), ["tcp6 :80"]);
}

#[test]
fn bad_expressions_say_why_in_one_line() {
    for e in ["tcp port", "hst 10.0.0.1", "port 99999", "tcp and"] {
        let err = PcapFilter::compile(e).unwrap_err();
        assert!(err.starts_with(&format!("pcap filter '{e}': ")), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // An Ethernet-only expression: packets without a mac header never match.
    let f = PcapFilter::compile("ether host 02:00:00:00:00:01").unwrap();
    assert_eq!(f.raw_l3.len(), 1);
}

#[test]
fn splicing_moves_the_calls_around_the_stub() {
    use ebpf::insn;
    // main: r0 = stub() + g(); exit / stub: r0 = MARKER ll; r0 = 1; exit / g: r0 = 10; exit
    let m = splice::MARKER;
    let prog = vec![
        insn(0x85, 0, 1, 0, 4),               // 0: call stub (5)
        insn(0xbf, 6, 0, 0, 0),               // 1: r6 = r0
        insn(0x85, 0, 1, 0, 6),               // 2: call g (9)
        insn(0x0f, 0, 6, 0, 0),               // 3: r0 += r6
        insn(0x95, 0, 0, 0, 0),               // 4: exit
        insn(0x18, 0, 0, 0, m as u32 as i32), // 5: stub
        insn(0x00, 0, 0, 0, (m >> 32) as u32 as i32),
        insn(0xb7, 0, 0, 0, 1),
        insn(0x95, 0, 0, 0, 0),
        insn(0xb7, 0, 0, 0, 10), // 9: g
        insn(0x95, 0, 0, 0, 0),
    ];
    let run = |p: &[libbpf_rs::libbpf_sys::bpf_insn]| {
        let code = bytes(p);
        let vm = rbpf::EbpfVmRaw::new(Some(&code)).unwrap();
        vm.execute_program(&mut []).unwrap()
    };
    assert_eq!(run(&prog), 11);
    let body = [
        insn(0xb7, 0, 0, 0, 5),
        insn(0x07, 0, 0, 0, 2),
        insn(0x95, 0, 0, 0, 0),
    ];
    let out = splice::splice(&prog, &body).unwrap();
    assert_eq!(out.len(), prog.len() - 4 + 3);
    assert_eq!(run(&out), 17);
    assert!(!splice::has_stub(&out));
    assert!(splice::splice(&out, &body).is_err());
}
