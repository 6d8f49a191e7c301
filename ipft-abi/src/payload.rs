//! Extension payloads: the bytes an extension's `module()` writes after an
//! event (ipftrace2's API: `__u8 data[64]`), and how each field is shown.
//!
//! One definition of the format tags (ipftrace2's BTF decl tags, plus ipft's
//! own), of the C header that declares them, and of the rendering. The
//! BTF-driven decoder of `ipft -e` and the derived payloads of generated
//! tracers both show fields through [`PayloadField::value`].

use std::fmt;

use serde::{Serialize, Serializer};

/// Bytes of payload after the event header when an extension is loaded.
pub const PAYLOAD_LEN: usize = 64;

/// The BTF variable whose type is the payload struct (`__ipft_event_struct`).
pub const EVENT_STRUCT_VAR: &str = "__ipft_event_struct";

/// Prefix of every format decl tag.
pub const TAG_PREFIX: &str = "ipft:fmt:";

/// Format tags, after [`TAG_PREFIX`], and the macro each is declared with in
/// the header. `enum:` and `enum_flags:` are followed by the name of a
/// variable declared with `__ipft_ref`, whose type is the enum.
pub const TAGS: &[(&str, &str, &str)] = &[
    (
        "hex",
        "__ipft_fmt_hex",
        "hexadecimal (integers), hex bytes (arrays)",
    ),
    ("enum:", "__ipft_fmt_enum(ref)", "the enumerator's name"),
    (
        "enum_flags:",
        "__ipft_fmt_enum_flags(ref)",
        "set bits by name, joined with |",
    ),
    (
        "ip",
        "__ipft_fmt_ip",
        "an IPv4 (4 bytes) or IPv6 (16 bytes; v4-mapped shown dotted) address, network order",
    ),
    (
        "be",
        "__ipft_fmt_be",
        "an integer in network byte order (ports)",
    ),
    (
        "str",
        "__ipft_fmt_str",
        "a NUL-terminated string (char arrays are strings by default)",
    ),
];

/// `ipft --gen bpf-module-header`: the macros an extension uses, compatible
/// with ipftrace2's (its three formats keep their names).
pub fn module_header() -> String {
    let mut h = String::from(
        "#ifndef __IPFT_EXTENSION_H__\n#define __IPFT_EXTENSION_H__\n\n\
         #include <linux/types.h>\n#include <bpf/bpf_helpers.h>\n#include <bpf/bpf_core_read.h>\n\n\
         #define __ipft_sec_skip __attribute__((section(\"__ipft_skip\")))\n\
         #define __ipft_ref(name) name __ipft_sec_skip\n",
    );
    h.push_str(&format!(
        "#define {EVENT_STRUCT_VAR} {EVENT_STRUCT_VAR} __ipft_sec_skip\n"
    ));
    for (tag, mac, what) in TAGS {
        let value = match tag.strip_suffix(':') {
            Some(_) => format!("\"{TAG_PREFIX}{tag}\" #ref"),
            None => format!("\"{TAG_PREFIX}{tag}\""),
        };
        h.push_str(&format!(
            "/* {what} */\n#define {mac} __attribute__((btf_decl_tag({value})))\n"
        ));
    }
    h.push_str("\n#endif\n");
    h
}

/// `ipft --gen bpf-module-skeleton`: a minimal extension to start from.
pub fn module_skeleton() -> String {
    let header = module_header();
    let body = header
        .lines()
        .filter(|l| {
            !l.starts_with("#ifndef __IPFT") && !l.starts_with("#define __IPFT_EXTENSION_H__")
        })
        .filter(|l| *l != "#endif")
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{}\n\n\
         /* The payload: at most {PAYLOAD_LEN} bytes, shown field by field. */\n\
         struct event {{\n\t/* Your fields come here. */\n\tunsigned int len;\n}} {EVENT_STRUCT_VAR};\n\n\
         /*\n * A subset of struct sk_buff is enough: CO-RE relocates each field\n\
         \x20* against the running kernel's BTF at load time.\n */\n\
         struct sk_buff {{\n\tunsigned int len;\n}};\n\n\
         /* Fill data; return 0 to emit the event, non-zero to drop it. */\n\
         __hidden int\nmodule(void *ctx, struct sk_buff *skb, __u8 data[{PAYLOAD_LEN}])\n{{\n\
         \tstruct event *ev = (struct event *)data;\n\n\
         \tev->len = BPF_CORE_READ(skb, len);\n\treturn 0;\n}}\n",
        body.trim_end()
    )
}

/// How a field is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Decimal number; char arrays as strings, other arrays as hex bytes.
    Default,
    /// `ipft:fmt:hex`.
    Hex,
    /// `ipft:fmt:enum:<ref>`: value -> enumerator name.
    Enum(Vec<(u64, String)>),
    /// `ipft:fmt:enum_flags:<ref>`: bit -> name.
    Flags(Vec<(u64, String)>),
    /// `ipft:fmt:ip`.
    Ip,
    /// `ipft:fmt:be`.
    Be,
    /// `ipft:fmt:str`.
    Str,
}

/// What a tag asks for, before an enum reference is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// A format needing nothing more.
    Plain(Format),
    /// `enum:<ref>`.
    Enum(String),
    /// `enum_flags:<ref>`.
    Flags(String),
}

impl Tag {
    /// Parse a decl tag's text; `None` for tags not ours, an error for an
    /// `ipft:fmt:` tag this version does not know.
    pub fn parse(text: &str) -> Option<Result<Tag, String>> {
        let rest = text.strip_prefix(TAG_PREFIX)?;
        Some(match rest {
            "hex" => Ok(Tag::Plain(Format::Hex)),
            "ip" => Ok(Tag::Plain(Format::Ip)),
            "be" => Ok(Tag::Plain(Format::Be)),
            "str" => Ok(Tag::Plain(Format::Str)),
            _ => match (rest.strip_prefix("enum:"), rest.strip_prefix("enum_flags:")) {
                (Some(r), _) if !r.is_empty() => Ok(Tag::Enum(r.to_string())),
                (_, Some(r)) if !r.is_empty() => Ok(Tag::Flags(r.to_string())),
                _ => Err(format!("unknown format tag \"{text}\"")),
            },
        })
    }
}

/// One field of a payload struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadField {
    /// Field name.
    pub name: String,
    /// Byte offset in the payload.
    pub offset: usize,
    /// Size of one element in bytes (1, 2, 4, 8; 16 for an IPv6 array is
    /// `size` 1 and `count` 16).
    pub size: usize,
    /// Element count of an array field.
    pub count: Option<usize>,
    /// A signed integer type.
    pub signed: bool,
    /// A `char` array (a string by default).
    pub char: bool,
    /// How it is shown.
    pub format: Format,
}

/// A decoded field value: a JSON number or string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtValue {
    /// Unsigned integer.
    Uint(u64),
    /// Signed integer.
    Int(i64),
    /// Anything formatted.
    Str(String),
}

impl fmt::Display for ExtValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtValue::Uint(v) => write!(f, "{v}"),
            ExtValue::Int(v) => write!(f, "{v}"),
            ExtValue::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for ExtValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ExtValue::Uint(v) => s.serialize_u64(*v),
            ExtValue::Int(v) => s.serialize_i64(*v),
            ExtValue::Str(v) => s.serialize_str(v),
        }
    }
}

fn int(b: &[u8], big_endian: bool) -> u64 {
    let mut x = [0u8; 8];
    if big_endian {
        x[8 - b.len()..].copy_from_slice(b);
        u64::from_be_bytes(x)
    } else {
        // BPF writes in the host's order.
        if cfg!(target_endian = "little") {
            x[..b.len()].copy_from_slice(b);
            u64::from_le_bytes(x)
        } else {
            x[8 - b.len()..].copy_from_slice(b);
            u64::from_be_bytes(x)
        }
    }
}

fn sign_extend(v: u64, size: usize) -> i64 {
    let shift = 64 - 8 * size as u32;
    ((v << shift) as i64) >> shift
}

/// `tcpv4|dodgy`, unknown bits as hex, `none` for 0.
fn flags(v: u64, names: &[(u64, String)]) -> String {
    let mut parts = Vec::new();
    let mut left = v;
    for (bit, name) in names {
        if *bit != 0 && v & bit == *bit {
            parts.push(name.clone());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("{left:#x}"));
    }
    match parts.is_empty() {
        true => "none".to_string(),
        false => parts.join("|"),
    }
}

fn ip(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let a = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
            match a.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => a.to_string(),
            }
        }
        _ => hex_bytes(b),
    }
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl PayloadField {
    /// An unsigned integer field of `size` bytes (set `count`, `signed`,
    /// `char` after, for others).
    pub fn scalar(name: &str, offset: usize, size: usize, format: Format) -> Self {
        PayloadField {
            name: name.into(),
            offset,
            size,
            count: None,
            signed: false,
            char: false,
            format,
        }
    }

    /// Bytes the field takes.
    pub fn len(&self) -> usize {
        self.size * self.count.unwrap_or(1)
    }

    /// Never: a field has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The field's value in `data`; `None` if `data` is too short.
    pub fn value(&self, data: &[u8]) -> Option<ExtValue> {
        let b = data.get(self.offset..self.offset + self.len())?;
        if self.count.is_some() {
            return Some(ExtValue::Str(match &self.format {
                Format::Ip => ip(b),
                Format::Str => string(b),
                Format::Default if self.char => string(b),
                _ => hex_bytes(b),
            }));
        }
        let v = int(b, self.format == Format::Be);
        Some(match &self.format {
            Format::Hex => ExtValue::Str(format!("{v:#x}")),
            Format::Ip => ExtValue::Str(ip(b)),
            Format::Enum(names) => ExtValue::Str(match names.iter().find(|(n, _)| *n == v) {
                Some((_, name)) => name.clone(),
                None => v.to_string(),
            }),
            Format::Flags(names) => ExtValue::Str(flags(v, names)),
            _ if self.signed => ExtValue::Int(sign_extend(v, self.size)),
            _ => ExtValue::Uint(v),
        })
    }
}

/// A payload's fields, in declaration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadSpec {
    /// Name of the C struct.
    pub name: String,
    /// Fields.
    pub fields: Vec<PayloadField>,
}

impl PayloadSpec {
    /// Every field's name and value; fields past the end of `data` are left
    /// out.
    pub fn decode(&self, data: &[u8]) -> Vec<(String, ExtValue)> {
        self.fields
            .iter()
            .filter_map(|f| Some((f.name.clone(), f.value(data)?)))
            .collect()
    }

    /// Why this struct cannot be a payload, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        match self
            .fields
            .iter()
            .find(|f| f.offset + f.len() > PAYLOAD_LEN)
        {
            Some(f) => Err(format!(
                "payload struct {}: field {} ends at byte {}, past the {PAYLOAD_LEN} bytes of data",
                self.name,
                f.name,
                f.offset + f.len()
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, offset: usize, size: usize, format: Format) -> PayloadField {
        PayloadField::scalar(name, offset, size, format)
    }

    #[test]
    fn every_format_renders() {
        let mut d = [0u8; 64];
        d[0..4].copy_from_slice(&1500u32.to_ne_bytes());
        d[4..8].copy_from_slice(&0x11u32.to_ne_bytes());
        d[8..10].copy_from_slice(&80u16.to_be_bytes());
        d[10..14].copy_from_slice(&[10, 0, 0, 2]);
        d[14..18].copy_from_slice(&(-3i32).to_ne_bytes());
        d[20..24].copy_from_slice(b"lo\0x");
        let names = vec![(1, "tcpv4".to_string()), (16, "tcpv6".to_string())];
        let spec = PayloadSpec {
            name: "event".into(),
            fields: vec![
                field("len", 0, 4, Format::Default),
                field("gso", 4, 4, Format::Flags(names.clone())),
                field("kind", 4, 4, Format::Enum(vec![(0x11, "UDP".into())])),
                field("hex", 4, 4, Format::Hex),
                field("port", 8, 2, Format::Be),
                field("addr", 10, 4, Format::Ip),
                PayloadField {
                    signed: true,
                    ..field("delta", 14, 4, Format::Default)
                },
                PayloadField {
                    count: Some(4),
                    char: true,
                    ..field("dev", 20, 1, Format::Default)
                },
                PayloadField {
                    count: Some(2),
                    ..field("raw", 10, 1, Format::Default)
                },
            ],
        };
        let got: Vec<String> = spec
            .decode(&d)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            got,
            [
                "len=1500",
                "gso=tcpv4|tcpv6",
                "kind=UDP",
                "hex=0x11",
                "port=80",
                "addr=10.0.0.2",
                "delta=-3",
                "dev=lo",
                "raw=0a00"
            ]
        );
        assert_eq!(flags(0, &names), "none");
        assert_eq!(flags(0x21, &names), "tcpv4|0x20");
        assert!(spec.check().is_ok());
    }

    #[test]
    fn v4_mapped_v6_is_dotted() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(ip(&b), "192.0.2.1");
        b[0] = 0x20;
        b[1] = 0x01;
        assert_eq!(ip(&b), "2001::ffff:c000:201");
    }

    #[test]
    fn tags_parse_and_the_header_declares_them() {
        assert_eq!(
            Tag::parse("ipft:fmt:hex"),
            Some(Ok(Tag::Plain(Format::Hex)))
        );
        assert_eq!(
            Tag::parse("ipft:fmt:enum_flags:gso_types"),
            Some(Ok(Tag::Flags("gso_types".into())))
        );
        assert!(matches!(Tag::parse("ipft:fmt:nope"), Some(Err(_))));
        assert_eq!(Tag::parse("other"), None);
        let h = module_header();
        for (_, mac, _) in TAGS {
            assert!(h.contains(&format!("#define {mac} ")), "{mac}");
        }
        // ipftrace2's spellings, unchanged.
        assert!(h.contains(
            "#define __ipft_fmt_enum_flags(ref) __attribute__((btf_decl_tag(\"ipft:fmt:enum_flags:\" #ref)))"
        ));
        assert!(h.contains("#define __ipft_event_struct __ipft_event_struct __ipft_sec_skip"));
        assert!(module_skeleton()
            .contains("__hidden int\nmodule(void *ctx, struct sk_buff *skb, __u8 data[64])"));
    }

    #[test]
    fn a_field_past_64_bytes_is_refused() {
        let spec = PayloadSpec {
            name: "big".into(),
            fields: vec![field("x", 62, 4, Format::Default)],
        };
        assert!(spec
            .check()
            .unwrap_err()
            .contains("field x ends at byte 66"));
    }
}
