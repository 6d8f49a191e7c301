//! Losses the kernel side counts: ring-buffer reserve failures and
//! function_graph stash overflows and live-table evictions (the object's
//! per-CPU `ipft_lost`),
//! recursion misses (per program) and kprobe misses (per link, which
//! includes kretprobe maxactive misses).

use std::os::fd::AsFd;

use libbpf_rs::query::{LinkInfo, LinkTypeInfo, PerfEventType};
use libbpf_rs::{MapCore, Object};

use super::Session;
use crate::kernel::raw;

/// Kernel-side losses, totals since the programs were loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BpfLosses {
    /// Events not written: the ring buffer was full.
    pub ring_buffer: u64,
    /// Call entries whose skb found no room on the function_graph stash.
    pub stash: u64,
    /// Program runs skipped because another BPF program was running on the CPU.
    pub recursion: u64,
    /// kprobe hits the kernel missed (kretprobe maxactive, recursion).
    pub kprobe: u64,
    /// Traced skbs pushed out of a full set of the live table: no event is
    /// lost, but such a journey ends at its free only if still marked.
    pub live_evicted: u64,
}

/// Per-CPU counter `key` of `ipft_lost`, summed.
fn counter(obj: &Object, key: u32) -> u64 {
    let Some(map) = obj.maps().find(|m| m.name() == "ipft_lost") else {
        return 0;
    };
    match map.lookup_percpu(&key.to_ne_bytes(), libbpf_rs::MapFlags::ANY) {
        Ok(Some(vals)) => vals
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
            .sum(),
        _ => 0,
    }
}

/// The ring-buffer and stash counters of the main object (cheap: read once
/// a second while tracing).
pub fn bpf_losses(obj: &Object) -> BpfLosses {
    BpfLosses {
        ring_buffer: counter(obj, 0),
        stash: counter(obj, 1),
        live_evicted: counter(obj, 2),
        ..Default::default()
    }
}

impl Session {
    /// Every kernel-side loss, read before the links go.
    pub fn losses(&self) -> BpfLosses {
        let mut l = bpf_losses(self.main_object());
        for o in &self.objects {
            // Programs left out of the load have no fd.
            for p in o.progs().filter(|p| p.autoload()) {
                l.recursion += raw::recursion_misses(p.as_fd());
            }
        }
        for p in &self.raw_progs {
            l.recursion += raw::recursion_misses(p.as_fd());
        }
        let links = self.links.iter().map(|l| l.as_fd());
        for link in links.chain(self.multi_links.iter().map(|l| l.as_fd())) {
            l.kprobe += match LinkInfo::from_fd(link).map(|i| i.info) {
                Ok(LinkTypeInfo::KprobeMulti(k)) => k.missed,
                Ok(LinkTypeInfo::PerfEvent(p)) => match p.event_type {
                    PerfEventType::Kprobe { missed, .. } => missed,
                    _ => 0,
                },
                _ => 0,
            };
        }
        l
    }
}
