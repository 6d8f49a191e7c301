//! What may follow the 32-byte event header in a ring-buffer record: the
//! optional sections, each switched on by a rodata flag and always in this
//! order (the BPF template writes them in the same order):
//!
//! ```text
//!  ext    64 bytes   an extension's payload        (CONFIG.ext,     -e)
//!  meta   40 bytes   struct ipft_meta              (CONFIG.meta,    --output-meta)
//!  tuple  40 bytes   struct ipft_tuple             (CONFIG.tuple,   --output-tuple)
//!  stack  264 bytes  struct ipft_stack             (CONFIG.stack,   --output-stack)
//!  snap   16 bytes + CONFIG.snaplen                (CONFIG.snaplen, --output-pcap)
//! ```
//!
//! Every section's size is a multiple of 8, so each one starts aligned.

use crate::layout::{layout, CType, Layout};
use crate::payload::PAYLOAD_LEN;
use crate::{Config, Event};

/// Frames kept of each event's kernel stack (--output-stack).
pub const STACK_DEPTH: usize = 32;

/// The largest --snaplen: the record must fit a BPF program's reach and
/// the ring buffer many times over.
pub const SNAPLEN_MAX: u32 = 4096;

impl CType for [u64; STACK_DEPTH] {
    const C: &'static str = "__u64";
    const DIMS: &'static str = "[IPFT_STACK_DEPTH]";
}

layout! {
    /// --output-meta: the skb and its device at the hit.
    Meta = "ipft_meta" {
        /// skb->dev->name, NUL-padded (all zero: no device)
        ifname: [u8; 16],
        /// skb->len: bytes in the packet from skb->data
        len: u32,
        /// skb->data_len: of those, bytes in pages (not linear)
        data_len: u32,
        /// skb->dev->ifindex (0: no device)
        ifindex: u32,
        /// inode of skb->dev's network namespace, else of the socket's (0: neither)
        netns: u32,
        /// skb->mark
        mark: u32,
        /// skb->protocol, network byte order as in the skb
        protocol: u16,
        /// zero
        spare: u16,
    }
}

layout! {
    /// --output-tuple: addresses and ports read from the skb's headers.
    Tuple = "ipft_tuple" {
        /// source address: IPv4 in the first 4 bytes, or IPv6
        saddr: [u8; 16],
        /// destination address
        daddr: [u8; 16],
        /// TCP/UDP/SCTP source port, host byte order (0: none)
        sport: u16,
        /// destination port
        dport: u16,
        /// IP protocol (IPv4) or next header (IPv6)
        proto: u8,
        /// 4 or 6; 0 when no IP header was found
        family: u8,
        /// zero
        spare: u16,
    }
}

layout! {
    /// --output-stack: the kernel stack at the hit, innermost first.
    Stack = "ipft_stack" {
        /// frames in `ips`
        n: u32,
        /// zero
        spare: u32,
        /// return addresses
        ips: [u64; STACK_DEPTH],
    }
}

layout! {
    /// --output-pcap: how the packet bytes after it were taken.
    Snap = "ipft_snap" {
        /// bytes copied after this header (at most CONFIG.snaplen)
        caplen: u32,
        /// bytes of the packet from where the copy starts, pages included
        wirelen: u32,
        /// 1: from the mac header (Ethernet); 0: from the network header
        /// (raw IP); caplen is 0 where neither is set
        l2: u32,
        /// zero
        spare: u32,
    }
}

/// Which sections a record carries, from the run's rodata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sections {
    /// An extension's payload.
    pub ext: bool,
    /// [`Meta`].
    pub meta: bool,
    /// [`Tuple`].
    pub tuple: bool,
    /// [`Stack`].
    pub stack: bool,
    /// [`Snap`] and up to this many packet bytes; 0: none.
    pub snaplen: u32,
}

/// The sections of one record, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The extension's payload bytes.
    pub ext: Option<&'a [u8]>,
    /// [`Meta`].
    pub meta: Option<Meta>,
    /// [`Tuple`].
    pub tuple: Option<Tuple>,
    /// The stack's frames.
    pub stack: Option<Vec<u64>>,
    /// [`Snap`] and the bytes copied.
    pub snap: Option<(Snap, &'a [u8])>,
}

impl Sections {
    /// What `config` switches on.
    pub fn of(config: &Config) -> Sections {
        Sections {
            ext: config.ext != 0,
            meta: config.meta != 0,
            tuple: config.tuple != 0,
            stack: config.stack != 0,
            snaplen: config.snaplen,
        }
    }

    /// `config` with these sections switched on (and the others off).
    pub fn apply(&self, config: Config) -> Config {
        Config {
            ext: u32::from(self.ext),
            meta: u32::from(self.meta),
            tuple: u32::from(self.tuple),
            stack: u32::from(self.stack),
            snaplen: self.snaplen,
            ..config
        }
    }

    /// Whether a record holds more than its header.
    pub fn any(&self) -> bool {
        self.ext || self.meta || self.tuple || self.stack || self.snaplen > 0
    }

    fn sizes(&self) -> [usize; 5] {
        let on = |b: bool, n: usize| if b { n } else { 0 };
        [
            on(self.ext, PAYLOAD_LEN),
            on(self.meta, size_of::<Meta>()),
            on(self.tuple, size_of::<Tuple>()),
            on(self.stack, size_of::<Stack>()),
            on(self.snaplen > 0, size_of::<Snap>() + self.snaplen as usize),
        ]
    }

    /// Bytes of a whole record: the header and every section.
    pub fn record_len(&self) -> usize {
        size_of::<Event>() + self.sizes().iter().sum::<usize>()
    }

    /// The sections of `tail` (a record's bytes after its header). A
    /// section cut short is `None`.
    pub fn split<'a>(&self, tail: &'a [u8]) -> Parts<'a> {
        let [ext, meta, tuple, stack, snap] = self.sizes();
        let mut at = 0;
        let mut take = |n: usize| -> Option<&'a [u8]> {
            if n == 0 {
                return None;
            }
            let s = tail.get(at..at + n);
            at += n;
            s
        };
        let ext = take(ext);
        let meta = take(meta).and_then(Meta::from_bytes);
        let tuple = take(tuple).and_then(Tuple::from_bytes);
        let stack = take(stack).and_then(Stack::from_bytes).map(|s| {
            s.ips[..(s.n as usize).min(STACK_DEPTH)]
                .iter()
                .copied()
                .filter(|&ip| ip != 0)
                .collect()
        });
        let snap = take(snap).and_then(|b| {
            let h = Snap::from_bytes(b)?;
            let bytes = &b[size_of::<Snap>()..];
            Some((h, &bytes[..(h.caplen as usize).min(bytes.len())]))
        });
        Parts {
            ext,
            meta,
            tuple,
            stack,
            snap,
        }
    }

    /// The C side: `IPFT_STACK_DEPTH` and the section structs.
    pub fn c_structs() -> String {
        format!(
            "#define IPFT_STACK_DEPTH {STACK_DEPTH}\n\n{}\n\n{}\n\n{}\n\n{}",
            Meta::c_struct(),
            Tuple::c_struct(),
            Stack::c_struct(),
            Snap::c_struct()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_multiples_of_eight() {
        for n in [
            size_of::<Meta>(),
            size_of::<Tuple>(),
            size_of::<Stack>(),
            size_of::<Snap>(),
            PAYLOAD_LEN,
        ] {
            assert_eq!(n % 8, 0, "{n}");
        }
        assert_eq!(size_of::<Stack>(), 8 + 8 * STACK_DEPTH);
    }

    #[test]
    fn split_follows_the_order() {
        let s = Sections {
            ext: false,
            meta: true,
            tuple: true,
            stack: true,
            snaplen: 8,
        };
        let meta = Meta {
            len: 98,
            ifindex: 1,
            mark: 0xdead,
            ..Meta::default()
        };
        let tuple = Tuple {
            proto: 6,
            family: 4,
            sport: 80,
            ..Tuple::default()
        };
        let mut stack = Stack {
            n: 2,
            ..Stack::default()
        };
        stack.ips[0] = 0xffff_ffff_8100_0000;
        stack.ips[1] = 0xffff_ffff_8100_0010;
        let snap = Snap {
            caplen: 3,
            wirelen: 60,
            l2: 1,
            spare: 0,
        };
        let mut tail = [
            meta.to_bytes(),
            tuple.to_bytes(),
            stack.to_bytes(),
            snap.to_bytes(),
        ]
        .concat();
        tail.extend_from_slice(&[1, 2, 3, 0, 0, 0, 0, 0]);
        assert_eq!(s.record_len(), 32 + tail.len());
        assert_eq!(Sections::of(&s.apply(Config::default())), s);
        let p = s.split(&tail);
        assert_eq!(p.ext, None);
        assert_eq!(p.meta, Some(meta));
        assert_eq!(p.tuple, Some(tuple));
        assert_eq!(p.stack.as_deref(), Some(&stack.ips[..2]));
        assert_eq!(p.snap, Some((snap, &[1u8, 2, 3][..])));
        // Cut short: the sections that fit, nothing past.
        let p = s.split(&tail[..50]);
        assert_eq!(p.meta, Some(meta));
        assert_eq!((p.tuple, p.stack, p.snap), (None, None, None));
    }

    #[test]
    fn c_structs_use_the_depth_define() {
        let c = Sections::c_structs();
        assert!(c.contains("__u64 ips[IPFT_STACK_DEPTH];"), "{c}");
        assert!(c.contains("__u8 ifname[16];"), "{c}");
        assert!(c.contains("struct ipft_snap {"), "{c}");
    }
}
