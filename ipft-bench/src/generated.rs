//! A generated tracer's programs in `per-hit`: ipft-gen generates and
//! compiles (`--object`, no cargo build) the `tracepoints` profile for the
//! running kernel, cut to the bench's tracepoints, and the object is loaded
//! the way a tracer loads its own (`Session::specialised`).

use std::path::PathBuf;

use super::*;

/// ipft-gen: `$IPFT_GEN`, else the one beside this binary (cargo builds
/// both into the same directory).
fn ipft_gen() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("IPFT_GEN") {
        return Ok(PathBuf::from(p));
    }
    let beside = std::env::current_exe()?.with_file_name("ipft-gen");
    if beside.exists() {
        return Ok(beside);
    }
    bail!(
        "no ipft-gen beside {} (cargo build --release --bin ipft-gen, or set IPFT_GEN)",
        beside.display()
    )
}

/// Generate, compile and load the specialised programs for TRACEPOINTS.
pub(crate) fn load(config: Config) -> Result<Session> {
    let dir = std::env::temp_dir().join(format!("ipft-bench-gen-{}", std::process::id()));
    let regex = format!("^({})$", TRACEPOINTS.join("|"));
    let o = Command::new(ipft_gen()?)
        .args([
            "--btf",
            "/sys/kernel/btf/vmlinux",
            "--profile",
            "tracepoints",
        ])
        .args(["-r", &regex, "--object", "-o"])
        .arg(&dir)
        .output()
        .context("running ipft-gen")?;
    let read = || -> Result<(Vec<u8>, Vec<u8>)> {
        Ok((
            std::fs::read(dir.join("tracer.bpf.o"))?,
            std::fs::read(dir.join("probes.json"))?,
        ))
    };
    let files = read();
    let _ = std::fs::remove_dir_all(&dir);
    if !o.status.success() {
        bail!(
            "ipft-gen --object failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    let (object, probes) = files.context("reading ipft-gen's output")?;
    let table = table(&serde_json::from_slice(&probes)?)?;
    let selected: Vec<usize> = (0..table.len())
        .filter(|&i| !table[i].hidden && TRACEPOINTS.contains(&table[i].name.as_ref()))
        .collect();
    if selected.len() != TRACEPOINTS.len() {
        bail!(
            "the generated table has {} of the bench's tracepoints",
            selected.len()
        );
    }
    let opts = load::LoadOptions {
        config,
        ring_buffer_bytes: None,
        btf: None,
        pcap: None,
    };
    let session = Session::specialised(&object, &table, &selected, opts, &mut |_| true)?;
    if session.attached.len() != selected.len() {
        bail!(
            "generated programs attached {} of {}: {:?}",
            session.attached.len(),
            selected.len(),
            session.failed
        );
    }
    Ok(session)
}

/// The rows of probes.json (every one a tp_btf row of this profile).
fn table(rows: &serde_json::Value) -> Result<Vec<ProbeEntry>> {
    let rows = rows
        .as_array()
        .ok_or_else(|| anyhow!("probes.json is not a list"))?;
    rows.iter()
        .map(|r| {
            let num = |v: &serde_json::Value| {
                v.as_u64()
                    .ok_or_else(|| anyhow!("probes.json: bad row {r}"))
            };
            Ok(ProbeEntry {
                btf_id: num(&r["btf_id"])? as u32,
                ends_journey: r["ends_journey"].as_bool().unwrap_or(false),
                hidden: r["hidden"].as_bool().unwrap_or(false),
                ..ProbeEntry::tracepoint(
                    r["name"].as_str().unwrap_or_default().to_string(),
                    num(&r["shape"]["skb_pos"])? as u8,
                    num(&r["shape"]["nargs"])? as u8,
                    ProgramId::Typed {
                        kind: TypedKind::Tracepoint,
                        row: num(&r["program"]["Typed"]["row"])? as u32,
                    },
                )
            })
        })
        .collect()
}
