//! cBPF -> C, for `ipft-gen --filter`: the filter becomes straight-line C
//! with gotos that clang compiles and the verifier reads like any other
//! code. Packet bytes come through `IPFT_PCAP_READ(dst, addr, n)`
//! (bpf_probe_read_kernel in BPF; the tests define it as a bounded memcpy
//! and compile the same text with the system cc).

use std::fmt::Write;

use super::cbpf::{jump_targets, AluOp, Cond, Op, Reg, Ret, Src};
use super::PcapFilter;

/// The loads both filter functions share. `addr` is the header's kernel
/// address as a number (the verifier allows no arithmetic on a typed
/// pointer), `caplen` the linear bytes from there.
const PRELUDE: &str = r#"#ifndef IPFT_PCAP_READ
#define IPFT_PCAP_READ(dst, addr, n) bpf_probe_read_kernel(dst, n, (const void *)(unsigned long)(addr))
#endif

/* A big-endian load of `size` bytes at `off`; outside the linear data the
 * filter rejects the packet, as cBPF does. */
static __always_inline bool ipft_pcap_ld(__u64 pkt, __u32 caplen, __u64 off, __u32 size, __u32 *v)
{
	__u8 b[4] = {};

	if (off + size > caplen)
		return false;
	if (IPFT_PCAP_READ(b, pkt + off, size))
		return false;
	if (size == 1)
		*v = b[0];
	else if (size == 2)
		*v = (__u32)b[0] << 8 | b[1];
	else
		*v = (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
	return true;
}
"#;

fn reg(r: Reg) -> &'static str {
    match r {
        Reg::A => "A",
        Reg::X => "X",
    }
}

fn src(s: Src) -> String {
    match s {
        Src::K(k) => format!("0x{k:x}u"),
        Src::X => "X".into(),
    }
}

fn uses_x(op: &Op) -> bool {
    matches!(
        op,
        Op::Imm(Reg::X, _)
            | Op::Len(Reg::X)
            | Op::LdMem(Reg::X, _)
            | Op::LdInd { .. }
            | Op::Msh(_)
            | Op::St(Reg::X, _)
            | Op::Alu(_, Src::X)
            | Op::Jmp { src: Src::X, .. }
            | Op::Ret(Ret::X)
            | Op::Tax
            | Op::Txa
    )
}

fn uses_a(op: &Op) -> bool {
    !matches!(
        op,
        Op::Imm(Reg::X, _)
            | Op::Len(Reg::X)
            | Op::LdMem(Reg::X, _)
            | Op::Msh(_)
            | Op::St(Reg::X, _)
            | Op::Ja(_)
            | Op::Ret(Ret::K(_) | Ret::X)
    )
}

fn load(dst: &str, off: String, size: u32) -> String {
    format!("if (!ipft_pcap_ld(pkt, caplen, {off}, {size}, &{dst}))\n\t\treturn false;")
}

fn statement(i: usize, op: &Op) -> String {
    let goto = |t: usize| format!("goto L{t};");
    match *op {
        Op::Imm(r, k) => format!("{} = 0x{k:x}u;", reg(r)),
        Op::Len(r) => format!("{} = wirelen;", reg(r)),
        Op::LdMem(r, m) => format!("{} = M{m};", reg(r)),
        Op::LdAbs { size, k } => load("A", format!("0x{k:x}ull"), size),
        Op::LdInd { size, k } => load("A", format!("(__u64)X + 0x{k:x}u"), size),
        Op::Msh(k) => format!(
            "{}\n\tX = (X & 0xf) << 2;",
            load("X", format!("0x{k:x}ull"), 1)
        ),
        Op::St(r, m) => format!("M{m} = {};", reg(r)),
        Op::Alu(op, s) => alu(op, s),
        Op::Neg => "A = 0u - A;".into(),
        Op::Ja(t) => goto(t),
        Op::Jmp {
            cond,
            src: s,
            jt,
            jf,
        } => {
            let s = src(s);
            let c = match cond {
                Cond::Eq => format!("A == {s}"),
                Cond::Gt => format!("A > {s}"),
                Cond::Ge => format!("A >= {s}"),
                Cond::Set => format!("(A & {s}) != 0"),
            };
            if jf == i + 1 {
                format!("if ({c})\n\t\t{}", goto(jt))
            } else if jt == i + 1 {
                format!("if (!({c}))\n\t\t{}", goto(jf))
            } else {
                format!("if ({c})\n\t\t{}\n\t{}", goto(jt), goto(jf))
            }
        }
        Op::Ret(Ret::K(k)) => format!("return {};", k != 0),
        Op::Ret(r) => format!("return {} != 0;", if r == Ret::A { "A" } else { "X" }),
        Op::Tax => "X = A;".into(),
        Op::Txa => "A = X;".into(),
    }
}

fn alu(op: AluOp, s: Src) -> String {
    let v = src(s);
    let sym = match op {
        AluOp::Add => "+",
        AluOp::Sub => "-",
        AluOp::Mul => "*",
        AluOp::Or => "|",
        AluOp::And => "&",
        AluOp::Xor => "^",
        AluOp::Div | AluOp::Mod => {
            let sym = if op == AluOp::Div { "/" } else { "%" };
            return match s {
                Src::K(0) => "return false;".into(),
                Src::K(_) => format!("A {sym}= {v};"),
                Src::X => format!("if (X == 0)\n\t\treturn false;\n\tA {sym}= X;"),
            };
        }
        AluOp::Lsh | AluOp::Rsh => {
            let sym = if op == AluOp::Lsh { "<<" } else { ">>" };
            return match s {
                Src::K(k) if k >= 32 => "A = 0;".into(),
                Src::K(_) => format!("A {sym}= {v};"),
                Src::X => format!("A = X < 32 ? A {sym} X : 0;"),
            };
        }
    };
    format!("A {sym}= {v};")
}

/// One filter function, `static __always_inline bool NAME(__u64 pkt,
/// __u32 caplen, __u32 wirelen)`, true when the packet matches.
pub fn function(name: &str, ops: &[Op]) -> String {
    // Label only what a goto names: a fall-through needs none.
    let body: Vec<String> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| statement(i, op))
        .collect();
    let mut targets = vec![false; ops.len()];
    for (i, t) in jump_targets(ops).into_iter().enumerate() {
        targets[i] = t && body.iter().any(|b| b.contains(&format!("goto L{i};")));
    }
    let mut s =
        format!("static __always_inline bool {name}(__u64 pkt, __u32 caplen, __u32 wirelen)\n{{\n");
    if ops.iter().any(uses_a) {
        s.push_str("\t__u32 A = 0;\n");
    }
    if ops.iter().any(uses_x) {
        s.push_str("\t__u32 X = 0;\n");
    }
    let mut slots: Vec<u32> = ops.iter().filter_map(Op::mem_slot).collect();
    slots.sort_unstable();
    slots.dedup();
    for m in slots {
        let _ = writeln!(s, "\t__u32 M{m} = 0;");
    }
    s.push('\n');
    for (i, b) in body.iter().enumerate() {
        if targets[i] {
            let _ = writeln!(s, "L{i}:");
        }
        let _ = writeln!(s, "\t{b}");
    }
    s.push_str("}\n");
    s
}

/// The whole filter: the shared loads, then `ipft_pcap_l2` (from the mac
/// header, Ethernet) and `ipft_pcap_l3` (from the network header, raw IP).
pub fn render(f: &PcapFilter) -> String {
    let mut s = format!(
        "/* pcap-filter \"{}\", compiled by libpcap for Ethernet ({} cBPF instructions) and raw IP ({}). */\n",
        f.expr.replace("*/", "* /"),
        f.l2.len(),
        f.l3.len()
    );
    s.push_str(PRELUDE);
    s.push('\n');
    s.push_str(&function("ipft_pcap_l2", &f.l2));
    s.push('\n');
    s.push_str(&function("ipft_pcap_l3", &f.l3));
    s
}
