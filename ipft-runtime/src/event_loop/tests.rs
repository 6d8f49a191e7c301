//! The pipeline without the kernel: journeys, payloads, --count, losses and
//! output errors.

use super::*;
use crate::output::testutil::{probe, Broken, Shared};
use clap::Parser;
use ipft_abi::{event_flags, ProbeKind};

fn cfg(extra: &[&str]) -> RunConfig {
    let mut argv = vec!["ipft", "-m", "1", "-o", "json"];
    argv.extend(extra);
    crate::flags::validate(&crate::flags::IpftArgs::parse_from(argv)).unwrap()
}

/// ip_rcv, kfree_skb_reason (drop, reason in argument 1), the kfree_skb
/// tracepoint, and a hidden kfree_skbmem: the release.
fn table() -> Vec<ProbeEntry> {
    let mut t = vec![
        probe("ip_rcv", None),
        probe("kfree_skb_reason", None),
        probe("kfree_skb", None),
        probe("kfree_skbmem", None),
    ];
    t[2].shape.kind = ProbeKind::Tracepoint;
    t[3].hidden = true;
    t
}

fn ev(skb: u64, probe: u32, tstamp: u64) -> Event {
    Event {
        skb,
        probe,
        tstamp,
        flags: if probe == 1 { event_flags::REASON } else { 0 },
        aux: 2,
        ..Default::default()
    }
}

fn json(out: &Shared) -> Box<dyn Sink> {
    Box::new(JsonSink::new(Box::new(out.clone())))
}

fn json_lines(out: &Shared) -> Vec<serde_json::Value> {
    out.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_drop_and_its_release_are_one_packet() {
    let (t, reasons, out) = (table(), HashMap::new(), Shared::default());
    let mut p = Pipeline::new(&cfg(&[]), &t, &[0, 1, 2, 3], &reasons, json(&out));
    p.push((0..4).map(|i| ev(0xa, i, u64::from(i))).collect());
    // The same address again: a new packet (skb memory is recycled).
    p.push(vec![ev(0xa, 0, 10), ev(0xa, 3, 11)]);
    assert_eq!(p.close().unwrap(), 2);
    let lines = json_lines(&out);
    let ids: Vec<u64> = lines
        .iter()
        .map(|l| l["packet_id"].as_u64().unwrap())
        .collect();
    // The hidden release is not printed; the drop and the tracepoint are.
    assert_eq!(ids, [1, 1, 1, 2]);
    assert_eq!(lines[1]["function"], "kfree_skb_reason");
}

/// A payload decoder reading one u32 (`len`) in hex.
fn len_spec() -> Box<dyn PayloadDecoder> {
    use crate::extension::{PayloadField, PayloadSpec};
    use ipft_abi::payload::Format;
    Box::new(PayloadSpec {
        name: "event".into(),
        fields: vec![PayloadField::scalar("len", 0, 4, Format::Hex)],
    })
}

/// Records carrying an extension's payload, decoded by [`len_spec`].
fn ext_details() -> Details {
    let sections = ipft_abi::Sections {
        ext: true,
        ..Default::default()
    };
    Details::new(sections, Some(len_spec()), None)
}

/// The tail of `e`'s ring-buffer record: payload `len`.
fn record(e: &mut Event, len: u32) -> Box<[u8]> {
    e.ext_len = ipft_abi::payload::PAYLOAD_LEN as u8;
    let mut data = [0u8; ipft_abi::payload::PAYLOAD_LEN];
    data[..4].copy_from_slice(&len.to_ne_bytes());
    data.into()
}

#[test]
fn payloads_reach_their_events_and_none_are_kept() {
    let (t, reasons, out) = (table(), HashMap::new(), Shared::default());
    let mut p = Pipeline::new(&cfg(&[]), &t, &[0, 1, 2, 3], &reasons, json(&out));
    p.with_details(ext_details());
    let mut evs: Vec<Event> = (0..4).map(|i| ev(0xa, i, u64::from(i))).collect();
    let recs: Vec<(Event, Box<[u8]>)> = evs
        .iter_mut()
        .enumerate()
        .map(|(i, e)| {
            let r = record(e, 0x100 + i as u32);
            (*e, r)
        })
        .collect();
    p.keep_tails(recs);
    p.push(evs);
    // The hidden release printed nothing, and its payload is gone too.
    assert_eq!(p.emitter.details.as_ref().unwrap().waiting(), 0);
    assert_eq!(p.close().unwrap(), 1);
    let exts: Vec<String> = json_lines(&out)
        .iter()
        .map(|l| l["ext"]["len"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(exts, ["0x100", "0x101", "0x102"]);
}

#[test]
fn text_appends_extension_fields() {
    let (t, reasons, out) = (table(), HashMap::new(), Shared::default());
    let sink = Box::new(TextSink::new(Box::new(out.clone())));
    let mut p = Pipeline::new(&cfg(&[]), &t, &[0, 3], &reasons, sink);
    p.with_details(ext_details());
    let (mut a, mut b) = (ev(0xb, 0, 1), ev(0xb, 3, 2));
    let recs = vec![(a, record(&mut a, 98)), (b, record(&mut b, 84))];
    p.keep_tails(recs);
    p.push(vec![a, b]);
    p.close().unwrap();
    assert!(
        out.text().contains("ip_rcv ( len: 0x62 )\n"),
        "{}",
        out.text()
    );
}

#[test]
fn count_stops_after_exactly_n_packets() {
    let (t, reasons, out) = (table(), HashMap::new(), Shared::default());
    let mut p = Pipeline::new(&cfg(&["--count", "1"]), &t, &[0, 3], &reasons, json(&out));
    p.push(
        (1..=3)
            .flat_map(|skb| [ev(skb, 0, skb), ev(skb, 3, skb + 1)])
            .collect(),
    );
    assert!(p.done());
    p.finish();
    assert_eq!(p.close().unwrap(), 1);
    assert_eq!(json_lines(&out).len(), 1);
}

#[test]
fn losses_go_into_the_output() {
    let (t, reasons, out) = (table(), HashMap::new(), Shared::default());
    let mut p = Pipeline::new(&cfg(&[]), &t, &[0], &reasons, json(&out));
    p.lost(&Losses {
        ring_buffer: 3,
        malformed: 1,
        ..Default::default()
    });
    p.close().unwrap();
    let l = &json_lines(&out)[0];
    assert_eq!(
        (l["lost_events"].as_u64(), l["ring_buffer"].as_u64()),
        (Some(4), Some(3))
    );
}

#[test]
fn a_failing_output_is_an_error() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
    }
    let (t, reasons) = (table(), HashMap::new());
    let mut p = Pipeline::new(
        &cfg(&[]),
        &t,
        &[0, 3],
        &reasons,
        Box::new(JsonSink::new(Box::new(Full))),
    );
    p.push(vec![ev(1, 0, 1), ev(1, 3, 2)]);
    assert!(p.close().is_err(), "a full disk is not a clean end");
    // A reader that went away is one.
    let mut p = Pipeline::new(
        &cfg(&[]),
        &t,
        &[0, 3],
        &reasons,
        Box::new(JsonSink::new(Box::new(Broken))),
    );
    p.push(vec![ev(1, 0, 1), ev(1, 3, 2)]);
    assert!(p.close().is_ok(), "a closed pipe is a normal end");
}
