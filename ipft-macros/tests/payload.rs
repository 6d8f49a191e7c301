//! `#[derive(ExtensionPayload)]`: the C struct, the layout and formats of
//! its spec, decoding; and `include_probe_set!` handing a probe set's
//! extension decoder to the runtime.

use ipft_runtime::extension::{
    ExtValue, ExtensionPayload, Format, PayloadDecoder, PayloadField, PayloadSpec, Typed,
};

const PROTOS: &[(u64, &str)] = &[(6, "tcp"), (17, "udp")];
const TCP_FLAGS: &[(u64, &str)] = &[(1, "fin"), (2, "syn"), (16, "ack")];

#[derive(ipft_macros::ExtensionPayload, Clone, Copy, Debug)]
#[repr(C)]
struct Sample {
    #[ipft(hex)]
    cookie: u64,
    #[ipft(enum = PROTOS)]
    proto: u8,
    #[ipft(flags = TCP_FLAGS)]
    flags: u8,
    #[ipft(be)]
    dport: u16,
    delta: i32,
    #[ipft(ip)]
    daddr: [u8; 16],
    dev: [i8; 8],
    #[ipft(str)]
    tag: [u8; 4],
    mac: [u8; 6],
    r#type: u16,
}

fn field(name: &str, offset: usize, size: usize, format: Format) -> PayloadField {
    PayloadField::scalar(name, offset, size, format)
}

fn table(t: &[(u64, &str)]) -> Vec<(u64, String)> {
    t.iter().map(|&(v, n)| (v, n.to_string())).collect()
}

#[test]
fn c_struct_and_spec_follow_the_fields() {
    assert_eq!(
        Sample::C_STRUCT,
        "struct Sample {\n\t__u64 cookie;\n\t__u8 proto;\n\t__u8 flags;\n\t__u16 dport;\n\
         \t__s32 delta;\n\t__u8 daddr[16];\n\tchar dev[8];\n\t__u8 tag[4];\n\t__u8 mac[6];\n\
         \t__u16 type;\n};"
    );
    assert_eq!(Sample::SIZE, 56);
    let array = |name: &str, offset, count, format| PayloadField {
        count: Some(count),
        ..field(name, offset, 1, format)
    };
    let want = PayloadSpec {
        name: "Sample".into(),
        fields: vec![
            field("cookie", 0, 8, Format::Hex),
            field("proto", 8, 1, Format::Enum(table(PROTOS))),
            field("flags", 9, 1, Format::Flags(table(TCP_FLAGS))),
            field("dport", 10, 2, Format::Be),
            PayloadField {
                signed: true,
                ..field("delta", 12, 4, Format::Default)
            },
            array("daddr", 16, 16, Format::Ip),
            PayloadField {
                signed: true,
                char: true,
                ..array("dev", 32, 8, Format::Default)
            },
            array("tag", 40, 4, Format::Str),
            array("mac", 44, 6, Format::Default),
            field("type", 50, 2, Format::Default),
        ],
    };
    assert_eq!(Sample::spec(), &want);
    // Built once.
    assert!(std::ptr::eq(Sample::spec(), Sample::spec()));
    assert!(Sample::spec().check().is_ok());
}

fn sample_bytes() -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..8].copy_from_slice(&0xc0ffeeu64.to_ne_bytes());
    b[8] = 17;
    b[9] = 0x12;
    b[10..12].copy_from_slice(&4789u16.to_be_bytes());
    b[12..16].copy_from_slice(&(-7i32).to_ne_bytes());
    b[16..32].copy_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    b[32..36].copy_from_slice(b"eth0");
    b[40..43].copy_from_slice(b"abc");
    b[44..50].copy_from_slice(&[2, 0, 0, 0, 0, 0xff]);
    b[50..52].copy_from_slice(&3u16.to_ne_bytes());
    b
}

#[test]
fn decodes_by_copy_and_by_spec() {
    let b = sample_bytes();
    let s = Sample::decode(&b).unwrap();
    assert_eq!(
        (s.cookie, s.proto, s.dport, s.delta, s.r#type),
        (0xc0ffee, 17, 4789u16.to_be(), -7, 3)
    );
    assert!(Sample::decode(&b[..Sample::SIZE - 1]).is_none());
    let shown: Vec<String> = Typed::<Sample>::default()
        .decode(&b)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        shown,
        [
            "cookie=0xc0ffee",
            "proto=udp",
            "flags=syn|ack",
            "dport=4789",
            "delta=-7",
            "daddr=2001:db8::1",
            "dev=eth0",
            "tag=abc",
            "mac=0200000000ff",
            "type=3",
        ]
    );
    let fields = Typed::<Sample>::default().decode(&b);
    assert_eq!(fields[4].1, ExtValue::Int(-7));
    assert_eq!(fields[9].1, ExtValue::Uint(3));
    // Too short: one error field, not a panic.
    let short = Typed::<Sample>::default().decode(&b[..10]);
    assert_eq!(short[0].0, "error");
}

ipft_macros::include_probe_set!("../tests/fixtures/probe_set_ext");

#[test]
fn a_probe_set_with_extension_rs_carries_its_decoder() {
    let make = PROBE_SET.extension.expect("extension decoder");
    let mut b = [0u8; 64];
    b[..4].copy_from_slice(&1514u32.to_ne_bytes());
    b[8..12].copy_from_slice(&0x13u32.to_ne_bytes());
    let shown: Vec<String> = make()
        .decode(&b)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        shown,
        [
            "len=1514",
            "gso_size=0",
            "gso_segs=0",
            "gso_type=tcpv4|dodgy|tcpv6"
        ]
    );
}

mod plain {
    ipft_macros::include_probe_set!("../tests/fixtures/probe_set");

    #[test]
    fn a_probe_set_without_one_has_none() {
        assert!(PROBE_SET.extension.is_none());
    }
}
