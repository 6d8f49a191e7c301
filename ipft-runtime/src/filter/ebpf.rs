//! cBPF -> eBPF, for `ipft EXPR`: the filter becomes one BPF function,
//!
//! ```text
//! int ipft_pcap_run(__u64 pkt, __u32 caplen, __u32 wirelen, __u32 l2)
//! ```
//!
//! returning 1 on a match, that the loader puts in place of the template's
//! stub. `l2` picks the Ethernet program (from the mac header) or the raw-IP
//! one (from the network header). Packet bytes are copied with
//! bpf_probe_read_kernel into a stack slot, each load checked against
//! `caplen` first: out of the linear data the filter returns 0, as cBPF does.
//!
//! Registers: A in r6, X in r7 (both u32, zero-extended, so 64-bit compares
//! are 32-bit compares), pkt in r8, caplen in r9; on the stack the load
//! buffer at fp-8, wirelen at fp-16, M[i] at fp-24-8i. Calls clobber r1-r5
//! only.

use libbpf_rs::libbpf_sys::{bpf_insn, BPF_FUNC_probe_read_kernel};

use super::cbpf::{AluOp, Cond, Op, Reg, Ret, Src};

// Opcode parts (linux/bpf.h, linux/bpf_common.h).
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const LDX: u8 = 0x01;
const STX: u8 = 0x03;
const ST: u8 = 0x02;
const MEM: u8 = 0x60;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MOV: u8 = 0xb0;
const ADD: u8 = 0x00;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const END: u8 = 0xd0;
const TO_BE: u8 = 0x08;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JGE: u8 = 0x30;
const JSET: u8 = 0x40;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;
const JLE: u8 = 0xb0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const RA: u8 = 6;
const RX: u8 = 7;
const PKT: u8 = 8;
const CAPLEN: u8 = 9;
const FP: u8 = 10;

const BUF: i16 = -8;
const WIRELEN: i16 = -16;

fn mem_slot(m: u32) -> i16 {
    -24 - 8 * m as i16
}

/// Build one instruction.
pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> bpf_insn {
    let mut i = bpf_insn {
        code,
        off,
        imm,
        ..Default::default()
    };
    i.set_dst_reg(dst);
    i.set_src_reg(src);
    i
}

/// Where a jump goes, resolved once everything is laid out.
#[derive(Clone, Copy)]
enum Label {
    /// Instruction `i` of program `p` (0: L2, 1: L3).
    Op(usize, usize),
    /// The start of the L3 program.
    L3,
    /// `return 0`.
    Reject,
}

struct Asm {
    code: Vec<bpf_insn>,
    fixups: Vec<(usize, Label)>,
    /// Start of each operation, per program.
    starts: [Vec<usize>; 2],
    l3: usize,
    reject: usize,
}

impl Asm {
    fn emit(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.emit(code, dst, src, 0, imm);
    }

    /// `dst = value loaded at r1 (an offset from pkt), size bytes`.
    fn load(&mut self, dst: u8, size: u32) {
        // r2 = r1 + size; if r2 > caplen reject
        self.emit(ALU64 | MOV | X, R2, R1, 0, 0);
        self.emit(ALU64 | ADD | K, R2, 0, 0, size as i32);
        self.jump(JMP | JGT | X, R2, CAPLEN, 0, Label::Reject);
        // bpf_probe_read_kernel(fp-8, size, pkt + off)
        self.emit(ALU64 | MOV | X, R3, PKT, 0, 0);
        self.emit(ALU64 | ADD | X, R3, R1, 0, 0);
        self.emit(ALU64 | MOV | X, R1, FP, 0, 0);
        self.emit(ALU64 | ADD | K, R1, 0, 0, BUF as i32);
        self.emit(ALU64 | MOV | K, R2, 0, 0, size as i32);
        self.emit(JMP | CALL, 0, 0, 0, BPF_FUNC_probe_read_kernel as i32);
        self.jump(JMP | JNE | K, R0, 0, 0, Label::Reject);
        let (sz, swap) = match size {
            1 => (B, 0),
            2 => (H, 16),
            _ => (W, 32),
        };
        self.emit(LDX | MEM | sz, dst, FP, BUF, 0);
        if swap != 0 {
            self.emit(ALU | END | TO_BE, dst, 0, 0, swap);
        }
    }

    /// `r1 = k` as an unsigned 32-bit value (mov32 zero-extends).
    fn offset_k(&mut self, k: u32) {
        self.emit(ALU | MOV | K, R1, 0, 0, k as i32);
    }

    fn op(&mut self, p: usize, i: usize, op: &Op) {
        let r = |r: Reg| if r == Reg::A { RA } else { RX };
        match *op {
            Op::Imm(d, k) => self.emit(ALU | MOV | K, r(d), 0, 0, k as i32),
            Op::Len(d) => self.emit(LDX | MEM | DW, r(d), FP, WIRELEN, 0),
            Op::LdMem(d, m) => self.emit(LDX | MEM | DW, r(d), FP, mem_slot(m), 0),
            Op::St(s, m) => self.emit(STX | MEM | DW, FP, r(s), mem_slot(m), 0),
            Op::LdAbs { size, k } => {
                self.offset_k(k);
                self.load(RA, size);
            }
            Op::LdInd { size, k } => {
                // X and k are both u32: their 64-bit sum cannot wrap.
                self.offset_k(k);
                self.emit(ALU64 | ADD | X, R1, RX, 0, 0);
                self.load(RA, size);
            }
            Op::Msh(k) => {
                self.offset_k(k);
                self.load(RX, 1);
                self.emit(ALU | AND | K, RX, 0, 0, 0xf);
                self.emit(ALU | LSH | K, RX, 0, 0, 2);
            }
            Op::Alu(a, s) => self.alu(a, s),
            Op::Neg => self.emit(ALU | 0x80, RA, 0, 0, 0),
            Op::Tax => self.emit(ALU | MOV | X, RX, RA, 0, 0),
            Op::Txa => self.emit(ALU | MOV | X, RA, RX, 0, 0),
            Op::Ja(t) => self.jump(JMP | JA, 0, 0, 0, Label::Op(p, t)),
            Op::Jmp { cond, src, jt, jf } => self.cond(p, i, cond, src, jt, jf),
            Op::Ret(v) => {
                match v {
                    Ret::K(k) => self.emit(ALU | MOV | K, R0, 0, 0, i32::from(k != 0)),
                    Ret::A | Ret::X => {
                        let s = if v == Ret::A { RA } else { RX };
                        self.emit(ALU | MOV | K, R0, 0, 0, 1);
                        self.emit(JMP | JNE | K, s, 0, 1, 0);
                        self.emit(ALU | MOV | K, R0, 0, 0, 0);
                    }
                }
                self.emit(JMP | EXIT, 0, 0, 0, 0);
            }
        }
    }

    fn alu(&mut self, a: AluOp, s: Src) {
        let code = match a {
            AluOp::Add => 0x00,
            AluOp::Sub => 0x10,
            AluOp::Mul => 0x20,
            AluOp::Div => 0x30,
            AluOp::Or => 0x40,
            AluOp::And => 0x50,
            AluOp::Lsh => 0x60,
            AluOp::Rsh => 0x70,
            AluOp::Mod => 0x90,
            AluOp::Xor => 0xa0,
        };
        let shift = matches!(a, AluOp::Lsh | AluOp::Rsh);
        let div = matches!(a, AluOp::Div | AluOp::Mod);
        match s {
            Src::K(0) if div => self.jump(JMP | JA, 0, 0, 0, Label::Reject),
            Src::K(k) if shift && k >= 32 => self.emit(ALU | MOV | K, RA, 0, 0, 0),
            Src::K(k) => self.emit(ALU | code | K, RA, 0, 0, k as i32),
            Src::X if div => {
                self.jump(JMP | JEQ | K, RX, 0, 0, Label::Reject);
                self.emit(ALU | code | X, RA, RX, 0, 0);
            }
            Src::X if shift => {
                // eBPF masks the shift count; cBPF shifts everything out.
                self.emit(JMP | JGE | K, RX, 0, 2, 32);
                self.emit(ALU | code | X, RA, RX, 0, 0);
                self.emit(JMP | JA, 0, 0, 1, 0);
                self.emit(ALU | MOV | K, RA, 0, 0, 0);
            }
            Src::X => self.emit(ALU | code | X, RA, RX, 0, 0),
        }
    }

    fn cond(&mut self, p: usize, i: usize, cond: Cond, src: Src, jt: usize, jf: usize) {
        let (code, inverse) = match cond {
            Cond::Eq => (JEQ, Some(JNE)),
            Cond::Gt => (JGT, Some(JLE)),
            Cond::Ge => (JGE, Some(JLT)),
            Cond::Set => (JSET, None),
        };
        // An immediate is sign-extended to 64 bits: above i32::MAX compare
        // with a register holding k zero-extended. (JSET only looks at the
        // low 32 bits A can have.)
        let (s, src_reg, imm) = match src {
            Src::K(k) if k > i32::MAX as u32 && cond != Cond::Set => {
                self.emit(ALU | MOV | K, R1, 0, 0, k as i32);
                (X, R1, 0)
            }
            Src::K(k) => (K, 0, k as i32),
            Src::X => (X, RX, 0),
        };
        match inverse {
            Some(inv) if jt == i + 1 => {
                self.jump(JMP | inv | s, RA, src_reg, imm, Label::Op(p, jf));
            }
            _ => {
                self.jump(JMP | code | s, RA, src_reg, imm, Label::Op(p, jt));
                if jf != i + 1 {
                    self.jump(JMP | JA, 0, 0, 0, Label::Op(p, jf));
                }
            }
        }
    }
}

/// Translate the L2 and L3 programs into one function (see the module doc).
pub fn translate(l2: &[Op], l3: &[Op]) -> Result<Vec<bpf_insn>, String> {
    let mut a = Asm {
        code: Vec::new(),
        fixups: Vec::new(),
        starts: [Vec::new(), Vec::new()],
        l3: 0,
        reject: 0,
    };
    a.emit(ALU64 | MOV | X, PKT, R1, 0, 0);
    a.emit(ALU | MOV | X, CAPLEN, R2, 0, 0);
    a.emit(ALU | MOV | X, R3, R3, 0, 0);
    a.emit(STX | MEM | DW, FP, R3, WIRELEN, 0);
    a.emit(ALU | MOV | K, RA, 0, 0, 0);
    a.emit(ALU | MOV | K, RX, 0, 0, 0);
    // The verifier refuses reads of stack never written: clear the slots.
    let mut slots: Vec<u32> = l2.iter().chain(l3).filter_map(Op::mem_slot).collect();
    slots.sort_unstable();
    slots.dedup();
    for m in slots {
        a.emit(ST | MEM | DW, FP, 0, mem_slot(m), 0);
    }
    a.emit(ALU | MOV | X, R4, R4, 0, 0);
    a.jump(JMP | JEQ | K, R4, 0, 0, Label::L3);
    for (p, ops) in [l2, l3].into_iter().enumerate() {
        if p == 1 {
            a.l3 = a.code.len();
        }
        for (i, op) in ops.iter().enumerate() {
            a.starts[p].push(a.code.len());
            a.op(p, i, op);
        }
    }
    a.reject = a.code.len();
    a.emit(ALU | MOV | K, R0, 0, 0, 0);
    a.emit(JMP | EXIT, 0, 0, 0, 0);
    for &(at, to) in &a.fixups {
        let target = match to {
            Label::Op(p, i) => a.starts[p][i],
            Label::L3 => a.l3,
            Label::Reject => a.reject,
        };
        let off = i16::try_from(target as i64 - at as i64 - 1)
            .map_err(|_| "the filter is too large for one BPF function".to_string())?;
        a.code[at].off = off;
    }
    Ok(a.code)
}
