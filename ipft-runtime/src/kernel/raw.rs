//! Raw BPF calls libbpf-rs does not offer: loading relocated instructions
//! directly, tracing links with a cookie, a kprobe-multi link by symbol.
//! Errors are errnos.

use std::ffi::CString;
use std::os::fd::{FromRawFd, OwnedFd};

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

pub(crate) fn owned(fd: i32) -> Result<OwnedFd, i32> {
    if fd < 0 {
        return Err(-fd);
    }
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The program's recursion misses (runs skipped because a BPF program was
/// already running on that CPU); 0 if the kernel does not say.
pub fn recursion_misses(prog: std::os::fd::BorrowedFd<'_>) -> u64 {
    use std::os::fd::AsRawFd;
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
