//! `ipft-bench per-hit` still runs: every group loads and attaches on this
//! kernel's tracepoints, sees the marked flood and ends with its summary
//! line. A smoke run (few hits), not a measurement: no number is judged.

use std::process::Command;

#[test]
fn per_hit_runs_and_summarises() {
    let out = Command::new(env!("CARGO_BIN_EXE_ipft-bench"))
        .args(["per-hit", "--rounds", "1", "--count", "500"])
        .output()
        .expect("run ipft-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ipft-bench per-hit failed ({}): {stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("per-hit: ipft non-matching ")
            && last.contains(" floor ")
            && last.contains("(M/F = "),
        "closing line: {last:?}\n{stdout}"
    );
    // Every ipft group received the events of its marked hits, none lost:
    // `label ... non-matching matching received lost` rows.
    for label in [
        "floor (",
        "ipft (generic",
        "generated tracer",
        "ipft -e len",
        "ipft --output-meta",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(label) && l.split_whitespace().count() >= 4)
            .unwrap_or_else(|| panic!("no row for {label:?}:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().rev().take(2).collect();
        assert_eq!(cols[0], "0", "{label}: events lost in {row:?}");
        assert_ne!(cols[1], "0", "{label}: no events received in {row:?}");
    }
}
