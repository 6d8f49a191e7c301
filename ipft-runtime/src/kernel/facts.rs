//! Facts about the running kernel that the runtime reads from its BTF or
//! learns with feature probes: the ids of a few names, which links carry a
//! cookie, the names of drop reasons. Each is found at most once per
//! process, and holds until the kernel reboots or a module comes or goes:
//! a start may [`Facts::seed`] them from what an earlier start in the same
//! boot [`Facts::learnt`], instead of reading the BTF and loading probes
//! again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use super::features;

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

static NAMED: OnceLock<Option<Vec<Vec<u32>>>> = OnceLock::new();
/// Entry addresses the kernel resolved for kprobe-multi links, by
/// [`addr_key`]; and how many this process added.
static FUNCTION_ADDRS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static NEW_ADDRS: AtomicUsize = AtomicUsize::new(0);
static COOKIES: OnceLock<Cookies> = OnceLock::new();
static REASONS: OnceLock<Vec<(u64, String)>> = OnceLock::new();

/// Per LOOKED_UP name its ids: seeded, else from the walk over the BTF.
fn named() -> Option<&'static Vec<Vec<u32>>> {
    NAMED
        .get_or_init(|| running().and_then(|r| r.named.clone()))
        .as_ref()
}

/// The running kernel's vmlinux BTF, parsed (lazily, mmapped) at most once.
pub fn running_btf() -> Option<&'static ipft_btf::KernelBtf> {
    running().map(|r| &r.btf)
}

/// The ids of the functions and typedefs called `name` in the running
/// kernel's BTF (empty without BTF).
pub fn btf_ids(name: &str) -> Vec<u32> {
    if let (Some(named), Some(i)) = (named(), LOOKED_UP.iter().position(|n| *n == name)) {
        return named[i].clone();
    }
    running()
        .and_then(|r| r.btf.base.resolve_ids_by_name(name).ok())
        .unwrap_or_default()
}

/// Which links carry a BPF cookie on the running kernel (probed once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    *COOKIES.get_or_init(|| Cookies {
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

/// Whether `ipft` runs tracepoints with its raw_tp programs, one load for
/// all and a cookie per link, rather than a verified tp_btf copy per
/// tracepoint: with raw_tp cookies (Linux 6.10) and bpf_rdonly_cast, which
/// keeps the skb's fields plain loads.
pub fn raw_tracepoints() -> bool {
    cookies().raw_tp && rdonly_cast()
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
pub(super) fn fentry_target() -> Option<u32> {
    btf_ids("ip_rcv").first().copied()
}

fn addr_key(module: Option<&str>, name: &str) -> String {
    match module {
        Some(m) => format!("{m}:{name}"),
        None => name.to_string(),
    }
}

/// The entry address of every function (module, name) of a kprobe-multi
/// link, if all are known: a link by address spares the kernel its walk
/// over every symbol for the names.
pub fn function_addrs<'a>(
    funcs: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
) -> Option<Vec<u64>> {
    let known = FUNCTION_ADDRS.lock().ok()?;
    funcs
        .into_iter()
        .map(|(m, n)| known.get(&addr_key(m, n)).copied())
        .collect()
}

/// Keep the entry addresses a link by name was resolved to.
pub fn learn_function_addrs<'a>(found: impl IntoIterator<Item = (Option<&'a str>, &'a str, u64)>) {
    if let Ok(mut known) = FUNCTION_ADDRS.lock() {
        for (m, n, addr) in found {
            if known.insert(addr_key(m, n), addr).is_none() {
                NEW_ADDRS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// How many addresses this process learnt that the facts it was seeded
/// with did not hold.
pub fn learnt_new_addrs() -> usize {
    NEW_ADDRS.load(Ordering::Relaxed)
}

/// Drop reason names of the running kernel's `enum skb_drop_reason`
/// (without the SKB_DROP_REASON_ prefix).
pub fn drop_reasons() -> HashMap<u64, String> {
    REASONS
        .get_or_init(|| {
            running_btf()
                .map(|k| ipft_btf::enum_values(k, "skb_drop_reason"))
                .unwrap_or_default()
                .into_iter()
                .map(|(v, n)| (v, n.trim_start_matches("SKB_DROP_REASON_").to_string()))
                .collect()
        })
        .iter()
        .cloned()
        .collect()
}

/// What this process has found out so far; each part is `None` where it
/// was not asked for (nothing is worked out here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// (name, ids) for every looked-up name.
    pub named: Option<Vec<(String, Vec<u32>)>>,
    /// Which links carry a cookie.
    pub cookies: Option<Cookies>,
    /// Drop reasons (value, name).
    pub drop_reasons: Option<Vec<(u64, String)>>,
    /// Functions' entry addresses ("module:name", or "name" in vmlinux).
    #[serde(default)]
    pub function_addrs: Vec<(String, u64)>,
}

impl Facts {
    /// Everything found out so far in this process.
    pub fn learnt() -> Facts {
        Facts {
            named: NAMED.get().and_then(Option::as_ref).map(|ids| {
                LOOKED_UP
                    .iter()
                    .map(|n| n.to_string())
                    .zip(ids.iter().cloned())
                    .collect()
            }),
            cookies: COOKIES.get().copied(),
            drop_reasons: REASONS.get().cloned(),
            function_addrs: FUNCTION_ADDRS
                .lock()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
        }
    }

    /// Take these as found, where nothing was found yet. Names are used
    /// only if they are exactly the ones this build looks up.
    pub fn seed(self) {
        if let Some(named) = self.named {
            let same = named.len() == LOOKED_UP.len()
                && named.iter().zip(LOOKED_UP).all(|((n, _), l)| n == l);
            if same {
                let _ = NAMED.set(Some(named.into_iter().map(|(_, ids)| ids).collect()));
            }
        }
        if let Some(c) = self.cookies {
            let _ = COOKIES.set(c);
        }
        if let Some(r) = self.drop_reasons {
            let _ = REASONS.set(r);
        }
        if let Ok(mut known) = FUNCTION_ADDRS.lock() {
            known.extend(self.function_addrs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learnt_facts_round_trip_through_json() {
        let f = Facts {
            named: Some(
                LOOKED_UP
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.to_string(), vec![i as u32 + 1]))
                    .collect(),
            ),
            cookies: Some(Cookies {
                kprobe: true,
                tracing: false,
                raw_tp: true,
            }),
            drop_reasons: Some(vec![(2, "NOT_SPECIFIED".into())]),
            function_addrs: vec![("ip_rcv".into(), 0xffff_ffff_8100_0000)],
        };
        let back: Facts = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn a_link_goes_by_address_only_when_every_function_has_one() {
        learn_function_addrs([
            (None, "t_ip_rcv", 0x10),
            (Some("veth"), "t_veth_xmit", 0x20),
        ]);
        assert!(learnt_new_addrs() >= 2);
        let ip = (None, "t_ip_rcv");
        assert_eq!(
            function_addrs([ip, (Some("veth"), "t_veth_xmit")]),
            Some(vec![0x10, 0x20])
        );
        // The same name in vmlinux is another function.
        assert_eq!(function_addrs([ip, (None, "t_veth_xmit")]), None);
        assert_eq!(function_addrs([ip, (None, "t_unknown")]), None);
        let kept = Facts::learnt().function_addrs;
        assert!(kept.contains(&("veth:t_veth_xmit".to_string(), 0x20)));
    }
}
