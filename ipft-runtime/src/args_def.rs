// Command-line arguments of `ipft` and of every generated tracer. Kept free
// of crate paths: build.rs includes this file to render the man page.

/// Trace the journey of marked packets through the Linux kernel.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ipft", version, about, long_about = None)]
pub struct IpftArgs {
    /// List the traceable functions and tracepoints (NAME MODULE ADDR SKB_POSITION) and exit.
    #[arg(short = 'l', long = "list")]
    pub list: bool,
    /// Trace packets whose skb->mark & MASK equals MARK (hex 0x.., octal 0.., or decimal).
    #[arg(short = 'm', long = "mark", value_name = "MARK")]
    pub mark: Option<String>,
    /// Mask applied to skb->mark before comparing.
    #[arg(long = "mask", value_name = "MASK", default_value = "0xffffffff")]
    pub mask: String,
    /// Only functions/tracepoints whose name matches this regex.
    #[arg(short = 'r', long = "regex", value_name = "REGEX")]
    pub regex: Option<String>,
    /// Only probes in modules matching this regex (vmlinux = the kernel image).
    #[arg(long = "module-regex", value_name = "REGEX")]
    pub module_regex: Option<String>,
    /// Probe selection profile (ip, tcp, udp, netfilter, bridge, xmit, drop, tracepoints, all, or a TOML file).
    #[arg(short = 'p', long = "profile", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Attach backend: auto, kprobe, kprobe-multi, fentry, tp_btf.
    #[arg(short = 'b', long = "backend", default_value = "auto")]
    pub backend: String,
    /// Output: aggregate (per packet) or json (one event per line).
    #[arg(short = 'o', long = "output", default_value = "aggregate")]
    pub output: String,
    /// Tracer: function (entries) or function_graph (entries and returns; fentry/fexit).
    #[arg(short = 't', long = "tracer", default_value = "function")]
    pub tracer: String,
    /// Write the trace to FILE instead of standard output.
    #[arg(long = "output-file", value_name = "FILE")]
    pub output_file: Option<std::path::PathBuf>,
    /// Stop after SECS seconds.
    #[arg(long = "duration", value_name = "SECS")]
    pub duration: Option<f64>,
    /// Stop after N complete packets.
    #[arg(long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Create FILE once every probe is attached (for scripts and tests).
    #[arg(long = "ready-file", value_name = "FILE")]
    pub ready_file: Option<std::path::PathBuf>,
    /// Exit non-zero if any event was lost.
    #[arg(long = "strict-loss")]
    pub strict_loss: bool,
    /// Print a packet once it has been idle this long (milliseconds).
    #[arg(long = "idle-ms", default_value_t = 1000)]
    pub idle_ms: u64,
    /// Print a packet early once it holds this many events.
    #[arg(long = "max-events", default_value_t = 512)]
    pub max_events: usize,
    /// Maximum packets held in memory before the oldest is printed.
    #[arg(long = "max-packets", default_value_t = 65536)]
    pub max_packets: usize,
    /// Extension script (Lua); reserved for extensions.
    #[arg(short = 'e', long = "extension", value_name = "FILE")]
    pub extension: Option<std::path::PathBuf>,
    /// Print per-stage timings (discover, load, attach, detach) on stderr.
    #[arg(long = "timings")]
    pub timings: bool,
}
