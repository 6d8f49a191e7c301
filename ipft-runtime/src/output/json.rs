//! `-o json`: JSON Lines, one object per event, packets in emission order
//! and events of a packet in timestamp order.
//!
//! ```json
//! {"packet_id":1,"skb":"0xffff888004b3c100","timestamp":1234567890123,"cpu":0,"module":null,"function":"ip_rcv","is_return":false}
//! {"packet_id":1,"skb":"0xffff888004b3c100","timestamp":1234567890456,"cpu":0,"module":null,"function":"kfree_skb_reason","is_return":false,"drop_reason":"NO_SOCKET"}
//! ```
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `packet_id` | number | 1, 2, 3... in order of the packets' first events; the events of one packet share it |
//! | `skb` | string | skb address, lowercase hex with `0x`; reused by later packets after a free |
//! | `clone_of` | string | only on the events of a clone or copy (`--track-skb`): the skb it was made from; `skb` is the clone's own address |
//! | `timestamp` | number | `bpf_ktime_get_ns()` (CLOCK_MONOTONIC, ns) |
//! | `cpu` | number | CPU of the hit |
//! | `module` | string or null | module of the function, `null` for vmlinux |
//! | `function` | string | function or tracepoint name (`probe#N` if the table has no entry N) |
//! | `is_return` | bool | hit at function return (`-t function_graph`) |
//! | `drop_reason` | string | only on events carrying a drop reason: its name, or the decimal value if unknown |
//! | `clone` | string | only on the event where the skb was cloned or copied (`--track-skb`): the new skb's address, whose events follow in this packet |
//! | `ext` | object | only with an extension (`-e`): its fields in its order; integers as numbers, hex, enum, flags, ip and string formats as strings |
//! | `len` | number | `--output-meta`: skb->len, bytes from skb->data |
//! | `ifname` | string or null | `--output-meta`: skb->dev's name, `null` without a device |
//! | `ifindex` | number | `--output-meta`: skb->dev's ifindex, 0 without a device |
//! | `netns` | number | `--output-meta`: inode of the device's network namespace, else the socket's; 0 if neither |
//! | `mark` | number | `--output-meta`: skb->mark |
//! | `protocol` | string | `--output-meta`: skb->protocol, `IPv4`, `IPv6`, `ARP`, `802.1Q`, `802.1ad`, `MPLS` or hex (`0x88cc`) |
//! | `tuple` | object | `--output-tuple`, where an IP header was found: `proto` (`tcp`, `udp`, `icmp`, `icmpv6`, `sctp`... or the number as a string), `saddr`, `daddr` (strings), `sport`, `dport` (numbers, 0 without ports) |
//! | `stack` | array of strings | `--output-stack`: the kernel stack, innermost first, `name+0xoff` or `name+0xoff [module]` |
//!
//! Keys appear in this order. A packet cut at the per-packet event limit
//! continues later with the same `packet_id`. Readers should ignore keys
//! they do not know; new ones may be added. The same schema is in
//! `docs/json.md`.

use std::io::{self, Write};

use serde::{Serialize, Serializer};

use super::{Named, Names, Out, Sink};
use crate::aggregate::Packet;
use crate::extension::ExtFields;
use crate::output::Losses;

/// JSON Lines writer; see the [module docs](self).
pub struct JsonSink {
    out: Out,
}

impl JsonSink {
    /// Write to `w` (buffered).
    pub fn new(w: Box<dyn Write>) -> Self {
        JsonSink { out: Out::new(w) }
    }
}

/// One line. Borrowed fields and `Display`-serialized ones: no allocation
/// per event.
#[derive(Serialize)]
struct Record<'a> {
    packet_id: u64,
    skb: Hex,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone_of: Option<Hex>,
    timestamp: u64,
    cpu: u16,
    module: Option<&'a str>,
    function: AsStr<Named<'a>>,
    is_return: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    drop_reason: Option<AsStr<Named<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clone: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ext: Option<Ext<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    len: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifindex: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mark: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tuple: Option<TupleJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stack: Option<&'a [String]>,
}

#[derive(Serialize)]
struct TupleJson {
    proto: String,
    saddr: AsStr<std::net::IpAddr>,
    daddr: AsStr<std::net::IpAddr>,
    sport: u16,
    dport: u16,
}

/// An extension's fields as one object, in the extension's order.
struct Ext<'a>(&'a ExtFields);

impl Serialize for Ext<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

struct Hex(u64);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// Serialize through `Display` as a JSON string (escaped by serde_json).
struct AsStr<T>(T);

impl<T: std::fmt::Display> Serialize for AsStr<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl Sink for JsonSink {
    fn packet(&mut self, p: &Packet, names: &Names) -> io::Result<()> {
        self.out.run(|w| {
            for (i, e) in p.events.iter().enumerate() {
                let d = p.details.get(i);
                let meta = d.and_then(|d| d.meta.as_ref());
                let rec = Record {
                    packet_id: p.id,
                    skb: Hex(e.skb),
                    clone_of: p.clone_of(e.skb).map(Hex),
                    timestamp: e.tstamp,
                    cpu: e.cpu,
                    module: names.module(e.probe),
                    function: AsStr(names.function(e.probe)),
                    is_return: e.is_return(),
                    drop_reason: e.drop_reason().map(|r| AsStr(names.reason(r))),
                    clone: e.clone_made().map(Hex),
                    ext: p.ext.get(i).filter(|f| !f.is_empty()).map(Ext),
                    len: meta.map(|m| m.len),
                    ifname: meta.map(|m| m.ifname.as_deref()),
                    ifindex: meta.map(|m| m.ifindex),
                    netns: meta.map(|m| m.netns),
                    mark: meta.map(|m| m.mark),
                    protocol: meta.map(|m| m.protocol_name()),
                    tuple: d.and_then(|d| d.tuple.as_ref()).map(|t| TupleJson {
                        proto: t.proto_name(),
                        saddr: AsStr(t.saddr),
                        daddr: AsStr(t.daddr),
                        sport: t.sport,
                        dport: t.dport,
                    }),
                    stack: d.filter(|d| !d.stack.is_empty()).map(|d| &d.stack[..]),
                };
                serde_json::to_writer(&mut *w, &rec)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        })
    }

    fn lost(&mut self, l: &Losses) -> io::Result<()> {
        #[derive(Serialize)]
        struct Lost<'a> {
            lost_events: u64,
            #[serde(flatten)]
            by_kind: &'a Losses,
        }
        self.out.run(|w| {
            serde_json::to_writer(
                &mut *w,
                &Lost {
                    lost_events: l.total(),
                    by_kind: l,
                },
            )?;
            w.write_all(b"\n")
        })
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn is_closed(&self) -> bool {
        self.out.closed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::{json, Value};

    use super::*;
    use crate::output::testutil::{probe, Broken, Shared};
    use ipft_abi::event_flags::{REASON as F_REASON, RETURN as F_RETURN};
    use ipft_abi::Event;

    #[test]
    fn lines_parse_back_and_escape_odd_names() {
        let probes = [
            probe("ip_rcv", None),
            probe("we\"ird\\name\n\u{1}", Some("veth")),
            probe("kfree_skb_reason", None),
        ];
        let reasons = HashMap::from([(5, "NO\"SOCKET".to_string())]);
        let names = Names {
            probes: &probes,
            drop_reasons: &reasons,
            graph: true,
        };
        let e = |probe, flags, aux| Event {
            skb: 0xffff_8880_0000_0100,
            tstamp: 10 + u64::from(probe),
            aux,
            probe,
            cpu: 3,
            flags,
            ext_len: 0,
        };
        let p = Packet {
            id: 7,
            skb: 0xffff_8880_0000_0100,
            events: vec![
                e(0, 0, 0),
                e(1, F_RETURN, 0),
                e(2, F_REASON, 5),
                e(2, F_REASON, 9),
            ],
            truncated: false,
            ext: Vec::new(),
            details: Vec::new(),
            clones: Vec::new(),
        };
        let buf = Shared::default();
        let mut sink = JsonSink::new(Box::new(buf.clone()));
        sink.packet(&p, &names).unwrap();
        sink.finish().unwrap();
        let text = buf.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let base = |ts, module: Value, function: &str, ret| {
            json!({"packet_id": 7, "skb": "0xffff888000000100", "timestamp": ts, "cpu": 3,
                   "module": module, "function": function, "is_return": ret})
        };
        let mut r1 = base(12, Value::Null, "kfree_skb_reason", false);
        r1["drop_reason"] = json!("NO\"SOCKET");
        let mut r2 = r1.clone();
        r2["drop_reason"] = json!("9");
        assert_eq!(
            lines,
            [
                base(10, Value::Null, "ip_rcv", false),
                base(11, json!("veth"), "we\"ird\\name\n\u{1}", true),
                r1,
                r2,
            ]
        );
        // Key order is part of the schema.
        assert!(text.starts_with(
            "{\"packet_id\":7,\"skb\":\"0xffff888000000100\",\"timestamp\":10,\"cpu\":3,\
             \"module\":null,\"function\":\"ip_rcv\",\"is_return\":false}\n"
        ));
        assert!(!text.lines().next().unwrap().contains("drop_reason"));
    }

    #[test]
    fn clones_keep_their_address_and_name_their_source() {
        let probes = [probe("skb_clone", None), probe("dev_queue_xmit", None)];
        let names = Names {
            probes: &probes,
            drop_reasons: &HashMap::new(),
            graph: false,
        };
        let e = |skb, probe, flags, aux| Event {
            skb,
            tstamp: 1,
            aux,
            probe,
            flags,
            ..Default::default()
        };
        let p = Packet {
            id: 3,
            skb: 0x100,
            events: vec![
                e(0x100, 0, ipft_abi::event_flags::CLONE, 0x200),
                e(0x200, 1, 0, 0),
                e(0x100, 1, 0, 0),
            ],
            truncated: false,
            ext: Vec::new(),
            details: Vec::new(),
            clones: vec![(0x200, 0x100)],
        };
        let buf = Shared::default();
        let mut sink = JsonSink::new(Box::new(buf.clone()));
        sink.packet(&p, &names).unwrap();
        sink.finish().unwrap();
        let lines: Vec<Value> = buf
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["clone"], json!("0x200"));
        assert!(lines[0].get("clone_of").is_none());
        assert_eq!(lines[1]["skb"], json!("0x200"));
        assert_eq!(lines[1]["clone_of"], json!("0x100"));
        assert!(lines[1].get("clone").is_none());
        assert_eq!(lines[2]["skb"], json!("0x100"));
        assert!(lines[2].get("clone_of").is_none());
        assert!(lines.iter().all(|l| l["packet_id"] == json!(3)));
    }

    #[test]
    fn broken_pipe_is_quiet() {
        let mut sink = JsonSink::new(Box::new(Broken));
        let names = Names {
            probes: &[],
            drop_reasons: &HashMap::new(),
            graph: false,
        };
        let p = Packet {
            id: 1,
            skb: 1,
            events: vec![Event::default(); 10_000],
            truncated: false,
            ext: Vec::new(),
            details: Vec::new(),
            clones: Vec::new(),
        };
        sink.packet(&p, &names).unwrap();
        assert!(sink.is_closed());
        sink.finish().unwrap();
    }
}
