//! The two structs shared with BPF C, each defined once here: the wire event
//! and the rodata config. The C definitions are rendered from the same field
//! lists, and compile-time asserts pin every offset and the absence of
//! padding, so the two sides cannot drift.

/// Bytes of the `ipft_events` ring buffer unless `--ring-buffer-size` says
/// otherwise (the template's map is rendered with it).
pub const DEFAULT_RING_BYTES: u32 = 1 << 24;

/// One field of a shared struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Name, the same in C and Rust.
    pub name: &'static str,
    /// C type.
    pub c_type: &'static str,
    /// Array suffix (`[16]`), or empty.
    pub dims: &'static str,
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
                "\t{} {}{};\t/* @{}: {} */\n",
                f.c_type,
                f.name,
                f.dims,
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

/// The C spelling of a field type: its base type and array suffix.
pub trait CType {
    /// `__u32`.
    const C: &'static str;
    /// `""`, or `"[16]"` for an array.
    const DIMS: &'static str = "";
}

macro_rules! c_types {
    ($($t:ty => $c:literal $(, $d:literal)?;)+) => {
        $(impl CType for $t {
            const C: &'static str = $c;
            $(const DIMS: &'static str = $d;)?
        })+
    };
}

c_types! {
    u8 => "__u8";
    u16 => "__u16";
    u32 => "__u32";
    u64 => "__u64";
    [u8; 16] => "__u8", "[16]";
}

/// Define a struct shared with C: `#[repr(C)]`, its [`Layout`], and a
/// compile-time proof that it has no padding.
macro_rules! layout {
    ($(#[$m:meta])* $name:ident = $c:literal { $($(#[doc = $d:literal])+ $f:ident: $t:ty,)+ }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name { $($(#[doc = $d])+ pub $f: $t,)+ }

        impl $crate::layout::Layout for $name {
            const C_NAME: &'static str = $c;
            const FIELDS: &'static [$crate::layout::Field] = &[$($crate::layout::Field {
                name: stringify!($f),
                c_type: <$t as $crate::layout::CType>::C,
                dims: <$t as $crate::layout::CType>::DIMS,
                offset: ::core::mem::offset_of!($name, $f),
                size: ::core::mem::size_of::<$t>(),
                doc: concat!($($d),+),
            },)+];
        }

        // No padding anywhere: the fields add up to the struct, in order.
        const _: () = {
            let fields = <$name as $crate::layout::Layout>::FIELDS;
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
        /// wake the reader once this many bytes are queued (0: never,
        /// the reader drains on its timer)
        wakeup_bytes: u64,
        /// generic typed copies that are objects of their own: which
        /// probe this copy is
        probe: u32,
        /// -t function_graph: kprobes keep the skb for kretprobes
        graph: u32,
        /// kprobe links carry cookies (Linux 5.15); without, the probe is
        /// found from the address the kprobe fired at
        kprobe_cookies: u32,
        /// generic fentry/fexit copies are made from the template's
        /// instructions, each with its probe index written in; a module
        /// function's copy, an object of its own, reads `probe`
        tracing_patched: u32,
        /// an extension's module() is linked in: each event carries
        /// IPFT_EXT_LEN bytes of payload
        ext: u32,
        /// --track-skb: an skb with an event is followed until it is freed
        /// (its mark and the filters no longer asked), and so are its clones
        track: u32,
        /// --filter-netns: inode of skb->dev's network namespace (0: any)
        netns: u32,
        /// --filter-pid: tgid of the current task (0: any)
        pid: u32,
        /// --filter-ifname: bytes 0..8 of the name, NUL-padded (0: any)
        ifname_lo: u64,
        /// --filter-ifname: bytes 8..16 of the name
        ifname_hi: u64,
        /// --filter-ifname: which bytes of ifname_lo to compare (the name
        /// and its NUL: a renamed device keeps bytes of its old name after it)
        ifname_mask_lo: u64,
        /// --filter-ifname: which bytes of ifname_hi to compare
        ifname_mask_hi: u64,
        /// a pcap-filter expression was spliced in at load time in place
        /// of the ipft_pcap_run stub (`ipft EXPR`)
        pcap: u32,
        /// --output-meta: each event carries a `struct ipft_meta`
        meta: u32,
        /// --output-tuple: each event carries a `struct ipft_tuple`
        tuple: u32,
        /// --output-stack: each event carries a `struct ipft_stack`
        stack: u32,
        /// --output-pcap: each event carries a `struct ipft_snap` and up to
        /// this many bytes of the packet (0: none)
        snaplen: u32,
        /// the lab's overhead floor (`--bench-empty`): every program
        /// returns at once, so only entering the probe is measured
        empty: u32,
        /// generic tp_btf copies are made from the template's
        /// instructions, each with its probe index written in; a module
        /// tracepoint's copy, an object of its own, reads `probe`
        tp_patched: u32,
        /// kprobe programs read the skb's mark through bpf_rdonly_cast
        /// (Linux 6.2), which the verifier turns into a move: one load on a
        /// miss, no helper call; else through bpf_probe_read_kernel
        kprobe_cast: u32,
    }
}

pub(crate) use layout;

impl Config {
    /// Set the --filter-ifname words: the name's bytes NUL-padded, and
    /// masks covering the name and its NUL (IFNAMSIZ is 16, so a name of
    /// at most 15 bytes fits). `None` if it does not fit.
    pub fn with_ifname(self, name: &[u8]) -> Option<Config> {
        if name.is_empty() || name.len() > 15 {
            return None;
        }
        let (mut bytes, mut mask) = ([0u8; 16], [0u8; 16]);
        bytes[..name.len()].copy_from_slice(name);
        mask[..=name.len()].fill(0xff);
        let word = |b: &[u8; 16], i: usize| {
            u64::from_ne_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        };
        Some(Config {
            ifname_lo: word(&bytes, 0),
            ifname_hi: word(&bytes, 1),
            ifname_mask_lo: word(&mask, 0),
            ifname_mask_hi: word(&mask, 1),
            ..self
        })
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
    /// The skb was cloned or copied (--track-skb): `aux` holds the new
    /// skb's address, followed from here on as part of the same packet.
    pub const CLONE: u8 = 0x8;

    /// The `#define`s of the C side.
    pub fn c_defines() -> String {
        format!(
            "#define IPFT_F_RETURN\t0x{RETURN:x}\t/* function return */\n\
             #define IPFT_F_REASON\t0x{REASON:x}\t/* aux holds an enum skb_drop_reason */\n\
             #define IPFT_F_END\t0x{END:x}\t/* the skb's memory is released here */\n\
             #define IPFT_F_CLONE\t0x{CLONE:x}\t/* aux holds the address of the skb's clone or copy */"
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

    /// The address of the clone or copy made here, if this event links one.
    pub fn clone_made(&self) -> Option<u64> {
        (self.flags & event_flags::CLONE != 0 && self.aux != 0).then_some(self.aux)
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
    fn ifname_words_cover_the_name_and_its_nul() {
        let c = Config::default().with_ifname(b"veth0").unwrap();
        assert_eq!(c.ifname_lo.to_ne_bytes(), *b"veth0\0\0\0");
        assert_eq!(
            c.ifname_mask_lo.to_ne_bytes(),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]
        );
        assert_eq!((c.ifname_hi, c.ifname_mask_hi), (0, 0));
        let long = Config::default().with_ifname(b"abcdefghijklmno").unwrap();
        assert_eq!(long.ifname_hi.to_ne_bytes(), *b"ijklmno\0");
        assert_eq!(long.ifname_mask_hi, u64::MAX);
        let eight = Config::default().with_ifname(b"abcdefgh").unwrap();
        assert_eq!(eight.ifname_mask_lo, u64::MAX);
        assert_eq!(
            eight.ifname_mask_hi.to_ne_bytes(),
            [0xff, 0, 0, 0, 0, 0, 0, 0]
        );
        assert!(Config::default().with_ifname(b"abcdefghijklmnop").is_none());
        assert!(Config::default().with_ifname(b"").is_none());
    }

    #[test]
    fn c_struct_names_every_offset() {
        let c = Config::c_struct();
        assert!(c.starts_with("struct ipft_config {"));
        assert!(c.contains("__u64 wakeup_bytes;\t/* @8:"));
        assert!(c.contains("__u32 graph;\t/* @20:"));
        assert!(c.contains("__u32 track;\t/* @36:"));
        assert!(c.contains("__u64 ifname_lo;\t/* @48:"));
        assert!(c.contains("__u32 pcap;\t/* @80:"));
        assert!(c.contains("__u32 snaplen;\t/* @96:"));
        assert!(c.contains("__u32 tp_patched;\t/* @104:"));
        assert_eq!(std::mem::size_of::<Config>(), 112);
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
