//! The one BTF walker: finds every function and BTF tracepoint taking a
//! `struct sk_buff *`, with all skb positions.

use std::collections::HashMap;

use btf_rs::{Btf, BtfType, Type};

use super::KernelBtf;
use crate::Probe;
use ipft_abi::ProbeKind;

/// Modifier chains longer than this are treated as malformed (a cycle in
/// corrupt BTF must not hang the walker).
const MAX_CHAIN: usize = 32;

/// What a parameter's type is, as far as probes care.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    /// `struct sk_buff *`, through any typedef/const/volatile/restrict/type_tag.
    Skb,
    /// `enum skb_drop_reason`.
    DropReason,
    /// A struct or union passed by value.
    ByVal,
    Other,
}

/// Counts from one scan.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct ScanStats {
    /// BTF types looked at.
    pub types: u64,
    /// FUNC entries seen.
    pub funcs: u64,
    /// Functions with an skb pointer argument.
    pub skb_funcs: u64,
    /// Tracepoints with an skb pointer argument.
    pub skb_tracepoints: u64,
}

/// Scan vmlinux and module BTF. Probes come out sorted by (module, kind, name)
/// with duplicate names within one BTF object dropped.
pub fn scan(k: &KernelBtf) -> Result<(Vec<Probe>, ScanStats), super::BtfError> {
    let mut probes = Vec::new();
    let mut stats = ScanStats::default();
    let path = std::path::PathBuf::from(&k.identity.source);
    super::quiet_catch_unwind(|| {
        let (lo, hi) = k.base.base().type_id_range();
        let (wanted, count) = candidates(&k.candidates, lo, hi, &mut stats);
        scan_one(&k.base, None, wanted, count, &mut probes, &mut stats);
        for m in &k.modules {
            if let Some(split) = m.btf.split() {
                let (lo, hi) = split.type_id_range();
                let (wanted, count) = candidates(&m.candidates, lo, hi, &mut stats);
                scan_one(
                    &m.btf,
                    Some(&m.name),
                    wanted,
                    count,
                    &mut probes,
                    &mut stats,
                );
            }
        }
    })
    .map_err(|reason| super::BtfError::Corrupt {
        path,
        reason: format!("walking types: {reason}"),
    })?;
    probes.sort_by(|a, b| (&a.module, a.kind, &a.name).cmp(&(&b.module, b.kind, &b.name)));
    probes.dedup_by(|a, b| a.module == b.module && a.kind == b.kind && a.name == b.name);
    Ok((probes, stats))
}

/// The ids of types `lo..=hi` worth resolving: the raw walk's candidates
/// where it found them (it counted the functions), else all (every one
/// counts as looked at, each function as seen when resolved).
fn candidates(
    found: &Option<crate::kinds::Candidates>,
    lo: u32,
    hi: u32,
    stats: &mut ScanStats,
) -> (Vec<u32>, bool) {
    stats.types += u64::from(hi - lo) + 1;
    match found {
        Some(c) => {
            stats.funcs += c.funcs;
            let ids = c.ids.iter().copied().filter(|id| (lo..=hi).contains(id));
            (ids.collect(), false)
        }
        None => ((lo..=hi).collect(), true),
    }
}

fn scan_one(
    btf: &Btf,
    module: Option<&str>,
    ids: Vec<u32>,
    count_funcs: bool,
    out: &mut Vec<Probe>,
    stats: &mut ScanStats,
) {
    let mut memo: HashMap<u32, Param> = HashMap::new();
    for id in ids {
        let Ok(ty) = btf.resolve_type_by_id(id) else {
            continue;
        };
        match &ty {
            Type::Func(f) => {
                stats.funcs += u64::from(count_funcs);
                let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(f) else {
                    continue;
                };
                if let Some(mut p) = probe_from_proto(btf, &proto, 0, &mut memo) {
                    let Ok(name) = btf.resolve_name(f) else {
                        continue;
                    };
                    stats.skb_funcs += 1;
                    p.name = name;
                    p.module = module.map(str::to_string);
                    p.kind = ProbeKind::Function;
                    p.btf_id = id;
                    out.push(p);
                }
            }
            Type::Typedef(t) => {
                // Tracepoints: typedef void (*btf_trace_<name>)(void *, args...);
                let Ok(name) = btf.resolve_name(t) else {
                    continue;
                };
                let Some(tp) = name.strip_prefix("btf_trace_") else {
                    continue;
                };
                let Ok(Type::Ptr(ptr)) = btf.resolve_chained_type(t) else {
                    continue;
                };
                let Ok(Type::FuncProto(proto)) = btf.resolve_chained_type(&ptr) else {
                    continue;
                };
                if proto.parameters.is_empty() {
                    continue;
                }
                if let Some(mut p) = probe_from_proto(btf, &proto, 1, &mut memo) {
                    stats.skb_tracepoints += 1;
                    p.name = tp.to_string();
                    p.module = module.map(str::to_string);
                    p.kind = ProbeKind::Tracepoint;
                    p.btf_id = id;
                    out.push(p);
                }
            }
            _ => {}
        }
    }
}

/// Build a probe from a prototype if it has an skb argument. `skip` leading
/// parameters are not counted (the tracepoint's `void *__data`).
fn probe_from_proto(
    btf: &Btf,
    proto: &btf_rs::FuncProto,
    skip: usize,
    memo: &mut HashMap<u32, Param>,
) -> Option<Probe> {
    let mut p = Probe::default();
    let mut nargs = 0u8;
    for param in proto.parameters.iter().skip(skip) {
        if param.is_variadic() {
            p.variadic = true;
            continue;
        }
        let pos = nargs;
        nargs = nargs.saturating_add(1);
        let tid = param.get_type_id().unwrap_or(0);
        let class = *memo.entry(tid).or_insert_with(|| classify(btf, tid));
        match class {
            Param::Skb => p.skb_positions.push(pos),
            Param::DropReason => {
                p.drop_reason_pos.get_or_insert(pos);
            }
            Param::ByVal => {
                p.byval = true;
                p.byval_before_skb |= p.skb_positions.is_empty();
            }
            Param::Other => {}
        }
    }
    if p.skb_positions.is_empty() {
        return None;
    }
    p.nargs = nargs;
    Some(p)
}

/// Strip typedef/const/volatile/restrict/type_tag.
fn strip(btf: &Btf, mut ty: Type) -> Option<Type> {
    for _ in 0..MAX_CHAIN {
        match &ty {
            Type::Typedef(_)
            | Type::Const(_)
            | Type::Volatile(_)
            | Type::Restrict(_)
            | Type::TypeTag(_) => {
                let bt = ty.as_btf_type()?;
                ty = btf.resolve_chained_type(bt).ok()?;
            }
            _ => return Some(ty),
        }
    }
    None
}

fn classify(btf: &Btf, tid: u32) -> Param {
    if tid == 0 {
        return Param::Other;
    }
    let Some(ty) = btf.resolve_type_by_id(tid).ok().and_then(|t| strip(btf, t)) else {
        return Param::Other;
    };
    match &ty {
        Type::Ptr(ptr) => {
            let target = btf
                .resolve_chained_type(ptr)
                .ok()
                .and_then(|t| strip(btf, t));
            match target {
                Some(Type::Struct(s)) if btf.resolve_name(&s).is_ok_and(|n| n == "sk_buff") => {
                    Param::Skb
                }
                _ => Param::Other,
            }
        }
        Type::Struct(_) | Type::Union(_) => Param::ByVal,
        Type::Enum(e) if btf.resolve_name(e).is_ok_and(|n| n == "skb_drop_reason") => {
            Param::DropReason
        }
        _ => Param::Other,
    }
}

/// Values of an enum by name (e.g. `skb_drop_reason`), for decoding.
pub fn enum_values(k: &KernelBtf, enum_name: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let Ok(types) = k.base.resolve_types_by_name(enum_name) else {
        return out;
    };
    for t in types {
        match t {
            Type::Enum(e) => {
                for m in &e.members {
                    if let Ok(n) = k.base.resolve_name(m) {
                        out.push((m.val() as u64, n));
                    }
                }
            }
            Type::Enum64(e) => {
                for m in &e.members {
                    if let Ok(n) = k.base.resolve_name(m) {
                        out.push((m.val(), n));
                    }
                }
            }
            _ => {}
        }
    }
    out
}
