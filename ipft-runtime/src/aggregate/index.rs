//! The skb-address index of the aggregator.

use super::Slot;

/// skb address -> slot index. Open addressing with linear probing and
/// backward-shift deletion (no tombstones), load <= 1/2.
///
/// std's HashMap<u64, u32> would take 16 bytes a bucket at a 7/8 load,
/// 36 MB for a million journeys; this takes 8 bytes a bucket and keeps the
/// top 32 bits of the hash in each entry so that probing rarely touches a
/// slot of another journey, and resizing never touches slots at all.
pub(super) struct SkbIndex {
    /// `tag << 32 | (slot + 1)`; 0 is empty.
    entries: Vec<u64>,
    /// log2 of `entries.len()`, at most 32 so the home bucket is in the tag.
    bits: u32,
    pub(super) len: usize,
}

impl SkbIndex {
    const MIN_BITS: u32 = 4;

    pub(super) fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Room for `n` keys without growing. Zeroed memory comes from the
    /// allocator as untouched pages, resident only once used.
    pub(super) fn with_capacity(n: usize) -> Self {
        let bits = (n * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(Self::MIN_BITS);
        SkbIndex {
            entries: vec![0; 1 << bits],
            bits,
            len: 0,
        }
    }

    /// Multiplicative (Fibonacci) hash, top half. skb addresses are slab
    /// objects: low bits are zero and high bits constant; the multiply
    /// carries the varying middle bits into the top ones.
    #[inline]
    pub(super) fn tag(skb: u64) -> u32 {
        (skb.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
    }

    #[inline]
    pub(super) fn home(&self, tag: u32) -> usize {
        (tag >> (32 - self.bits)) as usize
    }

    #[inline]
    pub(super) fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// Slot of `skb`.
    #[inline]
    pub(super) fn find(&self, skb: u64, slots: &[Slot]) -> Option<u32> {
        self.position(skb, slots)
            .map(|pos| (self.entries[pos] as u32) - 1)
    }

    #[inline]
    pub(super) fn position(&self, skb: u64, slots: &[Slot]) -> Option<usize> {
        let tag = Self::tag(skb);
        let mut pos = self.home(tag);
        loop {
            let e = self.entries[pos];
            if e == 0 {
                return None;
            }
            if (e >> 32) as u32 == tag && slots[(e as u32 - 1) as usize].first.skb == skb {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask();
        }
    }

    /// Add `skb` (absent) -> `slot`.
    pub(super) fn insert(&mut self, skb: u64, slot: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        self.place((u64::from(Self::tag(skb)) << 32) | u64::from(slot + 1));
        self.len += 1;
    }

    pub(super) fn place(&mut self, entry: u64) {
        let mut pos = self.home((entry >> 32) as u32);
        while self.entries[pos] != 0 {
            pos = (pos + 1) & self.mask();
        }
        self.entries[pos] = entry;
    }

    pub(super) fn grow(&mut self) {
        assert!(self.bits < 32, "skb index full");
        self.bits += 1;
        let old = std::mem::replace(&mut self.entries, vec![0; 1 << self.bits]);
        for e in old.into_iter().filter(|&e| e != 0) {
            self.place(e);
        }
    }

    /// Remove `skb` if present. `slots` must still hold its key.
    pub(super) fn remove(&mut self, skb: u64, slots: &[Slot]) {
        let Some(mut hole) = self.position(skb, slots) else {
            return;
        };
        self.len -= 1;
        let mask = self.mask();
        // Backward shift: pull later entries of the cluster into the hole
        // unless their home lies cyclically in (hole, pos].
        let mut pos = hole;
        loop {
            pos = (pos + 1) & mask;
            let e = self.entries[pos];
            if e == 0 {
                break;
            }
            let home = self.home((e >> 32) as u32);
            let stays = if hole <= pos {
                hole < home && home <= pos
            } else {
                hole < home || home <= pos
            };
            if !stays {
                self.entries[hole] = e;
                hole = pos;
            }
        }
        self.entries[hole] = 0;
    }
}
