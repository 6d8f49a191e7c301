//! Flags -> run configuration. Everything a user can get wrong is checked
//! here, before anything is loaded or any file is touched.

mod args;
mod packets;

pub use args::{BackendArg, GenArg, IpftArgs, OutputArg, TracerArg};
pub use packets::PacketFilters;

use std::path::PathBuf;
use std::time::Duration;

use ipft_abi::{Asked, Backend};

use crate::aggregate::AggregateConfig;
use crate::filter::PcapFilter;
use crate::select::Filter;

/// Longest `--duration`: a year.
pub const MAX_DURATION_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Bad input: one line for the user, exit 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FlagError(pub String);

fn bad(msg: impl Into<String>) -> FlagError {
    FlagError(msg.into())
}

/// What a run does, validated.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `--gen`: print this and exit.
    pub gen: Option<GenArg>,
    /// `-e` / `-s`.
    pub extension: Option<ExtensionSource>,
    /// `-l`: list and exit.
    pub list: bool,
    /// skb->mark & mask must equal this.
    pub mark: u32,
    /// Mask.
    pub mask: u32,
    /// The pcap-filter expression, compiled.
    pub pcap: Option<PcapFilter>,
    /// `--track-skb`.
    pub track: bool,
    /// `--filter-netns`, `--filter-ifname`, `--filter-pid`.
    pub packets: PacketFilters,
    /// `-r`, `--module-regex`.
    pub filter: Filter,
    /// `-p`, as given.
    pub profile: Option<String>,
    /// `-b`.
    pub asked: Asked,
    /// `-o json`.
    pub json: bool,
    /// `-t function_graph`.
    pub graph: bool,
    /// `--output-file`.
    pub output_file: Option<PathBuf>,
    /// `--output-meta`, `--output-tuple`, `--output-stack`, `--output-pcap`.
    pub shown: Shown,
    /// `--duration`.
    pub duration: Option<Duration>,
    /// `--count`.
    pub count: Option<u64>,
    /// `--ready-file`.
    pub ready_file: Option<PathBuf>,
    /// `--ring-buffer-size`, validated.
    pub ring_buffer_bytes: Option<u32>,
    /// `--btf`: the running kernel's BTF file.
    pub btf: Option<PathBuf>,
    /// `--strict-compat`.
    pub strict_compat: bool,
    /// `--strict-loss`.
    pub strict_loss: bool,
    /// Per-packet aggregation bounds.
    pub aggregate: AggregateConfig,
    /// `-v`.
    pub verbose: bool,
    /// `--timings`.
    pub timings: bool,
    /// `--bench-empty` (hidden).
    pub bench_empty: bool,
}

/// What each event shows beyond its function, and the pcapng export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shown {
    /// `--output-meta`.
    pub meta: bool,
    /// `--output-tuple`.
    pub tuple: bool,
    /// `--output-stack`.
    pub stack: bool,
    /// `--output-pcap FILE`.
    pub pcap: Option<PathBuf>,
    /// `--snaplen` (with --output-pcap).
    pub snaplen: u32,
}

impl RunConfig {
    /// The sections every record carries (`ext`: an extension is linked).
    pub fn sections(&self, ext: bool) -> ipft_abi::Sections {
        ipft_abi::Sections {
            ext,
            meta: self.shown.meta,
            tuple: self.shown.tuple,
            stack: self.shown.stack,
            snaplen: self.shown.pcap.as_ref().map_or(0, |_| self.shown.snaplen),
        }
    }
}

/// --snaplen's default: a full Ethernet frame at the usual MTU.
pub const DEFAULT_SNAPLEN: u32 = 1514;

fn shown(a: &IpftArgs) -> Result<Shown, FlagError> {
    let max = ipft_abi::sections::SNAPLEN_MAX;
    let snaplen = match (a.snaplen, &a.output_pcap) {
        (Some(_), None) => return Err(bad("--snaplen needs --output-pcap FILE")),
        (Some(n), _) if n == 0 || n > max => {
            return Err(bad(format!("--snaplen {n}: want 1 to {max} bytes")))
        }
        (n, _) => n.unwrap_or(DEFAULT_SNAPLEN),
    };
    if let Some(f) = &a.output_pcap {
        if f.is_dir() {
            return Err(bad(format!(
                "--output-pcap {}: is a directory",
                f.display()
            )));
        }
        let dir = f.parent().filter(|d| !d.as_os_str().is_empty());
        if dir.is_some_and(|d| !d.is_dir()) {
            return Err(bad(format!(
                "--output-pcap {}: no such directory",
                f.display()
            )));
        }
        if a.output_file.as_ref() == Some(f) {
            return Err(bad(format!(
                "--output-pcap {}: the same file as --output-file",
                f.display()
            )));
        }
    }
    Ok(Shown {
        meta: a.output_meta,
        tuple: a.output_tuple,
        stack: a.output_stack,
        pcap: a.output_pcap.clone(),
        snaplen,
    })
}

/// Parse a number like strtoul(s, NULL, 0): `0x` hex, leading `0` octal,
/// otherwise decimal.
pub fn parse_u32(s: &str) -> Option<u32> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else {
        s.parse::<u64>().ok()?
    };
    u32::try_from(v).ok()
}

/// Parse the command line; a usage error is one line on stderr and exit 2
/// (clap's usage block is for --help), --help and --version print as usual.
/// `version`: what --version prints instead of the crate version (a
/// generated tracer names the kernels and profile it was built for).
pub fn parse_args(version: Option<String>) -> IpftArgs {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = IpftArgs::command();
    if let Some(v) = version {
        // Once per process: clap keeps a &'static str.
        cmd = cmd.version(&*Box::leak(v.into_boxed_str()));
    }
    match cmd
        .try_get_matches()
        .and_then(|m| IpftArgs::from_arg_matches(&m))
    {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            crate::say!("ipft: {} (see --help)", first.trim_start_matches("error: "));
            std::process::exit(crate::error::EXIT_USAGE)
        }
    }
}

/// `-e FILE` / `-s FILE.lua`: which kind of extension, by suffix.
fn extension(a: &IpftArgs) -> Result<Option<ExtensionSource>, FlagError> {
    let (path, script) = match (&a.extension, &a.script) {
        (Some(_), Some(_)) => return Err(bad("-e and -s: one extension at a time")),
        (Some(p), None) => (p, false),
        (None, Some(p)) => (p, true),
        (None, None) => return Ok(None),
    };
    let flag = if script { "-s" } else { "-e" };
    let kind = match path.extension().and_then(|s| s.to_str()) {
        Some("lua") => ExtensionKind::Lua,
        Some("c") if !script => ExtensionKind::C,
        Some("o") if !script => ExtensionKind::Object,
        _ if script => return Err(bad(format!("-s {}: want a .lua script", path.display()))),
        _ => {
            return Err(bad(format!(
                "-e {}: want a .c, .o or .lua file",
                path.display()
            )))
        }
    };
    if !path.is_file() {
        return Err(bad(format!("{flag} {}: no such file", path.display())));
    }
    Ok(Some(ExtensionSource {
        path: path.clone(),
        kind,
    }))
}

/// What `--gen` prints.
pub fn gen_text(g: GenArg) -> String {
    match g {
        GenArg::BpfModuleSkeleton => ipft_abi::payload::module_skeleton(),
        GenArg::BpfModuleHeader => ipft_abi::payload::module_header(),
    }
}

/// An extension named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionSource {
    /// The file.
    pub path: PathBuf,
    /// What it holds.
    pub kind: ExtensionKind,
}

/// What an extension file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionKind {
    /// C, compiled at start.
    C,
    /// A compiled BPF object.
    Object,
    /// A Lua script (API 1) carrying its BPF object.
    Lua,
}

/// Check the flags. Pure: touches nothing (it only looks whether named files
/// exist, and asks a --filter-netns path its namespace type).
pub fn validate(a: &IpftArgs) -> Result<RunConfig, FlagError> {
    validate_for(a, false)
}

/// [`validate`] for a tracer whose programs hold a pcap-filter expression
/// of their own (`built_in_filter`): it selects packets, so `-m` may go.
pub fn validate_for(a: &IpftArgs, built_in_filter: bool) -> Result<RunConfig, FlagError> {
    let graph = a.tracer == TracerArg::FunctionGraph;
    let asked = match a.backend {
        BackendArg::Auto => Asked::Auto,
        BackendArg::Kprobe => Asked::Only(Backend::Kprobe),
        BackendArg::KprobeMulti => Asked::Only(Backend::KprobeMulti),
        BackendArg::Fentry => Asked::Only(Backend::Fentry),
        BackendArg::TpBtf => Asked::Only(Backend::TpBtf),
    };
    if graph && asked == Asked::Only(Backend::TpBtf) {
        return Err(bad("-t function_graph needs function returns: use -b fentry, kprobe or kprobe-multi (or auto)"));
    }
    let mask = parse_u32(&a.mask).ok_or_else(|| bad(format!("invalid mask '{}'", a.mask)))?;
    if mask == 0 {
        return Err(bad("mask 0 matches every packet: choose a non-zero mask"));
    }
    let pcap = crate::filter::expression(&a.expression)
        .map(|e| PcapFilter::compile(&e))
        .transpose()
        .map_err(bad)?;
    let (mark, mask) = match &a.mark {
        None if a.list || a.gen.is_some() => (0, mask),
        // The expression alone selects: a mask of 0 lets every mark pass.
        None if pcap.is_some() || built_in_filter => (0, 0),
        None => {
            return Err(bad(
                "-m/--mark is required, or a pcap-filter expression (which packets to trace)",
            ))
        }
        Some(m) => (
            parse_u32(m).ok_or_else(|| bad(format!("invalid mark '{m}'")))?,
            mask,
        ),
    };
    if !a.list && a.gen.is_none() && a.mark.is_some() {
        if mark == 0 {
            return Err(bad(
                "mark 0 would match every unmarked packet: choose a non-zero mark",
            ));
        }
        if mark & !mask != 0 {
            return Err(bad(format!(
                "mark 0x{mark:x} has bits outside mask 0x{mask:x}: no packet can match"
            )));
        }
    }
    let packets = PacketFilters::from_flags(
        a.filter_netns.as_deref(),
        a.filter_ifname.as_deref(),
        a.filter_pid.as_deref(),
    )?;
    let duration = a.duration.map(duration).transpose()?;
    let extension = extension(a)?;
    let filter = Filter::from_flags(a.regex.as_deref(), a.module_regex.as_deref()).map_err(bad)?;
    if let Some(f) = a.btf.as_ref().filter(|f| !f.is_file()) {
        return Err(bad(format!("--btf {}: not a file", f.display())));
    }
    if let Some(f) = &a.output_file {
        if f.is_dir() {
            return Err(bad(format!(
                "--output-file {}: is a directory",
                f.display()
            )));
        }
    }
    Ok(RunConfig {
        list: a.list,
        gen: a.gen,
        extension,
        mark,
        mask,
        pcap,
        track: a.track_skb,
        packets,
        filter,
        profile: a.profile.clone(),
        asked,
        json: a.output == OutputArg::Json,
        graph,
        output_file: a.output_file.clone(),
        shown: shown(a)?,
        duration,
        count: a.count,
        ready_file: a.ready_file.clone(),
        ring_buffer_bytes: a.ring_buffer_size.map(ring_buffer).transpose()?,
        btf: a.btf.clone(),
        strict_compat: a.strict_compat,
        strict_loss: a.strict_loss,
        aggregate: AggregateConfig {
            idle: Duration::from_millis(a.idle_ms),
            max_events_per_packet: a.max_events as usize,
            max_packets: a.max_packets as usize,
        },
        verbose: a.verbose,
        timings: a.timings,
        bench_empty: a.bench_empty,
    })
}

fn ring_buffer(bytes: u64) -> Result<u32, FlagError> {
    match bytes {
        4096..=0x4000_0000 if bytes.is_power_of_two() => Ok(bytes as u32),
        _ => Err(bad(format!(
            "--ring-buffer-size {bytes}: want a power of two from 4096 to 1073741824"
        ))),
    }
}

fn duration(secs: f64) -> Result<Duration, FlagError> {
    if !(secs > 0.0 && secs <= MAX_DURATION_SECS) {
        return Err(bad(format!(
            "--duration {secs}: want seconds in (0, {MAX_DURATION_SECS}]"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn check(argv: &[&str]) -> Result<RunConfig, String> {
        let mut full = vec!["ipft"];
        full.extend(argv);
        let a = IpftArgs::try_parse_from(full).map_err(|e| e.to_string())?;
        validate(&a).map_err(|e| e.0)
    }

    #[test]
    fn strtoul_base0() {
        assert_eq!(parse_u32("0xdeadbeef"), Some(0xdeadbeef));
        assert_eq!(parse_u32("010"), Some(8));
        assert_eq!(parse_u32("10"), Some(10));
        assert_eq!(parse_u32("0"), Some(0));
        assert_eq!(parse_u32("0x1ffffffff"), None);
        assert_eq!(parse_u32("abc"), None);
    }

    #[test]
    fn marks_and_masks() {
        assert!(check(&["-m", "0xdeadbeef"]).is_ok());
        assert!(check(&[]).unwrap_err().contains("required"));
        assert!(check(&["-m", "0"]).unwrap_err().contains("non-zero mark"));
        assert!(check(&["-m", "1", "--mask", "0"])
            .unwrap_err()
            .contains("mask 0"));
        assert!(check(&["-m", "0x10000", "--mask", "0xffff"])
            .unwrap_err()
            .contains("outside mask"));
        assert!(check(&["-m", "0x100", "--mask", "0xff00"]).is_ok());
        assert!(check(&["-l"]).is_ok());
    }

    #[test]
    fn pcap_expressions() {
        // The words join as tcpdump joins them; -m is then optional.
        let c = check(&["tcp", "and", "port", "80"]).unwrap();
        assert_eq!(c.pcap.as_ref().unwrap().expr, "tcp and port 80");
        assert_eq!((c.mark, c.mask), (0, 0));
        let c = check(&["-m", "0x10", "icmp"]).unwrap();
        assert_eq!((c.mark, c.mask), (0x10, 0xffffffff));
        assert!(c.pcap.is_some());
        assert!(check(&["-m", "1"]).unwrap().pcap.is_none());
        let e = check(&["tcp", "port"]).unwrap_err();
        assert!(e.starts_with("pcap filter 'tcp port': "), "{e}");
    }

    #[test]
    fn extensions_by_suffix() {
        let dir = std::env::temp_dir().join(format!("ipft-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["x.c", "x.o", "x.lua", "x.txt"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let p = |f: &str| dir.join(f).display().to_string();
        let kind = |flag: &str, f: &str| {
            check(&["-m", "1", flag, &p(f)]).map(|c| c.extension.unwrap().kind)
        };
        assert_eq!(kind("-e", "x.c"), Ok(ExtensionKind::C));
        assert_eq!(kind("-e", "x.o"), Ok(ExtensionKind::Object));
        assert_eq!(kind("-e", "x.lua"), Ok(ExtensionKind::Lua));
        assert_eq!(kind("-s", "x.lua"), Ok(ExtensionKind::Lua));
        assert!(kind("-e", "x.txt")
            .unwrap_err()
            .contains("want a .c, .o or .lua"));
        assert!(kind("-s", "x.c").unwrap_err().contains("want a .lua"));
        assert!(check(&["-m", "1", "-e", &p("x.c"), "-s", &p("x.lua")])
            .unwrap_err()
            .contains("one extension"));
        // --gen needs no mark.
        assert!(check(&["--gen", "bpf-module-header"]).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations() {
        for bad in ["nan", "-1", "0", "inf", "1e300"] {
            let e = check(&["-m", "1", "--duration", bad]).unwrap_err();
            assert!(e.contains("--duration"), "{bad}: {e}");
        }
        let c = check(&["-m", "1", "--duration", "1.5"]).unwrap();
        assert_eq!(c.duration, Some(Duration::from_millis(1500)));
    }

    #[test]
    fn ring_buffer_sizes() {
        assert_eq!(
            check(&["-m", "1", "--ring-buffer-size", "8192"])
                .unwrap()
                .ring_buffer_bytes,
            Some(8192)
        );
        for bad in ["4095", "12288", "0", "2147483648"] {
            let e = check(&["-m", "1", "--ring-buffer-size", bad]).unwrap_err();
            assert!(e.contains("--ring-buffer-size"), "{bad}: {e}");
        }
    }

    #[test]
    fn tracking_and_packet_filters_reach_the_config() {
        let me = std::process::id().to_string();
        let c = check(&[
            "-m",
            "1",
            "--track-skb",
            "--filter-ifname",
            "lo",
            "--filter-pid",
            &me,
        ])
        .unwrap();
        assert!(c.track);
        let cfg = crate::tracer::load_options(&c, false).config;
        assert_eq!((cfg.track, cfg.pid, cfg.netns), (1, std::process::id(), 0));
        assert_eq!(cfg.ifname_lo.to_ne_bytes(), *b"lo\0\0\0\0\0\0");
        let plain = crate::tracer::load_options(&check(&["-m", "1"]).unwrap(), false).config;
        // An extension's payload makes records larger than the header: the
        // ring wakes its reader in batches again, and the programs know.
        let ext = crate::tracer::load_options(&check(&["-m", "1"]).unwrap(), true).config;
        assert_eq!((ext.ext, plain.ext), (1, 0));
        assert!(ext.wakeup_bytes > 0 && plain.wakeup_bytes == 0);
        assert_eq!(
            (
                plain.track,
                plain.pid,
                plain.netns,
                plain.ifname_lo,
                plain.ifname_mask_lo
            ),
            (0, 0, 0, 0, 0)
        );
        assert!(check(&["-m", "1", "--filter-pid", "0"])
            .unwrap_err()
            .contains("--filter-pid 0"));
    }

    #[test]
    fn closed_choices() {
        assert!(check(&["-m", "1", "-b", "bogus"]).is_err());
        assert!(check(&["-m", "1", "-o", "xml"]).is_err());
        assert!(check(&["-m", "1", "--count", "0"]).is_err());
        let c = check(&[
            "-m",
            "1",
            "-b",
            "kprobe-multi",
            "-t",
            "function_graph",
            "-o",
            "json",
        ])
        .unwrap();
        assert_eq!(c.asked, Asked::Only(Backend::KprobeMulti));
        assert!(c.graph && c.json);
        assert!(check(&["-m", "1", "-b", "tp_btf", "-t", "function_graph"])
            .unwrap_err()
            .contains("function returns"));
        assert!(check(&["-m", "1", "-e", "/nonexistent/x.lua"])
            .unwrap_err()
            .contains("no such file"));
        assert!(check(&["-m", "1", "-r", "("])
            .unwrap_err()
            .contains("invalid regex"));
    }
}
