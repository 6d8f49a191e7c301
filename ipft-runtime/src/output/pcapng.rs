//! `--output-pcap FILE`: a pcapng file beside the trace, one Enhanced
//! Packet Block per packet (per chunk of one cut at --max-events).
//!
//! The record holds the bytes copied at the packet's first event where the
//! skb had a header (up to --snaplen): from the mac header on interface 0
//! (Ethernet), else from the network header on interface 1 (raw IP). A
//! packet never seen with a header gets an empty record on interface 1, so
//! every journey is in the file. The journey is the record's comment, one
//! line per event, timed from the first:
//!
//! ```text
//! ipft packet 1: skb 0xffff8880069d6e00, 9 events, bytes from ip_output
//!       0.000us  ip_local_out
//!       2.911us  ip_output
//!      41.702us  kfree_skb reason=NO_SOCKET
//! ```
//!
//! Timestamps are the chosen event's, moved from CLOCK_MONOTONIC (the BPF
//! clock) to the wall clock with the offset read when the file is opened.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use super::Names;
use crate::aggregate::Packet;

/// Interface ids of the two link types.
const ETHERNET: u32 = 0;
const RAW_IP: u32 = 1;

/// The pcapng writer; see the [module docs](self).
pub struct PcapSink {
    w: PcapNgWriter<BufWriter<File>>,
    /// Wall clock minus CLOCK_MONOTONIC, in ns.
    offset: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    match e {
        pcap_file::PcapError::IoError(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

impl PcapSink {
    /// Create `path` and write its section and interface blocks.
    pub fn create(path: &Path, snaplen: u32) -> io::Result<Self> {
        let file = BufWriter::new(File::create(path)?);
        let mut w = PcapNgWriter::new(file).map_err(pcap_err)?;
        for (linktype, name) in [
            (DataLink::ETHERNET, "ipft: from the mac header"),
            (DataLink::RAW, "ipft: from the network header"),
        ] {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype,
                snaplen,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    // Nanoseconds, as the events are stamped.
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            })
            .map_err(pcap_err)?;
        }
        Ok(PcapSink {
            w,
            offset: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_MONOTONIC),
        })
    }

    /// One record for `p`, whose `details` hold the copied bytes.
    pub fn packet(&mut self, p: &Packet, names: &Names) -> io::Result<()> {
        let Some(first) = p.events.first() else {
            return Ok(());
        };
        let at = p
            .details
            .iter()
            .position(|d| d.snap.as_ref().is_some_and(|s| !s.bytes.is_empty()));
        let (interface, data, wirelen, tstamp) =
            match at.and_then(|i| Some((i, p.details[i].snap.as_ref()?))) {
                Some((i, s)) => (
                    if s.l2 { ETHERNET } else { RAW_IP },
                    &s.bytes[..],
                    s.wirelen.max(s.bytes.len() as u32),
                    p.events[i].tstamp,
                ),
                None => (RAW_IP, &[][..], 0, first.tstamp),
            };
        let wall = (i128::from(tstamp) + self.offset).max(0);
        let block = EnhancedPacketBlock {
            interface_id: interface,
            timestamp: Duration::from_nanos(wall.min(u64::MAX as i128) as u64),
            original_len: wirelen,
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment(
                p, names, at,
            )))],
        };
        self.w.write_pcapng_block(block).map_err(pcap_err)?;
        Ok(())
    }

    /// Flush the file.
    pub fn finish(&mut self) -> io::Result<()> {
        io::Write::flush(self.w.get_mut())
    }
}

/// The journey as text: a title line, then one line per event.
fn comment(p: &Packet, names: &Names, bytes_at: Option<usize>) -> String {
    let t0 = p.events.first().map_or(0, |e| e.tstamp);
    let mut s = format!(
        "ipft packet {}: skb {:#x}, {} events, ",
        p.id,
        p.skb,
        p.events.len()
    );
    match bytes_at {
        Some(i) => {
            let _ = write!(s, "bytes from {}", names.function(p.events[i].probe));
        }
        None => s.push_str("no headers seen"),
    }
    if p.truncated {
        s.push_str(" (continued in a later record)");
    }
    for e in &p.events {
        let us = e.tstamp.saturating_sub(t0) as f64 / 1000.0;
        let _ = write!(s, "\n{us:>12.3}us  ");
        if e.is_return() {
            s.push_str("return ");
        }
        let _ = write!(s, "{}", names.function(e.probe));
        if let Some(m) = names.module(e.probe) {
            let _ = write!(s, " [{m}]");
        }
        if let Some(r) = e.drop_reason() {
            let _ = write!(s, " reason={}", names.reason(r));
        }
        if let Some(c) = e.clone_made() {
            let _ = write!(s, " clone={c:#x}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::details::{EventDetails, Snap};
    use crate::output::testutil::probe;
    use ipft_abi::Event;
    use pcap_file::pcapng::{Block, PcapNgReader};

    fn ev(probe: u32, tstamp: u64) -> Event {
        Event {
            skb: 0x1000,
            tstamp,
            probe,
            ..Event::default()
        }
    }

    #[test]
    fn one_record_per_packet_with_its_journey() {
        let probes = [probe("ip_output", None), probe("veth_xmit", Some("veth"))];
        let reasons = HashMap::new();
        let names = Names {
            probes: &probes,
            drop_reasons: &reasons,
            graph: false,
        };
        let path = std::env::temp_dir().join(format!("ipft-unit-{}.pcapng", std::process::id()));
        let mut w = PcapSink::create(&path, 64).unwrap();
        let snap = |l2, bytes: &[u8]| EventDetails {
            snap: Some(Snap {
                l2,
                wirelen: 84,
                bytes: bytes.to_vec(),
            }),
            ..EventDetails::default()
        };
        let packet = |id, details| Packet {
            id,
            skb: 0x1000,
            events: vec![ev(0, 1_000), ev(1, 3_500)],
            truncated: false,
            ext: Vec::new(),
            details,
            clones: Vec::new(),
        };
        // Bytes from the second event (the first had no header); then a
        // packet never seen with a header.
        w.packet(
            &packet(1, vec![snap(false, &[]), snap(true, &[0x45, 0])]),
            &names,
        )
        .unwrap();
        w.packet(&packet(2, vec![snap(false, &[]), snap(false, &[])]), &names)
            .unwrap();
        w.finish().unwrap();
        drop(w);
        let mut r = PcapNgReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut records = Vec::new();
        while let Some(b) = r.next_block() {
            if let Block::EnhancedPacket(p) = b.unwrap() {
                let comment = p.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                    _ => None,
                });
                records.push((
                    p.interface_id,
                    p.data.to_vec(),
                    p.original_len,
                    comment.unwrap(),
                ));
            }
        }
        let _ = std::fs::remove_file(&path);
        assert_eq!(records.len(), 2);
        assert_eq!(r.interfaces().len(), 2);
        assert_eq!(
            (records[0].0, &records[0].1[..], records[0].2),
            (ETHERNET, &[0x45, 0][..], 84)
        );
        assert_eq!(
            records[0].3,
            "ipft packet 1: skb 0x1000, 2 events, bytes from veth_xmit\n       0.000us  ip_output\n       2.500us  veth_xmit [veth]"
        );
        assert_eq!((records[1].0, records[1].1.len()), (RAW_IP, 0));
        assert!(records[1]
            .3
            .starts_with("ipft packet 2: skb 0x1000, 2 events, no headers seen\n"));
    }
}
