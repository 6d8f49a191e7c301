//! pcap-filter expressions (`ipft 'tcp and port 80'`, `ipft-gen --filter`).
//!
//! libpcap compiles the expression twice, with no capture: for Ethernet,
//! run from the mac header, and for raw IP, run from the network header.
//! The BPF side picks one per hit (templates/bpf/tracer.bpf.c.hbs,
//! `ipft_pcap_pkt`): the Ethernet program where the mac header is set and
//! precedes the network header, else the raw-IP one where the network
//! header is set, else the packet does not match. Loads read the skb's
//! linear data only.
//!
//! ```text
//!  libpcap   expr -> cBPF (Ethernet, raw IP)          compile()
//!  cbpf      cBPF -> checked operations
//!  c         operations -> C (ipft-gen, at generation time)
//!  ebpf      operations -> eBPF (ipft, at load time)
//!  splice    the eBPF in place of the template's stub, program reloaded
//! ```

pub mod c;
pub mod cbpf;
pub mod ebpf;
pub mod libpcap;
pub mod splice;

#[cfg(test)]
mod tests;

use cbpf::{Op, RawInsn};

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct PcapFilter {
    /// The expression, as given.
    pub expr: String,
    /// libpcap's program for Ethernet.
    pub raw_l2: Vec<RawInsn>,
    /// libpcap's program for raw IP.
    pub raw_l3: Vec<RawInsn>,
    /// `raw_l2`, decoded.
    pub l2: Vec<Op>,
    /// `raw_l3`, decoded.
    pub l3: Vec<Op>,
    /// Both as one eBPF function (see [`ebpf`]).
    pub ebpf: Vec<libbpf_rs::libbpf_sys::bpf_insn>,
}

/// Rejects everything: the raw-IP program of an expression only Ethernet
/// has (`ether host ...`), whose packets without a mac header never match.
const REJECT: RawInsn = RawInsn {
    code: 0x06,
    jt: 0,
    jf: 0,
    k: 0,
};

impl PcapFilter {
    /// Compile `expr`; the error is one line, libpcap's message.
    pub fn compile(expr: &str) -> Result<PcapFilter, String> {
        let bad = |e: String| format!("pcap filter '{expr}': {e}");
        let raw_l2 = libpcap::compile(expr, libpcap::LINKTYPE_ETHERNET).map_err(bad)?;
        let raw_l3 = libpcap::compile(expr, libpcap::LINKTYPE_RAW).unwrap_or_else(|_| vec![REJECT]);
        let l2 = cbpf::decode(&raw_l2).map_err(bad)?;
        let l3 = cbpf::decode(&raw_l3).map_err(bad)?;
        let ebpf = ebpf::translate(&l2, &l3).map_err(bad)?;
        Ok(PcapFilter {
            expr: expr.to_string(),
            raw_l2,
            raw_l3,
            l2,
            l3,
            ebpf,
        })
    }

    /// The C of `ipft-gen --filter` (see [`c::render`]).
    pub fn to_c(&self) -> String {
        c::render(self)
    }
}

/// The expression of the positional arguments, joined with spaces as
/// tcpdump does; `None` when there are none (or only blanks).
pub fn expression(words: &[String]) -> Option<String> {
    let e = words.join(" ");
    (!e.trim().is_empty()).then(|| e.trim().to_string())
}
