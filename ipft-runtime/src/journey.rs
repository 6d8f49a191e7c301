//! Which event completes a packet's journey: the rule of
//! `ipft_abi::table::journey_ends`, applied to the rows attached.
//!
//! Without returns a journey ends at a row that ends it. With
//! -t function_graph the free happens deep inside calls whose returns are
//! still to come, so the journey ends once the skb has been freed and every
//! traced call on it has returned.

use std::collections::HashMap;

use ipft_abi::{Event, ProbeEntry};

/// Open skbs past which graph bookkeeping is reset (frees we never saw).
const MAX_OPEN: usize = 1 << 20;

/// Tracks journeys to tell the aggregator where each one ends.
pub struct JourneyEnds {
    ends: Vec<bool>,
    has_return: Vec<bool>,
    /// graph mode: skb -> (open calls, freed).
    open: Option<HashMap<u64, (i32, bool)>>,
}

impl JourneyEnds {
    /// For the rows `attached` of `table`; `graph` with -t function_graph.
    /// The rule is applied to what is really attached: where kfree_skbmem
    /// could not be attached here, the tracepoints end journeys instead.
    pub fn new(table: &[ProbeEntry], attached: &[usize], graph: bool) -> Self {
        JourneyEnds {
            ends: ipft_abi::table::journey_ends(table, |i| attached.binary_search(&i).is_ok()),
            // A clone row's return program emits no return event.
            has_return: table
                .iter()
                .map(|e| graph && e.return_program.is_some() && !e.follows_clones())
                .collect(),
            open: graph.then(HashMap::new),
        }
    }

    /// Whether `e` is the last event of its journey.
    pub fn check(&mut self, e: &Event) -> bool {
        let p = e.probe as usize;
        let ends = self.ends.get(p).copied().unwrap_or(false);
        let Some(open) = &mut self.open else {
            return ends;
        };
        if open.len() > MAX_OPEN {
            open.clear();
        }
        let st = open.entry(e.skb).or_default();
        if e.is_return() {
            st.0 -= 1;
        } else if self.has_return.get(p).copied().unwrap_or(false) {
            st.0 += 1;
        }
        st.1 |= ends;
        let done = st.1 && st.0 <= 0;
        if done {
            open.remove(&e.skb);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipft_abi::event_flags::RETURN;
    use ipft_abi::{Backend, ProbeShape, ProgramId, TypedKind};
    use std::borrow::Cow;

    fn row(name: &'static str, ret: bool) -> ProbeEntry {
        let typed = |kind| ProgramId::Typed { kind, row: 0 };
        ProbeEntry {
            name: Cow::Borrowed(name),
            module: None,
            shape: ProbeShape::default(),
            backend: Backend::Fentry,
            btf_id: 0,
            program: typed(TypedKind::Entry),
            return_program: ret.then(|| typed(TypedKind::Return)),
            ends_journey: false,
            hidden: false,
        }
    }

    fn ev(skb: u64, probe: u32, flags: u8) -> Event {
        Event {
            skb,
            probe,
            flags,
            ..Default::default()
        }
    }

    /// ip_rcv (call), kfree_skb_reason (drop, call), kfree_skbmem (the end).
    fn table() -> Vec<ProbeEntry> {
        vec![
            row("ip_rcv", true),
            row("kfree_skb_reason", true),
            row("kfree_skbmem", false),
        ]
    }

    #[test]
    fn drop_then_free_is_one_journey() {
        let mut j = JourneyEnds::new(&table(), &[0, 1, 2], false);
        let seq = [ev(1, 0, 0), ev(1, 1, 0), ev(1, 2, 0)];
        let ends: Vec<bool> = seq.iter().map(|e| j.check(e)).collect();
        assert_eq!(ends, [false, false, true]);
        // The next skb at the same address starts afresh.
        assert!(!j.check(&ev(1, 0, 0)));
    }

    #[test]
    fn consume_then_free_and_clones() {
        let t = vec![
            row("ip_rcv", false),
            row("consume_skb", false),
            row("kfree_skbmem", false),
        ];
        let mut j = JourneyEnds::new(&t, &[0, 1, 2], false);
        // The original and its clone (another address) end on their own frees.
        let seq = [
            ev(1, 0, 0),
            ev(2, 0, 0),
            ev(1, 1, 0),
            ev(2, 2, 0),
            ev(1, 2, 0),
        ];
        let ends: Vec<bool> = seq.iter().map(|e| j.check(e)).collect();
        assert_eq!(ends, [false, false, false, true, true]);
    }

    #[test]
    fn graph_waits_for_open_calls() {
        let mut j = JourneyEnds::new(&table(), &[0, 1, 2], true);
        let seq = [
            ev(7, 0, 0),      // ip_rcv
            ev(7, 1, 0),      //   kfree_skb_reason
            ev(7, 2, 0),      //     kfree_skbmem: freed, two calls open
            ev(7, 1, RETURN), //   return kfree_skb_reason
            ev(7, 0, RETURN), // return ip_rcv: the end
        ];
        let ends: Vec<bool> = seq.iter().map(|e| j.check(e)).collect();
        assert_eq!(ends, [false, false, false, false, true]);
    }

    #[test]
    fn a_clone_event_opens_no_call() {
        let mut t = table();
        let mut clone = row("skb_clone", true);
        clone.hidden = true;
        t.push(clone);
        let mut j = JourneyEnds::new(&t, &[0, 1, 2, 3], true);
        let made = Event {
            aux: 9,
            ..ev(7, 3, ipft_abi::event_flags::CLONE)
        };
        assert!(!j.check(&made));
        assert!(j.check(&ev(7, 2, 0)), "freed, no call open");
    }

    #[test]
    fn skbs_are_independent() {
        let mut j = JourneyEnds::new(&table(), &[0, 1, 2], true);
        assert!(!j.check(&ev(1, 0, 0)));
        assert!(j.check(&ev(2, 2, 0)), "skb 2 has no open call");
        assert!(!j.check(&ev(1, 2, 0)), "skb 1 still inside ip_rcv");
        assert!(j.check(&ev(1, 0, RETURN)));
    }
}
