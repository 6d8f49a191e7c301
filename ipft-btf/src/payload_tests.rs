//! Payload specs of real extensions, compiled with clang here: the fixtures
//! in tests/fixtures/extensions and small sources written by each test.

use std::path::{Path, PathBuf};
use std::process::Command;

use ipft_abi::payload::{module_header, Format, PayloadField};

use super::payload_spec;

/// A scratch dir holding `ipft.h` (the module header), one per test.
fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ipft-btf-payload-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ipft.h"), module_header()).unwrap();
    d
}

/// clang -target bpf -O2 -g -c, as extensions are compiled; `None` (and a
/// note) when there is no clang.
fn compile(src: &Path, dir: &Path) -> Option<Vec<u8>> {
    let obj = dir.join("ext.o");
    let multiarch = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let out = match Command::new("clang")
        .args(["-target", "bpf", "-O2", "-g", "-I"])
        .arg(dir)
        .arg("-I")
        .arg(multiarch)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(&obj)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: no clang ({e})");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "clang failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(std::fs::read(obj).unwrap())
}

fn fixture(name: &str) -> Option<Vec<u8>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/extensions")
        .join(name);
    let dir = scratch(name);
    let obj = compile(&src, &dir);
    let _ = std::fs::remove_dir_all(dir);
    obj
}

/// The spec of a payload written inline, or its error.
fn inline(test: &str, body: &str) -> Option<Result<super::PayloadSpec, String>> {
    let dir = scratch(test);
    let src = dir.join("ext.bpf.c");
    std::fs::write(&src, format!("#include \"ipft.h\"\n{body}\n")).unwrap();
    let obj = compile(&src, &dir);
    let _ = std::fs::remove_dir_all(dir);
    Some(payload_spec(&obj?))
}

fn field(name: &str, offset: usize, size: usize) -> PayloadField {
    PayloadField::scalar(name, offset, size, Format::Default)
}

fn array(name: &str, offset: usize, count: usize, format: Format) -> PayloadField {
    PayloadField {
        count: Some(count),
        format,
        ..field(name, offset, 1)
    }
}

fn names(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|(n, s)| (*n, s.to_string())).collect()
}

#[test]
fn gso_fields_and_flag_names() {
    let Some(obj) = fixture("gso.bpf.c") else {
        return;
    };
    let spec = payload_spec(&obj).unwrap();
    let flags = names(&[
        (1, "tcpv4"),
        (2, "dodgy"),
        (4, "tcp_ecn"),
        (8, "tcp_fixedid"),
        (16, "tcpv6"),
        (1 << 10, "udp_tunnel"),
        (1 << 11, "udp_tunnel_csum"),
        (1 << 12, "partial"),
        (1 << 17, "udp_l4"),
    ]);
    assert_eq!(spec.name, "event");
    assert_eq!(
        spec.fields,
        [
            field("len", 0, 4),
            field("gso_size", 4, 2),
            field("gso_segs", 6, 2),
            PayloadField {
                format: Format::Flags(flags),
                ..field("gso_type", 8, 4)
            },
        ]
    );
    let mut data = [0u8; 64];
    data[..4].copy_from_slice(&1514u32.to_ne_bytes());
    data[8..12].copy_from_slice(&0x11u32.to_ne_bytes());
    let shown: Vec<String> = spec
        .decode(&data)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        shown,
        [
            "len=1514",
            "gso_size=0",
            "gso_segs=0",
            "gso_type=tcpv4|tcpv6"
        ]
    );
}

#[test]
fn every_kind_of_field() {
    let Some(obj) = fixture("kinds.bpf.c") else {
        return;
    };
    let spec = payload_spec(&obj).unwrap();
    let signed = |f: PayloadField| PayloadField { signed: true, ..f };
    let protos = names(&[(1, "proto_icmp"), (6, "proto_tcp"), (17, "proto_udp")]);
    let verdicts = names(&[(0, "pass"), (2, "drop"), (3, "steal")]);
    assert_eq!(
        spec.fields,
        [
            PayloadField {
                format: Format::Hex,
                ..field("cookie", 0, 8)
            },
            PayloadField {
                format: Format::Enum(protos),
                ..field("proto", 8, 1)
            },
            signed(field("delta", 9, 1)),
            PayloadField {
                format: Format::Be,
                ..field("dport", 10, 2)
            },
            array("saddr", 12, 4, Format::Ip),
            array("daddr", 16, 16, Format::Ip),
            PayloadField {
                char: true,
                ..signed(array("dev", 32, 12, Format::Default))
            },
            signed(field("level", 44, 4)),
            array("tag", 48, 6, Format::Str),
            array("mac", 54, 6, Format::Default),
            PayloadField {
                format: Format::Enum(verdicts),
                ..field("verdict", 60, 4)
            },
        ]
    );
}

#[test]
fn an_object_without_a_payload_struct_says_so() {
    let Some(r) = inline("none", "int x;") else {
        return;
    };
    let e = r.unwrap_err();
    assert!(
        e.contains("no payload struct") && e.contains("__ipft_event_struct"),
        "{e}"
    );
}

#[test]
fn bad_payload_structs_are_refused_by_field() {
    let cases = [
        (
            "bitfield",
            "struct event { __u32 a; __u32 b : 3; } __ipft_event_struct;",
            "field b: bitfields are not supported",
        ),
        (
            "nested",
            "struct in { int x; };\nstruct event { struct in i; } __ipft_event_struct;",
            "field i: type struct is not supported",
        ),
        (
            "big",
            "struct event { __u64 a[8]; __u8 b; } __ipft_event_struct;",
            "field b ends at byte 65",
        ),
        (
            "noref",
            "struct event { __u32 a __ipft_fmt_enum(nowhere); } __ipft_event_struct;",
            "field a: enum nowhere not found",
        ),
        (
            "notenum",
            "int __ipft_ref(num);\nstruct event { __u32 a __ipft_fmt_enum(num); } __ipft_event_struct;",
            "num has type int, not enum",
        ),
        (
            "twotags",
            "struct event { __u32 a __ipft_fmt_hex __ipft_fmt_be; } __ipft_event_struct;",
            "field a: more than one format tag",
        ),
        (
            "strscalar",
            "struct event { __u32 a __ipft_fmt_str; } __ipft_event_struct;",
            "field a: ipft:fmt:str is for char arrays",
        ),
        (
            "unknowntag",
            "struct event { __u32 a __attribute__((btf_decl_tag(\"ipft:fmt:octal\"))); } __ipft_event_struct;",
            "field a: unknown format tag \"ipft:fmt:octal\"",
        ),
        (
            "union",
            "union event { __u32 a; __u8 b; } __ipft_event_struct;",
            "__ipft_event_struct has type union, not struct",
        ),
    ];
    for (test, body, want) in cases {
        let Some(r) = inline(test, body) else {
            return;
        };
        let e = r.expect_err(test);
        assert!(e.contains(want), "{test}: {e}");
    }
}

#[test]
fn a_typedefd_payload_and_non_elf_input() {
    if let Some(r) = inline(
        "typedef",
        "typedef struct { __u16 a; __s64 b; } ev_t;\nconst volatile ev_t __ipft_event_struct;",
    ) {
        let spec = r.unwrap();
        assert_eq!(spec.name, "__ipft_event_struct");
        let b = PayloadField {
            signed: true,
            ..field("b", 8, 8)
        };
        assert_eq!(spec.fields, [field("a", 0, 2), b]);
    }
    assert!(payload_spec(b"not an object")
        .unwrap_err()
        .contains("not an ELF file"));
    assert!(payload_spec(b"\x7fELF truncated").is_err());
}
