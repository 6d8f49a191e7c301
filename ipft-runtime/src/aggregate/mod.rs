//! Per-packet aggregation with bounded memory.
//!
//! Events are grouped into *journeys* keyed by skb address. A journey ends
//! when
//! - an event of a probe that frees the skb arrives (the free event is the
//!   journey's last one); the next event on the same address starts a new
//!   packet with a new id, since loopback and veth recycle skb memory;
//! - no event arrived for it for [`AggregateConfig::idle`]
//!   ([`Aggregator::flush_idle`]);
//! - [`AggregateConfig::max_packets`] journeys are open and a new one starts:
//!   the least recently active one is emitted early;
//! - the trace ends ([`Aggregator::finish`]).
//!
//! With --track-skb an event may name a clone or copy of its skb
//! (`IPFT_F_CLONE`): the clone's events join the journey (same id, their own
//! `skb`), which then ends once the source and every clone are freed.
//!
//! A journey never holds more than
//! [`AggregateConfig::max_events_per_packet`] events. When one more event
//! arrives for a full journey, the full chunk is emitted with
//! [`Packet::truncated`] set and the event starts a new chunk with the *same*
//! id. So `truncated` means "continued by the next packet with this id";
//! a journey of exactly the maximum that then goes quiet is not truncated.
//!
//! Memory per open journey is one slot (72 bytes, the first event inline),
//! 8 to 16 bytes of index, and a heap `Vec` once it has two events or more:
//! a million one-event journeys take under 90 MiB.

use std::time::Duration;

use ipft_abi::Event;

mod family;
mod index;
use family::Families;
use index::SkbIndex;

/// Bounds of the aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateConfig {
    /// A journey with no event for this long is complete (default 1 s).
    pub idle: Duration,
    /// Events kept per journey before a chunk is emitted (default 512).
    pub max_events_per_packet: usize,
    /// Open journeys kept before the least recently active one is emitted
    /// (default 65536).
    pub max_packets: usize,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            idle: Duration::from_secs(1),
            max_events_per_packet: 512,
            max_packets: 65536,
        }
    }
}

/// One packet's journey (or one chunk of it, see [`Packet::truncated`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// 1, 2, 3... in order of the journeys' first events.
    pub id: u64,
    /// skb address.
    pub skb: u64,
    /// Events, sorted by timestamp (stable: equal stamps keep arrival order).
    pub events: Vec<Event>,
    /// The journey hit the event limit: the next packet emitted with the
    /// same id continues it.
    pub truncated: bool,
    /// Extension fields of each event (empty without an extension); filled
    /// just before the packet is printed.
    pub ext: Vec<crate::extension::ExtFields>,
    /// --output-meta/-tuple/-stack/-pcap sections of each event (empty
    /// without them); filled just before the packet is printed.
    pub details: Vec<crate::details::EventDetails>,
    /// --track-skb: (clone, the skb it was copied from) for the clones whose
    /// events are in this packet; empty without clones.
    pub clones: Vec<(u64, u64)>,
}

impl Packet {
    /// The skb `skb` was cloned or copied from, if it is a clone here.
    pub fn clone_of(&self, skb: u64) -> Option<u64> {
        if skb == self.skb {
            return None;
        }
        self.clones.iter().find(|c| c.0 == skb).map(|c| c.1)
    }
}

/// "No slot" in the LRU and free lists.
const NIL: u32 = u32::MAX;
/// Journeys reserved for up front at most (72 MiB of slots, 16 MiB of
/// index).
const MAX_RESERVED_SLOTS: usize = 1 << 20;
/// Capacity of a journey's `Vec` when it gets its second event: most
/// journeys are a handful to a few dozen events.
const FIRST_CAPACITY: usize = 8;

/// An open journey. `rest` is empty while the journey has one event (kept
/// inline in `first`, so a million one-event journeys cost no heap); from the
/// second event on it holds *all* events, first included, so emitting is a
/// move of the Vec, not a copy.
struct Slot {
    /// Packet id; 0 marks a vacant slot.
    id: u64,
    first: Event,
    rest: Vec<Event>,
    /// LRU neighbours (towards least / most recently active); `next` also
    /// links the free list.
    prev: u32,
    next: u32,
}

impl Slot {
    fn len(&self) -> usize {
        self.rest.len().max(1)
    }

    fn last_tstamp(&self) -> u64 {
        self.rest.last().unwrap_or(&self.first).tstamp
    }

    fn take_events(&mut self) -> Vec<Event> {
        if self.rest.is_empty() {
            vec![self.first]
        } else {
            std::mem::take(&mut self.rest)
        }
    }
}

/// Groups events into packets; see the [module docs](self).
pub struct Aggregator {
    idle_ns: u64,
    max_events: usize,
    max_packets: usize,
    slots: Vec<Slot>,
    /// Vacant slots, linked through `Slot::next`.
    free: u32,
    /// Least recently active open journey.
    head: u32,
    /// Most recently active open journey.
    tail: u32,
    index: SkbIndex,
    families: Families,
    next_id: u64,
    /// Journeys split at `max_events_per_packet`.
    pub splits: u64,
    /// Journeys printed early because `max_packets` were open.
    pub evictions: u64,
}

impl Aggregator {
    /// An empty aggregator. Zero limits are treated as 1.
    pub fn new(cfg: AggregateConfig) -> Self {
        // Slot indexes are u32 with NIL reserved.
        let max_packets = cfg.max_packets.clamp(1, NIL as usize - 1);
        Aggregator {
            idle_ns: u64::try_from(cfg.idle.as_nanos()).unwrap_or(u64::MAX),
            max_events: cfg.max_events_per_packet.max(1),
            max_packets,
            // Reserved, not touched: pages become resident as slots are
            // used, and growing never copies (a copy would briefly need the
            // old and the new array resident).
            slots: Vec::with_capacity(max_packets.min(MAX_RESERVED_SLOTS)),
            free: NIL,
            head: NIL,
            tail: NIL,
            // Sized for the same number up front: growing means rehashing,
            // a stall while the ring buffer fills.
            index: SkbIndex::with_capacity(max_packets.min(MAX_RESERVED_SLOTS)),
            families: Families::default(),
            next_id: 1,
            splits: 0,
            evictions: 0,
        }
    }

    /// Open journeys.
    pub fn len(&self) -> usize {
        self.index.len
    }

    /// Whether no journey is open.
    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    /// Add an event. `frees_skb`: the event's probe ends the skb's life, so
    /// its journey is complete and emitted now. (With function_graph, pass
    /// it for the return of the freeing function so the nested calls stay in
    /// the journey.) Completed packets go to `out`.
    pub fn push(&mut self, ev: Event, frees_skb: bool, out: &mut dyn FnMut(Packet)) {
        let found = self.index.find(ev.skb, &self.slots);
        let Some(idx) = found.or_else(|| self.families.find(ev.skb)) else {
            return self.start(ev, frees_skb, out);
        };
        let slot = &mut self.slots[idx as usize];
        if slot.len() >= self.max_events {
            self.splits += 1;
            let mut events = slot.take_events();
            let skb = slot.first.skb;
            if ev.skb == skb {
                slot.first = ev;
            } else {
                // A clone's event: `first` keeps the journey's key.
                slot.rest.reserve_exact(FIRST_CAPACITY.min(self.max_events));
                slot.rest.push(ev);
            }
            let packet_id = slot.id;
            sort(&mut events);
            out(Packet {
                id: packet_id,
                skb,
                events,
                truncated: true,
                ext: Vec::new(),
                details: Vec::new(),
                clones: self.families.clones(idx),
            });
        } else {
            if slot.rest.is_empty() {
                slot.rest.reserve_exact(FIRST_CAPACITY.min(self.max_events));
                slot.rest.push(slot.first);
            }
            slot.rest.push(ev);
        }
        if let Some(clone) = ev.clone_made() {
            self.adopt(idx, ev.skb, clone, out);
        }
        if frees_skb {
            match self.families.freed(idx, ev.skb) {
                None | Some((true, _)) => return self.emit(idx, out),
                // The source is freed, a clone lives on: the address may be
                // reused by a new packet.
                Some((false, true)) => self.index.remove(ev.skb, &self.slots),
                Some((false, false)) => {}
            }
        }
        self.touch(idx);
    }

    /// Journey `idx` gets the clone `clone` of `from`. A journey still open
    /// at the clone's address is over (its memory was reused), and so is
    /// one whose last live member was a stale clone there.
    fn adopt(&mut self, idx: u32, from: u64, clone: u64, out: &mut dyn FnMut(Packet)) {
        if let Some(old) = self.index.find(clone, &self.slots).filter(|&o| o != idx) {
            self.emit(old, out);
        }
        if let Some(done) = self.families.adopt(idx, from, clone) {
            self.emit(done, out);
        }
    }

    /// Emit journeys whose last event is more than `idle` before `now_ns`
    /// (CLOCK_MONOTONIC ns, the clock of `bpf_ktime_get_ns`). Walks from the
    /// least recently active journey and stops at the first one still live,
    /// so the cost is proportional to what is emitted; a journey whose
    /// events arrived out of timestamp order may wait for a later call.
    pub fn flush_idle(&mut self, now_ns: u64, out: &mut dyn FnMut(Packet)) {
        while self.head != NIL {
            let last = self.slots[self.head as usize].last_tstamp();
            if now_ns.saturating_sub(last) <= self.idle_ns {
                break;
            }
            self.emit(self.head, out);
        }
    }

    /// Emit every open journey, least recently active first, and release
    /// the memory held for them.
    pub fn finish(&mut self, out: &mut dyn FnMut(Packet)) {
        // Walk the LRU without unindexing journeys one by one: the index is
        // dropped whole afterwards, saving a random access per journey.
        let mut idx = self.head;
        while idx != NIL {
            let (_, clones) = self.families.close(idx);
            let slot = &mut self.slots[idx as usize];
            idx = slot.next;
            let mut events = slot.take_events();
            sort(&mut events);
            out(Packet {
                id: slot.id,
                skb: slot.first.skb,
                events,
                truncated: false,
                ext: Vec::new(),
                details: Vec::new(),
                clones,
            });
        }
        self.families.clear();
        self.slots = Vec::new();
        self.free = NIL;
        self.head = NIL;
        self.tail = NIL;
        self.index = SkbIndex::new();
    }

    /// First event of a journey.
    fn start(&mut self, ev: Event, frees_skb: bool, out: &mut dyn FnMut(Packet)) {
        let id = self.next_id;
        self.next_id += 1;
        if frees_skb {
            // Born and freed in one event: never stored.
            return out(Packet {
                id,
                skb: ev.skb,
                events: vec![ev],
                truncated: false,
                ext: Vec::new(),
                details: Vec::new(),
                clones: Vec::new(),
            });
        }
        if self.index.len >= self.max_packets {
            self.evictions += 1;
            self.emit(self.head, out);
        }
        let slot = Slot {
            id,
            first: ev,
            rest: Vec::new(),
            prev: NIL,
            next: NIL,
        };
        let idx = if self.free != NIL {
            let idx = self.free;
            self.free = self.slots[idx as usize].next;
            self.slots[idx as usize] = slot;
            idx
        } else {
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        };
        self.index.insert(ev.skb, idx);
        self.link_tail(idx);
        if let Some(clone) = ev.clone_made() {
            self.adopt(idx, ev.skb, clone, out);
        }
    }

    /// Close journey `idx`: unlink, unindex, free the slot, send it out.
    fn emit(&mut self, idx: u32, out: &mut dyn FnMut(Packet)) {
        self.unlink(idx);
        let slot = &mut self.slots[idx as usize];
        let skb = slot.first.skb;
        let id = slot.id;
        let mut events = slot.take_events();
        slot.id = 0;
        slot.next = self.free;
        self.free = idx;
        // A source freed before its clones left the index already.
        let (indexed, clones) = self.families.close(idx);
        if indexed {
            self.index.remove(skb, &self.slots);
        }
        sort(&mut events);
        out(Packet {
            id,
            skb,
            events,
            truncated: false,
            ext: Vec::new(),
            details: Vec::new(),
            clones,
        });
    }

    /// Mark `idx` most recently active.
    fn touch(&mut self, idx: u32) {
        if self.tail != idx {
            self.unlink(idx);
            self.link_tail(idx);
        }
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let s = &self.slots[idx as usize];
            (s.prev, s.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    fn link_tail(&mut self, idx: u32) {
        let tail = self.tail;
        let s = &mut self.slots[idx as usize];
        s.prev = tail;
        s.next = NIL;
        match tail {
            NIL => self.head = idx,
            t => self.slots[t as usize].next = idx,
        }
        self.tail = idx;
    }
}

/// Stable sort by timestamp; events nearly always arrive in order, which
/// the merge sort detects in one pass.
fn sort(events: &mut [Event]) {
    if events.len() > 1 {
        events.sort_by_key(|e| e.tstamp);
    }
}

#[cfg(test)]
mod tests;
