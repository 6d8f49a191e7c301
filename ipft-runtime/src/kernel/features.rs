//! Backend feature probes: load a two-instruction program and create (then
//! drop) a real link. The kernel's BTF says what it was built with; only an
//! attach says what this host allows (sandboxes refuse fentry with EPERM
//! even where it is compiled in).

use std::os::fd::{AsRawFd, OwnedFd};

use libbpf_rs::libbpf_sys as sys;

use super::raw::{kprobe_multi_link, prog_load, tracing_link, MultiTargets};

/// `r0 = 0; exit`.
fn insns() -> [sys::bpf_insn; 2] {
    // SAFETY: bpf_insn is plain data; all-zero is a valid value.
    let mut mov: sys::bpf_insn = unsafe { std::mem::zeroed() };
    mov.code = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 0
    let mut exit: sys::bpf_insn = unsafe { std::mem::zeroed() };
    exit.code = 0x95; // BPF_JMP | BPF_EXIT
    [mov, exit]
}

/// `call bpf_get_attach_cookie; r0 = 0; exit` (r1 still holds the context).
fn cookie_insns() -> [sys::bpf_insn; 3] {
    // SAFETY: as in `insns`.
    let mut call: sys::bpf_insn = unsafe { std::mem::zeroed() };
    call.code = 0x85; // BPF_JMP | BPF_CALL
    call.imm = sys::BPF_FUNC_get_attach_cookie as i32;
    let [mov, exit] = insns();
    [call, mov, exit]
}

/// Whether programs of `prog_type` may read their link's cookie: false only
/// when a plain program loads and the same one reading its cookie does not
/// (kprobes before Linux 5.15, fentry before 6.0). A type that does not load
/// at all is not in use, so its answer does not matter.
pub fn cookies(prog_type: sys::bpf_prog_type, attach: sys::bpf_attach_type, btf_id: u32) -> bool {
    if prog_load(prog_type, "ipft_probe", &insns(), attach, btf_id).is_err() {
        return true;
    }
    prog_load(prog_type, "ipft_probe", &cookie_insns(), attach, btf_id).is_ok()
}

fn errno_msg(errno: i32) -> String {
    super::errno_text(errno)
}

fn probe_prog(
    prog_type: sys::bpf_prog_type,
    attach: sys::bpf_attach_type,
    btf_id: u32,
) -> Result<OwnedFd, String> {
    prog_load(prog_type, "ipft_probe", &insns(), attach, btf_id)
        .map_err(|e| format!("load: {}", errno_msg(e)))
}

/// Closing a probe's link waits for the kernel to retire it (an RCU-tasks
/// grace period for fentry and kprobe-multi, most of a probe's time under an
/// emulator); no answer depends on it, so it closes on a thread of its own.
pub fn release_later(link: OwnedFd) {
    std::thread::spawn(move || drop(link));
}

/// Can fentry attach to the vmlinux function with BTF id `btf_id`?
pub fn fentry(btf_id: u32) -> Result<(), String> {
    let prog = probe_prog(sys::BPF_PROG_TYPE_TRACING, sys::BPF_TRACE_FENTRY, btf_id)?;
    tracing_link(prog.as_raw_fd(), sys::BPF_TRACE_FENTRY, 0)
        .map(release_later)
        .map_err(|e| format!("attach: {}", errno_msg(e)))
}

/// Can kprobe-multi attach to `symbol`?
pub fn kprobe_multi(symbol: &str) -> Result<(), String> {
    idle_kprobe_multi(&[symbol], &[0]).map(release_later)
}

/// A kprobe-multi link of a program that does nothing, on the functions
/// `names` with `cookies`: the feature probe, and the one walk of the
/// kernel's symbols that resolves a start's names into addresses (see
/// `raw::kprobe_multi_addrs`) for the links that matter. Its release holds
/// ftrace's lock through RCU-tasks grace periods: [`release_later`].
pub fn idle_kprobe_multi(names: &[&str], cookies: &[u64]) -> Result<OwnedFd, String> {
    let prog = probe_prog(sys::BPF_PROG_TYPE_KPROBE, sys::BPF_TRACE_KPROBE_MULTI, 0)?;
    kprobe_multi_link(prog.as_raw_fd(), MultiTargets::Names(names), cookies, false)
        .map_err(|e| format!("attach: {}", errno_msg(e)))
}

/// Is there a kprobe PMU (CONFIG_KPROBES)?
pub fn kprobe() -> Result<(), String> {
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists() {
        Ok(())
    } else {
        Err("no kprobe PMU (/sys/bus/event_source/devices/kprobe)".into())
    }
}
