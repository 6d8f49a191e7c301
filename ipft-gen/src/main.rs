//! `ipft-gen`: list skb probes of a kernel, or generate and build a tracer.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use ipft_gen::codegen::{self, Plan};
use ipft_gen::compile;
use ipft_gen::discover::{discover, Backends, BtfInput, Discovery};
use ipft_gen::extension::Extension;
use ipft_gen::probe::compiled::{compiled_backends, default_out, target_offer, Compile};
use ipft_gen::probe::{Backend, Filter, ProbeKind, Profile};
use ipft_runtime::filter::PcapFilter;

/// Print to stderr; a closed stderr is not an error worth dying for.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Generate a packet tracer specialised to one kernel and one probe set.
#[derive(Parser)]
#[command(name = "ipft-gen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    gen: GenArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// List every traceable skb probe (name, module, kind, skb positions, nargs, backends).
    List(ListArgs),
    /// Measure discovery and code generation (medians of several runs) beside bpftool.
    Bench(BenchArgs),
    /// Write ipft-gen's man page and shell completions into DIR.
    Man {
        /// Output directory.
        dir: PathBuf,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// BTF file to measure on.
    #[arg(long, default_value = "/sys/kernel/btf/vmlinux")]
    btf: PathBuf,
    /// Runs per measurement.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
}

#[derive(Args, Clone)]
struct Source {
    /// Raw BTF or ELF (vmlinux, .ko) with a .BTF section [default: running
    /// kernel]. Repeat (with --btf-dir too) for one tracer holding an object
    /// per kernel.
    #[arg(long, value_name = "FILE")]
    btf: Vec<PathBuf>,
    /// Directory laid out like /sys/kernel/btf (vmlinux + one file per module).
    #[arg(long, value_name = "DIR")]
    btf_dir: Vec<PathBuf>,
    /// Profile: a shipped name (ip, tcp, udp, netfilter, bridge, xmit, drop, tracepoints, all) or a TOML file.
    #[arg(long, short = 'p')]
    profile: Option<String>,
    /// Only probes whose name matches.
    #[arg(long, short = 'r')]
    regex: Option<String>,
    /// Only probes in modules matching (vmlinux for the kernel image).
    #[arg(long)]
    module_regex: Option<String>,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    src: Source,
    /// JSON array instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenArgs {
    #[command(flatten)]
    src: Source,
    /// Output directory [default: ipft-<profile>-<kernel release or BTF checksum>].
    #[arg(long, short = 'o', value_name = "DIR")]
    out: Option<PathBuf>,
    /// Function backend (tracepoints use tp_btf). auto: per probe, the one the
    /// tracer's kernel attaches fastest; all: every backend that reaches each
    /// probe, chosen at run time.
    #[arg(long, short = 'b', value_enum, default_value_t = GenBackend::Auto)]
    backend: GenBackend,
    /// Compile the BPF object and build the ipft-<profile> binary.
    #[arg(long)]
    build: bool,
    /// Compile the BPF object (OUT/tracer.bpf.o) only, without building a
    /// binary: for loaders of their own and for inspection.
    #[arg(long, conflicts_with = "build")]
    object: bool,
    /// Where the running kernel allows no function probe, generate for its
    /// skb tracepoints (the `tracepoints` profile) instead.
    #[arg(long)]
    fallback_tracepoints: bool,
    /// Print timings of each stage on stderr.
    #[arg(long)]
    timings: bool,
    /// An extension (ipftrace2's module() API), C compiled with $CC
    /// [clang] and $CFLAGS, or an object: linked into the tracer, its
    /// payload struct shown with each event.
    #[arg(long, short = 'e', value_name = "FILE.c|FILE.o")]
    extension: Option<PathBuf>,
    /// A pcap-filter expression compiled into the tracer as C: only packets
    /// it matches are traced (as `ipft EXPR` does at run time, with -m both).
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
}

/// `-b` of ipft-gen.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GenBackend {
    Auto,
    Kprobe,
    KprobeMulti,
    Fentry,
    All,
}

impl From<GenBackend> for Compile {
    fn from(b: GenBackend) -> Compile {
        match b {
            GenBackend::Auto => Compile::Auto,
            GenBackend::Kprobe => Compile::Only(Backend::Kprobe),
            GenBackend::KprobeMulti => Compile::Only(Backend::KprobeMulti),
            GenBackend::Fentry => Compile::Only(Backend::Fentry),
            GenBackend::All => Compile::All,
        }
    }
}

fn main() -> ExitCode {
    ipft_gen::btf::install_quiet_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help and --version print as usual.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // Usage errors: one line, not clap's usage block.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            say!(
                "ipft-gen: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    let r = match cli.cmd {
        Some(Cmd::List(a)) => list(a),
        Some(Cmd::Bench(a)) => bench(a),
        Some(Cmd::Man { dir }) => man(&dir),
        None => generate(cli.gen),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            say!("ipft-gen: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// A reader that stopped reading (`| head`) ends the output normally.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// An error and its causes on one line; a cause whose text the message
/// already carries (`{path}: {source}`) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if out.contains(&c) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn input(s: &Source) -> BtfInput {
    match (s.btf.first(), s.btf_dir.first()) {
        (Some(f), _) => BtfInput::File(f.clone()),
        (None, Some(d)) => BtfInput::Dir(d.clone()),
        (None, None) => BtfInput::Running,
    }
}

/// One source per kernel: each --btf, then each --btf-dir (the running
/// kernel when there is none).
fn per_kernel(s: &Source) -> Vec<Source> {
    let one = |btf: Vec<PathBuf>, btf_dir: Vec<PathBuf>| Source {
        btf,
        btf_dir,
        ..s.clone()
    };
    let mut v: Vec<Source> = s.btf.iter().map(|f| one(vec![f.clone()], vec![])).collect();
    v.extend(s.btf_dir.iter().map(|d| one(vec![], vec![d.clone()])));
    if v.is_empty() {
        v.push(s.clone());
    }
    v
}

/// `list` and `bench` read one kernel.
fn single(s: &Source) -> Result<()> {
    match s.btf.len() + s.btf_dir.len() {
        0 | 1 => Ok(()),
        _ => bail!("list reads one kernel: give one --btf or --btf-dir"),
    }
}

fn load(s: &Source, default_profile: Option<&str>) -> Result<(Discovery, Option<Profile>)> {
    let profile = s
        .profile
        .as_deref()
        .or(default_profile)
        .map(Profile::load)
        .transpose()?;
    let filter = Filter::from_flags(s.regex.as_deref(), s.module_regex.as_deref())
        .map_err(anyhow::Error::msg)?;
    let d = discover(&input(s), profile.as_ref(), &filter, Backends::Probe)?;
    // Once per run, even when discovery runs again for a fallback profile.
    static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        if let Some(note) = d.symbols.as_ref().and_then(|s| s.note.as_ref()) {
            say!("{note}");
        }
        for e in &d.skipped {
            say!("ipft-gen: warning: module BTF skipped: {e}");
        }
    }
    if d.probes.is_empty() {
        bail!(
            "no probe matches (profile {}, regex {}, module regex {}; {} dropped as untraceable)",
            profile.as_ref().map_or("none", |p| p.name.as_str()),
            s.regex.as_deref().unwrap_or("none"),
            s.module_regex.as_deref().unwrap_or("none"),
            d.untraceable
        );
    }
    Ok((d, profile))
}

fn list(a: ListArgs) -> Result<()> {
    single(&a.src)?;
    let (d, _) = load(&a.src, None)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(&mut out, &d.probes)?;
        writeln!(out)?;
        return Ok(());
    }
    for p in &d.probes {
        let pos: Vec<String> = p.skb_positions.iter().map(u8::to_string).collect();
        let be: Vec<&str> = p.backends.iter().map(|b| b.name()).collect();
        writeln!(
            out,
            "{:<48} {:<16} {:<10} skb={:<6} nargs={:<2}{}{} {}",
            p.name,
            p.module.as_deref().unwrap_or("vmlinux"),
            p.kind,
            pos.join(","),
            p.nargs,
            if p.variadic { " variadic" } else { "" },
            if p.byval { " byval" } else { "" },
            be.join(",")
        )?;
    }
    out.flush()?;
    say!(
        "{} probes ({} untraceable dropped; scanned {} types, {} functions)",
        d.probes.len(),
        d.untraceable,
        d.stats.types,
        d.stats.funcs
    );
    Ok(())
}

/// One kernel's probe set, generated (and compiled with --build).
struct KernelSet {
    dir: PathBuf,
    profile: String,
    identity: ipft_gen::btf::BtfIdentity,
    probes: usize,
}

fn generate(a: GenArgs) -> Result<()> {
    let pcap = a
        .filter
        .as_deref()
        .map(PcapFilter::compile)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let ext = a.extension.as_deref().map(Extension::load).transpose()?;
    let ext_rust = ext.as_ref().map(Extension::rust).transpose()?;
    let kernels = per_kernel(&a.src);
    let gen_set = |src: &Source, out: Option<PathBuf>| -> Result<KernelSet> {
        let set = generate_kernel(&a, src, out, pcap.as_ref())?;
        ipft_gen::extension::write_rust(&set.dir, ext_rust.as_deref())?;
        Ok(set)
    };
    if kernels.len() == 1 {
        let set = gen_set(&kernels[0], a.out.clone())?;
        return finish(&a, &set.dir.clone(), &[set], ext.as_ref());
    }
    let profile = a.src.profile.clone().unwrap_or_else(|| "ip".into());
    let top = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("ipft-{profile}-fleet")));
    let mut sets = Vec::new();
    for (i, src) in kernels.iter().enumerate() {
        sets.push(gen_set(src, Some(top.join(format!("k{i}"))))?);
    }
    if sets.iter().any(|s| s.profile != sets[0].profile) {
        bail!("every kernel of one tracer needs the same profile");
    }
    finish(&a, &top, &sets, ext.as_ref())
}

/// With --build: compile each kernel's object (the extension linked into
/// each), build one tracer holding them all, and write OUT/manifest.json.
fn finish(
    a: &GenArgs,
    top: &std::path::Path,
    sets: &[KernelSet],
    ext: Option<&Extension>,
) -> Result<()> {
    if !a.build && !a.object {
        say!(
            "ipft-gen: wrote {} (add --build for the tracer)",
            top.display()
        );
        return Ok(());
    }
    let t = Instant::now();
    for s in sets {
        let warnings = compile::compile_bpf(
            &s.dir.join("tracer.bpf.c"),
            &s.dir.join("tracer.bpf.o"),
            &[&s.dir],
        )
        .context("compiling the generated BPF C")?;
        if !warnings.trim().is_empty() {
            say!("ipft-gen: clang warnings:\n{}", warnings.trim_end());
        }
        if let Some(e) = ext {
            e.link_into(&s.dir.join("tracer.bpf.o"))?;
        }
    }
    let t_clang = t.elapsed();
    if a.object {
        for s in sets {
            say!("ipft-gen: wrote {}", s.dir.join("tracer.bpf.o").display());
        }
        return Ok(());
    }
    let dirs: Vec<PathBuf> = sets.iter().map(|s| s.dir.clone()).collect();
    let bin = compile::build_tracer(top, &sets[0].profile, &dirs)?;
    let kernels: Vec<ipft_gen::fleet::Kernel> = sets
        .iter()
        .map(|s| ipft_gen::fleet::Kernel {
            release: s.identity.release.clone(),
            btf_checksum: s.identity.checksum.clone(),
            source: s.identity.source.clone(),
            probes: s.probes,
        })
        .collect();
    ipft_gen::fleet::write_manifest(top, &bin, &sets[0].profile, &kernels)?;
    if a.timings {
        say!(
            "timing: bpftool+clang {:?}, cargo {:?}",
            t_clang,
            t.elapsed() - t_clang
        );
    }
    writeln!(std::io::stdout(), "{}", bin.display())?;
    Ok(())
}

fn generate_kernel(
    a: &GenArgs,
    src: &Source,
    out: Option<PathBuf>,
    pcap: Option<&PcapFilter>,
) -> Result<KernelSet> {
    let t0 = Instant::now();
    let (mut d, profile) = load(src, Some("ip"))?;
    let mut profile = profile.expect("default profile");
    let mut offer = target_offer(&d);
    let has_functions = d.probes.iter().any(|p| p.kind == ProbeKind::Function);
    if has_functions && offer.function_backends().is_empty() {
        let why: Vec<String> = d
            .probed
            .iter()
            .flat_map(|p| p.refused.iter().map(|(b, r)| format!("{b}: {r}")))
            .collect();
        say!(
            "ipft-gen: no function backend works on this kernel ({}): {}",
            if why.is_empty() {
                "none found".to_string()
            } else {
                why.join("; ")
            },
            if a.fallback_tracepoints {
                "using the tracepoints profile"
            } else {
                "tracing the profile's tracepoints only"
            }
        );
        if a.fallback_tracepoints {
            let src = Source {
                profile: Some("tracepoints".into()),
                ..src.clone()
            };
            let (d2, p2) = load(&src, None)?;
            d = d2;
            profile = p2.expect("tracepoints profile");
            offer = target_offer(&d);
        }
    }
    let out = out.unwrap_or_else(|| default_out(&profile.name, &d));
    let t_discover = t0.elapsed();
    let mut probes = d.probes.clone();
    for p in probes
        .iter_mut()
        .chain(d.end_markers.iter_mut())
        .chain(d.clone_functions.iter_mut())
    {
        p.backends = match p.kind {
            ProbeKind::Tracepoint => vec![Backend::TpBtf],
            ProbeKind::Function => {
                compiled_backends(p, &offer, a.backend.into(), d.probed.is_some())
            }
        };
    }
    let (mut probes, left_out): (Vec<_>, Vec<_>) =
        probes.into_iter().partition(|p| !p.backends.is_empty());
    if !offer.function_backends().is_empty() && !left_out.is_empty() {
        say!(
            "ipft-gen: {} functions out of reach left out:",
            left_out.len()
        );
        for p in &left_out {
            say!(
                "  {} (skb arg {}, {} args)",
                p.display_name(),
                p.skb_pos(),
                p.nargs
            );
        }
    }
    if probes.is_empty() {
        bail!(
            "no probe of profile {} is reachable with backend {}",
            profile.name,
            a.backend
                .to_possible_value()
                .map_or("?".into(), |v| v.get_name().to_string())
        );
    }
    let backends: Vec<Backend> = {
        let mut b: Vec<Backend> = probes.iter().flat_map(|p| p.backends.clone()).collect();
        b.sort();
        b.dedup();
        b
    };
    // Probes that only end journeys (the skb's memory freed), not printed,
    // and the clone functions --track-skb follows copies at (attached only
    // with it).
    let hidden_from = probes.len();
    let markers = ipft_gen::table::pick_end_markers(&d.end_markers, &probes, &backends);
    probes.extend(markers);
    probes.extend(ipft_gen::table::pick_clone_functions(
        &d.clone_functions,
        &backends,
    ));
    let plan = Plan {
        profile: &profile.name,
        identity: &d.identity,
        probes: &probes,
        hidden_from,
        returns: backends.contains(&Backend::Fentry),
        pcap,
    };
    let g = codegen::generate(&plan)?;
    compile::write_sources(&out, &g)?;
    let t_gen = t0.elapsed();
    say!(
        "ipft-gen: {} probes ({} functions via {}, {} tracepoints) -> {}",
        probes.len(),
        probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Function)
            .count(),
        Some(
            backends
                .iter()
                .filter(|b| b.for_functions())
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join("+")
        )
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into()),
        probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Tracepoint)
            .count(),
        out.display()
    );
    if a.timings {
        say!(
            "timing: discover {:?}, generate+write {:?}",
            t_discover,
            t_gen - t_discover
        );
    }
    if a.build || a.object {
        let btf_file = match src {
            Source { btf, .. } if !btf.is_empty() => btf[0].clone(),
            Source { btf_dir, .. } if !btf_dir.is_empty() => btf_dir[0].join("vmlinux"),
            _ => PathBuf::from(ipft_gen::btf::SYS_BTF_DIR).join("vmlinux"),
        };
        compile::vmlinux_h(&btf_file, &d.identity.checksum, &out)?;
    }
    Ok(KernelSet {
        dir: out,
        profile: profile.name.clone(),
        identity: d.identity.clone(),
        probes: hidden_from,
    })
}

/// ipft-gen.1 and its bash, zsh and fish completions.
fn man(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(dir.join("ipft-gen.1"), page)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd, "ipft-gen", dir)?;
    }
    Ok(())
}

/// Numbers for issues 3 and 4: discovery vs `bpftool btf dump -j`, and
/// discovery + generation of profile `all` up to C and Rust on disk.
fn bench(a: BenchArgs) -> Result<()> {
    let report = ipft_gen::bench::run(&a.btf, a.runs)?;
    write!(std::io::stdout(), "{report}")?;
    Ok(())
}
