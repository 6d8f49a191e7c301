//! ipft's generic programs as `per-hit` loads them: plain, with a tracking
//! or filter config, or with the shipped `len` extension
//! (extensions/len.bpf.c, three CO-RE reads into a 64-byte payload) linked
//! in, compiled with clang as `ipft -e` does.

use std::path::Path;

use ipft_runtime::filter::PcapFilter;
use ipft_runtime::flags::{ExtensionKind, ExtensionSource};

use super::*;

/// The generic object on `table` with `config`, and a pcap-filter
/// expression spliced in if given; every row attached.
pub(crate) fn generic(table: &[ProbeEntry], config: Config, pcap: Option<&str>) -> Result<Session> {
    let pcap = pcap
        .map(|e| PcapFilter::compile(e).map(|f| f.ebpf))
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let opts = load::LoadOptions {
        config: Config {
            pcap: u32::from(pcap.is_some()),
            ..config
        },
        ring_buffer_bytes: None,
        btf: None,
        pcap,
    };
    let session = Session::generic(ipft::GENERIC_OBJECT, table, opts, &mut |_| true)?;
    if session.attached.len() != table.len() {
        bail!(
            "ipft attached {} of {}: {:?}",
            session.attached.len(),
            table.len(),
            session.failed
        );
    }
    Ok(session)
}

/// Rows for ipft's generic object, skb in the first argument: as `ipft`
/// attaches them on this kernel (`ipft_gp0` linked to each tracepoint where
/// it has raw_tp cookies), or with `copies` as before Linux 6.10 (a loaded
/// `ipft_gt0` copy per tracepoint).
pub(crate) fn ipft_table(copies: bool) -> Vec<ProbeEntry> {
    let program = as_ipft(
        ProgramId::Generic {
            kind: TypedKind::Tracepoint,
            skb: 0,
            reason: None,
            end: false,
        },
        !copies,
    );
    TRACEPOINTS
        .iter()
        .map(|&tp| tracepoint(tp, 0, 1, program))
        .collect()
}

/// A tracepoint row as discovery makes it: with its `btf_trace_<name>` id,
/// which a generic program reloaded for it is aimed at (Linux 6.10+).
fn tracepoint(name: &'static str, skb_pos: u8, nargs: u8, program: ProgramId) -> ProbeEntry {
    ProbeEntry {
        btf_id: ipft_runtime::kernel::tracepoint_btf_id(name).unwrap_or(0),
        ..ProbeEntry::tracepoint(name, skb_pos, nargs, program)
    }
}

/// `table` and the journey-ending tracepoints, which take freed skbs out
/// of the live set (their programs are not among those timed).
pub(crate) fn with_releases(table: &[ProbeEntry]) -> Vec<ProbeEntry> {
    let raw = table.iter().any(|e| e.program.is_raw_tracepoint());
    let end = |reason| {
        let tp = ProgramId::Generic {
            kind: TypedKind::Tracepoint,
            skb: 0,
            reason,
            end: true,
        };
        as_ipft(tp, raw)
    };
    let mut t = table.to_vec();
    t.push(tracepoint("consume_skb", 0, 2, end(None)));
    t.push(tracepoint("kfree_skb", 0, 3, end(Some(2))));
    t
}

/// Compile, link and load the generic object with the `len` extension, on
/// the bench's tracepoints.
pub(crate) fn with_extension(config: Config, table: &[ProbeEntry]) -> Result<Session> {
    let src = ExtensionSource {
        path: Path::new(env!("CARGO_MANIFEST_DIR")).join("../extensions/len.bpf.c"),
        kind: ExtensionKind::C,
    };
    let ext = ipft::extension::load(&src).map_err(|e| anyhow!("{}", e.message()))?;
    let object = ipft_runtime::extension::link(ipft::GENERIC_OBJECT, &ext.object)
        .map_err(|e| anyhow!("linking {}: {e}", ext.name))?;
    let opts = load::LoadOptions {
        config: Config { ext: 1, ..config },
        ring_buffer_bytes: None,
        btf: None,
        pcap: None,
    };
    let session = Session::generic(&object, table, opts, &mut |_| true)?;
    if session.attached.len() != table.len() {
        bail!(
            "the extension's programs attached {} of {}: {:?}",
            session.attached.len(),
            table.len(),
            session.failed
        );
    }
    Ok(session)
}

/// A tp_btf program as `ipft` runs it on this kernel when `raw` is asked.
fn as_ipft(tp: ProgramId, raw: bool) -> ProgramId {
    match raw && ipft_runtime::kernel::raw_tracepoints() {
        true => ipft_abi::program::as_raw_tracepoint(tp),
        false => tp,
    }
}
