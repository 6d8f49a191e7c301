//! Decode + aggregate throughput on a realistic synthetic stream.
//!
//! 1M events: packets of 6-14 events (about 10), four packets in flight on
//! each of two CPUs with the CPUs' events interleaved, the last event of a
//! packet a free, and freed skb addresses handed out again LIFO like the
//! slab allocator does (so addresses are reused constantly). Criterion
//! reports the throughput in events/s.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipft_abi::{Event, Layout};
use ipft_runtime::aggregate::{AggregateConfig, Aggregator, Packet};

const EVENTS: usize = 1_000_000;
const CPUS: usize = 2;
const IN_FLIGHT: usize = 4;
/// Probe index of the freeing probe in this synthetic table.
const FREE_PROBE: u32 = 0;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An skb being processed: its address and events left.
struct InFlight {
    skb: u64,
    left: u32,
}

fn stream() -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut free_addrs: Vec<u64> = Vec::new();
    let mut next_addr = 0xffff_8880_0400_0000u64;
    let mut alloc = |free_addrs: &mut Vec<u64>| {
        free_addrs.pop().unwrap_or_else(|| {
            next_addr += 256;
            next_addr
        })
    };
    let mut cpus: Vec<Vec<InFlight>> = (0..CPUS).map(|_| Vec::new()).collect();
    let mut out = Vec::with_capacity(EVENTS * std::mem::size_of::<Event>());
    let mut tstamp = 1_000_000_000u64;
    for i in 0..EVENTS {
        let cpu = i % CPUS;
        let flight = &mut cpus[cpu];
        while flight.len() < IN_FLIGHT {
            let skb = alloc(&mut free_addrs);
            flight.push(InFlight {
                skb,
                left: 6 + (rng.next() % 9) as u32,
            });
        }
        let k = (rng.next() % IN_FLIGHT as u64) as usize;
        let f = &mut flight[k];
        f.left -= 1;
        let freed = f.left == 0;
        tstamp += 20 + rng.next() % 100;
        let ev = Event {
            skb: f.skb,
            tstamp,
            aux: 0,
            probe: if freed {
                FREE_PROBE
            } else {
                1 + (rng.next() % 50) as u32
            },
            cpu: cpu as u16,
            flags: 0,
            ext_len: 0,
        };
        out.extend_from_slice(&ev.to_bytes());
        if freed {
            free_addrs.push(flight.swap_remove(k).skb);
        }
    }
    out
}

fn run(bytes: &[u8]) -> u64 {
    let mut agg = Aggregator::new(AggregateConfig::default());
    let mut events = 0u64;
    let mut sink = |p: Packet| events += black_box(&p).events.len() as u64;
    for rec in bytes.chunks_exact(std::mem::size_of::<Event>()) {
        let ev = Event::from_bytes(rec).expect("whole record");
        agg.push(ev, ev.probe == FREE_PROBE, &mut sink);
    }
    agg.finish(&mut sink);
    events
}

fn pipeline(c: &mut Criterion) {
    let bytes = stream();
    assert_eq!(run(&bytes), EVENTS as u64);
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.sample_size(20);
    g.bench_function("decode+aggregate 1M events", |b| {
        b.iter(|| run(black_box(&bytes)))
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
