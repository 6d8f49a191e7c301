//! `ipft-gen`: list skb probes of a kernel, or generate and build a tracer.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use ipft_abi::{policy, Asked, KernelOffer};
use ipft_gen::codegen::{self, Plan};
use ipft_gen::compile;
use ipft_gen::discover::{discover, Backends, BtfInput, Discovery};
use ipft_gen::probe::{Backend, Filter, ProbeKind, Profile};
use ipft_gen::Probe;

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
    /// Raw BTF or ELF (vmlinux, .ko) with a .BTF section [default: running kernel].
    #[arg(long, value_name = "FILE", conflicts_with = "btf_dir")]
    btf: Option<PathBuf>,
    /// Directory laid out like /sys/kernel/btf (vmlinux + one file per module).
    #[arg(long, value_name = "DIR")]
    btf_dir: Option<PathBuf>,
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
    /// Where the running kernel allows no function probe, generate for its
    /// skb tracepoints (the `tracepoints` profile) instead.
    #[arg(long)]
    fallback_tracepoints: bool,
    /// Print timings of each stage on stderr.
    #[arg(long)]
    timings: bool,
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
    match (&s.btf, &s.btf_dir) {
        (Some(f), _) => BtfInput::File(f.clone()),
        (None, Some(d)) => BtfInput::Dir(d.clone()),
        (None, None) => BtfInput::Running,
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
        for e in &d.kernel.skipped {
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

/// What the tracer's kernel offers: the running kernel as probed; for
/// another kernel's BTF every backend its release can have, except that
/// auto leaves kprobe-multi out (6.1 and older lack it) and keeps fentry
/// only where kprobes cannot reach.
fn target_offer(d: &Discovery, asked: GenBackend) -> KernelOffer {
    match &d.probed {
        Some(p) => p.offer,
        None => {
            let all = KernelOffer::everything(d.kernel.identity.release.as_deref());
            match asked {
                GenBackend::Auto => all.without(Backend::KprobeMulti),
                _ => all,
            }
        }
    }
}

/// The backends compiled in for each probe: one chosen by the policy, or
/// with `all` every backend that reaches it.
fn compiled_backends(p: &Probe, offer: &KernelOffer, asked: GenBackend) -> Vec<Backend> {
    let shape = p.shape();
    let asked = match asked {
        GenBackend::All => return policy::reaching(&shape, true, offer),
        GenBackend::Auto => Asked::Auto,
        GenBackend::Kprobe => Asked::Only(Backend::Kprobe),
        GenBackend::KprobeMulti => Asked::Only(Backend::KprobeMulti),
        GenBackend::Fentry => Asked::Only(Backend::Fentry),
    };
    policy::choose(&shape, true, &p.backends, offer, asked)
        .ok()
        .into_iter()
        .collect()
}

/// `ipft-<profile>-<release>` (or the BTF checksum when the release is unknown).
fn default_out(profile: &str, d: &Discovery) -> PathBuf {
    let id = &d.kernel.identity;
    let kernel = id.release.clone().unwrap_or_else(|| id.checksum.clone());
    let safe: String = kernel
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || "._-".contains(c) {
            true => c,
            false => '_',
        })
        .collect();
    PathBuf::from(format!("ipft-{profile}-{safe}"))
}

fn generate(a: GenArgs) -> Result<()> {
    let t0 = Instant::now();
    let (mut d, profile) = load(&a.src, Some("ip"))?;
    let mut profile = profile.expect("default profile");
    let mut offer = target_offer(&d, a.backend);
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
                ..a.src.clone()
            };
            let (d2, p2) = load(&src, None)?;
            d = d2;
            profile = p2.expect("tracepoints profile");
            offer = target_offer(&d, a.backend);
        }
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_out(&profile.name, &d));
    let t_discover = t0.elapsed();
    let mut probes = d.probes.clone();
    for p in probes.iter_mut().chain(d.end_markers.iter_mut()) {
        p.backends = match p.kind {
            ProbeKind::Tracepoint => vec![Backend::TpBtf],
            ProbeKind::Function => compiled_backends(p, &offer, a.backend),
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
    // Probes that only end journeys (the skb's memory freed), not printed.
    let hidden_from = probes.len();
    let markers = ipft_gen::table::pick_end_markers(&d.end_markers, &probes, &backends);
    probes.extend(markers);
    let plan = Plan {
        profile: &profile.name,
        identity: &d.kernel.identity,
        probes: &probes,
        hidden_from,
        returns: backends.contains(&Backend::Fentry),
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
        backends
            .iter()
            .filter(|b| b.for_functions())
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join("+"),
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
    if a.build {
        let btf_file = match &a.src {
            Source { btf: Some(f), .. } => f.clone(),
            Source {
                btf_dir: Some(d), ..
            } => d.join("vmlinux"),
            _ => PathBuf::from(ipft_gen::btf::SYS_BTF_DIR).join("vmlinux"),
        };
        let t = Instant::now();
        compile::vmlinux_h(&btf_file, &d.kernel.identity.checksum, &out)?;
        let warnings = compile::compile_bpf(
            &out.join("tracer.bpf.c"),
            &out.join("tracer.bpf.o"),
            &[&out],
        )
        .context("compiling the generated BPF C")?;
        if !warnings.trim().is_empty() {
            say!("ipft-gen: clang warnings:\n{}", warnings.trim_end());
        }
        let t_clang = t.elapsed();
        let bin = compile::build_tracer(&out, &profile.name)?;
        if a.timings {
            say!(
                "timing: bpftool+clang {:?}, cargo {:?}",
                t_clang,
                t.elapsed() - t_clang
            );
        }
        writeln!(std::io::stdout(), "{}", bin.display())?;
    } else {
        say!(
            "ipft-gen: wrote {} (add --build for the tracer)",
            out.display()
        );
    }
    Ok(())
}

fn median_ms(runs: u32, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut v = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok(v[v.len() / 2])
}

/// Numbers for issues 3 and 4: discovery vs `bpftool btf dump -j`, and
/// discovery + generation of profile `all` up to C and Rust on disk.
fn bench(a: BenchArgs) -> Result<()> {
    let src = Source {
        btf: Some(a.btf.clone()),
        btf_dir: None,
        profile: None,
        regex: None,
        module_regex: None,
    };
    let mut n = 0;
    let discovery = median_ms(a.runs, || {
        let d = discover(&input(&src), None, &Filter::default(), Backends::Probe)?;
        n = d.probes.len();
        Ok(())
    })?;
    let bpftool = compile::find_tool("bpftool");
    let dump = median_ms(a.runs, || {
        let o = std::process::Command::new(&bpftool)
            .args(["btf", "dump", "file"])
            .arg(&a.btf)
            .arg("-j")
            .output()
            .context("running bpftool")?;
        if !o.status.success() {
            bail!("bpftool failed");
        }
        Ok(())
    })?;
    let out = std::env::temp_dir().join(format!("ipft-gen-bench-{}", std::process::id()));
    let all = Profile::load("all")?;
    let mut generated = 0;
    let codegen = median_ms(a.runs, || {
        let d = discover(
            &input(&src),
            Some(&all),
            &Filter::default(),
            Backends::Probe,
        )?;
        let probes: Vec<_> = d
            .probes
            .iter()
            .filter(|p| p.kind == ProbeKind::Tracepoint || p.backends.contains(&Backend::Fentry))
            .cloned()
            .map(|mut p| {
                if p.kind == ProbeKind::Function {
                    p.backends = vec![Backend::Fentry];
                }
                p
            })
            .collect();
        generated = probes.len();
        let plan = Plan {
            profile: "all",
            identity: &d.kernel.identity,
            probes: &probes,
            hidden_from: probes.len(),
            returns: true,
        };
        compile::write_sources(&out, &codegen::generate(&plan)?)?;
        Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&out);
    let mut o = std::io::stdout().lock();
    writeln!(
        o,
        "discovery ({n} probes) from {}: {discovery:.1} ms (median of {})",
        a.btf.display(),
        a.runs
    )?;
    writeln!(
        o,
        "bpftool btf dump -j, same file:      {dump:.1} ms  (ratio ipft/bpftool {:.2})",
        discovery / dump
    )?;
    writeln!(
        o,
        "ipft-gen profile all ({generated} probes, fentry) to C + Rust on disk: {codegen:.1} ms"
    )?;
    Ok(())
}
