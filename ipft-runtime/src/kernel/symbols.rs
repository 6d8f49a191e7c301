//! Which functions the running kernel can attach by name.
//!
//! A function needs its exact name as a text symbol in /proc/kallsyms (inlined
//! and `.isra`/`.constprop` clones are not attachable by BTF name). Where
//! tracefs' available_filter_functions is readable it is used instead, since
//! it also drops `notrace` functions; on sandboxed hosts it is often denied.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
