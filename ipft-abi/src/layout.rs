//! The two structs shared with BPF C, each defined once here: the wire event
//! and the rodata config. The C definitions are rendered from the same field
//! lists, and compile-time asserts pin every offset and the absence of
//! padding, so the two sides cannot drift.

/// One field of a shared struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Name, the same in C and Rust.
    pub name: &'static str,
    /// C type.
    pub c_type: &'static str,
    /// Offset in bytes.
    pub offset: usize,
    /// Size in bytes.
    pub size: usize,
    /// What it holds.
    pub doc: &'static str,
}

/// A struct shared with BPF C.
pub trait Layout: Sized + Copy {
    /// C struct name.
    const C_NAME: &'static str;
    /// Fields in order.
    const FIELDS: &'static [Field];

    /// `struct NAME { ... };`
    fn c_struct() -> String {
        let mut s = format!("struct {} {{\n", Self::C_NAME);
        for f in Self::FIELDS {
            s.push_str(&format!(
                "\t{} {};\t/* @{}: {} */\n",
                f.c_type,
                f.name,
                f.offset,
                f.doc.trim()
            ));
        }
        s.push_str("};");
        s
    }

    /// The bytes of a value (no padding: asserted at compile time).
    fn to_bytes(&self) -> Vec<u8> {
        // SAFETY: the layout! asserts that Self is repr(C) plain integers
        // with no padding, so every byte is initialised.
        let p = self as *const Self as *const u8;
        unsafe { std::slice::from_raw_parts(p, std::mem::size_of::<Self>()) }.to_vec()
    }

    /// Decode by copying; `None` if `data` is shorter than the struct.
    fn from_bytes(data: &[u8]) -> Option<Self> {
        if data.len() < std::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: length checked; every bit pattern of plain integers is
        // valid; read_unaligned copes with any alignment.
        Some(unsafe { std::ptr::read_unaligned(data.as_ptr() as *const Self) })
    }
}

macro_rules! c_type {
    (u8) => {
        "__u8"
    };
    (u16) => {
        "__u16"
    };
    (u32) => {
        "__u32"
    };
    (u64) => {
        "__u64"
    };
}

macro_rules! layout {
    ($(#[$m:meta])* $name:ident = $c:literal { $($(#[doc = $d:literal])+ $f:ident: $t:ident,)+ }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name { $($(#[doc = $d])+ pub $f: $t,)+ }

        impl Layout for $name {
            const C_NAME: &'static str = $c;
            const FIELDS: &'static [Field] = &[$(Field {
                name: stringify!($f),
                c_type: c_type!($t),
                offset: ::core::mem::offset_of!($name, $f),
                size: ::core::mem::size_of::<$t>(),
                doc: concat!($($d),+),
            },)+];
        }

        // No padding anywhere: the fields add up to the struct, in order.
        const _: () = {
            let fields = <$name as Layout>::FIELDS;
            let mut end = 0;
            let mut i = 0;
            while i < fields.len() {
                assert!(fields[i].offset == end);
                end += fields[i].size;
                i += 1;
            }
            assert!(end == ::core::mem::size_of::<$name>());
        };
    };
}

layout! {
    /// The wire event: one per matching hit, 32 bytes.
    Event = "ipft_event" {
        /// skb address (packet identity until freed)
        skb: u64,
        /// bpf_ktime_get_ns() at the hit
        tstamp: u64,
        /// drop reason when flags has REASON
        aux: u64,
        /// index into the probe table
        probe: u32,
        /// CPU of the hit
        cpu: u16,
        /// event_flags
        flags: u8,
        /// bytes of extension payload after the header
        ext_len: u8,
    }
}

layout! {
    /// Everything the loader tunes, in the object's `const volatile` rodata:
    /// the verifier sees constants.
    Config = "ipft_config" {
        /// skb->mark & mask must equal this
        mark: u32,
        /// applied to skb->mark before comparing
        mask: u32,
        /// wake the reader once this many bytes are queued
        wakeup_bytes: u64,
        /// generic tp_btf copies: which probe this copy is
        probe: u32,
        /// -t function_graph: kprobes keep the skb for kretprobes
        graph: u32,
        /// kprobe links carry cookies (Linux 5.15); without, the probe is
        /// found from the address the kprobe fired at
        kprobe_cookies: u32,
        /// fentry/fexit links carry cookies (Linux 6.0); without, each
        /// generic copy reads `probe`
        tracing_cookies: u32,
        /// an extension's module() is linked in: each event carries
        /// IPFT_EXT_LEN bytes of payload
        ext: u32,
        /// zero (keeps the struct free of padding)
        spare: u32,
    }
}

/// `Event::flags` bits.
pub mod event_flags {
    /// The hit is a function return (fexit, kretprobe).
    pub const RETURN: u8 = 0x1;
    /// `aux` holds an `enum skb_drop_reason` value.
    pub const REASON: u8 = 0x2;
    /// The skb's memory is released here.
    pub const END: u8 = 0x4;

    /// The `#define`s of the C side.
    pub fn c_defines() -> String {
        format!(
            "#define IPFT_F_RETURN\t0x{RETURN:x}\t/* function return */\n\
             #define IPFT_F_REASON\t0x{REASON:x}\t/* aux holds an enum skb_drop_reason */\n\
             #define IPFT_F_END\t0x{END:x}\t/* the skb's memory is released here */"
        )
    }
}

impl Event {
    /// Whether this is a return hit.
    pub fn is_return(&self) -> bool {
        self.flags & event_flags::RETURN != 0
    }

    /// The drop reason value, if the probe has one.
    pub fn drop_reason(&self) -> Option<u64> {
        (self.flags & event_flags::REASON != 0).then_some(self.aux)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_32_bytes_and_round_trips() {
        assert_eq!(std::mem::size_of::<Event>(), 32);
        let e = Event {
            skb: 1,
            tstamp: 2,
            aux: 3,
            probe: 4,
            cpu: 5,
            flags: event_flags::RETURN,
            ext_len: 0,
        };
        assert_eq!(Event::from_bytes(&e.to_bytes()), Some(e));
        assert_eq!(Event::from_bytes(&[0; 31]), None);
        assert!(e.is_return());
    }

    #[test]
    fn c_struct_names_every_offset() {
        let c = Config::c_struct();
        assert!(c.starts_with("struct ipft_config {"));
        assert!(c.contains("__u64 wakeup_bytes;\t/* @8:"));
        assert!(c.contains("__u32 graph;\t/* @20:"));
        assert_eq!(std::mem::size_of::<Config>(), 40);
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;

    /// A small deterministic generator: no dependency, bounded cases.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn decoding_arbitrary_records_never_panics() {
        for seed in 0..20_000u64 {
            let data = bytes(seed, (seed % 80) as usize);
            match Event::from_bytes(&data) {
                Some(e) => {
                    assert!(data.len() >= 32);
                    assert_eq!(&e.to_bytes()[..], &data[..32]);
                }
                None => assert!(data.len() < 32),
            }
            // Odd offsets: records need not be aligned.
            if data.len() > 1 {
                let _ = Event::from_bytes(&data[1..]);
            }
        }
    }
}
