//! Clones joined to their source's journey (--track-skb). An event with
//! `IPFT_F_CLONE` on an skb names its clone or copy; from then on the
//! clone's events belong to the same journey, which ends once every member
//! is freed. Rare, so kept apart from the index: journeys without clones
//! pay one `is_empty` test on a miss.

use std::collections::HashMap;

/// The members of one journey beyond its source.
#[derive(Debug, Default)]
pub(super) struct Family {
    /// Members not freed yet, the source included.
    pub(super) live: u32,
    /// The source's address is still in the index (not freed yet).
    pub(super) source_indexed: bool,
    /// (clone, the skb it was copied from), in order.
    pub(super) clones: Vec<(u64, u64)>,
}

/// Every open journey's clones.
#[derive(Debug, Default)]
pub(super) struct Families {
    /// Clone address -> journey slot.
    members: HashMap<u64, u32>,
    /// Journey slot -> its family.
    of: HashMap<u32, Family>,
}

impl Families {
    /// The journey a clone at `skb` belongs to.
    #[inline]
    pub(super) fn find(&self, skb: u64) -> Option<u32> {
        if self.members.is_empty() {
            return None;
        }
        self.members.get(&skb).copied()
    }

    /// `clone` (copied from `from`) joins journey `slot`. Returns the
    /// journey a stale member at that address belonged to, if it is now
    /// complete (the address was freed unseen and reused).
    pub(super) fn adopt(&mut self, slot: u32, from: u64, clone: u64) -> Option<u32> {
        let stale = self.members.insert(clone, slot);
        let done = stale.and_then(|s| self.release(s));
        let f = self.of.entry(slot).or_insert_with(|| Family {
            live: 1,
            source_indexed: true,
            clones: Vec::new(),
        });
        f.live += 1;
        f.clones.push((clone, from));
        done.filter(|&s| s != slot)
    }

    /// A member of journey `slot` is freed. `None`: the journey has no
    /// clones (it ends as usual). `Some(done)`: whether it is complete now;
    /// `source` tells whether the freed skb was its source (to be taken out
    /// of the index by the caller).
    pub(super) fn freed(&mut self, slot: u32, skb: u64) -> Option<(bool, bool)> {
        let f = self.of.get_mut(&slot)?;
        let clone = self.members.get(&skb) == Some(&slot);
        if clone {
            self.members.remove(&skb);
        }
        f.live = f.live.saturating_sub(1);
        // A source freed before its clones leaves the index now (the caller
        // takes it out); one freed last goes with the journey.
        if !clone && f.live > 0 {
            f.source_indexed = false;
        }
        Some((f.live == 0, !clone))
    }

    /// One member fewer, for a clone address reused elsewhere; the slot if
    /// its journey is complete.
    fn release(&mut self, slot: u32) -> Option<u32> {
        let f = self.of.get_mut(&slot)?;
        f.live = f.live.saturating_sub(1);
        (f.live == 0).then_some(slot)
    }

    /// Journey `slot` is emitted: forget its members. Returns whether its
    /// source is still indexed, and its clones for the packet.
    pub(super) fn close(&mut self, slot: u32) -> (bool, Vec<(u64, u64)>) {
        let Some(f) = self.of.remove(&slot) else {
            return (true, Vec::new());
        };
        for (c, _) in &f.clones {
            if self.members.get(c) == Some(&slot) {
                self.members.remove(c);
            }
        }
        (f.source_indexed, f.clones)
    }

    /// The clones of journey `slot` so far (for a chunk of it).
    pub(super) fn clones(&self, slot: u32) -> Vec<(u64, u64)> {
        self.of
            .get(&slot)
            .map(|f| f.clones.clone())
            .unwrap_or_default()
    }

    /// Forget everything (the trace is over).
    pub(super) fn clear(&mut self) {
        self.members = HashMap::new();
        self.of = HashMap::new();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AggregateConfig, Aggregator, Packet};
    use ipft_abi::event_flags::CLONE;
    use ipft_abi::Event;

    fn ev(skb: u64, tstamp: u64) -> Event {
        Event {
            skb,
            tstamp,
            ..Default::default()
        }
    }

    fn cloned(skb: u64, tstamp: u64, clone: u64) -> Event {
        Event {
            flags: CLONE,
            aux: clone,
            ..ev(skb, tstamp)
        }
    }

    fn run(a: &mut Aggregator, seq: &[(Event, bool)]) -> Vec<Packet> {
        let mut out = Vec::new();
        for &(e, free) in seq {
            a.push(e, free, &mut |p| out.push(p));
        }
        out
    }

    fn skbs(p: &Packet) -> Vec<(u64, u64)> {
        p.events.iter().map(|e| (e.tstamp, e.skb)).collect()
    }

    #[test]
    fn a_clone_joins_its_source_until_both_are_freed() {
        let mut a = Aggregator::new(AggregateConfig::default());
        let out = run(
            &mut a,
            &[
                (ev(0x100, 1), false),
                (cloned(0x100, 2, 0x200), false),
                (ev(0x200, 3), false),
                (ev(0x100, 4), true),  // source freed, the clone lives on
                (ev(0x100, 5), false), // a new packet at the source's address
                (ev(0x200, 6), true),
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let p = &out[0];
        assert_eq!((p.id, p.skb), (1, 0x100));
        assert_eq!(
            skbs(p),
            [(1, 0x100), (2, 0x100), (3, 0x200), (4, 0x100), (6, 0x200)]
        );
        assert_eq!(p.clone_of(0x200), Some(0x100));
        assert_eq!(p.clone_of(0x100), None);
        // The reused address started packet 2, untouched by the family.
        let rest = run(&mut a, &[(ev(0x100, 7), true)]);
        assert_eq!(rest.len(), 1);
        assert_eq!(
            (rest[0].id, skbs(&rest[0])),
            (2, vec![(5, 0x100), (7, 0x100)])
        );
        assert!(a.is_empty());
    }

    #[test]
    fn clone_of_a_clone_and_clone_freed_first() {
        let mut a = Aggregator::new(AggregateConfig::default());
        let out = run(
            &mut a,
            &[
                (ev(0x100, 1), false),
                (cloned(0x100, 2, 0x200), false),
                (cloned(0x200, 3, 0x300), false),
                (ev(0x200, 4), true),
                (ev(0x300, 5), true),
                (ev(0x100, 6), true),
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].clone_of(0x300), Some(0x200));
        assert_eq!(out[0].events.len(), 6);
        assert!(a.is_empty());
        // Once emitted, the clone addresses mean nothing: a new packet.
        let again = run(&mut a, &[(ev(0x300, 7), true)]);
        assert_eq!((again[0].id, again[0].clones.len()), (2, 0));
    }

    #[test]
    fn a_stale_journey_at_the_clone_address_ends() {
        let mut a = Aggregator::new(AggregateConfig::default());
        let out = run(
            &mut a,
            &[
                (ev(0x200, 1), false), // its free was never seen
                (ev(0x100, 2), false),
                (cloned(0x100, 3, 0x200), false),
            ],
        );
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].id, skbs(&out[0])), (1, vec![(1, 0x200)]));
        let mut rest = Vec::new();
        a.finish(&mut |p| rest.push(p));
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].clones, [(0x200, 0x100)]);
    }

    #[test]
    fn chunks_of_a_family_keep_the_source_as_key() {
        let mut a = Aggregator::new(AggregateConfig {
            max_events_per_packet: 2,
            ..Default::default()
        });
        let out = run(
            &mut a,
            &[
                (ev(0x100, 1), false),
                (cloned(0x100, 2, 0x200), false),
                (ev(0x200, 3), false), // starts the second chunk
                (ev(0x100, 4), false), // still found by the source's address
                (ev(0x200, 5), true),
                (ev(0x100, 6), true),
            ],
        );
        let got: Vec<_> = out
            .iter()
            .map(|p| (p.id, p.skb, p.truncated, skbs(p)))
            .collect();
        assert_eq!(
            got,
            [
                (1, 0x100, true, vec![(1, 0x100), (2, 0x100)]),
                (1, 0x100, true, vec![(3, 0x200), (4, 0x100)]),
                (1, 0x100, false, vec![(5, 0x200), (6, 0x100)]),
            ]
        );
        assert!(a.is_empty());
    }

    /// Random sources, clones and frees against a model of families: every
    /// packet emitted is one family's events, whole, once all its members
    /// are freed.
    #[test]
    fn matches_model_of_families() {
        use std::collections::HashMap;
        let mut a = Aggregator::new(AggregateConfig {
            max_packets: 1 << 16,
            max_events_per_packet: 1 << 20,
            idle: std::time::Duration::from_secs(1000),
        });
        // address -> family; family -> (live members, event stamps)
        let mut at: HashMap<u64, usize> = HashMap::new();
        let mut fams: Vec<(usize, Vec<u64>)> = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut out = Vec::new();
        for t in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let skb = 0x1000 + (x % 300) * 0x100;
            let (e, free) = match (at.get(&skb).copied(), x % 7) {
                (None, _) => {
                    at.insert(skb, fams.len());
                    fams.push((1, Vec::new()));
                    (ev(skb, t), false)
                }
                (Some(f), 0 | 1) => {
                    // Clone into an address no open family holds.
                    let c = 0x100_0000 + t * 0x100;
                    at.insert(c, f);
                    fams[f].0 += 1;
                    (cloned(skb, t, c), false)
                }
                (Some(_), 2 | 3) => (ev(skb, t), true),
                (Some(_), _) => (ev(skb, t), false),
            };
            let f = at[&skb];
            fams[f].1.push(t);
            if free {
                at.remove(&skb);
                fams[f].0 -= 1;
            }
            a.push(e, free, &mut |p| out.push(p));
            if free && fams[f].0 == 0 {
                let p = out.pop().expect("the family's last free emits it");
                assert_eq!(
                    p.events.iter().map(|e| e.tstamp).collect::<Vec<_>>(),
                    fams[f].1
                );
            }
            assert!(out.is_empty(), "t={t}: {out:?}");
        }
        a.finish(&mut |p| out.push(p));
        let open = fams.iter().filter(|f| f.0 > 0).count();
        assert_eq!(out.len(), open);
    }
}
