//! `ipft-gen bench`: discovery beside `bpftool btf dump -j`, and discovery
//! plus generation of profile `all` up to C and Rust on disk (medians).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::codegen::{self, Plan};
use crate::compile;
use crate::discover::{discover, Backends, BtfInput};
use crate::probe::{Backend, Filter, ProbeKind, Profile};

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

/// Run the measurements on `btf`, `runs` times each; the report.
pub fn run(btf: &Path, runs: u32) -> Result<String> {
    let input = BtfInput::File(btf.to_path_buf());
    let mut n = 0;
    let discovery = median_ms(runs, || {
        let d = discover(&input, None, &Filter::default(), Backends::Probe)?;
        n = d.probes.len();
        Ok(())
    })?;
    let bpftool = compile::find_tool("bpftool");
    let dump = median_ms(runs, || {
        let o = std::process::Command::new(&bpftool)
            .args(["btf", "dump", "file"])
            .arg(btf)
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
    let codegen = median_ms(runs, || {
        let d = discover(&input, Some(&all), &Filter::default(), Backends::Probe)?;
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
            identity: &d.identity,
            probes: &probes,
            hidden_from: probes.len(),
            returns: true,
            pcap: None,
        };
        compile::write_sources(&out, &codegen::generate(&plan)?)?;
        Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&out);
    let mut o = String::new();
    writeln!(
        o,
        "discovery ({n} probes) from {}: {discovery:.1} ms (median of {})",
        btf.display(),
        runs
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
    Ok(o)
}
