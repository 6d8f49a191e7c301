//! Backend feature probes on the running kernel: load a two-instruction
//! program and create (then drop) a real link. Symbols in kallsyms say what
//! the kernel was built with; only an attach says what this host allows
//! (sandboxes refuse fentry with EPERM even where it is compiled in).

use std::ffi::CString;

use libbpf_sys as sys;

/// `r0 = 0; exit`.
fn insns() -> [sys::bpf_insn; 2] {
    // SAFETY: bpf_insn is plain data; all-zero is a valid value.
    let mut mov: sys::bpf_insn = unsafe { std::mem::zeroed() };
    mov.code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 0
    let mut exit: sys::bpf_insn = unsafe { std::mem::zeroed() };
    exit.code = 0x95; // BPF_JMP | BPF_EXIT
    [mov, exit]
}

fn errno_msg(ret: i32) -> String {
    std::io::Error::from_raw_os_error(-ret).to_string()
}

fn load(
    prog_type: sys::bpf_prog_type,
    attach: sys::bpf_attach_type,
    btf_id: u32,
) -> Result<i32, String> {
    let insns = insns();
    // SAFETY: zeroed opts with sz set is how libbpf expects callers to init.
    let mut opts: sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_prog_load_opts>() as _;
    opts.expected_attach_type = attach;
    opts.attach_btf_id = btf_id;
    let license = CString::new("GPL").unwrap();
    let name = CString::new("ipft_probe").unwrap();
    // SAFETY: pointers are valid for the call.
    let fd = unsafe {
        sys::bpf_prog_load(
            prog_type,
            name.as_ptr(),
            license.as_ptr(),
            insns.as_ptr(),
            2,
            &mut opts,
        )
    };
    if fd < 0 {
        return Err(format!("load: {}", errno_msg(fd)));
    }
    Ok(fd)
}

fn close(fd: i32) {
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
}

/// Can fentry attach to the vmlinux function with BTF id `btf_id`?
pub fn fentry(btf_id: u32) -> Result<(), String> {
    let fd = load(sys::BPF_PROG_TYPE_TRACING, sys::BPF_TRACE_FENTRY, btf_id)?;
    // SAFETY: zeroed opts with sz set.
    let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_link_create_opts>() as _;
    // SAFETY: valid fd and opts.
    let link = unsafe { sys::bpf_link_create(fd, 0, sys::BPF_TRACE_FENTRY, &opts) };
    close(fd);
    if link < 0 {
        return Err(format!("attach: {}", errno_msg(link)));
    }
    close(link);
    Ok(())
}

/// Can kprobe-multi attach to `symbol`?
pub fn kprobe_multi(symbol: &str) -> Result<(), String> {
    let fd = load(sys::BPF_PROG_TYPE_KPROBE, sys::BPF_TRACE_KPROBE_MULTI, 0)?;
    let sym = CString::new(symbol).map_err(|e| e.to_string())?;
    let mut syms = [sym.as_ptr()];
    // SAFETY: zeroed opts with sz set; the union member matches the attach type.
    let mut opts: sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<sys::bpf_link_create_opts>() as _;
    opts.__bindgen_anon_1.kprobe_multi.cnt = 1;
    opts.__bindgen_anon_1.kprobe_multi.syms = syms.as_mut_ptr();
    // SAFETY: valid fd and opts; syms outlives the call.
    let link = unsafe { sys::bpf_link_create(fd, 0, sys::BPF_TRACE_KPROBE_MULTI, &opts) };
    close(fd);
    if link < 0 {
        return Err(format!("attach: {}", errno_msg(link)));
    }
    close(link);
    Ok(())
}

/// Is there a kprobe PMU (CONFIG_KPROBES)?
pub fn kprobe() -> Result<(), String> {
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        Ok(())
    } else {
        Err("no kprobe PMU (/sys/bus/event_source/devices/kprobe)".into())
    }
}
