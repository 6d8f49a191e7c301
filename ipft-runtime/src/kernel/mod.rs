//! What the running kernel offers, read only for what must be checked on
//! it: which backends work (symbols, then a real load + attach), which
//! functions attach by name, and the names of drop reasons.

pub mod features;
mod ksyms;
pub mod raw;
mod symbols;

use std::path::Path;
use std::sync::OnceLock;

use ipft_abi::{policy, Backend, KernelOffer};
pub use ksyms::Symbolizer;
pub use symbols::KernelSymbols;

/// An errno as text ("Operation not permitted (os error 1)").
pub fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Release of the running kernel (uname -r).
pub fn running_release() -> Option<String> {
    ipft_btf::running_release()
}

/// The functions and typedefs the runtime looks up in the running kernel's
/// BTF: found in the one walk that reads it, where btf-rs would walk every
/// type once per name (tens of ms each under an emulator).
const LOOKED_UP: &[&str] = &[
    "fprobe_register",
    "register_fprobe",
    "register_ftrace_direct",
    "register_ftrace_direct_multi",
    "bpf_trampoline_link_prog",
    "bpf_rdonly_cast",
    "ip_rcv",
    "btf_trace_netif_receive_skb",
];

struct Running {
    btf: ipft_btf::KernelBtf,
    /// Per LOOKED_UP name, its ids.
    named: ipft_btf::Named,
}

fn running() -> Option<&'static Running> {
    static BTF: OnceLock<Option<Running>> = OnceLock::new();
    BTF.get_or_init(|| {
        let path = Path::new(ipft_btf::SYS_BTF_DIR).join("vmlinux");
        let (btf, named) = ipft_btf::KernelBtf::for_lookups(&path, LOOKED_UP).ok()?;
        Some(Running { btf, named })
    })
    .as_ref()
}

/// The running kernel's vmlinux BTF, parsed (lazily, mmapped) at most once.
pub fn running_btf() -> Option<&'static ipft_btf::KernelBtf> {
    running().map(|r| &r.btf)
}

/// The ids of the functions and typedefs called `name` in the running
/// kernel's BTF (empty without BTF).
pub fn btf_ids(name: &str) -> Vec<u32> {
    let Some(r) = running() else {
        return Vec::new();
    };
    match (&r.named, LOOKED_UP.iter().position(|n| *n == name)) {
        (Some(named), Some(i)) => named[i].clone(),
        _ => r.btf.base.resolve_ids_by_name(name).unwrap_or_default(),
    }
}

/// The kernel's offer and why backends were turned down.
#[derive(Debug, Clone)]
pub struct Probed {
    /// What works here.
    pub offer: KernelOffer,
    /// (backend, why) for each backend found unusable.
    pub refused: Vec<(Backend, String)>,
}

impl Probed {
    /// The reason `b` was refused, if it was.
    pub fn refusal(&self, b: Backend) -> Option<&str> {
        self.refused
            .iter()
            .find(|(x, _)| *x == b)
            .map(|(_, r)| r.as_str())
    }

    /// `b` refused after all (a load or attach failed for every probe).
    pub fn refuse(&mut self, b: Backend, why: String) {
        self.offer = self.offer.without(b);
        if self.refusal(b).is_none() {
            self.refused.push((b, why));
        }
    }
}

/// What the kernel was built with: functions of its BTF (notrace ones,
/// such as ftrace's own, included), else of its symbols (`syms`, read here
/// if not given: only a kernel without BTF needs them).
pub fn offer_from_symbols(syms: Option<&KernelSymbols>, release: Option<&str>) -> KernelOffer {
    let btf = running_btf();
    let read;
    let syms = match (syms, btf) {
        (None, None) => {
            read = KernelSymbols::running().unwrap_or_default();
            Some(&read)
        }
        (s, _) => s,
    };
    let has = |s: &str| match (btf, syms) {
        (Some(_), _) => !btf_ids(s).is_empty(),
        (None, Some(syms)) => syms.attachable(s),
        (None, None) => false,
    };
    KernelOffer {
        kprobe: features::kprobe().is_ok(),
        kprobe_multi: has("fprobe_register") || has("register_fprobe"),
        // 5.10's BTF has no ftrace.c functions: the trampoline's own
        // function says enough (the real attach probe decides).
        fentry: has("register_ftrace_direct")
            || has("register_ftrace_direct_multi")
            || has("bpf_trampoline_link_prog"),
        fentry_max_args: policy::fentry_max_args(release),
    }
}

/// Probe the running kernel: its BTF (or `syms`, see
/// [`offer_from_symbols`]) first, then a real load + attach for each
/// backend in `wanted` that they promise (needs root). Backends not wanted
/// are left as the BTF says, unconfirmed.
pub fn probe(syms: Option<&KernelSymbols>, wanted: &[Backend]) -> Probed {
    let release = running_release();
    let mut p = Probed {
        offer: offer_from_symbols(syms, release.as_deref()),
        refused: Vec::new(),
    };
    for b in Backend::FUNCTIONS {
        if !p.offer.has(b) {
            p.refused.push((b, missing(b).into()));
            continue;
        }
        if !wanted.contains(&b) {
            continue;
        }
        let r = match b {
            Backend::Fentry => match fentry_target() {
                Some(id) => features::fentry(id),
                None => Err("no ip_rcv in the running kernel's BTF to probe fentry on".into()),
            },
            Backend::KprobeMulti => features::kprobe_multi("ip_rcv"),
            _ => features::kprobe(),
        };
        if let Err(e) = r {
            p.refuse(b, e);
        }
    }
    p
}

fn missing(b: Backend) -> &'static str {
    match b {
        Backend::Kprobe => "no kprobe PMU (CONFIG_KPROBES)",
        Backend::KprobeMulti => "no fprobe in the kernel (CONFIG_FPROBE)",
        Backend::Fentry => "no BPF trampolines in the kernel",
        Backend::TpBtf => "",
    }
}

/// Which links carry a BPF cookie on the running kernel (probed once).
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// kprobe links (Linux 5.15).
    pub kprobe: bool,
    /// fentry/fexit links (Linux 6.0).
    pub tracing: bool,
    /// tp_btf links (Linux 6.10).
    pub raw_tp: bool,
}

/// The running kernel's [`Cookies`].
pub fn cookies() -> Cookies {
    use libbpf_rs::libbpf_sys as sys;
    static C: std::sync::OnceLock<Cookies> = std::sync::OnceLock::new();
    *C.get_or_init(|| Cookies {
        kprobe: features::cookies(sys::BPF_PROG_TYPE_KPROBE, 0, 0),
        tracing: fentry_target().is_none_or(|id| {
            features::cookies(sys::BPF_PROG_TYPE_TRACING, sys::BPF_TRACE_FENTRY, id)
        }),
        // No answer (no BTF): the per-copy path, which works everywhere.
        raw_tp: tracepoint_target().is_some_and(|id| {
            features::cookies(sys::BPF_PROG_TYPE_TRACING, sys::BPF_TRACE_RAW_TP, id)
        }),
    })
}

/// The running kernel has bpf_rdonly_cast (Linux 6.2), which lets kprobe
/// programs load the skb's fields directly; libbpf resolves the same name.
pub fn rdonly_cast() -> bool {
    !btf_ids("bpf_rdonly_cast").is_empty()
}

/// BTF id of the netif_receive_skb tracepoint, where feature probes aim tp_btf.
fn tracepoint_target() -> Option<u32> {
    tracepoint_btf_id("netif_receive_skb")
}

/// BTF id of tracepoint `name` in the running kernel (its `btf_trace_<name>`
/// typedef, which a tp_btf program is aimed at).
pub fn tracepoint_btf_id(name: &str) -> Option<u32> {
    btf_ids(&format!("btf_trace_{name}")).first().copied()
}

/// BTF id of ip_rcv, the function feature probes aim fentry at.
fn fentry_target() -> Option<u32> {
    btf_ids("ip_rcv").first().copied()
}

/// Drop reason names of the running kernel's `enum skb_drop_reason`
/// (without the SKB_DROP_REASON_ prefix).
pub fn drop_reasons() -> std::collections::HashMap<u64, String> {
    running_btf()
        .map(|k| ipft_btf::enum_values(k, "skb_drop_reason"))
        .unwrap_or_default()
        .into_iter()
        .map(|(v, n)| (v, n.trim_start_matches("SKB_DROP_REASON_").to_string()))
        .collect()
}
