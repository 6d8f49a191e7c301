//! Stages 6 and 7 driven together: read the ring buffer, decide journey
//! ends, aggregate per packet, print, and account for every loss.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipft_abi::{Event, Layout, ProbeEntry};
use libbpf_rs::{MapCore, RingBufferBuilder};

use crate::aggregate::{Aggregator, Packet};
use crate::attach::{lost_events, Session};
use crate::flags::RunConfig;
use crate::journey::JourneyEnds;
use crate::output::{json::JsonSink, text::TextSink, Losses, Names, Sink};
use crate::say;

/// The loop could not run or its output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
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
                f.set_len(0).map_err(|source| LoopError::File {
                    what: "--output-file",
                    path,
                    source,
                })?;
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
    output: Output,
    mut session: Session,
    table: &[ProbeEntry],
    drop_reasons: &HashMap<u64, String>,
) -> Result<Outcome, LoopError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(LoopError::Signals)?;
    }
    let out = output.start()?;
    if let Some(f) = &cfg.ready_file {
        std::fs::write(f, b"ready\n").map_err(|source| LoopError::File {
            what: "--ready-file",
            path: f.clone(),
            source,
        })?;
    }
    let names = Names {
        probes: table,
        drop_reasons,
        graph: cfg.graph,
    };
    let mut sink: Box<dyn Sink> = match cfg.json {
        true => Box::new(JsonSink::new(out)),
        false => Box::new(TextSink::new(out)),
    };
    let mut ends = JourneyEnds::new(table, cfg.graph);
    let pending: RefCell<Vec<Event>> = RefCell::new(Vec::with_capacity(4096));
    let mut agg = Aggregator::new(cfg.aggregate);
    let malformed = Cell::new(0u64);
    let mut emitted = Emitter {
        hidden: table.iter().map(|e| e.hidden).collect(),
        count: cfg.count,
        packets: 0,
        error: None,
    };
    let deadline = cfg.duration.map(|d| Instant::now() + d);
    let mut losses = Losses::default();
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
            let done = stop.load(Ordering::Relaxed)
                || deadline.is_some_and(|d| Instant::now() >= d)
                || emitted.full()
                || emitted.error.is_some()
                || sink.is_closed();
            if done {
                break;
            }
            let _ = rb.poll(Duration::from_millis(100));
            let batch = std::mem::take(&mut *pending.borrow_mut());
            feed(batch, &mut ends, &mut agg, &mut emitted, &mut sink, &names);
            agg.flush_idle(monotonic_ns(), &mut |p| emitted.emit(p, &mut sink, &names));
            if last_loss_check.elapsed() >= Duration::from_secs(1) {
                last_loss_check = Instant::now();
                let now = lost_events(session.main_object());
                if now > losses.ring_buffer {
                    let _ = sink.lost(&Losses {
                        ring_buffer: now - losses.ring_buffer,
                        malformed: 0,
                    });
                    say!(
                        "ipft: lost {} events (ring buffer full), {now} in total",
                        now - losses.ring_buffer
                    );
                    losses.ring_buffer = now;
                }
            }
        }
        // Drain what is queued, read the counters, then detach.
        let _ = rb.consume();
        let batch = std::mem::take(&mut *pending.borrow_mut());
        feed(batch, &mut ends, &mut agg, &mut emitted, &mut sink, &names);
        let final_lost = lost_events(session.main_object());
        let t_detach = Instant::now();
        session.detach();
        if cfg.timings {
            say!("timing: detach {:.3}s", t_detach.elapsed().as_secs_f64());
        }
        agg.finish(&mut |p| emitted.emit(p, &mut sink, &names));
        let late = Losses {
            ring_buffer: final_lost.saturating_sub(losses.ring_buffer),
            malformed: malformed.get(),
        };
        if late.total() > 0 {
            let _ = sink.lost(&late);
        }
        losses.ring_buffer = final_lost.max(losses.ring_buffer);
        losses.malformed = malformed.get();
    }
    let finished = sink.finish();
    if let Some(e) = emitted.error.or(finished.err()) {
        return Err(LoopError::Output(e));
    }
    say!("Got {} traces", emitted.packets);
    if losses.total() > 0 {
        say!(
            "Lost {} events (ring buffer full), {} malformed records",
            losses.ring_buffer,
            losses.malformed
        );
    }
    Ok(Outcome {
        packets: emitted.packets,
        lost: losses.total(),
    })
}

/// Journey ends first, then aggregation, for a batch of events.
fn feed(
    batch: Vec<Event>,
    ends: &mut JourneyEnds,
    agg: &mut Aggregator,
    emitted: &mut Emitter,
    sink: &mut Box<dyn Sink>,
    names: &Names,
) {
    for e in batch {
        let last = ends.check(&e);
        agg.push(e, last, &mut |p| emitted.emit(p, sink, names));
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

    fn emit(&mut self, mut p: Packet, sink: &mut Box<dyn Sink>, names: &Names) {
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
