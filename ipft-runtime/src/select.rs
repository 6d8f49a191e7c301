//! Selection by name: the `-r` and `--module-regex` flags, the same for a
//! kernel's discovered probes and a tracer's compiled table.

use ipft_abi::{policy, Asked, Backend, KernelOffer, ProbeEntry, ProbeKind, Unreached};
use regex::Regex;

/// Selection on top of a profile: the `-r` and `--module-regex` flags.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Probe names must match this.
    pub regex: Option<Regex>,
    /// Module names must match this (`vmlinux` for the kernel image).
    pub module_regex: Option<Regex>,
}

impl Filter {
    /// From the `-r` and `--module-regex` flags; the error names the flag.
    pub fn from_flags(regex: Option<&str>, module_regex: Option<&str>) -> Result<Filter, String> {
        Ok(Filter {
            regex: regex.map(|r| compile_regex("-r", r)).transpose()?,
            module_regex: module_regex
                .map(|r| compile_regex("--module-regex", r))
                .transpose()?,
        })
    }

    /// Whether a probe (`module` `None` for vmlinux) passes the filter.
    pub fn keeps(&self, name: &str, module: Option<&str>) -> bool {
        let module = module.unwrap_or("vmlinux");
        self.regex.as_ref().is_none_or(|r| r.is_match(name))
            && self
                .module_regex
                .as_ref()
                .is_none_or(|r| r.is_match(module))
    }
}

/// Compile a user regex with a message naming the flag.
pub fn compile_regex(flag: &str, re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| {
        let first = e.to_string();
        let last = first.lines().last().unwrap_or("").trim().to_string();
        format!("invalid regex for {flag} '{re}': {last}")
    })
}

/// The rows of a compiled table to attach on this kernel: per probe, the
/// row of the backend the policy picks among those the table has.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Table rows, ascending.
    pub rows: Vec<usize>,
    /// Probes the selection kept but no backend can attach: (name, why).
    pub left_out: Vec<(String, String)>,
    /// Probes the name filter left out.
    pub filtered: usize,
}

/// One probe of a compiled table and the rows (one per backend) it has.
struct Group<'a> {
    first: &'a ProbeEntry,
    rows: Vec<usize>,
}

fn groups(table: &[ProbeEntry]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    // A hidden row (a clone function followed for --track-skb) is a probe
    // of its own beside a selected row of the same function.
    let mut at: std::collections::HashMap<(&str, Option<&str>, ProbeKind, bool), usize> =
        Default::default();
    for (i, e) in table.iter().enumerate() {
        let key = (e.name.as_ref(), e.module.as_deref(), e.kind(), e.hidden);
        match at.get(&key) {
            Some(&g) => out[g].rows.push(i),
            None => {
                at.insert(key, out.len());
                out.push(Group {
                    first: e,
                    rows: vec![i],
                });
            }
        }
    }
    out
}

/// The policy's verdict for each probe of `table` (first row, backend or
/// why not), for `-l` and for [`select`].
pub fn verdicts<'a>(
    table: &'a [ProbeEntry],
    attachable: &dyn Fn(&str) -> bool,
    offer: &KernelOffer,
    asked: Asked,
) -> Vec<(&'a ProbeEntry, Vec<usize>, Result<Backend, Unreached>)> {
    groups(table)
        .into_iter()
        .map(|g| {
            let offered: Vec<Backend> = g.rows.iter().map(|&i| table[i].backend).collect();
            let v = policy::choose(
                &g.first.shape,
                attachable(&g.first.name),
                &offered,
                offer,
                asked,
            );
            (g.first, g.rows, v)
        })
        .collect()
}

/// Choose the rows to attach. Hidden probes (journey ends) are kept
/// whatever the name filter says. `incompatible[row]`, where given, is why a
/// row does not fit the running kernel: such a probe is never attached.
pub fn select(
    table: &[ProbeEntry],
    filter: &Filter,
    attachable: &dyn Fn(&str) -> bool,
    offer: &KernelOffer,
    asked: Asked,
    incompatible: &[Option<String>],
) -> Selection {
    let mut sel = Selection::default();
    for (first, rows, verdict) in verdicts(table, attachable, offer, asked) {
        if !first.hidden && !filter.keeps(&first.name, first.module.as_deref()) {
            sel.filtered += 1;
            continue;
        }
        if let Some(Some(why)) = rows.first().and_then(|&i| incompatible.get(i)) {
            if !first.hidden {
                sel.left_out
                    .push((first.display_name(), format!("incompatible: {why}")));
            }
            continue;
        }
        match verdict {
            Ok(b) => sel
                .rows
                .extend(rows.iter().copied().filter(|&i| table[i].backend == b)),
            Err(why) if !first.hidden => sel.left_out.push((first.display_name(), why.to_string())),
            Err(_) => {}
        }
    }
    sel.rows.sort_unstable();
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_abi::{ProbeShape, ProgramId};
    use std::borrow::Cow;

    fn row(name: &'static str, backend: Backend, hidden: bool) -> ProbeEntry {
        let kind = match backend {
            Backend::TpBtf => ProbeKind::Tracepoint,
            _ => ProbeKind::Function,
        };
        ProbeEntry {
            name: Cow::Borrowed(name),
            module: None,
            shape: ProbeShape {
                kind,
                nargs: 1,
                ..Default::default()
            },
            backend,
            btf_id: 0,
            program: ProgramId::Kretprobe { multi: false },
            return_program: None,
            ends_journey: false,
            hidden,
        }
    }

    const K612: KernelOffer = KernelOffer {
        kprobe: true,
        kprobe_multi: true,
        fentry: true,
        fentry_max_args: 12,
    };

    fn table() -> Vec<ProbeEntry> {
        vec![
            row("ip_rcv", Backend::KprobeMulti, false),
            row("ip_rcv", Backend::Fentry, false),
            row("icmp_rcv", Backend::Fentry, false),
            row("net_dev_queue", Backend::TpBtf, false),
            row("kfree_skbmem", Backend::KprobeMulti, true),
        ]
    }

    #[test]
    fn one_row_per_probe_by_policy() {
        let all = |_: &str| true;
        let s = select(&table(), &Filter::default(), &all, &K612, Asked::Auto, &[]);
        assert_eq!(s.rows, [0, 2, 3, 4]);
        let s = select(
            &table(),
            &Filter::default(),
            &all,
            &K612,
            Asked::Only(Backend::Fentry),
            &[],
        );
        assert_eq!(s.rows, [1, 2, 3]);
        assert!(s.left_out.is_empty(), "hidden probes are not reported");
    }

    #[test]
    fn regex_selects_within_the_table_but_keeps_journey_ends() {
        let f = Filter::from_flags(Some("^icmp"), None).unwrap();
        let s = select(&table(), &f, &|_| true, &K612, Asked::Auto, &[]);
        assert_eq!(s.rows, [2, 4]);
        assert_eq!(s.filtered, 2);
    }

    #[test]
    fn incompatible_probes_are_never_attached() {
        let why = vec![
            None,
            None,
            Some("skb moved from argument 0 to 2".to_string()),
            None,
            None,
        ];
        let s = select(
            &table(),
            &Filter::default(),
            &|_| true,
            &K612,
            Asked::Auto,
            &why,
        );
        assert_eq!(s.rows, [0, 3, 4]);
        assert_eq!(s.left_out[0].0, "icmp_rcv");
        assert!(s.left_out[0].1.starts_with("incompatible: skb moved"));
    }

    #[test]
    fn unattachable_functions_are_left_out_with_why() {
        let s = select(
            &table(),
            &Filter::default(),
            &|n| n != "icmp_rcv",
            &K612,
            Asked::Auto,
            &[],
        );
        assert_eq!(s.rows, [0, 3, 4]);
        assert_eq!(s.left_out[0].0, "icmp_rcv");
        assert!(s.left_out[0].1.contains("not attachable"));
    }
}
