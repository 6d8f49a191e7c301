//! Where a kprobe program finds its arguments, and what a kprobe.multi
//! cookie and the loader's markers carry: the layouts templates and loader
//! share.

use crate::table::{is_end_marker, ProbeEntry};

/// x86_64 passes the first six integer arguments in rdi, rsi, rdx, rcx, r8,
/// r9 and the rest on the stack, where a kprobe at the function's entry
/// reads them (the template's `ipft_kprobe_arg`).
pub const KPROBE_REG_ARGS: u8 = 6;
/// Highest skb position the kprobe programs cover (registers, then stack).
pub const KPROBE_MAX_SKB_POS: u8 = 11;

/// C expression for argument `pos` (0-based) in a kprobe program. Where an
/// argument lives is the template's one rule; with `pos` a constant the
/// compiler keeps only the register or stack read it names.
pub fn kprobe_arg(pos: u8) -> String {
    format!("ipft_kprobe_arg(ctx, {pos})")
}

/// The kprobe.multi program for an skb in argument 3..=[`KPROBE_MAX_SKB_POS`]
/// reads its position from the cookie (a helper call per hit): each program
/// is a link, ~0.11 s to attach and to release under the lab's emulator, so
/// only the first three registers (~95 % of skb functions, all hot ones)
/// get one each (docs/benchmarks.md). The journey-ending probe
/// (kfree_skbmem) runs this program too, told by [`COOKIE_END_SHIFT`]: one
/// link fewer, for a cookie lookup once per freed skb.
pub const MULTI_COOKIE_SKB: u8 = 3;

/// Where a kprobe.multi link's cookie carries a probe's shape, above the
/// probe index in its low 32 bits: the drop reason's position + 1 (0: none)
/// and the skb's position + 1: the reason (read on a match only) and a rare
/// skb position ([`MULTI_COOKIE_SKB`]) need no program (no link) of their own.
pub const COOKIE_REASON_SHIFT: u32 = 32;
/// See [`COOKIE_REASON_SHIFT`].
pub const COOKIE_SKB_SHIFT: u32 = 40;
/// The cookie bit of a journey-ending probe on the [`MULTI_COOKIE_SKB`]
/// program: it sees skbs whose mark is gone and frees their live entry.
pub const COOKIE_END_SHIFT: u32 = 48;

/// The cookie of table row `index` on its kprobe.multi link (a
/// journey-ending probe reports no reason).
pub fn kprobe_multi_cookie(index: usize, row: &ProbeEntry) -> u64 {
    let end = is_end_marker(&row.name, row.kind());
    let reason = match (end, row.shape.reason_pos) {
        (false, Some(r)) => u64::from(r) + 1,
        _ => 0,
    };
    (index as u64 & 0xffff_ffff)
        | reason << COOKIE_REASON_SHIFT
        | (u64::from(row.shape.skb_pos) + 1) << COOKIE_SKB_SHIFT
        | u64::from(end) << COOKIE_END_SHIFT
}

/// The table row whose [`kprobe_multi_cookie`] this is (what the programs
/// read as the probe index).
pub fn kprobe_multi_cookie_row(cookie: u64) -> usize {
    (cookie & 0xffff_ffff) as usize
}

/// The immediate a generic typed program loads as its probe index
/// (`"ipftprob"`): the loader writes each copy's index over it, so a hit
/// reads a constant instead of its link's cookie, a helper call.
pub const PROBE_MARKER: u64 = 0x626f_7270_7466_7069;

/// The immediate the pcap-filter stub loads first (`"ipftpcap"`): the
/// loader finds the stub by it and puts the compiled expression in its place.
pub const PCAP_MARKER: u64 = 0x7061_6370_7466_7069;

/// The C macros for how a program learns its probe (reading
/// [`kprobe_multi_cookie`] back, and [`PROBE_MARKER`]) and the
/// [`PCAP_MARKER`].
pub fn probe_macros() -> String {
    format!(
        "#define IPFT_COOKIE_REASON(c) (((c) >> {COOKIE_REASON_SHIFT}) & 0xff)\n\
         #define IPFT_COOKIE_SKB(c) (((c) >> {COOKIE_SKB_SHIFT}) & 0xff)\n\
         #define IPFT_COOKIE_END(c) (((c) >> {COOKIE_END_SHIFT}) & 1)\n\
         #define IPFT_PROBE_MARKER \"{PROBE_MARKER:#x}\"\n\
         #define IPFT_PCAP_MARKER \"{PCAP_MARKER:#x}\""
    )
}
