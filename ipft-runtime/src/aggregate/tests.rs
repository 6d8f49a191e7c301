//! Aggregator tests without clones (those are in family.rs).

use super::*;

fn ev(skb: u64, tstamp: u64) -> Event {
    Event {
        skb,
        tstamp,
        ..Default::default()
    }
}

fn collect(f: impl FnOnce(&mut dyn FnMut(Packet))) -> Vec<Packet> {
    let mut v = Vec::new();
    f(&mut |p| v.push(p));
    v
}

fn stamps(p: &Packet) -> Vec<u64> {
    p.events.iter().map(|e| e.tstamp).collect()
}

#[test]
fn free_ends_journey_and_reused_address_is_a_new_packet() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let out = collect(|out| {
        a.push(ev(0x1000, 1), false, out);
        a.push(ev(0x2000, 2), false, out);
        a.push(ev(0x1000, 3), true, out); // freed
        a.push(ev(0x1000, 4), false, out); // recycled memory
        a.push(ev(0x1000, 5), true, out);
        a.finish(out);
    });
    let got: Vec<_> = out.iter().map(|p| (p.id, p.skb, stamps(p))).collect();
    assert_eq!(
        got,
        [
            (1, 0x1000, vec![1, 3]),
            (3, 0x1000, vec![4, 5]),
            (2, 0x2000, vec![2]),
        ]
    );
    assert!(a.is_empty());
}

#[test]
fn slot_size_is_the_memory_budget() {
    assert_eq!(std::mem::size_of::<Slot>(), 72);
}

#[test]
fn single_free_event_is_a_packet() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let out = collect(|out| a.push(ev(0x1000, 1), true, out));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].id, out[0].events.len()), (1, 1));
    assert!(a.is_empty());
}

#[test]
fn idle_flush() {
    let mut a = Aggregator::new(AggregateConfig {
        idle: Duration::from_nanos(100),
        ..Default::default()
    });
    let out = collect(|out| {
        a.push(ev(0x1000, 10), false, out);
        a.push(ev(0x2000, 50), false, out);
        a.push(ev(0x1000, 60), false, out);
        a.flush_idle(150, out); // 0x2000 idle for exactly 100: kept
    });
    assert!(out.is_empty());
    let out = collect(|out| a.flush_idle(151, out));
    let got: Vec<_> = out.iter().map(|p| (p.id, stamps(p))).collect();
    assert_eq!(got, [(2, vec![50])]);
    let out = collect(|out| a.flush_idle(161, out));
    let got: Vec<_> = out.iter().map(|p| (p.id, stamps(p))).collect();
    assert_eq!(got, [(1, vec![10, 60])]);
    assert!(a.is_empty());
}

#[test]
fn max_packets_evicts_least_recently_active() {
    let mut a = Aggregator::new(AggregateConfig {
        max_packets: 2,
        ..Default::default()
    });
    let out = collect(|out| {
        a.push(ev(0x1000, 1), false, out);
        a.push(ev(0x2000, 2), false, out);
        a.push(ev(0x1000, 3), false, out); // 0x2000 is now the oldest
        a.push(ev(0x3000, 4), false, out);
    });
    assert_eq!(a.len(), 2);
    let got: Vec<_> = out.iter().map(|p| (p.id, p.skb)).collect();
    assert_eq!(got, [(2, 0x2000)]);
    let out = collect(|out| a.finish(out));
    let got: Vec<_> = out.iter().map(|p| (p.id, stamps(p))).collect();
    assert_eq!(got, [(1, vec![1, 3]), (3, vec![4])]);
}

#[test]
fn max_events_emits_truncated_chunks_with_same_id() {
    let mut a = Aggregator::new(AggregateConfig {
        max_events_per_packet: 3,
        ..Default::default()
    });
    let out = collect(|out| {
        for t in 1..=7 {
            a.push(ev(0x1000, t), t == 7, out);
        }
    });
    let got: Vec<_> = out.iter().map(|p| (p.id, p.truncated, stamps(p))).collect();
    assert_eq!(
        got,
        [
            (1, true, vec![1, 2, 3]),
            (1, true, vec![4, 5, 6]),
            (1, false, vec![7]),
        ]
    );
}

#[test]
fn events_sorted_by_timestamp_stably() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let e = |t, probe| Event {
        probe,
        ..ev(0x1000, t)
    };
    let evs = [e(30, 0), e(10, 1), e(20, 2), e(10, 3), e(5, 4)];
    let out = collect(|out| {
        for x in evs {
            a.push(x, false, out);
        }
        a.finish(out);
    });
    let got: Vec<_> = out[0].events.iter().map(|e| (e.tstamp, e.probe)).collect();
    assert_eq!(got, [(5, 4), (10, 1), (10, 3), (20, 2), (30, 0)]);
}

#[test]
fn ids_follow_first_events() {
    let mut a = Aggregator::new(AggregateConfig::default());
    let out = collect(|out| {
        for (i, skb) in [0x3000u64, 0x1000, 0x2000, 0x1000].into_iter().enumerate() {
            a.push(ev(skb, i as u64), false, out);
        }
        a.finish(out);
    });
    let mut got: Vec<_> = out.iter().map(|p| (p.skb, p.id)).collect();
    got.sort();
    assert_eq!(got, [(0x1000, 2), (0x2000, 3), (0x3000, 1)]);
}

/// Random operations against a simple model: the index and LRU must
/// agree with a HashMap of open journeys.
#[test]
fn matches_model_under_churn() {
    use std::collections::HashMap;
    let mut a = Aggregator::new(AggregateConfig {
        max_packets: 1000,
        max_events_per_packet: 1 << 20,
        idle: Duration::from_secs(1000),
    });
    let mut model: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut emitted = Vec::new();
    for t in 0..200_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Addresses collide in the top hash bits (same slab page).
        let skb = 0xffff_8880_0000_0000 + (x % 700) * 256;
        let free = x % 5 == 1;
        model.entry(skb).or_default().push(t);
        if free {
            let want = model.remove(&skb).unwrap();
            a.push(ev(skb, t), true, &mut |p| emitted.push(p));
            let p = emitted.pop().unwrap();
            assert_eq!((p.skb, stamps(&p)), (skb, want));
            assert!(emitted.is_empty());
        } else {
            a.push(ev(skb, t), false, &mut |p| emitted.push(p));
            assert!(emitted.is_empty());
        }
        assert_eq!(a.len(), model.len());
    }
    a.finish(&mut |p| emitted.push(p));
    let mut got: Vec<_> = emitted.iter().map(|p| (p.skb, stamps(p))).collect();
    let mut want: Vec<_> = model.into_iter().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
}
