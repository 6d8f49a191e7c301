//! Putting the translated filter into loaded programs (`ipft EXPR`).
//!
//! The template has a stub function, `ipft_pcap_run`, called only when
//! CONFIG.pcap is set, whose body starts with a marker (`r0 = MARKER ll`).
//! libbpf loads the object as usual with the stub in place; then, per
//! program, the stub's body in the relocated instructions is replaced with
//! the translation (the calls around it moved to match), the result is
//! loaded with the same type and attach target, and takes over the
//! program's file descriptor number (dup3), so every attach path, libbpf's
//! and the raw fentry one alike, attaches the filtering program.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys as sys;
use libbpf_rs::AsRawLibbpf;

use crate::kernel::raw::{self, LD_IMM64};

/// The stub's first instruction loads this into r0.
pub use ipft_abi::program::PCAP_MARKER as MARKER;

const CALL: u8 = 0x85;

fn is_marker(insns: &[sys::bpf_insn], i: usize) -> bool {
    raw::imm64_at(insns, i) == Some((0, MARKER))
}

/// The target of a BPF-to-BPF call or a function address load at `i`.
fn call_target(insns: &[sys::bpf_insn], i: usize) -> Option<i64> {
    let x = &insns[i];
    let local = (x.code == CALL && u32::from(x.src_reg()) == sys::BPF_PSEUDO_CALL)
        || (x.code == LD_IMM64 && u32::from(x.src_reg()) == sys::BPF_PSEUDO_FUNC);
    local.then(|| i as i64 + 1 + i64::from(x.imm))
}

/// Replace the stub function in `insns` with `body`. The stub is found by
/// its marker; the functions after it move, so every call and function
/// address is recomputed.
pub fn splice(
    insns: &[sys::bpf_insn],
    body: &[sys::bpf_insn],
) -> Result<Vec<sys::bpf_insn>, String> {
    let n = insns.len();
    let mut starts: Vec<usize> = (0..n)
        .filter_map(|i| call_target(insns, i))
        .filter(|&t| t >= 0 && (t as usize) < n)
        .map(|t| t as usize)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    let start = (0..n)
        .find(|&i| is_marker(insns, i))
        .ok_or("the program has no pcap filter stub (an object built before pcap support)")?;
    if !starts.contains(&start) {
        return Err("the pcap filter stub is not a function of its own".into());
    }
    let end = starts.iter().copied().find(|&s| s > start).unwrap_or(n);
    let moved = |i: usize| -> usize {
        if i < end {
            i
        } else {
            i - (end - start) + body.len()
        }
    };
    let mut out = Vec::with_capacity(n - (end - start) + body.len());
    out.extend_from_slice(&insns[..start]);
    out.extend_from_slice(body);
    out.extend_from_slice(&insns[end..]);
    for i in (0..n).filter(|&i| i < start || i >= end) {
        let Some(t) = call_target(insns, i) else {
            continue;
        };
        if t < 0 || t as usize >= n || (t as usize > start && (t as usize) < end) {
            return Err(format!(
                "instruction {i}: a call into the pcap filter stub's body"
            ));
        }
        let (from, to) = (moved(i) as i64, moved(t as usize) as i64);
        out[from as usize].imm = i32::try_from(to - from - 1).map_err(|_| "program too large")?;
    }
    Ok(out)
}

/// Whether `insns` hold the stub (objects built before pcap support do not).
pub fn has_stub(insns: &[sys::bpf_insn]) -> bool {
    (0..insns.len()).any(|i| is_marker(insns, i))
}

/// Where a tracing program attaches: the kernel's own record of the loaded
/// program (Linux 6.0), else the vmlinux function or tracepoint `name`
/// looked up in the running kernel's BTF.
fn attach_target(
    prog_fd: i32,
    attach: sys::bpf_attach_type,
    name: Option<&str>,
) -> Result<(u32, Option<OwnedFd>), String> {
    // SAFETY: plain data, zeroed = ask for nothing extra.
    let mut info: sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<sys::bpf_prog_info>() as u32;
    // SAFETY: a valid fd and a buffer of `len` bytes.
    let r = unsafe { sys::bpf_prog_get_info_by_fd(prog_fd, &mut info, &mut len) };
    if r == 0 && info.attach_btf_id != 0 && info.attach_btf_obj_id != 0 {
        // SAFETY: an id the kernel just gave.
        let fd = unsafe { sys::bpf_btf_get_fd_by_id(info.attach_btf_obj_id) };
        if fd >= 0 {
            // SAFETY: a fresh fd we own.
            return Ok((
                info.attach_btf_id,
                Some(unsafe { OwnedFd::from_raw_fd(fd) }),
            ));
        }
    }
    if let Some(name) = name {
        let c = CString::new(name).map_err(|_| "bad target name")?;
        // SAFETY: a NUL-terminated name.
        let id = unsafe { sys::libbpf_find_vmlinux_btf_id(c.as_ptr(), attach) };
        if id > 0 {
            return Ok((id as u32, None));
        }
    }
    Err(
        "pcap filter: cannot find the program's attach target (module targets need Linux 6.0)"
            .into(),
    )
}

/// Splice `body` into the loaded program `prog` and load the result in its
/// place (same fd number). `target`: the vmlinux function or tracepoint a
/// tracing program attaches to (`None` for a module's or a kprobe).
pub fn reload(
    prog: &libbpf_rs::ProgramMut<'_>,
    body: &[sys::bpf_insn],
    target: Option<&str>,
) -> Result<(), String> {
    let insns = splice(prog.insns(), body)?;
    let p = prog.as_libbpf_object().as_ptr();
    // SAFETY: a loaded program of a live object.
    let (ty, attach) = unsafe {
        (
            sys::bpf_program__type(p),
            sys::bpf_program__expected_attach_type(p),
        )
    };
    let old = prog.as_fd().as_raw_fd();
    let (btf_id, btf_obj) = if ty == sys::BPF_PROG_TYPE_TRACING {
        attach_target(old, attach, target)?
    } else {
        (0, None)
    };
    let name = CString::new(prog.name().to_string_lossy().as_bytes()).map_err(|_| "bad name")?;
    let load = |log: Option<&mut Vec<u8>>| {
        // SAFETY: zeroed opts with sz set is libbpf's initialisation idiom.
        let mut o: sys::bpf_prog_load_opts = unsafe { std::mem::zeroed() };
        o.sz = std::mem::size_of::<sys::bpf_prog_load_opts>() as _;
        o.expected_attach_type = attach;
        o.attach_btf_id = btf_id;
        o.attach_btf_obj_fd = btf_obj.as_ref().map_or(0, |f| f.as_raw_fd() as u32);
        if let Some(buf) = log {
            o.log_level = 1;
            o.log_buf = buf.as_mut_ptr().cast();
            o.log_size = buf.len() as u32;
        }
        // SAFETY: every pointer is valid for the call.
        unsafe {
            sys::bpf_prog_load(
                ty,
                name.as_ptr(),
                c"GPL".as_ptr(),
                insns.as_ptr(),
                insns.len() as _,
                &mut o,
            )
        }
    };
    let mut fd = load(None);
    if fd < 0 {
        // Again with the verifier's log, for the message.
        let mut buf = vec![0u8; 1 << 22];
        fd = load(Some(&mut buf));
        if fd < 0 {
            let log = String::from_utf8_lossy(&buf);
            let log = log.trim_end_matches('\0');
            let tail: Vec<&str> = log.lines().rev().take(8).collect::<Vec<_>>();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "pcap filter: the kernel refused the filtering program: {}\n{}",
                crate::kernel::errno_text(-fd),
                tail.join("\n")
            ));
        }
    }
    // SAFETY: a fresh fd we own.
    let new = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: both fds are valid; the old number now names the new program.
    if unsafe { libc::dup3(new.as_raw_fd(), old, libc::O_CLOEXEC) } < 0 {
        return Err(format!(
            "pcap filter: dup3: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// [`reload`] every loaded program of `obj` that calls the stub; `target`
/// names a tracing program's vmlinux target from its program name. Returns
/// each reloaded program's new instructions, by name (for loading again
/// elsewhere, as the raw fentry path does).
pub fn reload_object(
    obj: &libbpf_rs::Object,
    body: &[sys::bpf_insn],
    target: impl Fn(&str) -> Option<String>,
) -> Result<std::collections::HashMap<String, Vec<sys::bpf_insn>>, String> {
    let mut done = std::collections::HashMap::new();
    for p in obj.progs_mut() {
        if !p.autoload() || !has_stub(p.insns()) {
            continue;
        }
        let name = p.name().to_string_lossy().into_owned();
        let spliced = splice(p.insns(), body)?;
        reload(&p, body, target(&name).as_deref()).map_err(|e| format!("{name}: {e}"))?;
        done.insert(name, spliced);
    }
    Ok(done)
}
