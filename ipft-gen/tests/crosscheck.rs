//! Cross-check of `ipft-gen list --json` against an independent reading of
//! the same BTF: bpftool's JSON dump, walked here with serde_json.
//!
//! From the dump we derive every probe:
//! - functions: FUNC -> FUNC_PROTO -> params; a parameter is an skb when,
//!   after stripping TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG, it is a PTR to
//!   (stripped) STRUCT `sk_buff`; a stripped STRUCT/UNION is "by value"; a
//!   trailing parameter of type 0 is `...`; a stripped ENUM `skb_drop_reason`
//!   gives the drop reason position;
//! - tracepoints: TYPEDEF `btf_trace_<name>` -> PTR -> FUNC_PROTO, first
//!   parameter (`void *__data`) not counted.
//!
//! Within one BTF object the first definition (lowest id) of a name wins, as
//! in ipft-gen. `list` on a file or directory computes backends statically
//! with the rule of the README ("Backend reach"), with no kernel release known
//! (fentry sees 12 arguments), and drops functions no backend reaches. The
//! test applies the same documented rule to the bpftool set: the probes it
//! keeps, with their expected backends, must equal ipft-gen's listing exactly;
//! each probe it drops must be byval, variadic or have more than 12
//! arguments, with its skb beyond the registers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

const BPFTOOL: &str = "/usr/sbin/bpftool";
/// fentry argument limit when the kernel release is unknown (6.6+ rule).
const FENTRY_MAX_ARGS: u8 = 12;
/// Last argument kprobes read (registers 0..5, then the stack, x86_64).
const KPROBE_MAX_SKB_POS: u8 = 11;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------- bpftool side

#[derive(Deserialize)]
struct Dump {
    types: Vec<Ty>,
}

#[derive(Deserialize)]
struct Ty {
    id: u32,
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    type_id: Option<u32>,
    #[serde(default)]
    params: Vec<Param>,
}

#[derive(Deserialize)]
struct Param {
    type_id: u32,
}

/// `bpftool [-B base] btf dump file F -j`, parsed.
fn bpftool_dump(file: &Path, base: Option<&Path>) -> Vec<Ty> {
    let mut cmd = Command::new(BPFTOOL);
    if let Some(b) = base {
        cmd.arg("-B").arg(b);
    }
    cmd.args(["btf", "dump", "file"]).arg(file).arg("-j");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BPFTOOL}: {e}"));
    assert!(
        out.status.success(),
        "bpftool btf dump file {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Dump = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bpftool JSON for {}: {e}", file.display()));
    d.types
}

/// One probe, as both sides describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Row {
    module: Option<String>,
    kind: String,
    name: String,
    skb_positions: Vec<u8>,
    nargs: u8,
    variadic: bool,
    byval: bool,
    /// Derived side only: a by-value struct shifts the skb off its register.
    #[serde(default)]
    byval_before_skb: bool,
    #[serde(default)]
    drop_reason_pos: Option<u8>,
    backends: Vec<String>,
}

#[derive(PartialEq)]
enum Class {
    Skb,
    DropReason,
    ByVal,
    Other,
}

struct Types<'a> {
    by_id: HashMap<u32, &'a Ty>,
}

impl Types<'_> {
    fn get(&self, id: u32) -> Option<&Ty> {
        self.by_id.get(&id).copied()
    }

    /// Strip TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG (bounded: no cycles).
    fn strip(&self, mut id: u32) -> Option<&Ty> {
        for _ in 0..64 {
            let t = self.get(id)?;
            match t.kind.as_str() {
                "TYPEDEF" | "CONST" | "VOLATILE" | "RESTRICT" | "TYPE_TAG" => id = t.type_id?,
                _ => return Some(t),
            }
        }
        None
    }

    fn classify(&self, id: u32) -> Class {
        let Some(t) = self.strip(id) else {
            return Class::Other;
        };
        match t.kind.as_str() {
            "PTR" => match t.type_id.and_then(|p| self.strip(p)) {
                Some(s) if s.kind == "STRUCT" && s.name == "sk_buff" => Class::Skb,
                _ => Class::Other,
            },
            "STRUCT" | "UNION" => Class::ByVal,
            "ENUM" if t.name == "skb_drop_reason" => Class::DropReason,
            _ => Class::Other,
        }
    }

    /// A probe row from a prototype, `None` without an skb argument.
    fn row(&self, proto: &Ty, skip: usize) -> Option<Row> {
        let mut r = Row {
            module: None,
            kind: String::new(),
            name: String::new(),
            skb_positions: Vec::new(),
            nargs: 0,
            variadic: false,
            byval: false,
            byval_before_skb: false,
            drop_reason_pos: None,
            backends: Vec::new(),
        };
        let n = proto.params.len();
        for (i, p) in proto.params.iter().enumerate().skip(skip) {
            if p.type_id == 0 && i == n - 1 {
                r.variadic = true;
                continue;
            }
            let pos = r.nargs;
            r.nargs += 1;
            match self.classify(p.type_id) {
                Class::Skb => r.skb_positions.push(pos),
                Class::DropReason => {
                    r.drop_reason_pos.get_or_insert(pos);
                }
                Class::ByVal => {
                    r.byval = true;
                    r.byval_before_skb |= r.skb_positions.is_empty();
                }
                Class::Other => {}
            }
        }
        (!r.skb_positions.is_empty()).then_some(r)
    }
}

/// Every skb probe of the types with ids in `own`, first definition of a
/// name winning. Returns the rows and how many duplicate names were skipped
/// (printed, with whether their prototype differs from the one kept).
fn probes_of(all: &[&Ty], own: &[Ty], module: Option<&str>) -> (Vec<Row>, usize) {
    let types = Types {
        by_id: all.iter().map(|t| (t.id, *t)).collect(),
    };
    let mut seen: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    let mut rows = Vec::new();
    let mut dups = 0;
    let mut own: Vec<&Ty> = own.iter().collect();
    own.sort_by_key(|t| t.id);
    for t in own {
        let (kind, name, proto, skip) = match t.kind.as_str() {
            "FUNC" => {
                let Some(p) = t.type_id.and_then(|i| types.get(i)) else {
                    continue;
                };
                ("function", t.name.clone(), p, 0)
            }
            "TYPEDEF" => {
                let Some(tp) = t.name.strip_prefix("btf_trace_") else {
                    continue;
                };
                let Some(ptr) = t.type_id.and_then(|i| types.get(i)) else {
                    continue;
                };
                if ptr.kind != "PTR" {
                    continue;
                }
                let Some(p) = ptr.type_id.and_then(|i| types.get(i)) else {
                    continue;
                };
                if p.params.is_empty() {
                    continue;
                }
                ("tracepoint", tp.to_string(), p, 1)
            }
            _ => continue,
        };
        if proto.kind != "FUNC_PROTO" {
            continue;
        }
        let Some(mut r) = types.row(proto, skip) else {
            continue;
        };
        r.kind = kind.into();
        r.name = name.clone();
        r.module = module.map(str::to_string);
        if let Some(&kept) = seen.get(&(kind, name.clone())) {
            dups += 1;
            let same = rows[kept] == r;
            eprintln!(
                "    duplicate {kind} {name} (id {}) skipped, {}",
                t.id,
                if same {
                    "same prototype"
                } else {
                    "DIFFERENT prototype"
                }
            );
            continue;
        }
        seen.insert((kind, name), rows.len());
        rows.push(r);
    }
    (rows, dups)
}

/// The README's backend rule for a kernel of unknown release, in auto's
/// order of preference (kprobe-multi, kprobe, fentry).
fn static_backends(r: &Row, fentry_max: u8) -> Vec<String> {
    if r.kind == "tracepoint" {
        return vec!["tp_btf".into()];
    }
    let mut b = Vec::new();
    if r.skb_positions[0] <= KPROBE_MAX_SKB_POS && !r.byval_before_skb {
        b.push("kprobe-multi".into());
        b.push("kprobe".into());
    }
    if !r.byval && !r.variadic && r.nargs <= fentry_max {
        b.push("fentry".into());
    }
    b
}

// ---------------------------------------------------------------- ipft-gen side

fn ipft_gen_list(args: &[&std::ffi::OsStr]) -> Vec<Row> {
    let out = Command::new(env!("CARGO_BIN_EXE_ipft-gen"))
        .arg("list")
        .args(args)
        .args(["--profile", "all", "--json"])
        .output()
        .expect("run ipft-gen");
    assert!(
        out.status.success(),
        "ipft-gen list {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ipft-gen list --json output")
}

// ---------------------------------------------------------------- comparison

struct Outcome {
    compared: usize,
    dropped: Vec<Row>,
    listed: Vec<Row>,
}

fn fmt_rows<'a>(it: impl Iterator<Item = &'a Row>) -> String {
    it.take(20)
        .map(|r| format!("    {r:?}\n"))
        .collect::<String>()
}

/// Compare ipft-gen's listing with the bpftool-derived set (all objects).
/// `fentry_max`: the arguments fentry sees on that kernel.
fn compare_with(
    what: &str,
    listed: Vec<Row>,
    derived: Vec<Row>,
    dups: usize,
    fentry_max: u8,
) -> Outcome {
    let mut expected = Vec::new();
    let mut dropped = Vec::new();
    for mut r in derived {
        r.backends = static_backends(&r, fentry_max);
        r.byval_before_skb = false; // not in ipft-gen's JSON
        if r.backends.is_empty() {
            dropped.push(r);
        } else {
            expected.push(r);
        }
    }
    let exp: BTreeSet<Row> = expected.iter().cloned().collect();
    let got: BTreeSet<Row> = listed.iter().cloned().collect();
    assert_eq!(
        got.len(),
        listed.len(),
        "{what}: ipft-gen listed duplicates"
    );
    let missing: Vec<&Row> = exp.difference(&got).collect();
    let extra: Vec<&Row> = got.difference(&exp).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: ipft-gen and bpftool disagree ({} expected, {} listed)\n  \
         {} from bpftool not listed by ipft-gen (first 20):\n{}  \
         {} listed by ipft-gen not derived from bpftool (first 20):\n{}",
        exp.len(),
        got.len(),
        missing.len(),
        fmt_rows(missing.iter().copied()),
        extra.len(),
        fmt_rows(extra.iter().copied()),
    );
    // Every dropped probe is unreachable for a documented reason.
    let bad: Vec<&Row> = dropped
        .iter()
        .filter(|r| {
            r.kind != "function"
                || !(r.byval
                    || (r.skb_positions[0] > KPROBE_MAX_SKB_POS
                        && (r.variadic || r.nargs > fentry_max)))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: dropped without a reason (first 20):\n{}",
        fmt_rows(bad.into_iter())
    );
    eprintln!(
        "{what}: {} probes compared equal ({} functions, {} tracepoints, {} in modules); \
         {} dropped as unreachable ({} byval, {} variadic); {} duplicate names skipped",
        exp.len(),
        exp.iter().filter(|r| r.kind == "function").count(),
        exp.iter().filter(|r| r.kind == "tracepoint").count(),
        exp.iter().filter(|r| r.module.is_some()).count(),
        dropped.len(),
        dropped.iter().filter(|r| r.byval).count(),
        dropped.iter().filter(|r| r.variadic).count(),
        dups,
    );
    for r in &dropped {
        eprintln!("    dropped: {r:?}");
    }
    Outcome {
        compared: exp.len(),
        dropped,
        listed,
    }
}

/// One BTF file (raw or ELF).
fn check_file(file: &Path) -> Outcome {
    let types = bpftool_dump(file, None);
    let all: Vec<&Ty> = types.iter().collect();
    let (derived, dups) = probes_of(&all, &types, None);
    let listed = ipft_gen_list(&["--btf".as_ref(), file.as_os_str()]);
    // The release of a file is the `release` file beside it (the lab cache
    // has one; ipft-gen also reads the ELF banner, which names the same).
    let release = file
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join("release")).ok())
        .unwrap_or_default();
    let fentry_max = fentry_max_of(&release);
    compare_with(
        &file.display().to_string(),
        listed,
        derived,
        dups,
        fentry_max,
    )
}

/// What fentry sees on a kernel of `release` (unknown: 12).
fn fentry_max_of(release: &str) -> u8 {
    let old = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        < vec![6, 6];
    if !release.trim().is_empty() && old {
        6
    } else {
        FENTRY_MAX_ARGS
    }
}

/// A directory like /sys/kernel/btf: vmlinux plus split module BTF.
fn check_dir(dir: &Path) -> Outcome {
    let base_file = dir.join("vmlinux");
    let base = bpftool_dump(&base_file, None);
    let base_refs: Vec<&Ty> = base.iter().collect();
    let (mut derived, mut dups) = probes_of(&base_refs, &base, None);
    let mut modules: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            p.is_file() && n != "vmlinux" && n != "release" && !n.starts_with('.')
        })
        .collect();
    modules.sort();
    for m in &modules {
        let own = bpftool_dump(m, Some(&base_file));
        let mut all = base_refs.clone();
        all.extend(own.iter());
        let name = m.file_name().unwrap().to_str().unwrap().replace('-', "_");
        let (rows, d) = probes_of(&all, &own, Some(&name));
        derived.extend(rows);
        dups += d;
    }
    let listed = ipft_gen_list(&["--btf-dir".as_ref(), dir.as_os_str()]);
    // A `release` file names the kernel: fentry sees 6 arguments before 6.6.
    let release = std::fs::read_to_string(dir.join("release")).unwrap_or_default();
    let old = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .map(|n| n.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>()
        < vec![6, 6];
    let fentry_max = if !release.is_empty() && old {
        6
    } else {
        FENTRY_MAX_ARGS
    };
    compare_with(
        &format!("{} ({} modules)", dir.display(), modules.len()),
        listed,
        derived,
        dups,
        fentry_max,
    )
}

fn find<'a>(o: &'a Outcome, module: Option<&str>, kind: &str, name: &str) -> &'a Row {
    o.listed
        .iter()
        .find(|r| r.module.as_deref() == module && r.kind == kind && r.name == name)
        .unwrap_or_else(|| panic!("{kind} {name} (module {module:?}) not listed"))
}

/// The Debian 6.1 cloud kernel from the lab cache (fetched when missing).
fn debian_61() -> PathBuf {
    let script = root().join("tests/vm/kernels.sh");
    let out = Command::new(&script)
        .args(["fetch", "6.1"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "`tests/vm/kernels.sh fetch 6.1` failed (exit {:?}); this test needs the Debian 6.1 \
         cloud kernel, downloaded once with apt into ~/.cache/ipft (network access needed the \
         first time):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        dir.join("vmlinux").is_file() && dir.join("btf/vmlinux").is_file(),
        "{}: kernels.sh printed a directory without vmlinux and btf/vmlinux",
        dir.display()
    );
    dir
}

// ---------------------------------------------------------------- tests

#[test]
fn mini_fixture() {
    let o = check_file(&root().join("tests/fixtures/btf/mini.btf"));
    // 14 functions + 2 tracepoints listed, byval_skb dropped.
    assert_eq!(o.compared, 16);
    let dropped: Vec<&str> = o.dropped.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(dropped, ["byval_skb"]);
    assert_eq!(find(&o, None, "function", "typedef_skb").skb_positions, [1]);
    assert!(find(&o, None, "function", "variadic_skb").variadic);
    assert_eq!(
        find(&o, None, "tracepoint", "kfree_skb").drop_reason_pos,
        Some(2)
    );
}

#[test]
fn running_kernel_btf() {
    let f = Path::new("/sys/kernel/btf/vmlinux");
    assert!(
        f.exists(),
        "/sys/kernel/btf/vmlinux missing: this host's kernel has no BTF"
    );
    let o = check_file(f);
    assert!(o.compared > 1000, "only {} probes", o.compared);
    assert_eq!(find(&o, None, "function", "ip_rcv").skb_positions, [0]);
    assert!(find(&o, None, "tracepoint", "kfree_skb").nargs >= 3);
}

#[test]
fn debian_61_vmlinux_elf() {
    let dir = debian_61();
    let o = check_file(&dir.join("vmlinux"));
    assert!(o.compared > 1000, "only {} probes", o.compared);
    assert_eq!(find(&o, None, "function", "ip_rcv").skb_positions, [0]);
}

#[test]
fn debian_61_btf_dir_with_modules() {
    let dir = debian_61().join("btf");
    let has_modules = std::fs::read_dir(&dir)
        .unwrap()
        .any(|e| e.unwrap().file_name() != "vmlinux");
    assert!(has_modules, "{}: no module BTF files", dir.display());
    let o = check_dir(&dir);
    let in_modules: BTreeMap<&str, usize> = o
        .listed
        .iter()
        .filter_map(|r| r.module.as_deref())
        .fold(BTreeMap::new(), |mut m, n| {
            *m.entry(n).or_default() += 1;
            m
        });
    eprintln!("probes per module: {in_modules:?}");
    let v = find(&o, Some("veth"), "function", "veth_xmit");
    assert_eq!(v.skb_positions, [0]);
    assert!(
        !o.listed
            .iter()
            .any(|r| r.module.is_none() && r.name == "veth_xmit"),
        "veth_xmit listed as vmlinux"
    );
    assert!(in_modules.contains_key("ip_tables"), "{in_modules:?}");
}
