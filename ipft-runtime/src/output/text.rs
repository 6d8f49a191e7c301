//! `-o aggregate`: one block per packet, ipftrace2 style.
//!
//! ```text
//! ===
//! Timestamp          CPU  Module          Function
//! 1234567890123      0    vmlinux         ip_rcv
//! 1234567890456      0    vmlinux         kfree_skb_reason reason=NO_SOCKET
//! ```
//!
//! With --track-skb, the event where a clone or copy is made ends in
//! `clone=0x...`, and the clone's own events in `skb=0x...` (its address).
//!
//! `--output-meta` adds `len=98 dev=veth0(4) netns=4026531840
//! mark=0xdeadbeef proto=IPv4`, `--output-tuple` `tcp 10.0.0.1:40000 >
//! 10.0.0.2:80` (IPv6 addresses in brackets), and `--output-stack` one line
//! per frame under the event, indented past the columns.
//!
//! Timestamps are raw `bpf_ktime_get_ns` values. With `-t function_graph`
//! the function column shows nesting: an entry whose return is in the same
//! packet opens a level (two spaces), its `return <name>` line closes it.
//! Entries without a matching return (tracepoints, kprobes, a return lost
//! or in another chunk) do not indent, so one missing return cannot shift
//! the rest of the packet.

use std::io::{self, Write};

use super::{Names, Out, Sink};
use crate::aggregate::Packet;
use crate::details::EventDetails;
use crate::output::Losses;
use ipft_abi::Event;

const HEADER: &str = "Timestamp          CPU  Module          Function";

/// Text writer; see the [module docs](self).
pub struct TextSink {
    out: Out,
    /// Scratch for graph nesting, reused across packets.
    depths: Vec<usize>,
    stack: Vec<(u32, usize)>,
}

impl TextSink {
    /// Write to `w` (buffered).
    pub fn new(w: Box<dyn Write>) -> Self {
        TextSink {
            out: Out::new(w),
            depths: Vec::new(),
            stack: Vec::new(),
        }
    }
}

impl Sink for TextSink {
    fn packet(&mut self, p: &Packet, names: &Names) -> io::Result<()> {
        if names.graph {
            graph_depths(&p.events, &mut self.depths, &mut self.stack);
        }
        let depths = &self.depths;
        self.out.run(|w| {
            writeln!(w, "===\n{HEADER}")?;
            for (i, e) in p.events.iter().enumerate() {
                let module = match names.probe(e.probe) {
                    Some(probe) => probe.module.as_deref().unwrap_or("vmlinux"),
                    None => "?",
                };
                write!(w, "{:<18} {:<4} {:<15} ", e.tstamp, e.cpu, module)?;
                if names.graph {
                    write!(w, "{:1$}", "", depths[i] * 2)?;
                }
                if e.is_return() {
                    w.write_all(b"return ")?;
                }
                write!(w, "{}", names.function(e.probe))?;
                if let Some(r) = e.drop_reason() {
                    write!(w, " reason={}", names.reason(r))?;
                }
                // --track-skb: where a clone is made, and the clone's events.
                if let Some(c) = e.clone_made() {
                    write!(w, " clone={c:#x}")?;
                }
                if p.clone_of(e.skb).is_some() {
                    write!(w, " skb={:#x}", e.skb)?;
                }
                // An extension's fields, as ipftrace2 prints them.
                if let Some(fields) = p.ext.get(i).filter(|f| !f.is_empty()) {
                    w.write_all(b" (")?;
                    for (k, v) in fields {
                        write!(w, " {k}: {v}")?;
                    }
                    w.write_all(b" )")?;
                }
                let details = p.details.get(i);
                if let Some(d) = details {
                    write_details(w, d)?;
                }
                w.write_all(b"\n")?;
                for frame in details.map_or(&[][..], |d| &d.stack[..]) {
                    writeln!(w, "{:42}{frame}", "")?;
                }
            }
            if p.truncated {
                writeln!(w, "... truncated: the packet continues in a later block")?;
            }
            Ok(())
        })
    }

    fn lost(&mut self, l: &Losses) -> io::Result<()> {
        self.out.run(|w| writeln!(w, "=== {l}"))
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn is_closed(&self) -> bool {
        self.out.closed
    }
}

/// --output-meta and --output-tuple of one event, on its line.
fn write_details(w: &mut dyn Write, d: &EventDetails) -> io::Result<()> {
    if let Some(m) = &d.meta {
        write!(w, " len={}", m.len)?;
        match &m.ifname {
            Some(n) => write!(w, " dev={n}({})", m.ifindex)?,
            None => w.write_all(b" dev=-")?,
        }
        write!(
            w,
            " netns={} mark={:#x} proto={}",
            m.netns,
            m.mark,
            m.protocol_name()
        )?;
    }
    if let Some(t) = &d.tuple {
        let end = |a: &std::net::IpAddr, port: u16| match (a, port) {
            (_, 0) => a.to_string(),
            (std::net::IpAddr::V6(_), p) => format!("[{a}]:{p}"),
            (_, p) => format!("{a}:{p}"),
        };
        let has_ports = t.sport != 0 || t.dport != 0;
        let (s, d) = match has_ports {
            true => (end(&t.saddr, t.sport), end(&t.daddr, t.dport)),
            false => (t.saddr.to_string(), t.daddr.to_string()),
        };
        write!(w, " {} {s} > {d}", t.proto_name())?;
    }
    Ok(())
}

/// Nesting depth of each event. A return closes the innermost open entry of
/// the same probe; entries left open inside it never returned (in this
/// packet) and are leaves.
fn graph_depths(events: &[Event], depths: &mut Vec<usize>, stack: &mut Vec<(u32, usize)>) {
    // First pass: mark matched pairs (1 = opens a level, 2 = closes one).
    depths.clear();
    depths.resize(events.len(), 0);
    stack.clear();
    for (i, e) in events.iter().enumerate() {
        if !e.is_return() {
            stack.push((e.probe, i));
        } else if let Some(k) = stack.iter().rposition(|&(p, _)| p == e.probe) {
            depths[stack[k].1] = 1;
            depths[i] = 2;
            stack.truncate(k);
        }
    }
    // Second pass: turn marks into depths.
    let mut depth = 0;
    for d in depths.iter_mut() {
        let mark = *d;
        if mark == 2 {
            depth -= 1;
        }
        *d = depth;
        if mark == 1 {
            depth += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::output::testutil::{probe, Broken, Shared};
    use ipft_abi::event_flags::{REASON as F_REASON, RETURN as F_RETURN};

    fn ev(probe: u32, tstamp: u64, flags: u8, aux: u64) -> Event {
        Event {
            skb: 0x1000,
            tstamp,
            aux,
            probe,
            cpu: 1,
            flags,
            ext_len: 0,
        }
    }

    fn render(events: Vec<Event>, graph: bool, truncated: bool) -> String {
        render_with(events, Vec::new(), graph, truncated)
    }

    fn render_with(
        events: Vec<Event>,
        details: Vec<EventDetails>,
        graph: bool,
        truncated: bool,
    ) -> String {
        let probes = [
            probe("ip_rcv", None),
            probe("ip_rcv_core", None),
            probe("veth_xmit", Some("veth")),
            probe("kfree_skb_reason", None),
            probe("net_dev_queue", None),
        ];
        let reasons = HashMap::from([(2, "NOT_SPECIFIED".to_string())]);
        let names = Names {
            probes: &probes,
            drop_reasons: &reasons,
            graph,
        };
        let buf = Shared::default();
        let mut sink = TextSink::new(Box::new(buf.clone()));
        let p = Packet {
            id: 1,
            skb: 0x1000,
            events,
            truncated,
            ext: Vec::new(),
            details,
            clones: Vec::new(),
        };
        sink.packet(&p, &names).unwrap();
        sink.finish().unwrap();
        buf.text()
    }

    #[test]
    fn meta_and_tuple_on_the_line_stack_below() {
        use crate::details::{MetaView, TupleView};
        let meta = MetaView {
            len: 98,
            ifname: Some("veth0".into()),
            ifindex: 4,
            netns: 7,
            mark: 0xbeef,
            protocol: 0x86dd,
        };
        let tuple = TupleView {
            proto: 17,
            saddr: "fd00::1".parse().unwrap(),
            daddr: "fd00::2".parse().unwrap(),
            sport: 53,
            dport: 5353,
        };
        let details = vec![
            EventDetails {
                meta: Some(meta.clone()),
                tuple: Some(tuple),
                stack: vec!["ip_rcv+0x4".into(), "__netif_receive_skb+0x20".into()],
                snap: None,
            },
            EventDetails {
                meta: Some(MetaView {
                    ifname: None,
                    ..meta
                }),
                ..EventDetails::default()
            },
        ];
        let text = render_with(
            vec![ev(0, 100, 0, 0), ev(1, 200, 0, 0)],
            details,
            false,
            false,
        );
        let lines: Vec<&str> = text.lines().skip(2).collect();
        assert!(lines[0].ends_with(
            "ip_rcv len=98 dev=veth0(4) netns=7 mark=0xbeef proto=IPv6 udp [fd00::1]:53 > [fd00::2]:5353"
        ), "{text}");
        assert_eq!(lines[1], format!("{:42}ip_rcv+0x4", ""));
        assert_eq!(lines[2], format!("{:42}__netif_receive_skb+0x20", ""));
        assert!(
            lines[3].ends_with("ip_rcv_core len=98 dev=- netns=7 mark=0xbeef proto=IPv6"),
            "{text}"
        );
        assert_eq!(lines.len(), 4);
    }

    #[test]
    fn columns_modules_and_reasons() {
        let text = render(
            vec![
                ev(0, 100, 0, 0),
                ev(2, 200, 0, 0),
                ev(3, 300, F_REASON, 2),
                ev(3, 301, F_REASON, 77),
                ev(9, 400, 0, 0),
            ],
            false,
            true,
        );
        let want = "\
===
Timestamp          CPU  Module          Function
100                1    vmlinux         ip_rcv
200                1    veth            veth_xmit
300                1    vmlinux         kfree_skb_reason reason=NOT_SPECIFIED
301                1    vmlinux         kfree_skb_reason reason=77
400                1    ?               probe#9
... truncated: the packet continues in a later block
";
        assert_eq!(text, want);
    }

    #[test]
    fn graph_indentation() {
        let text = render(
            vec![
                ev(0, 1, 0, 0),        // ip_rcv
                ev(1, 2, 0, 0),        //   ip_rcv_core
                ev(4, 3, 0, 0),        //     tracepoint: no return, no level
                ev(1, 4, F_RETURN, 0), //   return ip_rcv_core
                ev(2, 5, 0, 0),        //   veth_xmit (return lost: leaf)
                ev(0, 6, F_RETURN, 0), // return ip_rcv
                ev(3, 7, F_RETURN, 0), // return without entry
            ],
            true,
            false,
        );
        let functions: Vec<&str> = text.lines().skip(2).map(|l| &l[40..]).collect();
        assert_eq!(
            functions,
            [
                "ip_rcv",
                "  ip_rcv_core",
                "    net_dev_queue",
                "  return ip_rcv_core",
                "  veth_xmit",
                "return ip_rcv",
                "return kfree_skb_reason",
            ]
        );
    }

    #[test]
    fn broken_pipe_is_quiet() {
        let mut sink = TextSink::new(Box::new(Broken));
        let names = Names {
            probes: &[],
            drop_reasons: &HashMap::new(),
            graph: false,
        };
        let p = Packet {
            id: 1,
            skb: 1,
            events: vec![ev(0, 1, 0, 0); 10_000],
            truncated: false,
            ext: Vec::new(),
            details: Vec::new(),
            clones: Vec::new(),
        };
        sink.packet(&p, &names).unwrap();
        assert!(sink.is_closed());
        sink.packet(&p, &names).unwrap();
        sink.finish().unwrap();
    }
}
