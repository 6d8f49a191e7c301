//! Kernel addresses to names, for --output-stack: every text symbol of
//! /proc/kallsyms (modules and JITed BPF programs included), sorted.

/// Sorted kernel text symbols.
#[derive(Debug, Default)]
pub struct Symbolizer {
    /// (address, name, module), by address.
    syms: Vec<(u64, String, Option<String>)>,
}

/// Leading frames that are the tracing machinery, not the kernel's path:
/// the BPF program, its trampoline and the probe or tracepoint glue.
const MACHINERY: &[&str] = &[
    "bpf_prog_",
    "bpf_trampoline_",
    "bpf_trace_run",
    "__bpf_trace_",
    "__traceiter_",
    "bpf_get_stack",
    "trace_call_bpf",
    "kprobe_",
    "__kprobe",
    "kprobe_multi_link_",
    "fprobe_",
    "ftrace_",
    "arch_ftrace_",
    "rethook_",
    "perf_trace_run_bpf_submit",
    "__bpf_prog_enter",
];

impl Symbolizer {
    /// Read /proc/kallsyms (root sees the addresses).
    pub fn running() -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/kallsyms")?))
    }

    /// From kallsyms text (`addr type name [module]`).
    pub fn parse(text: &str) -> Self {
        let mut syms: Vec<(u64, String, Option<String>)> = text
            .lines()
            .filter_map(super::symbols::kallsyms_text)
            .filter_map(|(addr, name, module)| {
                let addr = u64::from_str_radix(addr, 16).ok().filter(|&a| a != 0)?;
                Some((addr, name.to_string(), module.map(str::to_string)))
            })
            .collect();
        syms.sort_unstable_by_key(|s| s.0);
        Symbolizer { syms }
    }

    /// `name+0xoff` (and ` [module]`), or the address in hex.
    pub fn name(&self, ip: u64) -> String {
        let i = self.syms.partition_point(|s| s.0 <= ip);
        match i.checked_sub(1).map(|i| &self.syms[i]) {
            Some((addr, name, module)) => match module {
                Some(m) => format!("{name}+{:#x} [{m}]", ip - addr),
                None => format!("{name}+{:#x}", ip - addr),
            },
            None => format!("{ip:#x}"),
        }
    }

    /// The frames of a stack, named, with the tracing machinery at its top
    /// left out.
    pub fn frames(&self, ips: &[u64]) -> Vec<String> {
        let names: Vec<String> = ips.iter().map(|&ip| self.name(ip)).collect();
        let skip = names
            .iter()
            .take_while(|n| MACHINERY.iter().any(|m| n.starts_with(m)))
            .count();
        // All machinery (should not happen): show it rather than nothing.
        match skip == names.len() {
            true => names,
            false => names[skip..].to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KALLSYMS: &str = "\
ffffffff81000000 T _stext
ffffffff81100000 T ip_rcv
ffffffff81100200 t ip_rcv_finish
ffffffff81200000 D some_data
ffffffffc0000000 t bpf_prog_6deef7357e7b4530_ipft_tp [bpf]
ffffffffc0100000 t veth_xmit\t[veth]
";

    #[test]
    fn names_and_offsets() {
        let s = Symbolizer::parse(KALLSYMS);
        assert_eq!(s.name(0xffffffff81100010), "ip_rcv+0x10");
        assert_eq!(s.name(0xffffffff81100200), "ip_rcv_finish+0x0");
        assert_eq!(s.name(0xffffffffc0100004), "veth_xmit+0x4 [veth]");
        assert_eq!(s.name(0x1000), "0x1000");
    }

    #[test]
    fn machinery_on_top_is_left_out() {
        let s = Symbolizer::parse(KALLSYMS);
        let f = s.frames(&[0xffffffffc0000010, 0xffffffff81100210, 0xffffffff81100008]);
        assert_eq!(f, ["ip_rcv_finish+0x10", "ip_rcv+0x8"]);
        assert_eq!(s.frames(&[0xffffffffc0000010]).len(), 1);
    }
}
