//! Which backends can reach each probe on the running kernel.
//!
//! A function needs its exact name as a text symbol in /proc/kallsyms (inlined
//! and `.isra`/`.constprop` clones are not attachable by BTF name). Where
//! tracefs' available_filter_functions is readable it is used instead, since
//! it also drops `notrace` functions; on sandboxed hosts it is often denied.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use super::{Backend, Probe, ProbeKind};

/// kprobe reads the skb from a register: x86_64 passes the first six integer
/// arguments in rdi, rsi, rdx, rcx, r8, r9, so positions 0..=5 are reachable
/// provided no struct-by-value argument before the skb shifts the registers.
pub const KPROBE_MAX_REG_ARGS: u8 = 6;

/// Symbols and features of the running kernel.
#[derive(Debug, Default)]
pub struct KernelSymbols {
    /// Text symbols by name -> (address, module, number of definitions).
    pub text: HashMap<String, (u64, Option<String>, u32)>,
    /// Traceable functions from available_filter_functions, when readable.
    pub traceable: Option<HashSet<String>>,
    /// Warning to print once (e.g. fell back to kallsyms).
    pub note: Option<String>,
}

/// What the running kernel offers.
#[derive(Debug, Clone, Default)]
pub struct Availability {
    /// Why a backend was found unusable (backend, reason), from feature probes.
    pub refused: Vec<(Backend, String)>,
    /// kprobe PMU present (CONFIG_KPROBES).
    pub kprobe: bool,
    /// kprobe-multi (CONFIG_FPROBE).
    pub kprobe_multi: bool,
    /// fentry/fexit trampolines (direct calls).
    pub fentry: bool,
    /// Max args fentry/fexit can see: 6 before Linux 6.6 on x86_64, 12 after.
    pub fentry_max_args: u8,
}

impl Availability {
    /// The function backends this kernel offers, fastest first.
    pub fn function_backends(&self) -> Vec<Backend> {
        [
            (Backend::Fentry, self.fentry),
            (Backend::KprobeMulti, self.kprobe_multi),
            (Backend::Kprobe, self.kprobe),
        ]
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(b, _)| b)
        .collect()
    }
}

impl KernelSymbols {
    /// Read /proc/kallsyms (and available_filter_functions if allowed).
    pub fn running() -> std::io::Result<Self> {
        let text = fs::read_to_string("/proc/kallsyms")?;
        let mut s = Self::parse_kallsyms(&text);
        let aff = Path::new("/sys/kernel/tracing/available_filter_functions");
        match fs::read_to_string(aff) {
            Ok(list) => {
                s.traceable = Some(
                    list.lines()
                        .filter_map(|l| l.split_whitespace().next())
                        .map(str::to_string)
                        .collect(),
                )
            }
            Err(e) => {
                s.note = Some(format!(
                    "note: {} unreadable ({e}); using /proc/kallsyms for traceability",
                    aff.display()
                ))
            }
        }
        Ok(s)
    }

    /// Parse kallsyms text (`addr type name [module]`), keeping text symbols.
    pub fn parse_kallsyms(text: &str) -> Self {
        let mut map: HashMap<String, (u64, Option<String>, u32)> = HashMap::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(ty), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(ty, "t" | "T") {
                continue;
            }
            let module = it
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']').to_string());
            let addr = u64::from_str_radix(addr, 16).unwrap_or(0);
            map.entry(name.to_string())
                .and_modify(|e| e.2 += 1)
                .or_insert((addr, module, 1));
        }
        KernelSymbols {
            text: map,
            traceable: None,
            note: None,
        }
    }

    /// Whether the kernel can attach a function probe to `name` by name.
    pub fn attachable(&self, name: &str) -> bool {
        match &self.traceable {
            Some(t) => t.contains(name),
            None => self.text.contains_key(name),
        }
    }

    /// Kernel features, from symbols (no attach attempt; the runtime confirms
    /// with a real attach before it relies on one).
    pub fn availability(&self, release: Option<&str>) -> Availability {
        let has = |s: &str| self.text.contains_key(s);
        let new_trampoline = release.and_then(parse_release).is_some_and(|v| v >= (6, 6));
        Availability {
            refused: Vec::new(),
            kprobe: Path::new("/sys/bus/event_source/devices/kprobe").exists(),
            kprobe_multi: has("fprobe_register") || has("register_fprobe"),
            fentry: has("register_ftrace_direct") || has("register_ftrace_direct_multi"),
            fentry_max_args: if new_trampoline { 12 } else { 6 },
        }
    }

    /// Confirm each backend with a real load + attach (needs root), using
    /// `probe` (a vmlinux function: name and BTF id) as the target.
    pub fn confirm(&self, a: &mut Availability, probe: (&str, u32)) {
        use super::feature;
        let mut refused = Vec::new();
        for (b, on) in [
            (Backend::Fentry, &mut a.fentry),
            (Backend::KprobeMulti, &mut a.kprobe_multi),
            (Backend::Kprobe, &mut a.kprobe),
        ] {
            let r = match b {
                Backend::Fentry => feature::fentry(probe.1),
                Backend::KprobeMulti => feature::kprobe_multi(probe.0),
                _ => feature::kprobe(),
            };
            if let Err(e) = r {
                refused.push((b, e));
                *on = false;
            }
        }
        a.refused = refused;
    }

    /// Fill `backends` of each probe and drop functions the kernel cannot
    /// attach by name (inlined, notrace, renamed clones). Functions no
    /// backend of this kernel reaches stay, with an empty list, so listings
    /// show them. Returns how many were dropped.
    pub fn resolve(&self, probes: &mut Vec<Probe>, avail: &Availability) -> usize {
        let before = probes.len();
        probes.retain(|p| p.kind == ProbeKind::Tracepoint || self.attachable(&p.name));
        for p in probes.iter_mut() {
            p.backends = backends_for(p, avail, |n| self.attachable(n));
        }
        before - probes.len()
    }
}

/// Backends able to reach a probe, given kernel features and symbol presence.
pub fn backends_for(
    p: &Probe,
    a: &Availability,
    attachable: impl Fn(&str) -> bool,
) -> Vec<Backend> {
    let mut out = Vec::new();
    match p.kind {
        ProbeKind::Tracepoint => out.push(Backend::TpBtf),
        ProbeKind::Function => {
            if !attachable(&p.name) {
                return out;
            }
            if a.fentry && !p.byval && !p.variadic && p.nargs <= a.fentry_max_args {
                out.push(Backend::Fentry);
            }
            let reg_ok = p.skb_pos() < KPROBE_MAX_REG_ARGS && !p.byval_before_skb;
            if reg_ok && a.kprobe_multi {
                out.push(Backend::KprobeMulti);
            }
            if reg_ok && a.kprobe {
                out.push(Backend::Kprobe);
            }
        }
    }
    out
}

/// Every backend a probe could use on some kernel (for generating for a
/// kernel other than the running one).
pub fn static_backends(p: &Probe, release: Option<&str>) -> Vec<Backend> {
    let max = release
        .and_then(parse_release)
        .map_or(12, |v| if v >= (6, 6) { 12 } else { 6 });
    let a = Availability {
        refused: Vec::new(),
        kprobe: true,
        kprobe_multi: true,
        fentry: true,
        fentry_max_args: max,
    };
    backends_for(p, &a, |_| true)
}

/// `6.12.117+deb12-cloud-amd64` -> (6, 12).
pub fn parse_release(r: &str) -> Option<(u32, u32)> {
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.12.117+deb12-cloud-amd64"), Some((6, 12)));
        assert_eq!(parse_release("6.1.0-47-cloud-amd64"), Some((6, 1)));
        assert_eq!(parse_release("x"), None);
    }

    #[test]
    fn kallsyms() {
        let s = KernelSymbols::parse_kallsyms(
            "ffffffff81000000 T ip_rcv\nffffffff81000010 t foo.isra.0\n0 d data\nffff0000 t veth_xmit\t[veth]\nffff0000 t dup\nffff0001 t dup\n",
        );
        assert!(s.attachable("ip_rcv"));
        assert!(!s.attachable("foo"));
        assert!(!s.attachable("data"));
        assert_eq!(s.text["veth_xmit"].1.as_deref(), Some("veth"));
        assert_eq!(s.text["dup"].2, 2);
    }

    #[test]
    fn backend_rules() {
        let a = Availability {
            refused: Vec::new(),
            kprobe: true,
            kprobe_multi: false,
            fentry: true,
            fentry_max_args: 6,
        };
        let mut p = Probe {
            name: "f".into(),
            skb_positions: vec![6],
            nargs: 7,
            ..Default::default()
        };
        assert!(backends_for(&p, &a, |_| true).is_empty());
        p.skb_positions = vec![2];
        p.nargs = 3;
        assert_eq!(
            backends_for(&p, &a, |_| true),
            vec![Backend::Fentry, Backend::Kprobe]
        );
        assert!(backends_for(&p, &a, |_| false).is_empty());
    }
}
