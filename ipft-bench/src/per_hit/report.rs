//! The per-hit report: net costs per group and round, the goals, and the
//! one-line summary the bench ends with.

use super::*;

/// `lost`: ring buffer losses of ipft's, the generated, the extension's and
/// the tracking programs.
pub(super) fn report(
    phases: &[Vec<Phase>; 2],
    counts: &Counts,
    lost: &HashMap<Group, u64>,
    elapsed: Duration,
) -> String {
    let ipft_lost = lost[&Group::Ipft];
    let mut out = String::new();
    // Per round: gross, and net of the empty program of the same round.
    let gross = |p: usize, g: Group| median(phases[p].iter().map(|r| r[&g].0).collect());
    let net = |p: usize, g: Group| {
        median(
            phases[p]
                .iter()
                .map(|r| r[&g].0 - r[&Group::Empty].0)
                .collect(),
        )
    };
    let hits = |p: usize| -> u64 { phases[p].iter().map(|r| r[&Group::Empty].1).sum() };
    outln!(
        out,
        "hits per program: non-matching {}, matching {} ({} rounds, {:.1}s)",
        hits(0),
        hits(1),
        phases[0].len(),
        elapsed.as_secs_f64()
    );
    outln!(out);
    outln!(
        out,
        "{:<32} {:>22} {:>22} {:>16} {:>12}",
        "program",
        "non-matching ns/hit",
        "matching ns/hit",
        "events received",
        "events lost"
    );
    for g in &Group::ALL[1..] {
        let g = *g;
        let rx = counts.of(g).load(Ordering::Relaxed);
        let lost = match g {
            Group::Ipft2Style => counts.ipft2_lost.load(Ordering::Relaxed),
            g => lost.get(&g).copied().unwrap_or(0),
        };
        outln!(
            out,
            "{:<32} {:>22.1} {:>22.1} {:>16} {:>12}",
            g.label(),
            net(0, g),
            net(1, g),
            rx,
            lost
        );
    }
    outln!(
        out,
        "(net of the empty program in the same run; medians over rounds)"
    );
    outln!(out);
    outln!(out, "gross (bpf_stats as read):");
    for g in Group::ALL {
        outln!(
            out,
            "{:<32} {:>22.1} {:>22.1}",
            g.label(),
            gross(0, g),
            gross(1, g)
        );
    }
    outln!(out);
    let ratio = |p: usize| {
        let d = net(p, Group::Ipft2Style);
        if d > 0.0 {
            format!("{:.3}", net(p, Group::Ipft) / d)
        } else {
            "n/a (ipftrace2-style net <= 0)".into()
        }
    };
    outln!(
        out,
        "ipft / ipftrace2-style (net): non-matching {}, matching {}",
        ratio(0),
        ratio(1)
    );
    let m = net(1, Group::Ipft) / net(1, Group::Ipft2Style);
    outln!(
        out,
        "goals: matching <= 0.5x ipftrace2-style {}; non-matching <= 30 ns/hit {}",
        verdict(m.is_finite() && m <= 0.5),
        verdict(net(0, Group::Ipft) <= 30.0)
    );
    let (n, m, f, st) = (
        net(0, Group::Ipft),
        net(1, Group::Ipft),
        net(1, Group::Floor),
        net(1, Group::Stamped),
    );
    let (gn, gm) = (net(0, Group::Generated), net(1, Group::Generated));
    outln!(
        out,
        "goals (issue): matching <= 1.3x floor {}; non-matching <= 5 ns {}; 0 lost {} \
         (generated: {}, {}, {})",
        verdict(f > 0.0 && m / f <= 1.3),
        verdict(n <= 5.0),
        verdict(ipft_lost == 0),
        verdict(f > 0.0 && gm / f <= 1.3),
        verdict(gn <= 5.0),
        verdict(lost[&Group::Generated] == 0)
    );
    outln!(
        out,
        "tracepoints: ipft's program non-matching {n:.1} ns, matching {m:.1} ns; a tp_btf copy \
         each (kernels before 6.10) non-matching {:.1} ns, matching {:.1} ns",
        net(0, Group::Copies),
        net(1, Group::Copies)
    );
    let (tn, tm) = (net(0, Group::Track), net(1, Group::Track));
    outln!(
        out,
        "track-skb: ipft --track-skb non-matching {tn:.1} ns (+{:.1} ns per miss for the \
         live-set lookup), matching {tm:.1} ns",
        tn - n
    );
    let (pm, px) = (net(1, Group::PcapMatch), net(1, Group::PcapMiss));
    outln!(
        out,
        "filter: ipft 'icmp' matching {pm:.1} ns (+{:.1} ns over ipft), ipft 'udp' on the same \
         marked packets (filtered out) {px:.1} ns; unmarked: {:.1} / {:.1} ns",
        pm - m,
        net(0, Group::PcapMatch),
        net(0, Group::PcapMiss)
    );
    for (g, what) in [
        (Group::Extension, "payload: ipft -e len"),
        (Group::Meta, "details: --output-meta --output-tuple"),
        (
            Group::Capture,
            "details: --output-stack --output-pcap (snaplen 1514)",
        ),
    ] {
        let (xn, xm) = (net(0, g), net(1, g));
        outln!(
            out,
            "{what} non-matching {xn:.1} ns, matching {xm:.1} ns (+{:.1} ns per matching hit \
             over ipft, {:.2}x)",
            xm - m,
            xm / m
        );
    }
    outln!(
        out,
        "per-hit: ipft non-matching {n:.1} ns, matching {m:.1} ns, floor {f:.1} ns (M/F = {:.2}); \
         generated non-matching {gn:.1} ns, matching {gm:.1} ns (M/F = {:.2}); \
         floor with the event's timestamp {st:.1} ns (ipft {:.2}x, generated {:.2}x)",
        m / f,
        gm / f,
        m / st,
        gm / st
    );
    out
}
