//! Printing packets: the [`Sink`] trait and its writers, [`TextSink`]
//! (`-o aggregate`) and [`JsonSink`] (`-o json`); beside them, the
//! pcapng export ([`PcapSink`], `--output-pcap`).
//!
//! Writers own a `Box<dyn Write>` (stdout or a file), buffer it, and treat a
//! closed pipe (`ipft ... | head`) as the end of output rather than an
//! error: from then on every call succeeds without writing, and
//! [`Sink::is_closed`] tells the caller it may stop tracing.

pub mod json;
pub mod pcapng;
pub mod text;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufWriter, Write};

pub use json::JsonSink;
pub use pcapng::PcapSink;
pub use text::TextSink;

use crate::ProbeEntry;

/// Where aggregated packets go.
pub trait Sink {
    /// Print one packet (or chunk, see
    /// [`Packet::truncated`](crate::aggregate::Packet::truncated)).
    fn packet(&mut self, p: &crate::aggregate::Packet, names: &Names) -> io::Result<()>;
    /// Events were lost: written into the trace itself, where they happened.
    fn lost(&mut self, l: &Losses) -> io::Result<()>;
    /// End of output: flush.
    fn finish(&mut self) -> io::Result<()>;
    /// The reader went away (broken pipe): nothing more will be written, so
    /// the caller may stop tracing.
    fn is_closed(&self) -> bool {
        false
    }
}

/// Events lost, by kind (totals, or the difference of two totals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Losses {
    /// Reserve failures: the ring buffer was full.
    pub ring_buffer: u64,
    /// function_graph entries whose skb found no room on the stash (their
    /// returns are missing).
    pub stash: u64,
    /// Program runs skipped: another BPF program was running on the CPU.
    pub recursion: u64,
    /// kprobe hits the kernel missed (kretprobe maxactive, recursion).
    pub kprobe: u64,
    /// Records shorter than an event.
    pub malformed: u64,
}

impl Losses {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.ring_buffer + self.stash + self.recursion + self.kprobe + self.malformed
    }

    /// What was lost after `earlier` (both totals).
    pub fn since(&self, earlier: &Losses) -> Losses {
        Losses {
            ring_buffer: self.ring_buffer.saturating_sub(earlier.ring_buffer),
            stash: self.stash.saturating_sub(earlier.stash),
            recursion: self.recursion.saturating_sub(earlier.recursion),
            kprobe: self.kprobe.saturating_sub(earlier.kprobe),
            malformed: self.malformed.saturating_sub(earlier.malformed),
        }
    }
}

impl fmt::Display for Losses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} events lost: {} ring buffer full, {} function_graph stash full, \
             {} BPF recursion, {} kprobe missed, {} malformed",
            self.total(),
            self.ring_buffer,
            self.stash,
            self.recursion,
            self.kprobe,
            self.malformed
        )
    }
}

/// What event numbers mean.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// Probe table, indexed by [`Event::probe`](ipft_abi::Event::probe).
    pub probes: &'a [ProbeEntry],
    /// `enum skb_drop_reason` value -> name (`SKB_DROP_REASON_` stripped or
    /// not, as the caller prefers).
    pub drop_reasons: &'a HashMap<u64, String>,
    /// `-t function_graph`: show call nesting.
    pub graph: bool,
}

impl<'a> Names<'a> {
    /// Table entry of probe `index`.
    pub fn probe(&self, index: u32) -> Option<&'a ProbeEntry> {
        self.probes.get(index as usize)
    }

    /// Function or tracepoint name of probe `index`; `probe#N` if the table
    /// has no such entry.
    pub fn function(&self, index: u32) -> Named<'a> {
        match self.probe(index) {
            Some(p) => Named::Known(&p.name),
            None => Named::Unknown("probe#", u64::from(index)),
        }
    }

    /// Module of probe `index`, `None` for vmlinux or an unknown probe.
    pub fn module(&self, index: u32) -> Option<&'a str> {
        self.probe(index).and_then(|p| p.module.as_deref())
    }

    /// Name of drop reason `value`; the number itself if unknown.
    pub fn reason(&self, value: u64) -> Named<'a> {
        match self.drop_reasons.get(&value) {
            Some(n) => Named::Known(n),
            None => Named::Unknown("", value),
        }
    }
}

/// A name, or a prefixed number standing for an unknown one; `Display`s
/// without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named<'a> {
    /// The name.
    Known(&'a str),
    /// Prefix and number.
    Unknown(&'static str, u64),
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Known(s) => f.pad(s),
            // Pad the whole label, so columns stay aligned.
            Named::Unknown(prefix, n) => f.pad(&format!("{prefix}{n}")),
        }
    }
}

/// A buffered writer that goes quiet after a broken pipe.
struct Out {
    w: BufWriter<Box<dyn Write>>,
    closed: bool,
}

impl Out {
    fn new(w: Box<dyn Write>) -> Self {
        Out {
            w: BufWriter::with_capacity(64 * 1024, w),
            closed: false,
        }
    }

    /// Run `f` on the writer unless the reader is gone; a broken pipe closes
    /// the output and counts as success.
    fn run(
        &mut self,
        f: impl FnOnce(&mut BufWriter<Box<dyn Write>>) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match f(&mut self.w) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.run(|w| w.flush())
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Shared fixtures for the writer tests.

    use std::borrow::Cow;
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};

    use ipft_abi::{Backend, ProbeEntry, ProbeShape, ProgramId, TypedKind};

    /// A `Write` whose bytes the test can read after the sink has it.
    #[derive(Clone, Default)]
    pub struct Shared(pub Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// A writer whose reader has gone away.
    pub struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    pub fn probe(name: &str, module: Option<&str>) -> ProbeEntry {
        ProbeEntry {
            name: Cow::Owned(name.to_owned()),
            module: module.map(|m| Cow::Owned(m.to_owned())),
            shape: ProbeShape::default(),
            backend: Backend::Fentry,
            btf_id: 0,
            program: ProgramId::Typed {
                kind: TypedKind::Entry,
                row: 0,
            },
            return_program: None,
            ends_journey: false,
            hidden: false,
        }
    }
}
