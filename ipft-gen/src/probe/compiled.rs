//! Which backends a generated tracer holds for each probe: the policy's
//! choice for the kernel it is generated for.

use std::path::PathBuf;

use ipft_abi::{policy, Asked, Backend, KernelOffer};

use crate::discover::Discovery;
use crate::Probe;

/// What `ipft-gen -b` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compile {
    /// The policy's choice for the tracer's kernel.
    Auto,
    /// This backend only.
    Only(Backend),
    /// Every backend that reaches each probe; the tracer picks at run time.
    All,
}

/// What the tracer's kernel offers: the running kernel as probed, or for
/// another kernel's BTF every backend its release can have.
pub fn target_offer(d: &Discovery) -> KernelOffer {
    match &d.probed {
        Some(p) => p.offer,
        None => KernelOffer::everything(d.identity.release.as_deref()),
    }
}

/// The backends compiled in for a probe. For the running kernel, auto is
/// the policy's one choice. For another kernel's BTF, whose configuration
/// is unknown, auto keeps kprobe-multi and kprobe both (the tracer takes
/// kprobe-multi where the kernel has it) and fentry only where neither
/// reaches.
pub fn compiled_backends(
    p: &Probe,
    offer: &KernelOffer,
    asked: Compile,
    running_kernel: bool,
) -> Vec<Backend> {
    let shape = p.shape();
    let chosen = |asked| {
        policy::choose(&shape, true, &p.backends, offer, asked)
            .ok()
            .into_iter()
            .collect()
    };
    match asked {
        Compile::All => policy::reaching(&shape, true, offer),
        Compile::Only(b) => chosen(Asked::Only(b)),
        Compile::Auto if running_kernel => chosen(Asked::Auto),
        Compile::Auto => {
            let reach = policy::reaching(&shape, true, offer);
            let kprobes: Vec<Backend> = reach
                .iter()
                .copied()
                .filter(|b| matches!(b, Backend::Kprobe | Backend::KprobeMulti))
                .collect();
            match kprobes.is_empty() {
                true => reach,
                false => kprobes,
            }
        }
    }
}

/// `ipft-<profile>-<release>` (or the BTF checksum when the release is unknown).
pub fn default_out(profile: &str, d: &Discovery) -> PathBuf {
    let id = &d.identity;
    let kernel = id.release.clone().unwrap_or_else(|| id.checksum.clone());
    let safe: String = kernel
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || "._-".contains(c) {
            true => c,
            false => '_',
        })
        .collect();
    PathBuf::from(format!("ipft-{profile}-{safe}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_abi::ProbeKind;

    fn func(skb: u8, nargs: u8) -> Probe {
        Probe {
            name: "f".into(),
            kind: ProbeKind::Function,
            skb_positions: vec![skb],
            nargs,
            backends: Backend::FUNCTIONS.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn another_kernel_keeps_both_kprobe_backends() {
        let offer = KernelOffer::everything(Some("6.12.117"));
        assert_eq!(
            compiled_backends(&func(0, 3), &offer, Compile::Auto, false),
            [Backend::KprobeMulti, Backend::Kprobe]
        );
        // The skb on the stack: kprobes read it there.
        assert_eq!(
            compiled_backends(&func(7, 8), &offer, Compile::Auto, false),
            [Backend::KprobeMulti, Backend::Kprobe]
        );
        assert_eq!(
            compiled_backends(&func(12, 13), &offer, Compile::Auto, false),
            [],
            "beyond argument 11 and 12 arguments: nothing reaches it"
        );
        assert_eq!(
            compiled_backends(&func(0, 3), &offer, Compile::Auto, true),
            [Backend::KprobeMulti]
        );
    }
}
