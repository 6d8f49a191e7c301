//! What a record carries after its event header (ipft_abi::sections): an
//! extension's payload, --output-meta, --output-tuple, --output-stack and
//! --output-pcap's packet bytes. Events travel through the aggregator as
//! plain 32-byte headers; the rest of their records wait here, keyed by
//! the event, and are decoded once, when their packet is printed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipft_abi::sections::{Meta, Parts, Tuple};
use ipft_abi::{Event, Sections};

use crate::aggregate::Packet;
use crate::extension::PayloadDecoder;
use crate::kernel::Symbolizer;

/// The sections of one printed event, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventDetails {
    /// --output-meta.
    pub meta: Option<MetaView>,
    /// --output-tuple: `None` also where no IP header was found.
    pub tuple: Option<TupleView>,
    /// --output-stack: frames, innermost first, as `name+0xoff [module]`.
    pub stack: Vec<String>,
    /// --output-pcap: the packet bytes copied at this event.
    pub snap: Option<Snap>,
}

/// --output-meta of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaView {
    /// skb->len.
    pub len: u32,
    /// skb->dev's name; `None` without a device.
    pub ifname: Option<String>,
    /// skb->dev's ifindex (0 without a device).
    pub ifindex: u32,
    /// Network namespace inode (0: unknown).
    pub netns: u32,
    /// skb->mark.
    pub mark: u32,
    /// skb->protocol, host byte order (an EtherType).
    pub protocol: u16,
}

/// --output-tuple of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TupleView {
    /// IP protocol number.
    pub proto: u8,
    /// Source address.
    pub saddr: IpAddr,
    /// Destination address.
    pub daddr: IpAddr,
    /// Source port (0: none).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// Packet bytes copied at one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// From the mac header (Ethernet); else from the network header (raw IP).
    pub l2: bool,
    /// The packet's length from there, pages included.
    pub wirelen: u32,
    /// The bytes (at most --snaplen).
    pub bytes: Vec<u8>,
}

impl MetaView {
    fn new(m: &Meta) -> Self {
        let name = m.ifname.split(|&b| b == 0).next().unwrap_or_default();
        MetaView {
            len: m.len,
            ifname: (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned()),
            ifindex: m.ifindex,
            netns: m.netns,
            mark: m.mark,
            protocol: u16::from_be(m.protocol),
        }
    }

    /// skb->protocol as tcpdump names it, else `0x%04x`.
    pub fn protocol_name(&self) -> String {
        match self.protocol {
            0x0800 => "IPv4".into(),
            0x86dd => "IPv6".into(),
            0x0806 => "ARP".into(),
            0x8100 => "802.1Q".into(),
            0x88a8 => "802.1ad".into(),
            0x8847 => "MPLS".into(),
            p => format!("{p:#06x}"),
        }
    }
}

impl TupleView {
    fn new(t: &Tuple) -> Option<Self> {
        let addr = |a: &[u8; 16]| -> Option<IpAddr> {
            match t.family {
                4 => Some(Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()),
                6 => Some(Ipv6Addr::from(*a).into()),
                _ => None,
            }
        };
        Some(TupleView {
            proto: t.proto,
            saddr: addr(&t.saddr)?,
            daddr: addr(&t.daddr)?,
            sport: t.sport,
            dport: t.dport,
        })
    }

    /// The protocol's name (`tcp`, `udp`, `icmp`...), else its number.
    pub fn proto_name(&self) -> String {
        match self.proto {
            1 => "icmp".into(),
            2 => "igmp".into(),
            4 => "ipip".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            41 => "ipv6".into(),
            47 => "gre".into(),
            50 => "esp".into(),
            58 => "icmpv6".into(),
            132 => "sctp".into(),
            p => p.to_string(),
        }
    }
}

/// The identity of an event whose record tail waits for its packet.
type Key = (u64, u64, u32, u16, u8);

fn key(e: &Event) -> Key {
    (e.skb, e.tstamp, e.probe, e.cpu, e.flags)
}

/// Record tails of events not printed yet, and how to decode them.
pub struct Details {
    sections: Sections,
    decoder: Option<Box<dyn PayloadDecoder>>,
    symbols: Option<Symbolizer>,
    waiting: HashMap<Key, Box<[u8]>>,
}

impl Details {
    /// Records carry `sections`; `decoder` reads an extension's payload,
    /// `symbols` names stack frames.
    pub fn new(
        sections: Sections,
        decoder: Option<Box<dyn PayloadDecoder>>,
        symbols: Option<Symbolizer>,
    ) -> Self {
        Details {
            sections,
            decoder,
            symbols,
            waiting: HashMap::new(),
        }
    }

    /// Keep `tail`, the bytes of `e`'s record after its header.
    pub fn keep(&mut self, e: &Event, tail: Box<[u8]>) {
        self.waiting.insert(key(e), tail);
    }

    /// Forget the tails of `events` (not printed).
    pub fn drop_events(&mut self, events: &[Event]) {
        for e in events {
            self.waiting.remove(&key(e));
        }
    }

    /// Fill `p.ext` and `p.details` for `p.events`, forgetting their tails.
    pub fn fill(&mut self, p: &mut Packet) {
        let with_ext = self.sections.ext && self.decoder.is_some();
        // Sections beyond an extension's payload.
        let rest = Sections {
            ext: false,
            ..self.sections
        }
        .any();
        p.ext.clear();
        p.details.clear();
        for e in &p.events {
            let tail = self.waiting.remove(&key(e));
            let parts = tail
                .as_deref()
                .map(|t| self.sections.split(t))
                .unwrap_or_default();
            if with_ext {
                p.ext.push(match (parts.ext, &mut self.decoder) {
                    (Some(data), Some(d)) => d.decode(data),
                    _ => Vec::new(),
                });
            }
            if rest {
                p.details.push(self.decode(&parts));
            }
        }
    }

    fn decode(&self, parts: &Parts<'_>) -> EventDetails {
        let stack = match (&parts.stack, &self.symbols) {
            (Some(ips), Some(s)) => s.frames(ips),
            (Some(ips), None) => ips.iter().map(|ip| format!("{ip:#x}")).collect(),
            _ => Vec::new(),
        };
        EventDetails {
            meta: parts.meta.as_ref().map(MetaView::new),
            tuple: parts.tuple.as_ref().and_then(TupleView::new),
            stack,
            snap: parts.snap.map(|(h, bytes)| Snap {
                l2: h.l2 != 0,
                wirelen: h.wirelen,
                bytes: bytes.to_vec(),
            }),
        }
    }

    /// Tails still waiting (for tests and leak checks).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The trace is over (Lua's `fini()`).
    pub fn finish(&mut self) {
        if let Some(d) = &mut self.decoder {
            d.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_the_wire_sections() {
        let mut m = Meta {
            len: 98,
            ifindex: 4,
            netns: 7,
            mark: 0xbeef,
            protocol: 0x0800u16.to_be(),
            ..Meta::default()
        };
        m.ifname[..5].copy_from_slice(b"veth0");
        let v = MetaView::new(&m);
        assert_eq!(v.ifname.as_deref(), Some("veth0"));
        assert_eq!((v.protocol, v.protocol_name().as_str()), (0x0800, "IPv4"));
        assert_eq!(MetaView::new(&Meta::default()).ifname, None);
        assert_eq!(MetaView::new(&Meta::default()).protocol_name(), "0x0000");

        let mut t = Tuple {
            proto: 6,
            family: 4,
            sport: 40000,
            dport: 80,
            ..Tuple::default()
        };
        t.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        t.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let v = TupleView::new(&t).unwrap();
        assert_eq!(v.saddr.to_string(), "10.0.0.1");
        assert_eq!(
            (v.proto_name().as_str(), v.sport, v.dport),
            ("tcp", 40000, 80)
        );
        t.family = 6;
        t.saddr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(TupleView::new(&t).unwrap().saddr.to_string(), "::1");
        t.family = 0;
        assert_eq!(TupleView::new(&t), None);
    }
}
