//! What the user is told on stderr: the attach summary (ipftrace2's shape,
//! plus which backend each group of probes got and why others are out) and
//! the listing of a tracer's own probes.

use std::collections::BTreeMap;
use std::io::Write;

use ipft_abi::{Backend, ProbeEntry, ProbeKind};

use crate::attach::Session;

/// Print to stderr; a closed stderr is not worth dying for.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use ::std::io::Write as _;
        let _ = writeln!(::std::io::stderr(), $($t)*);
    }};
}

/// Names shown per reason unless `-v`.
const SHOWN: usize = 5;

/// Probes not attached, with why: (display name, reason).
pub type Skipped = Vec<(String, String)>;

/// The summary after attaching, ending in "Trace ready!".
pub fn summary(
    s: &Session,
    table: &[ProbeEntry],
    left_out: &Skipped,
    filtered: usize,
    notes: &[String],
    verbose: bool,
) {
    for n in notes {
        say!("{n}");
    }
    let visible = |i: &&usize| !table[**i].hidden;
    let mut per_backend: BTreeMap<Backend, usize> = BTreeMap::new();
    for i in s.attached.iter().filter(visible) {
        *per_backend.entry(table[*i].backend).or_default() += 1;
    }
    let backends: Vec<String> = per_backend
        .iter()
        .map(|(b, n)| format!("{b} {n}"))
        .collect();
    let attached = s.attached.iter().filter(visible).count();
    let clones = s
        .attached
        .iter()
        .filter(|&&i| table[i].follows_clones())
        .count();
    let hidden = s.attached.len() - attached - clones;
    let failed = s.failed.iter().filter(|(i, _)| !table[*i].hidden).count();
    say!(
        "Total {} probes, attached {} ({}), failed {}, left out {}, filtered {}{}",
        attached + failed + left_out.len(),
        attached,
        backends.join(", "),
        failed,
        left_out.len(),
        filtered,
        match (hidden, clones) {
            (0, 0) => String::new(),
            (h, 0) => format!(" (+{h} hidden probes ending journeys)"),
            (h, c) => format!(" (+{h} hidden probes ending journeys, {c} following clones)"),
        }
    );
    let left = left_out.iter().map(|(n, w)| (w.as_str(), n.clone()));
    for (why, names) in group(left, verbose) {
        say!("  left out ({why}): {names}");
    }
    let failed = s
        .failed
        .iter()
        .map(|(i, w)| (w.as_str(), table[*i].display_name()));
    for (why, names) in group(failed, verbose) {
        say!("  failed ({why}): {names}");
    }
    say!("Trace ready!");
}

/// Group (reason, name) pairs: "N a, b, c, d, e, ... (-v for all)" per
/// reason, sorted; every name with `all`.
fn group<'a>(pairs: impl Iterator<Item = (&'a str, String)>, all: bool) -> Vec<(&'a str, String)> {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (why, name) in pairs {
        groups.entry(why).or_default().push(name);
    }
    groups
        .into_iter()
        .map(|(why, names)| {
            let n = names.len();
            let shown = if all { n } else { n.min(SHOWN) };
            let more = if shown < n { ", ... (-v for all)" } else { "" };
            (why, format!("{n} {}{more}", names[..shown].join(", ")))
        })
        .collect()
}

/// How one probe of a tracer fares on this kernel, for `-l`.
pub struct Listed<'a> {
    /// The probe's first row.
    pub entry: &'a ProbeEntry,
    /// Kernel address (functions found in kallsyms), else 0.
    pub addr: u64,
    /// The backend it would attach with, or why none.
    pub verdict: Result<Backend, String>,
}

/// `-l` of a generated tracer: ipftrace2's columns plus how each probe
/// attaches here.
pub fn list(rows: &[Listed<'_>], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<48} {:<16} {:<18} {:<12} ATTACH",
        "NAME", "MODULE", "ADDR", "SKB_POSITION"
    )?;
    for r in rows {
        let e = r.entry;
        let name = match e.kind() {
            ProbeKind::Function => e.name.to_string(),
            ProbeKind::Tracepoint => format!("tp_btf:{}", e.name),
        };
        let verdict = match &r.verdict {
            Ok(b) => b.to_string(),
            Err(why) => format!("no: {why}"),
        };
        writeln!(
            out,
            "{:<48} {:<16} 0x{:016x} {:<12} {verdict}",
            name,
            e.module_or_vmlinux(),
            r.addr,
            e.shape.skb_pos + 1
        )?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_complete_with_verbose() {
        let pairs = || (0..7).map(|i| ("why", format!("f{i}")));
        let short = group(pairs(), false);
        assert_eq!(short[0].1, "7 f0, f1, f2, f3, f4, ... (-v for all)");
        let all = group(pairs(), true);
        assert_eq!(all[0].1, "7 f0, f1, f2, f3, f4, f5, f6");
    }
}
