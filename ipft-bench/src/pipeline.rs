//! Self-measurement for `ipft bench`: throughput and peak memory of decoding
//! and aggregating events, without the kernel.
//!
//! The workload is the aggregator's worst case: every event is on a distinct
//! skb and nothing is freed or idle, so `n_events` journeys are open at the
//! end (each lookup misses and inserts, the index and slots reach their
//! largest size). The realistic mix (about 10 events a packet, addresses
//! reused after free) is measured by `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ipft_abi::{Event, Layout};
use ipft_runtime::aggregate::{AggregateConfig, Aggregator, Packet};

/// What [`bench_pipeline`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    /// Events decoded and aggregated per second, emission of every packet at
    /// the end included.
    pub events_per_sec: f64,
    /// Peak resident memory of the process during the run (`VmHWM`, reset at
    /// the start where the kernel allows it), 0 if unknown.
    pub peak_rss_bytes: u64,
}

/// Events generated per batch: the encoded input is produced in batches
/// outside the timed sections so it does not inflate the resident set.
const BATCH: usize = 1 << 16;

/// Decode and aggregate `n_events` events on distinct skbs, holding them all
/// open, then emit them into a counting sink.
pub fn bench_pipeline(n_events: usize) -> BenchResult {
    reset_peak_rss();
    let mut agg = Aggregator::new(AggregateConfig {
        idle: Duration::MAX,
        max_events_per_packet: 512,
        max_packets: n_events.max(1),
    });
    let mut packets = 0u64;
    let mut count = |p: Packet| packets += black_box(p.events.len()) as u64;
    let size = std::mem::size_of::<Event>();
    let mut buf = Vec::with_capacity(BATCH * size);
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < n_events {
        let n = BATCH.min(n_events - done);
        buf.clear();
        for i in done..done + n {
            buf.extend_from_slice(&synthetic(i).to_bytes());
        }
        let start = Instant::now();
        for rec in buf.chunks_exact(size) {
            if let Some(ev) = Event::from_bytes(black_box(rec)) {
                agg.push(ev, false, &mut count);
            }
        }
        elapsed += start.elapsed();
        done += n;
    }
    let start = Instant::now();
    agg.finish(&mut count);
    elapsed += start.elapsed();
    debug_assert_eq!(packets, n_events as u64);
    BenchResult {
        events_per_sec: n_events as f64 / elapsed.as_secs_f64().max(1e-9),
        peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
    }
}

/// Event `i`: its own skb (slab-like 256-byte spacing), alternating CPUs.
fn synthetic(i: usize) -> Event {
    let i = i as u64;
    Event {
        skb: 0xffff_8880_0000_0000 + i * 256,
        tstamp: 1_000_000_000 + i * 50,
        aux: 0,
        probe: (i % 16) as u32,
        cpu: (i & 1) as u16,
        flags: 0,
        ext_len: 0,
    }
}

/// Reset `VmHWM` to the current RSS (Linux 4.0+); best effort, so that the
/// peak reflects this run rather than whatever the process did before.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` from /proc/self/status.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_reports_numbers() {
        let r = bench_pipeline(10_000);
        assert!(r.events_per_sec > 0.0);
        assert!(r.peak_rss_bytes > 0);
    }
}
