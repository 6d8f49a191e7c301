//! Which functions the running kernel can attach by name.
//!
//! A function needs its exact name as a text symbol (inlined and
//! `.isra`/`.constprop` clones are not attachable by BTF name) and must not
//! be `notrace`. tracefs' available_filter_functions says exactly that, with
//! each function's module and one line per definition, in about a third of
//! /proc/kallsyms' lines (which also lists data and notrace symbols): under
//! an emulator reading kallsyms was the largest part of a start. kallsyms is
//! read only where the list is denied (sandboxed hosts), or for addresses.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

const FILTER_FUNCTIONS: &str = "/sys/kernel/tracing/available_filter_functions";

/// Symbols and features of the running kernel.
#[derive(Debug, Default)]
pub struct KernelSymbols {
    /// Attachable functions by name -> address (0 where read from the
    /// filter list). Names only: nothing reads a module or a count per
    /// name, and keeping them made the parse 2.5x slower natively.
    pub text: HashMap<Box<str>, u64>,
    /// Warning to print once (e.g. fell back to kallsyms).
    pub note: Option<String>,
}

impl KernelSymbols {
    /// The functions ftrace can attach (kallsyms where the list is denied).
    pub fn running() -> std::io::Result<Self> {
        match fs::read_to_string(FILTER_FUNCTIONS) {
            Ok(list) => Ok(Self::parse_filter_functions(&list)),
            Err(e) => {
                let mut s = Self::kallsyms()?;
                s.note = Some(format!(
                    "note: {} unreadable ({e}); using /proc/kallsyms for traceability",
                    Path::new(FILTER_FUNCTIONS).display()
                ));
                Ok(s)
            }
        }
    }

    /// Every text symbol of /proc/kallsyms, with its address.
    pub fn kallsyms() -> std::io::Result<Self> {
        Ok(Self::parse_kallsyms(&fs::read_to_string("/proc/kallsyms")?))
    }

    /// `name`'s address, as `-l` lists it: 0 where unknown (or hidden, or
    /// read from the filter list, which has none).
    pub fn address(&self, name: &str) -> u64 {
        self.text.get(name).copied().unwrap_or(0)
    }

    /// Parse kallsyms text (`addr type name [module]`), keeping text symbols.
    pub fn parse_kallsyms(text: &str) -> Self {
        let mut s = Self::sized(text.len() / 64);
        for (addr, name, _) in text.lines().filter_map(kallsyms_text) {
            s.add(name, u64::from_str_radix(addr, 16).unwrap_or(0));
        }
        s
    }

    /// Parse available_filter_functions (`name [module]`; kernels before
    /// 6.6 may also show records of freed init code, which attach nowhere).
    pub fn parse_filter_functions(text: &str) -> Self {
        // About 24 bytes a line.
        let mut s = Self::sized(text.len() / 24);
        for line in text.lines() {
            let name = line.split_once([' ', '\t']).map_or(line, |(n, _)| n);
            if !name.is_empty() && !name.starts_with("__ftrace_invalid_address__") {
                s.add(name, 0);
            }
        }
        s
    }

    fn sized(names: usize) -> Self {
        Self {
            text: HashMap::with_capacity(names),
            note: None,
        }
    }

    /// The first definition's address is kept (a name defined twice, as
    /// static functions in two files, attaches by name to neither alone).
    fn add(&mut self, name: &str, addr: u64) {
        if !self.text.contains_key(name) {
            self.text.insert(name.into(), addr);
        }
    }

    /// Whether the kernel can attach a function probe to `name` by name.
    pub fn attachable(&self, name: &str) -> bool {
        self.text.contains_key(name)
    }
}

/// A kallsyms line (`addr type name [module]`) as (address in hex, name,
/// module without its brackets), if it is a text symbol (type t or T).
pub(super) fn kallsyms_text(line: &str) -> Option<(&str, &str, Option<&str>)> {
    let mut it = line.split_whitespace();
    let (addr, ty, name) = (it.next()?, it.next()?, it.next()?);
    let module = it
        .next()
        .map(|m| m.trim_start_matches('[').trim_end_matches(']'));
    matches!(ty, "t" | "T").then_some((addr, name, module))
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
        assert!(s.attachable("veth_xmit"));
        assert_eq!(s.address("dup"), 0xffff0000);
        assert_eq!(s.address("ip_rcv"), 0xffffffff81000000);
    }

    #[test]
    fn filter_functions() {
        let s = KernelSymbols::parse_filter_functions(
            "ip_rcv\nveth_xmit [veth]\n__ftrace_invalid_address___64\nadd_grec\nadd_grec\n",
        );
        assert!(s.attachable("ip_rcv"));
        assert!(s.attachable("veth_xmit"));
        assert!(!s.attachable("__ftrace_invalid_address___64"));
        assert_eq!(s.text.len(), 3);
        assert_eq!(s.address("add_grec"), 0);
    }
}
