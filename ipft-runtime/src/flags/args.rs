// Command-line flags of `ipft` and of every generated tracer. Kept free of
// crate paths: the `ipft` crate's build.rs includes this file to render the
// man page and shell completions.

/// Trace the journey of marked packets through the Linux kernel.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ipft", version, about, long_about = None)]
pub struct IpftArgs {
    /// List the probes (NAME MODULE ADDR SKB_POSITION; generated tracers add how each attaches here) and exit.
    #[arg(short = 'l', long = "list")]
    pub list: bool,
    /// Trace packets whose skb->mark & MASK equals MARK (hex 0x.., octal 0.., or decimal).
    #[arg(short = 'm', long = "mark", value_name = "MARK")]
    pub mark: Option<String>,
    /// Mask applied to skb->mark before comparing.
    #[arg(long = "mask", value_name = "MASK", default_value = "0xffffffff")]
    pub mask: String,
    /// Once an skb had an event, follow it until its memory is freed, whatever
    /// happens to its mark (a netns crossing, NAT, encapsulation); its clones
    /// and copies join its packet where function returns can be traced
    /// (fexit, kretprobe). The mark and filters select the first event.
    #[arg(long = "track-skb")]
    pub track_skb: bool,
    /// Only skbs whose device is in this network namespace: its inode number,
    /// or a path to it (/var/run/netns/NAME, /proc/PID/ns/net).
    #[arg(long = "filter-netns", value_name = "INODE|PATH")]
    pub filter_netns: Option<String>,
    /// Only skbs whose device has this name (skb->dev->name, at most 15 bytes).
    #[arg(long = "filter-ifname", value_name = "NAME")]
    pub filter_ifname: Option<String>,
    /// Only hits in this process (its PID, the thread group id). Meaningful
    /// where the sending task runs: the transmit path of locally sent packets
    /// (receive runs in softirq, in whichever task it interrupted).
    #[arg(long = "filter-pid", value_name = "PID")]
    pub filter_pid: Option<String>,
    /// Only functions/tracepoints whose name matches this regex.
    #[arg(short = 'r', long = "regex", value_name = "REGEX")]
    pub regex: Option<String>,
    /// Only probes in modules matching this regex (vmlinux = the kernel image).
    #[arg(long = "module-regex", value_name = "REGEX")]
    pub module_regex: Option<String>,
    /// Probe selection profile (ip, tcp, udp, netfilter, bridge, xmit, drop, tracepoints, all, or a TOML file). A generated tracer accepts only its own.
    #[arg(short = 'p', long = "profile", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Attach backend for functions (tracepoints use tp_btf); auto picks per probe.
    #[arg(short = 'b', long = "backend", value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Output: aggregate (per packet) or json (one event per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputArg::Aggregate)]
    pub output: OutputArg,
    /// Tracer: function (entries) or function_graph (entries and returns).
    #[arg(short = 't', long = "tracer", value_enum, default_value_t = TracerArg::Function)]
    pub tracer: TracerArg,
    /// Show each event's packet metadata: length, device (name and
    /// ifindex), network namespace, mark and protocol.
    #[arg(long = "output-meta")]
    pub output_meta: bool,
    /// Show each event's addresses, IP protocol and ports (IPv4 and IPv6),
    /// read from the packet's headers.
    #[arg(long = "output-tuple")]
    pub output_tuple: bool,
    /// Show each event's kernel stack, symbolized.
    #[arg(long = "output-stack")]
    pub output_stack: bool,
    /// Also write FILE (pcapng): one record per packet, its bytes where it
    /// first had headers, its journey as the packet comment.
    #[arg(long = "output-pcap", value_name = "FILE")]
    pub output_pcap: Option<std::path::PathBuf>,
    /// --output-pcap: bytes kept of each packet, 1 to 4096 [default: 1514].
    #[arg(long = "snaplen", value_name = "BYTES")]
    pub snaplen: Option<u32>,
    /// Write the trace to FILE instead of standard output.
    #[arg(long = "output-file", value_name = "FILE")]
    pub output_file: Option<std::path::PathBuf>,
    /// Stop after SECS seconds (0 < SECS <= 31536000).
    #[arg(long = "duration", value_name = "SECS", allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Stop once N packets are written.
    #[arg(long = "count", value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Create FILE once every probe is attached (for scripts and tests).
    #[arg(long = "ready-file", value_name = "FILE")]
    pub ready_file: Option<std::path::PathBuf>,
    /// Ring buffer size in bytes: a power of two from 4096 to 1 GiB [default: 16 MiB].
    #[arg(long = "ring-buffer-size", value_name = "BYTES")]
    pub ring_buffer_size: Option<u64>,
    /// The running kernel's BTF, where /sys/kernel/btf/vmlinux is missing: used for CO-RE and the compatibility check.
    #[arg(long = "btf", value_name = "FILE")]
    pub btf: Option<std::path::PathBuf>,
    /// A generated tracer refuses to start unless every probe matches the running kernel's BTF.
    #[arg(long = "strict-compat")]
    pub strict_compat: bool,
    /// Exit 1 if any event was lost or any journey was cut short.
    #[arg(long = "strict-loss")]
    pub strict_loss: bool,
    /// Print a packet once it has been idle this long (milliseconds).
    #[arg(long = "idle-ms", default_value_t = 1000)]
    pub idle_ms: u64,
    /// Print a packet early once it holds this many events.
    #[arg(long = "max-events", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: u64,
    /// Maximum packets held in memory before the oldest is printed.
    #[arg(long = "max-packets", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_packets: u64,
    /// Extension adding data to each event: FILE.c (compiled with $CC or
    /// clang, $CFLAGS), FILE.o (compiled BPF) or FILE.lua (ipftrace2's Lua
    /// API 1). See docs/extensions.md.
    #[arg(short = 'e', long = "extension", value_name = "FILE")]
    pub extension: Option<std::path::PathBuf>,
    /// Lua script (ipftrace2's -s): the same as -e FILE.lua.
    #[arg(short = 's', long = "script", value_name = "FILE.lua")]
    pub script: Option<std::path::PathBuf>,
    /// Print a starting point for an extension and exit.
    #[arg(long = "gen", value_enum, value_name = "WHAT")]
    pub gen: Option<GenArg>,
    /// List every left-out and failed probe, not only the first five per reason.
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,
    /// Benchmarks only: attach programs that return at once (the floor of
    /// the probe mechanism's cost).
    #[arg(long = "bench-empty", hide = true)]
    pub bench_empty: bool,
    /// Print per-stage timings (discover, load, attach, detach) on stderr.
    #[arg(long = "timings")]
    pub timings: bool,
    /// A pcap-filter expression (as tcpdump takes it; the words are joined
    /// with spaces): only packets it matches, from the mac header where the
    /// skb has one, else from the network header. With -m, both must match;
    /// without, -m is not needed.
    #[arg(value_name = "EXPRESSION")]
    pub expression: Vec<String>,
}

/// `-b`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendArg {
    /// Per probe, the backend that attaches and detaches fastest and reaches it.
    Auto,
    /// One kprobe per function.
    Kprobe,
    /// kprobe-multi links (Linux 5.18+, CONFIG_FPROBE).
    KprobeMulti,
    /// fentry/fexit trampolines.
    Fentry,
    /// BTF tracepoints only.
    #[value(name = "tp_btf")]
    TpBtf,
}

/// `--gen`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenArg {
    /// A minimal C extension.
    BpfModuleSkeleton,
    /// The header declaring the payload format macros.
    BpfModuleHeader,
}

/// `-o`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputArg {
    /// Per packet, its functions in order.
    Aggregate,
    /// One JSON object per event (docs/json.md).
    Json,
}

/// `-t`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracerArg {
    /// Function entries.
    Function,
    /// Entries and returns, nested.
    #[value(name = "function_graph")]
    FunctionGraph,
}
