//! Stages 6 and 7 driven together: read the ring buffer, decide journey
//! ends, aggregate per packet, print, and account for every loss.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use ipft_abi::{Event, Layout, ProbeEntry};
use libbpf_rs::{MapCore, RingBufferBuilder};

use crate::aggregate::{Aggregator, Packet};
use crate::attach::{bpf_losses, stop_emitting, BpfLosses, Session};
use crate::flags::RunConfig;
use crate::journey::JourneyEnds;
use crate::output::{json::JsonSink, text::TextSink, Losses, Names, Sink};
use crate::say;
use crate::signals::Signals;

/// The loop could not run or its output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// The ring buffer could not be read.
    #[error("ring buffer: {0}")]
    RingBuffer(#[source] libbpf_rs::Error),
    /// The object has no ring buffer.
    #[error("ring buffer map missing from the object")]
    NoRingBuffer,
    /// --ready-file or --output-file could not be written.
    #[error("{what} {path}: {source}")]
    File {
        /// Which flag.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing the trace failed (a full disk, a closed file).
    #[error("writing output: {0}")]
    Output(#[source] std::io::Error),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Packets written.
    pub packets: u64,
    /// Events lost, all kinds together.
    pub lost: u64,
    /// Journeys cut short by --max-events or --max-packets, or at risk
    /// (their skb pushed out of the full live table).
    pub cut: u64,
}

/// The run's loss totals.
fn totals(b: BpfLosses, malformed: u64) -> Losses {
    Losses {
        ring_buffer: b.ring_buffer,
        stash: b.stash,
        recursion: b.recursion,
        kprobe: b.kprobe,
        malformed,
    }
}

/// Write what was lost since the last report into the trace and on stderr.
fn report_losses(pipe: &mut Pipeline<'_>, now: &Losses, reported: &mut Losses) {
    let new = now.since(reported);
    if new.total() > 0 {
        pipe.lost(&new);
        say!("ipft: {new}");
        *reported = *now;
    }
}

/// Where the trace goes. Opened before anything is attached, so an
/// unwritable path is bad input, but truncated only once tracing starts, so
/// a failed start never destroys an existing file (and removes one it made).
pub struct Output {
    file: Option<(std::fs::File, std::path::PathBuf, bool)>,
    started: bool,
}

impl Output {
    /// Open `--output-file` (without truncating), or stdout.
    pub fn prepare(cfg: &RunConfig) -> Result<Output, LoopError> {
        let file = match &cfg.output_file {
            None => None,
            Some(p) => {
                let existed = p.exists();
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .map_err(|source| LoopError::File {
                        what: "--output-file",
                        path: p.clone(),
                        source,
                    })?;
                Some((f, p.clone(), !existed))
            }
        };
        Ok(Output {
            file,
            started: false,
        })
    }

    fn start(mut self) -> Result<Box<dyn Write>, LoopError> {
        self.started = true;
        match self.file.take() {
            None => Ok(Box::new(std::io::stdout())),
            Some((f, path, _)) => {
                // Only a regular file is truncated (not /dev/null, a fifo...).
                let regular = f.metadata().is_ok_and(|m| m.is_file());
                if regular {
                    f.set_len(0).map_err(|source| LoopError::File {
                        what: "--output-file",
                        path,
                        source,
                    })?;
                }
                Ok(Box::new(f))
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some((_, path, true)) = &self.file {
            if !self.started {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Trace until a signal, --duration, --count, a closed reader or an output
/// error; then drain, detach, flush and report.
pub fn run(
    cfg: &RunConfig,
    signals: &Signals,
    output: Output,
    mut session: Session,
    table: &[ProbeEntry],
    drop_reasons: &HashMap<u64, String>,
) -> Result<Outcome, LoopError> {
    let out = output.start()?;
    if let Some(f) = &cfg.ready_file {
        std::fs::write(f, b"ready\n").map_err(|source| LoopError::File {
            what: "--ready-file",
            path: f.clone(),
            source,
        })?;
    }
    let sink: Box<dyn Sink> = match cfg.json {
        true => Box::new(JsonSink::new(out)),
        false => Box::new(TextSink::new(out)),
    };
    let mut attached = session.attached.clone();
    attached.sort_unstable();
    let mut pipe = Pipeline::new(cfg, table, &attached, drop_reasons, sink);
    let pending: RefCell<Vec<Event>> = RefCell::new(Vec::with_capacity(4096));
    let malformed = Cell::new(0u64);
    let deadline = cfg.duration.map(|d| Instant::now() + d);
    // Totals already written into the trace.
    let mut reported = Losses::default();
    let evicted: u64;
    let mut last_loss_check = Instant::now();
    {
        let events_map = session
            .main_object()
            .maps()
            .find(|m| m.name() == "ipft_events")
            .ok_or(LoopError::NoRingBuffer)?;
        let mut rb = RingBufferBuilder::new();
        rb.add(&events_map, |data: &[u8]| {
            match Event::from_bytes(data) {
                Some(e) => pending.borrow_mut().push(e),
                None => malformed.set(malformed.get() + 1),
            }
            0
        })
        .map_err(LoopError::RingBuffer)?;
        let rb = rb.build().map_err(LoopError::RingBuffer)?;
        loop {
            let done =
                signals.stopped() || deadline.is_some_and(|d| Instant::now() >= d) || pipe.done();
            if done {
                break;
            }
            let _ = rb.poll(Duration::from_millis(100));
            pipe.push(std::mem::take(&mut *pending.borrow_mut()));
            pipe.idle(monotonic_ns());
            if last_loss_check.elapsed() >= Duration::from_secs(1) {
                last_loss_check = Instant::now();
                let now = totals(bpf_losses(session.main_object()), malformed.get());
                report_losses(&mut pipe, &now, &mut reported);
            }
        }
        // Stop the programs, drain what is queued, read the counters, then
        // detach: nothing can vanish in between.
        if let Err(e) = stop_emitting(session.main_object()) {
            say!("ipft: warning: could not stop the programs before the last drain: {e}");
        }
        let _ = rb.consume();
        pipe.push(std::mem::take(&mut *pending.borrow_mut()));
        // Recursion and kprobe misses are read per program and link: once,
        // here, with the programs stopped and the links still there.
        let final_losses = session.losses();
        evicted = final_losses.live_evicted;
        let now = totals(final_losses, malformed.get());
        report_losses(&mut pipe, &now, &mut reported);
        let t_detach = Instant::now();
        session.detach_counting(&signals.releasing);
        if cfg.timings {
            say!("timing: detach {:.3}s", t_detach.elapsed().as_secs_f64());
        }
        pipe.finish();
    }
    let (splits, flushed) = pipe.splits();
    let packets = pipe.close().map_err(LoopError::Output)?;
    say!("Got {packets} traces");
    if reported.total() > 0 {
        say!("Lost {reported}");
    }
    if splits + flushed > 0 {
        say!(
            "Journeys cut: {splits} split at --max-events {}, {flushed} printed early at --max-packets {}",
            cfg.aggregate.max_events_per_packet,
            cfg.aggregate.max_packets
        );
    }
    if evicted > 0 {
        say!(
            "Journeys at risk: {evicted} traced skbs pushed out of the full live table \
             (each ends at its free only if still marked)"
        );
    }
    Ok(Outcome {
        packets,
        lost: reported.total(),
        cut: splits + flushed + evicted,
    })
}

/// The user-space half of tracing, without the kernel: events in (journey
/// ends, then per-packet aggregation), packets out to the sink until
/// --count is reached or the output fails.
pub struct Pipeline<'a> {
    ends: JourneyEnds,
    agg: Aggregator,
    emitter: Emitter,
    names: Names<'a>,
    sink: Box<dyn Sink>,
}

impl<'a> Pipeline<'a> {
    /// For the rows `attached` (sorted) of `table`.
    pub fn new(
        cfg: &RunConfig,
        table: &'a [ProbeEntry],
        attached: &[usize],
        drop_reasons: &'a HashMap<u64, String>,
        sink: Box<dyn Sink>,
    ) -> Self {
        Pipeline {
            ends: JourneyEnds::new(table, attached, cfg.graph),
            agg: Aggregator::new(cfg.aggregate),
            emitter: Emitter {
                hidden: table.iter().map(|e| e.hidden).collect(),
                count: cfg.count,
                packets: 0,
                error: None,
            },
            names: Names {
                probes: table,
                drop_reasons,
                graph: cfg.graph,
            },
            sink,
        }
    }

    /// A batch of events, in ring-buffer order.
    pub fn push(&mut self, batch: Vec<Event>) {
        let (em, sink, names) = (&mut self.emitter, &mut self.sink, &self.names);
        for e in batch {
            let last = self.ends.check(&e);
            self.agg.push(e, last, &mut |p| em.emit(p, sink, names));
        }
    }

    /// Print journeys idle since before `now_ns` (CLOCK_MONOTONIC).
    pub fn idle(&mut self, now_ns: u64) {
        let (em, sink, names) = (&mut self.emitter, &mut self.sink, &self.names);
        self.agg
            .flush_idle(now_ns, &mut |p| em.emit(p, sink, names));
    }

    /// Losses, written into the trace where they happened.
    pub fn lost(&mut self, l: &Losses) {
        if let Err(e) = self.sink.lost(l) {
            self.emitter.error.get_or_insert(e);
        }
    }

    /// Nothing more will be written: --count reached, the output failed or
    /// its reader went away.
    pub fn done(&self) -> bool {
        self.emitter.full() || self.emitter.error.is_some() || self.sink.is_closed()
    }

    /// Journeys split at --max-events, and printed early at --max-packets.
    pub fn splits(&self) -> (u64, u64) {
        (self.agg.splits, self.agg.evictions)
    }

    /// Print every journey still open (the trace is over).
    pub fn finish(&mut self) {
        let (em, sink, names) = (&mut self.emitter, &mut self.sink, &self.names);
        self.agg.finish(&mut |p| em.emit(p, sink, names));
    }

    /// Flush the output: packets written, or the first write error.
    pub fn close(mut self) -> std::io::Result<u64> {
        let flushed = self.sink.finish();
        match self.emitter.error.take() {
            Some(e) => Err(e),
            None => flushed.map(|()| self.emitter.packets),
        }
    }
}

/// Writes packets until --count is reached or the output fails.
struct Emitter {
    hidden: Vec<bool>,
    count: Option<u64>,
    packets: u64,
    error: Option<std::io::Error>,
}

impl Emitter {
    fn full(&self) -> bool {
        self.count.is_some_and(|c| self.packets >= c)
    }

    fn emit(&mut self, mut p: Packet, sink: &mut Box<dyn Sink>, names: &Names<'_>) {
        p.events
            .retain(|e| !self.hidden.get(e.probe as usize).copied().unwrap_or(false));
        if p.events.is_empty() || self.full() || self.error.is_some() {
            return;
        }
        match sink.packet(&p, names) {
            Ok(()) => self.packets += 1,
            Err(e) => self.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
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
}
