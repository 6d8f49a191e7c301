//! Classic BPF as libpcap emits it, decoded into operations both
//! translators share. Decoding checks what the kernel's cBPF checker would:
//! known opcodes, jumps inside the program, scratch slots in range, and a
//! return at the end, so a translation never has to guess.

/// One classic BPF instruction, as in `struct bpf_insn` of <pcap/bpf.h>.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawInsn {
    /// Opcode.
    pub code: u16,
    /// Jump offset if true.
    pub jt: u8,
    /// Jump offset if false.
    pub jf: u8,
    /// Constant.
    pub k: u32,
}

/// cBPF scratch memory words (BPF_MEMWORDS).
pub const MEMWORDS: u32 = 16;

/// A cBPF register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reg {
    /// The accumulator.
    A,
    /// The index register.
    X,
}

/// A second operand: the constant or X.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Src {
    /// `k`.
    K(u32),
    /// X.
    X,
}

/// ALU operations (A op= src).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluOp {
    /// +
    Add,
    /// -
    Sub,
    /// *
    Mul,
    /// / (by zero: the filter returns 0)
    Div,
    /// % (by zero: the filter returns 0)
    Mod,
    /// |
    Or,
    /// &
    And,
    /// ^
    Xor,
    /// << (32 or more: 0)
    Lsh,
    /// >> (32 or more: 0)
    Rsh,
}

/// Conditional jumps (A cmp src), unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// ==
    Eq,
    /// >
    Gt,
    /// >=
    Ge,
    /// A & src != 0
    Set,
}

/// What a return returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    /// A constant: 0 rejects, anything else accepts.
    K(u32),
    /// A.
    A,
    /// X.
    X,
}

/// One decoded operation. Jump targets are absolute instruction indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// reg = k
    Imm(Reg, u32),
    /// reg = the packet's length on the wire
    Len(Reg),
    /// reg = M[i]
    LdMem(Reg, u32),
    /// A = big-endian `size` bytes at k (out of the packet: return 0)
    LdAbs {
        /// 1, 2 or 4.
        size: u32,
        /// Offset.
        k: u32,
    },
    /// A = big-endian `size` bytes at X + k
    LdInd {
        /// 1, 2 or 4.
        size: u32,
        /// Offset added to X.
        k: u32,
    },
    /// X = 4 * (P[k] & 0xf), the IPv4 header length
    Msh(u32),
    /// M[i] = reg
    St(Reg, u32),
    /// A = A op src
    Alu(AluOp, Src),
    /// A = -A
    Neg,
    /// goto target
    Ja(usize),
    /// if (A cond src) goto jt else goto jf
    Jmp {
        /// The comparison.
        cond: Cond,
        /// What A is compared with.
        src: Src,
        /// Target if true.
        jt: usize,
        /// Target if false.
        jf: usize,
    },
    /// return
    Ret(Ret),
    /// X = A
    Tax,
    /// A = X
    Txa,
}

impl Op {
    /// The scratch slot read or written, if any.
    pub fn mem_slot(&self) -> Option<u32> {
        match *self {
            Op::LdMem(_, i) | Op::St(_, i) => Some(i),
            _ => None,
        }
    }

    /// Indices this operation may jump to.
    pub fn targets(&self) -> Vec<usize> {
        match *self {
            Op::Ja(t) => vec![t],
            Op::Jmp { jt, jf, .. } => vec![jt, jf],
            _ => Vec::new(),
        }
    }
}

fn size(code: u16) -> Option<u32> {
    match code & 0x18 {
        0x00 => Some(4),
        0x08 => Some(2),
        0x10 => Some(1),
        _ => None,
    }
}

fn src(code: u16, k: u32) -> Src {
    if code & 0x08 != 0 {
        Src::X
    } else {
        Src::K(k)
    }
}

fn slot(k: u32, i: usize) -> Result<u32, String> {
    if k < MEMWORDS {
        Ok(k)
    } else {
        Err(format!("instruction {i}: scratch slot {k} out of range"))
    }
}

/// Decode and check a program.
pub fn decode(prog: &[RawInsn]) -> Result<Vec<Op>, String> {
    let n = prog.len();
    if n == 0 {
        return Err("empty program".into());
    }
    let mut ops = Vec::with_capacity(n);
    for (i, ins) in prog.iter().enumerate() {
        let (c, k) = (ins.code, ins.k);
        let bad = || format!("instruction {i}: unsupported opcode 0x{c:02x}");
        let jump = |off: u64| -> Result<usize, String> {
            let t = i as u64 + 1 + off;
            if t < n as u64 {
                Ok(t as usize)
            } else {
                Err(format!("instruction {i}: jump out of the program"))
            }
        };
        let op = match c & 0x07 {
            // LD
            0x00 => match c & 0xe0 {
                0x00 if size(c) == Some(4) => Op::Imm(Reg::A, k),
                0x20 => Op::LdAbs {
                    size: size(c).ok_or_else(bad)?,
                    k,
                },
                0x40 => Op::LdInd {
                    size: size(c).ok_or_else(bad)?,
                    k,
                },
                0x60 if size(c) == Some(4) => Op::LdMem(Reg::A, slot(k, i)?),
                0x80 if size(c) == Some(4) => Op::Len(Reg::A),
                _ => return Err(bad()),
            },
            // LDX
            0x01 => match (c & 0xe0, size(c)) {
                (0x00, Some(4)) => Op::Imm(Reg::X, k),
                (0x60, Some(4)) => Op::LdMem(Reg::X, slot(k, i)?),
                (0x80, Some(4)) => Op::Len(Reg::X),
                (0xa0, Some(1)) => Op::Msh(k),
                _ => return Err(bad()),
            },
            0x02 if c == 0x02 => Op::St(Reg::A, slot(k, i)?),
            0x03 if c == 0x03 => Op::St(Reg::X, slot(k, i)?),
            // ALU
            0x04 => {
                let s = src(c, k);
                let op = match c & 0xf0 {
                    0x00 => AluOp::Add,
                    0x10 => AluOp::Sub,
                    0x20 => AluOp::Mul,
                    0x30 => AluOp::Div,
                    0x40 => AluOp::Or,
                    0x50 => AluOp::And,
                    0x60 => AluOp::Lsh,
                    0x70 => AluOp::Rsh,
                    0x80 if c == 0x84 => {
                        ops.push(Op::Neg);
                        continue;
                    }
                    0x90 => AluOp::Mod,
                    0xa0 => AluOp::Xor,
                    _ => return Err(bad()),
                };
                Op::Alu(op, s)
            }
            // JMP
            0x05 => {
                let cond = match c & 0xf0 {
                    0x00 if c == 0x05 => {
                        ops.push(Op::Ja(jump(u64::from(k))?));
                        continue;
                    }
                    0x10 => Cond::Eq,
                    0x20 => Cond::Gt,
                    0x30 => Cond::Ge,
                    0x40 => Cond::Set,
                    _ => return Err(bad()),
                };
                Op::Jmp {
                    cond,
                    src: src(c, k),
                    jt: jump(u64::from(ins.jt))?,
                    jf: jump(u64::from(ins.jf))?,
                }
            }
            // RET
            0x06 => match c & 0x18 {
                0x00 => Op::Ret(Ret::K(k)),
                0x08 => Op::Ret(Ret::X),
                0x10 => Op::Ret(Ret::A),
                _ => return Err(bad()),
            },
            // MISC
            0x07 => match c & 0xf8 {
                0x00 => Op::Tax,
                0x80 => Op::Txa,
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        ops.push(op);
    }
    // Jumps only go forward: ending in a return means every path returns.
    if !matches!(ops.last(), Some(Op::Ret(_))) {
        return Err("the program does not end in a return".into());
    }
    Ok(ops)
}

/// Which instructions are jumped to (they need a label or a fix-up).
pub fn jump_targets(ops: &[Op]) -> Vec<bool> {
    let mut t = vec![false; ops.len()];
    for op in ops {
        for j in op.targets() {
            t[j] = true;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> RawInsn {
        RawInsn { code, jt, jf, k }
    }

    #[test]
    fn decodes_and_refuses() {
        let ok = [
            ins(0x28, 0, 0, 12),
            ins(0x15, 0, 1, 0x800),
            ins(0x06, 0, 0, 1),
            ins(0x06, 0, 0, 0),
        ];
        let ops = decode(&ok).unwrap();
        assert_eq!(ops[0], Op::LdAbs { size: 2, k: 12 });
        assert_eq!(
            ops[1],
            Op::Jmp {
                cond: Cond::Eq,
                src: Src::K(0x800),
                jt: 2,
                jf: 3
            }
        );
        assert_eq!(jump_targets(&ops), vec![false, false, true, true]);
        // Out of range jump, slot, no final return, unknown opcode.
        assert!(decode(&[ins(0x15, 0, 5, 1), ins(0x06, 0, 0, 0)]).is_err());
        assert!(decode(&[ins(0x02, 0, 0, 16), ins(0x06, 0, 0, 0)]).is_err());
        assert!(decode(&[ins(0x28, 0, 0, 12)]).is_err());
        assert!(decode(&[ins(0xff, 0, 0, 0), ins(0x06, 0, 0, 0)]).is_err());
        assert!(decode(&[]).is_err());
    }
}
