//! `ipft-bench`: the numbers behind docs/benchmarks.md.
//!
//! - `pipeline`: user-space decode + aggregation throughput and peak RSS
//!   (no kernel involved).
//! - `per-hit`: in-kernel cost per tracepoint hit of ipft's generic tp_btf
//!   program against an ipftrace2-style program and an empty program, all
//!   attached at once to the same tracepoints and fed the same ping flood,
//!   timed by the kernel's own bpf_stats (run_time_ns / run_cnt).

use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use ipft_runtime::attach::{self as load, Session};
use ipft_runtime::{Config, ProbeEntry, ProgramId, TypedKind};

use libbpf_rs::query::{ProgInfoIter, ProgInfoQueryOptions};
use libbpf_rs::{
    Link, MapCore, MapFlags, MapHandle, Object, ObjectBuilder, PerfBufferBuilder, Program,
    RingBufferBuilder,
};

/// Empty and ipftrace2-style reference programs (bpf/ipftrace2_style.bpf.c).
static BENCH_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ipftrace2_style.bpf.o"));

/// The mark both tracers match on; `ping -m` takes it in decimal.
const MARK: u32 = 0xdead_beef;
/// The tracepoints every program is attached to.
const TRACEPOINTS: [&str; 2] = ["netif_receive_skb", "net_dev_queue"];

#[derive(Parser)]
#[command(
    name = "ipft-bench",
    version,
    about = "ipft benchmarks (see docs/benchmarks.md)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Decode + aggregation throughput and peak RSS, one core, no kernel.
    Pipeline {
        /// Events, each on a distinct skb (the aggregator's worst case).
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Runs; the median rate and the largest peak RSS are reported (a
        /// run is a fraction of a second, so one busy neighbour skews it).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Per-hit BPF cost: ipft vs ipftrace2-style vs empty, net of bpf_stats (root).
    PerHit {
        /// Deadline of each ping phase, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Pings per phase.
        #[arg(long, default_value_t = 20_000)]
        count: u32,
        /// Rounds of (non-matching, matching); medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
}

/// Append one line to a report (reports are printed after clean-up, and a
/// closed stdout must not abort it).
macro_rules! outln {
    ($out:expr) => {
        $out.push('\n')
    };
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

mod generated;
mod host;
mod per_hit;
mod pipeline;
mod sessions;
use per_hit::{median, per_hit, verdict};

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Pipeline { events, runs } => Ok(pipeline(events, runs.max(1))),
        Cmd::PerHit {
            seconds,
            count,
            rounds,
        } => per_hit(seconds, count, rounds.max(1)),
    };
    match r {
        Ok(report) => {
            let _ = std::io::Write::write_all(&mut std::io::stdout(), report.as_bytes());
        }
        Err(e) => {
            eprintln!("ipft-bench: {e:#}");
            std::process::exit(2);
        }
    }
}

fn pipeline(events: usize, runs: usize) -> String {
    let mut out = String::new();
    let results: Vec<_> = (0..runs)
        .map(|_| pipeline::bench_pipeline(events))
        .collect();
    let rate = median(results.iter().map(|r| r.events_per_sec).collect());
    let (lo, hi) = results
        .iter()
        .map(|r| r.events_per_sec)
        .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let peak = results.iter().map(|r| r.peak_rss_bytes).max().unwrap_or(0);
    let mib = peak as f64 / (1 << 20) as f64;
    outln!(
        out,
        "pipeline: {events} events on distinct skbs, one core: {:.2} M events/s \
         (median of {runs}, range {:.2}-{:.2}), peak RSS {mib:.1} MiB",
        rate / 1e6,
        lo / 1e6,
        hi / 1e6
    );
    outln!(
        out,
        "goals: >= 5 M events/s {}; < 100 MiB {}",
        verdict(rate >= 5e6),
        verdict(peak > 0 && mib < 100.0)
    );
    out
}
