//! Property tests of the BTF loading path on hostile bytes: `KernelBtf`
//! loading (raw files take the mmap backend, which parses lazily) then
//! `btf::scan` and `btf::enum_values`, through a file written for each case.
//! Each must return (Ok or Err), never panic out and never hang: every case
//! runs on its own thread, and [`HANG`] only tells a hang from a slow
//! machine (cases take milliseconds; it is no timing assertion).
//!
//! Inputs: random byte strings (bare, and behind a consistent BTF header so
//! they reach the type parser), mutations of tests/fixtures/btf/mini.btf
//! (bit flips, truncations, inserted and deleted bytes, overwritten words),
//! a few hundred mutations of a 200 KB slice of /sys/kernel/btf/vmlinux
//! (when present) and of a module's split BTF over its base (when the
//! kernel lab cache has one).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ipft_gen::btf::{self, KernelBtf};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

const HANG: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config(cases: u32) -> Config {
    // Caught parser panics are errors here, not noise on stderr.
    ipft_gen::btf::install_quiet_panic_hook();
    Config {
        cases,
        // Cases are cheap but a hang costs HANG per shrink step.
        max_shrink_iters: 200,
        // No proptest-regressions/ files in the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipft-fuzz-btf-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What one case does on its thread, given the files written for it.
enum Load {
    /// `KernelBtf::from_file`.
    File(PathBuf),
    /// `KernelBtf::from_file(base)` then `add_module(module)`.
    Split(PathBuf, PathBuf),
}

fn load_and_scan(l: &Load) -> Result<usize, String> {
    let k = match l {
        Load::File(f) => KernelBtf::from_file(f).map_err(|e| e.to_string())?,
        Load::Split(base, m) => {
            let mut k = KernelBtf::from_file(base).map_err(|e| e.to_string())?;
            k.add_module(m).map_err(|e| e.to_string())?;
            k
        }
    };
    let (probes, _) = btf::scan(&k).map_err(|e| e.to_string())?;
    let _ = btf::enum_values(&k, "skb_drop_reason");
    Ok(probes.len())
}

/// Run one case on a thread with a time bound. Panics inside ipft-gen that
/// escape to here, and hangs, fail the property.
fn check(load: Load, tally: &Tally) -> Result<(), TestCaseError> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = load_and_scan(&load);
        let _ = tx.send(());
        let (Load::File(f) | Load::Split(_, f)) = &load;
        let _ = std::fs::remove_file(f);
        r
    });
    match rx.recv_timeout(HANG) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            return Err(TestCaseError::fail(format!(
                "loading + scan still running after {HANG:?} (hang)"
            )))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {}
    }
    match handle.join() {
        Ok(r) => {
            tally.add(&r);
            Ok(())
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TestCaseError::fail(format!("panicked: {msg}")))
        }
    }
}

/// Outcomes of one property: loaded with probes, loaded without, errors,
/// errors from a parser panic that ipft-gen caught.
#[derive(Default)]
struct Tally([AtomicU64; 4]);

impl Tally {
    fn add(&self, r: &Result<usize, String>) {
        if std::env::var_os("IPFT_FUZZ_VERBOSE").is_some() {
            if let Err(e) = r {
                eprintln!("ERR {}", e.split_once(": ").map_or(e.as_str(), |x| x.1));
            }
        }
        let i = match r {
            Ok(n) if *n > 0 => 0,
            Ok(_) => 1,
            Err(e) if e.contains("parser failed") || e.contains("walking types") => 3,
            Err(_) => 2,
        };
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self, what: &str) {
        let t: Vec<u64> = self.0.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        eprintln!(
            "{what}: {} loaded with probes, {} loaded without, {} errors, {} caught panics",
            t[0], t[1], t[2], t[3]
        );
    }
}

fn write_case(tag: &str, bytes: &[u8]) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let p = scratch_dir().join(format!("{tag}-{n}.btf"));
    std::fs::write(&p, bytes).unwrap();
    p
}

fn check_bytes(tag: &str, bytes: &[u8], tally: &Tally) -> Result<(), TestCaseError> {
    check(Load::File(write_case(tag, bytes)), tally)
}

// ---------------------------------------------------------------- inputs

fn mini() -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures/btf/mini.btf")).unwrap()
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

/// A BTF header (24 bytes) whose sections cover `types` and `strings`.
fn with_header(types: &[u8], strings: &[u8]) -> Vec<u8> {
    let mut b = vec![0x9f, 0xeb, 1, 0];
    for v in [
        24,
        0,
        types.len() as u32,
        types.len() as u32,
        strings.len() as u32,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(types);
    b.extend_from_slice(strings);
    b
}

/// One type record of a type section.
struct Rec {
    /// Byte offset in the type section.
    off: usize,
    kind: u32,
    /// Offset just past the record and its trailing data.
    end: usize,
    /// Offsets of the string offsets it holds (its name, member names).
    names: Vec<usize>,
}

/// Walk a type section record by record (stops at the first record that
/// does not fit).
fn walk_types(types: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut o = 0usize;
    while o + 12 <= types.len() {
        let info = u32_at(types, o + 4);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        // (size of each trailing record, how many, whether each starts with a name)
        let (rec, n, named) = match kind {
            1 | 14 | 17 => (4, 1, false),   // INT, VAR, DECL_TAG
            3 => (12, 1, false),            // ARRAY
            4 | 5 | 19 => (12, vlen, true), // STRUCT, UNION, ENUM64
            6 | 13 => (8, vlen, true),      // ENUM, FUNC_PROTO
            15 => (12, vlen, false),        // DATASEC
            _ => (0, 0, false),
        };
        let end = o + 12 + rec * n;
        if end > types.len() {
            break;
        }
        let mut names = vec![o];
        if named {
            names.extend((0..n).map(|i| o + 12 + i * rec));
        }
        out.push(Rec {
            off: o,
            kind,
            end,
            names,
        });
        o = end;
    }
    out
}

/// (type section, string section) of a BTF blob.
fn sections(b: &[u8]) -> (&[u8], &[u8]) {
    let hdr = u32_at(b, 4) as usize;
    let (to, tl, so, sl) = (
        u32_at(b, 8) as usize,
        u32_at(b, 12) as usize,
        u32_at(b, 16) as usize,
        u32_at(b, 20) as usize,
    );
    (&b[hdr + to..hdr + to + tl], &b[hdr + so..hdr + so + sl])
}

/// The types of a BTF blob that fit in `budget` bytes (cut at a type
/// boundary) and the start of the string section that their names need,
/// under a header that says so: a small BTF that loads intact.
fn slice_btf(b: &[u8], budget: usize) -> Vec<u8> {
    let (types, strings) = sections(b);
    let recs: Vec<Rec> = walk_types(types)
        .into_iter()
        .take_while(|r| r.end <= budget)
        .collect();
    let cut = recs.last().map_or(0, |r| r.end);
    let max_name = recs
        .iter()
        .flat_map(|r| r.names.iter().map(|&o| u32_at(types, o) as usize))
        .max()
        .unwrap_or(0);
    let end = max_name + strings[max_name..].iter().position(|&c| c == 0).unwrap() + 1;
    with_header(&types[..cut], &strings[..end])
}

/// One edit to a byte string.
#[derive(Debug, Clone)]
enum Edit {
    /// XOR a byte (position as a fraction of the length).
    Flip(f64, u8),
    /// Keep only the first part.
    Truncate(f64),
    /// Insert bytes.
    Insert(f64, Vec<u8>),
    /// Delete a range.
    Delete(f64, usize),
    /// Overwrite an aligned 32-bit word with an interesting value.
    Word(f64, u32),
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = 0.0f64..1.0;
    let word = prop_oneof![
        Just(0u32),
        Just(1),
        Just(2),
        Just(0xffff),
        Just(0x7fff_ffff),
        Just(0xffff_ffff),
        // kind/vlen info words: every kind, vlen 0 or big.
        (0u32..32, prop_oneof![Just(0u32), Just(1), Just(0xffff)]).prop_map(|(k, v)| (k << 24) | v),
        any::<u32>(),
    ];
    prop_oneof![
        4 => (pos.clone(), any::<u8>().prop_filter("non-zero", |x| *x != 0))
            .prop_map(|(p, x)| Edit::Flip(p, x)),
        1 => pos.clone().prop_map(Edit::Truncate),
        1 => (pos.clone(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, v)| Edit::Insert(p, v)),
        1 => (pos.clone(), 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        3 => (pos, word).prop_map(|(p, w)| Edit::Word(p, w)),
    ]
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len.saturating_sub(1));
        match e {
            Edit::Flip(p, x) if !b.is_empty() => {
                let i = at(*p, b.len());
                b[i] ^= x;
            }
            Edit::Truncate(p) => b.truncate(at(*p, b.len())),
            Edit::Insert(p, v) => {
                let i = at(*p, b.len() + 1);
                b.splice(i..i, v.iter().copied());
            }
            Edit::Delete(p, n) if !b.is_empty() => {
                let i = at(*p, b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Word(p, w) if b.len() >= 4 => {
                let i = at(*p, b.len() - 3) / 4 * 4;
                b[i..i + 4].copy_from_slice(&w.to_le_bytes());
            }
            _ => {}
        }
    }
    b
}

/// Mutations that leave the header alone reach the parser more often.
fn apply_keep_header(b: &[u8], edits: &[Edit]) -> Vec<u8> {
    let hdr = (u32_at(b, 4) as usize).min(b.len());
    let body = apply(b[hdr..].to_vec(), edits);
    let (mut out, tl) = (b[..hdr].to_vec(), u32_at(b, 12) as usize);
    // Keep the header consistent with a body that changed length.
    let tl = tl.min(body.len()) / 4 * 4;
    out[12..16].copy_from_slice(&(tl as u32).to_le_bytes());
    out[16..20].copy_from_slice(&(tl as u32).to_le_bytes());
    out[20..24].copy_from_slice(&((body.len() - tl) as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

// ---------------------------------------------------------------- properties

#[test]
fn random_bytes() {
    let t = Tally::default();
    let mut r = proptest::test_runner::TestRunner::new(config(500));
    r.run(&prop::collection::vec(any::<u8>(), 0..512), |b| {
        check_bytes("rand", &b, &t)
    })
    .unwrap();
    t.report("random_bytes");
}

#[test]
fn random_sections_behind_a_valid_header() {
    let t = Tally::default();
    let mut r = proptest::test_runner::TestRunner::new(config(1500));
    let strat = (
        prop::collection::vec(any::<u32>(), 0..96),
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(b'a'), Just(b'_'), any::<u8>()],
            0..128,
        ),
    );
    r.run(&strat, |(words, strings)| {
        let types: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        check_bytes("hdr", &with_header(&types, &strings), &t)
    })
    .unwrap();
    t.report("random_sections_behind_a_valid_header");
}

#[test]
fn mutated_mini() {
    let m = mini();
    // The unmutated fixture loads and has probes.
    let k = KernelBtf::from_file(&root().join("tests/fixtures/btf/mini.btf")).unwrap();
    assert!(!btf::scan(&k).unwrap().0.is_empty());
    let t = Tally::default();
    let mut r = proptest::test_runner::TestRunner::new(config(3000));
    r.run(
        &(any::<bool>(), prop::collection::vec(edit(), 1..6)),
        |(keep_header, edits)| {
            let b = if keep_header {
                apply_keep_header(&m, &edits)
            } else {
                apply(m.clone(), &edits)
            };
            check_bytes("mini", &b, &t)
        },
    )
    .unwrap();
    t.report("mutated_mini");
}

/// A slice of the running kernel's BTF (its first ~120 KB of types and the
/// strings they name: about 200 KB), mutated.
#[test]
fn mutated_vmlinux_slice() {
    let Ok(v) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        eprintln!("no /sys/kernel/btf/vmlinux: skipped");
        return;
    };
    let slice = slice_btf(&v, 120 << 10);
    eprintln!("vmlinux slice: {} bytes", slice.len());
    let t = Tally::default();
    check_bytes("vmlinux-slice", &slice, &t).unwrap();
    let mut r = proptest::test_runner::TestRunner::new(config(300));
    r.run(
        &(any::<bool>(), prop::collection::vec(edit(), 1..8)),
        |(keep_header, edits)| {
            let b = if keep_header {
                apply_keep_header(&slice, &edits)
            } else {
                apply(slice.clone(), &edits)
            };
            check_bytes("vmlinux", &b, &t)
        },
    )
    .unwrap();
    t.report("mutated_vmlinux_slice");
}

/// Reference cycles: every type that refers to another by its `type` field
/// (PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, VAR, TYPE_TAG) of
/// mini.btf made to refer to itself, and every pair made to refer to each
/// other. The walker must not follow them forever.
#[test]
fn reference_cycles() {
    let m = mini();
    let hdr = u32_at(&m, 4) as usize + u32_at(&m, 8) as usize;
    let (types, _) = sections(&m);
    // (type id, offset of its `type` field in the file)
    let refs: Vec<(u32, usize)> = walk_types(types)
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.kind, 2 | 8 | 9 | 10 | 11 | 12 | 14 | 18))
        .map(|(i, r)| (i as u32 + 1, hdr + r.off + 8))
        .collect();
    assert!(
        refs.len() > 10,
        "{} reference types in mini.btf",
        refs.len()
    );
    let t = Tally::default();
    let set = |b: &mut [u8], at: usize, id: u32| b[at..at + 4].copy_from_slice(&id.to_le_bytes());
    for &(id, at) in &refs {
        let mut b = m.clone();
        set(&mut b, at, id);
        check_bytes("self", &b, &t).unwrap();
    }
    for (i, &(a, at_a)) in refs.iter().enumerate() {
        for &(b_id, at_b) in &refs[i + 1..] {
            let mut b = m.clone();
            set(&mut b, at_a, b_id);
            set(&mut b, at_b, a);
            check_bytes("pair", &b, &t).unwrap();
        }
    }
    t.report("reference_cycles");
}

/// The whole running-kernel BTF with a few bytes of its type section
/// changed: loads usually still succeed, so the scan walks real, subtly
/// wrong types (ids pointing anywhere, kinds changed).
#[test]
fn mutated_full_vmlinux() {
    let Ok(v) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        eprintln!("no /sys/kernel/btf/vmlinux: skipped");
        return;
    };
    let hdr = u32_at(&v, 4) as usize + u32_at(&v, 8) as usize;
    let tl = u32_at(&v, 12) as usize;
    let t = Tally::default();
    let mut r = proptest::test_runner::TestRunner::new(config(60));
    let edit = (0..tl / 4, any::<u32>(), 0u32..3);
    r.run(&prop::collection::vec(edit, 1..8), |edits| {
        let mut b = v.clone();
        for (word, val, how) in edits {
            let at = hdr + word * 4;
            let old = u32_at(&b, at);
            let new = match how {
                0 => old ^ (1 << (val % 32)),
                1 => val % 200_000, // a type id, in range or not
                _ => val,
            };
            b[at..at + 4].copy_from_slice(&new.to_le_bytes());
        }
        check_bytes("full", &b, &t)
    })
    .unwrap();
    t.report("mutated_full_vmlinux");
}

/// Split BTF: a module of the Debian 6.1 lab kernel (if cached) mutated on
/// top of its intact base.
#[test]
fn mutated_split_module() {
    let cache = std::env::var_os("IPFT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/ipft")))
        .map(|c| c.join("kernels/6.1/btf"));
    let Some(dir) = cache.filter(|d| d.join("veth").is_file()) else {
        eprintln!("no kernel lab cache with btf/veth: skipped");
        return;
    };
    let base = dir.join("vmlinux");
    let veth = std::fs::read(dir.join("veth")).unwrap();
    let t = Tally::default();
    check(Load::Split(base.clone(), write_case("veth", &veth)), &t).unwrap();
    let mut r = proptest::test_runner::TestRunner::new(config(150));
    r.run(
        &(any::<bool>(), prop::collection::vec(edit(), 1..6)),
        |(keep_header, edits)| {
            let b = if keep_header {
                apply_keep_header(&veth, &edits)
            } else {
                apply(veth.clone(), &edits)
            };
            check(Load::Split(base.clone(), write_case("veth", &b)), &t)
        },
    )
    .unwrap();
    t.report("mutated_split_module");
}
