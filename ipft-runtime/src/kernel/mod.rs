//! What the running kernel offers, read only for what must be checked on
//! it: which backends work (symbols, then a real load + attach), which
//! functions attach by name, and the names of drop reasons.

mod expedite;
mod facts;
pub mod features;
mod ksyms;
pub mod raw;
mod symbols;

pub use expedite::{worth_expediting, Expedited};
pub use facts::{
    btf_ids, cookies, drop_reasons, function_addrs, learn_function_addrs, learnt_new_addrs,
    raw_tracepoints, rdonly_cast, running_btf, tracepoint_btf_id, Cookies, Facts,
};
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

/// The kernel's offer and why backends were turned down.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
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
            Backend::Fentry => match facts::fentry_target() {
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
