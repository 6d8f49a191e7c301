//! Raw BPF calls libbpf-rs does not offer: loading relocated instructions
//! directly, tracing and raw tracepoint links with a cookie, kprobe-multi
//! links by address and what the kernel resolved a link's names to.
//! Errors are errnos.

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys as sys;

/// Load `insns` (already relocated) as a `prog_type` program expecting
/// `attach`, aimed at vmlinux BTF id `btf_id` (0: none). Errors are errnos.
pub fn prog_load(
    prog_type: sys::bpf_prog_type,
    name: &str,
    insns: &[sys::bpf_insn],
    attach: sys::bpf_attach_type,
    btf_id: u32,
) -> Result<OwnedFd, i32> {
    // SAFETY: zeroed opts with sz set is libbpf's initialisation idiom.
    let mut opts: sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_prog_load_opts>() as _;
    opts.expected_attach_type = attach;
    opts.attach_btf_id = btf_id;
    let name = CString::new(name).map_err(|_| libc::EINVAL)?;
    let license = CString::new("GPL").unwrap();
    // SAFETY: all pointers are valid for the duration of the call.
    let fd = unsafe {
        sys::bpf_prog_load(
            prog_type,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &mut opts,
        )
    };
    owned(fd)
}

/// The opcode of a 64-bit immediate load (two instruction slots).
pub const LD_IMM64: u8 = 0x18;

/// The 64-bit constant instruction `i` loads into its register (a plain
/// `ld_imm64`, not a map or function address), with the register.
pub fn imm64_at(insns: &[sys::bpf_insn], i: usize) -> Option<(u8, u64)> {
    let (a, b) = (insns.get(i)?, insns.get(i + 1)?);
    (a.code == LD_IMM64 && a.src_reg() == 0).then(|| {
        (
            a.dst_reg(),
            u64::from(a.imm as u32) | u64::from(b.imm as u32) << 32,
        )
    })
}

/// `insns` with every load of the constant `marker` loading `value`
/// instead; None if there is none.
pub fn with_imm64(insns: &[sys::bpf_insn], marker: u64, value: u64) -> Option<Vec<sys::bpf_insn>> {
    let mut out = insns.to_vec();
    let mut found = false;
    for i in 0..insns.len() {
        if imm64_at(insns, i).is_some_and(|(_, v)| v == marker) {
            out[i].imm = value as u32 as i32;
            out[i + 1].imm = (value >> 32) as u32 as i32;
            found = true;
        }
    }
    found.then_some(out)
}

/// A tracing link (fentry/fexit/tp_btf) to the program's own target,
/// without a cookie: the way every kernel since 5.5 links them (link_create
/// takes tp_btf only from 6.10, fentry from 5.11).
pub fn tracing_open(prog_fd: i32) -> Result<OwnedFd, i32> {
    // SAFETY: a valid fd; no name, as tracing programs require.
    owned(unsafe { sys::bpf_raw_tracepoint_open(std::ptr::null(), prog_fd) })
}

/// A tracing link (fentry/fexit) carrying `cookie`.
pub fn tracing_link(
    prog_fd: i32,
    attach: sys::bpf_attach_type,
    cookie: u64,
) -> Result<OwnedFd, i32> {
    // SAFETY: zeroed opts with sz set; the union member matches the attach type.
    let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_link_create_opts>() as _;
    opts.__bindgen_anon_1.tracing.cookie = cookie;
    // SAFETY: valid fd and opts.
    owned(unsafe { sys::bpf_link_create(prog_fd, 0, attach, &opts) })
}

/// A raw tracepoint link of `prog_fd` (a raw_tp program) to tracepoint
/// `name`, carrying `cookie` (Linux 6.10).
pub fn raw_tracepoint_link(prog_fd: i32, name: &str, cookie: u64) -> Result<OwnedFd, i32> {
    let name = CString::new(name).map_err(|_| libc::EINVAL)?;
    let mut opts = sys::bpf_raw_tp_opts {
        sz: std::mem::size_of::<sys::bpf_raw_tp_opts>() as _,
        tp_name: name.as_ptr(),
        cookie,
    };
    // SAFETY: valid fd, opts and name for the call.
    owned(unsafe { sys::bpf_raw_tracepoint_open_opts(prog_fd, &mut opts) })
}

/// The functions of a kprobe-multi link.
pub enum MultiTargets<'a> {
    /// By name: the kernel looks the names up with one walk over every
    /// kernel symbol per link (~70 ms a link under the lab's emulator).
    Names(&'a [&'a str]),
    /// By address (function entry, as kallsyms has it): no lookup.
    Addrs(&'a [u64]),
}

/// A kprobe-multi (`retprobe`: kretprobe-multi) link of `prog_fd` to
/// `targets`, `cookies[i]` for the i-th.
pub fn kprobe_multi_link(
    prog_fd: i32,
    targets: MultiTargets<'_>,
    cookies: &[u64],
    retprobe: bool,
) -> Result<OwnedFd, i32> {
    // SAFETY: zeroed opts with sz set; the union member matches the attach type.
    let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_link_create_opts>() as _;
    // SAFETY: the kprobe_multi member is the one BPF_TRACE_KPROBE_MULTI reads.
    let multi = unsafe { &mut opts.__bindgen_anon_1.kprobe_multi };
    multi.flags = u32::from(retprobe) * sys::BPF_F_KPROBE_MULTI_RETURN;
    multi.cookies = cookies.as_ptr();
    let names: Vec<CString>;
    let mut name_ptrs: Vec<*const std::os::raw::c_char>;
    match targets {
        MultiTargets::Names(n) => {
            names = n
                .iter()
                .map(|s| CString::new(*s).map_err(|_| libc::EINVAL))
                .collect::<Result<_, _>>()?;
            name_ptrs = names.iter().map(|c| c.as_ptr()).collect();
            multi.syms = name_ptrs.as_mut_ptr();
            multi.cnt = n.len() as u32;
        }
        MultiTargets::Addrs(a) => {
            multi.addrs = a.as_ptr() as *const std::os::raw::c_ulong;
            multi.cnt = a.len() as u32;
        }
    }
    if multi.cnt as usize != cookies.len() {
        return Err(libc::EINVAL);
    }
    // SAFETY: valid fd; opts and what it points to outlive the call.
    owned(unsafe { sys::bpf_link_create(prog_fd, 0, sys::BPF_TRACE_KPROBE_MULTI, &opts) })
}

/// (cookie, address) of each function of a kprobe-multi link, as the kernel
/// resolved them; None where it does not say (before Linux 6.9, which added
/// the cookies, or where kallsyms addresses are hidden).
pub fn kprobe_multi_addrs(link: BorrowedFd<'_>) -> Option<Vec<(u64, u64)>> {
    let info = |addrs: &mut [u64], cookies: &mut [u64]| {
        // SAFETY: bpf_link_info is plain data; zero asks for nothing.
        let mut info: sys::bpf_link_info = unsafe { std::mem::zeroed() };
        // SAFETY: the kprobe_multi member is the one the kernel fills.
        let m = unsafe { &mut info.__bindgen_anon_1.kprobe_multi };
        // No buffers (null, not an empty slice's dangling pointer): the count.
        let ptr = |b: &mut [u64]| {
            if b.is_empty() {
                0
            } else {
                b.as_mut_ptr() as u64
            }
        };
        m.count = addrs.len() as u32;
        m.addrs = ptr(addrs);
        m.cookies = ptr(cookies);
        let mut len = std::mem::size_of::<sys::bpf_link_info>() as u32;
        // SAFETY: valid fd; the buffers hold `count` entries each.
        let r = unsafe { sys::bpf_link_get_info_by_fd(link.as_raw_fd(), &mut info, &mut len) };
        // SAFETY: as above.
        let count = unsafe { info.__bindgen_anon_1.kprobe_multi.count } as usize;
        (r == 0 && info.type_ == sys::BPF_LINK_TYPE_KPROBE_MULTI).then_some(count)
    };
    let n = info(&mut [], &mut [])?;
    let (mut addrs, mut cookies) = (vec![0u64; n], vec![0u64; n]);
    if info(&mut addrs, &mut cookies)? != n || addrs.contains(&0) || cookies.iter().all(|&c| c == 0)
    {
        return None;
    }
    Some(cookies.into_iter().zip(addrs).collect())
}

pub(crate) fn owned(fd: i32) -> Result<OwnedFd, i32> {
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The program's recursion misses (runs skipped because a BPF program was
/// already running on that CPU); 0 if the kernel does not say.
pub fn recursion_misses(prog: BorrowedFd<'_>) -> u64 {
    // SAFETY: bpf_prog_info is plain data; all-zero asks for nothing extra.
    let mut info: sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: valid fd, a buffer of `len` bytes.
    let r = unsafe { sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if r == 0 {
        info.recursion_misses
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::{imm64_at, with_imm64, LD_IMM64};
    use crate::filter::ebpf::insn;

    const MARK: u64 = 0x626f_7270_7466_7069;

    fn ld(dst: u8, src: u8, v: u64) -> [libbpf_rs::libbpf_sys::bpf_insn; 2] {
        [
            insn(LD_IMM64, dst, src, 0, v as u32 as i32),
            insn(0, 0, 0, 0, (v >> 32) as u32 as i32),
        ]
    }

    #[test]
    fn every_load_of_the_marker_gets_the_value() {
        let exit = insn(0x95, 0, 0, 0, 0);
        let mut p = Vec::new();
        p.extend(ld(3, 0, MARK));
        p.extend(ld(1, 1, MARK)); // a map's address: not a constant
        p.extend(ld(5, 0, MARK));
        p.push(exit);
        let out = with_imm64(&p, MARK, 7).unwrap();
        assert_eq!(imm64_at(&out, 0), Some((3, 7)));
        assert_eq!(imm64_at(&out, 2), None);
        assert_eq!(out[2].imm, MARK as u32 as i32);
        assert_eq!(imm64_at(&out, 4), Some((5, 7)));
        assert!(with_imm64(&[exit], MARK, 7).is_none());
        assert_eq!(imm64_at(&p, 6), None);
    }
}
