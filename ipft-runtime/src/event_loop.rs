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
use crate::details::Details;
use crate::extension::PayloadDecoder;
use crate::flags::RunConfig;
use crate::journey::JourneyEnds;
use crate::kernel::Symbolizer;
use crate::output::{json::JsonSink, text::TextSink, Losses, Names, PcapSink, Sink};
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

/// How often the reader drains the ring buffer when nothing wakes it.
pub const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Trace until a signal, --duration, --count, a closed reader or an output
/// error; then drain, detach, flush and report.
pub fn run(
    cfg: &RunConfig,
    signals: &Signals,
    output: Output,
    mut session: Session,
    table: &[ProbeEntry],
    drop_reasons: &HashMap<u64, String>,
    decoder: Option<Box<dyn PayloadDecoder>>,
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
    let sections = cfg.sections(decoder.is_some());
    let with_tails = sections.any();
    if with_tails {
        let symbols = match sections.stack {
            true => Some(Symbolizer::running().unwrap_or_else(|e| {
                say!("ipft: warning: /proc/kallsyms: {e}; stack frames shown as addresses");
                Symbolizer::default()
            })),
            false => None,
        };
        pipe.with_details(Details::new(sections, decoder, symbols));
    }
    if let Some(path) = &cfg.shown.pcap {
        let sink = PcapSink::create(path, cfg.shown.snaplen).map_err(|source| LoopError::File {
            what: "--output-pcap",
            path: path.clone(),
            source,
        })?;
        pipe.export_pcap(sink);
    }
    let pending: RefCell<Vec<Event>> = RefCell::new(Vec::with_capacity(4096));
    // What records carry after their headers, kept apart until the
    // pipeline stores it.
    let pending_tails: RefCell<Vec<(Event, Box<[u8]>)>> = RefCell::new(Vec::new());
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
                Some(e) => {
                    let header = std::mem::size_of::<Event>();
                    if with_tails && data.len() > header {
                        pending_tails.borrow_mut().push((e, data[header..].into()));
                    }
                    pending.borrow_mut().push(e)
                }
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
            // Woken by the ring only where the BPF side asks
            // (Config::wakeup_bytes), and at once by a stop: drain on the
            // timer as well.
            signals.wait_readable(rb.epoll_fd(), DRAIN_EVERY);
            let _ = rb.consume();
            pipe.keep_tails(std::mem::take(&mut *pending_tails.borrow_mut()));
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
        pipe.keep_tails(std::mem::take(&mut *pending_tails.borrow_mut()));
        pipe.push(std::mem::take(&mut *pending.borrow_mut()));
        // Recursion and kprobe misses are read per program and link: once,
        // here, with the programs stopped and the links still there.
        let final_losses = session.losses();
        evicted = final_losses.live_evicted;
        let now = totals(final_losses, malformed.get());
        report_losses(&mut pipe, &now, &mut reported);
        let t_detach = Instant::now();
        let expedited = session.detach_counting(&signals.releasing);
        if cfg.timings {
            let how = if expedited {
                " (RCU grace periods expedited)"
            } else {
                ""
            };
            say!(
                "timing: detach {:.3}s{how}",
                t_detach.elapsed().as_secs_f64()
            );
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
                details: None,
                pcap: None,
            },
            names: Names {
                probes: table,
                drop_reasons,
                graph: cfg.graph,
            },
            sink,
        }
    }

    /// Records carry more than their headers: keep and decode it with
    /// `details`.
    pub fn with_details(&mut self, details: Details) {
        self.emitter.details = Some(details);
    }

    /// Also write each packet printed to a pcapng file.
    pub fn export_pcap(&mut self, sink: PcapSink) {
        self.emitter.pcap = Some(sink);
    }

    /// What the records of events about to be pushed carry after their
    /// headers: (event, those bytes).
    pub fn keep_tails(&mut self, batch: Vec<(Event, Box<[u8]>)>) {
        if let Some(d) = &mut self.emitter.details {
            for (e, tail) in batch {
                d.keep(&e, tail);
            }
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
        if let Some(d) = &mut self.emitter.details {
            d.finish();
        }
        let mut flushed = self.sink.finish();
        if let Some(Err(e)) = self.emitter.pcap.as_mut().map(PcapSink::finish) {
            flushed = flushed.and(Err(e));
        }
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
    details: Option<Details>,
    pcap: Option<PcapSink>,
}

impl Emitter {
    fn full(&self) -> bool {
        self.count.is_some_and(|c| self.packets >= c)
    }

    fn emit(&mut self, mut p: Packet, sink: &mut Box<dyn Sink>, names: &Names<'_>) {
        // A hidden row's event is shown when it links a clone (--track-skb).
        let hidden = |e: &Event| {
            e.clone_made().is_none() && self.hidden.get(e.probe as usize).copied().unwrap_or(false)
        };
        let silent = self.full() || self.error.is_some();
        if let Some(d) = &mut self.details {
            let (gone, kept): (Vec<Event>, Vec<Event>) =
                p.events.iter().partition(|e| silent || hidden(e));
            d.drop_events(&gone);
            p.events = kept;
            d.fill(&mut p);
        } else {
            p.events.retain(|e| !hidden(e));
        }
        if p.events.is_empty() || silent {
            return;
        }
        if let Some(Err(e)) = self.pcap.as_mut().map(|w| w.packet(&p, names)) {
            self.error = Some(e);
            return;
        }
        match sink.packet(&p, names) {
            Ok(()) => self.packets += 1,
            Err(e) => self.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests;
