//! Connection tracking of translated flows (LRU): lookups refresh the entry's clock.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use kaya_ebpf_common::ct::{CtEntry, CtKey};

use crate::maps::CT;

/// The entry for `key`, refreshed; `None` when the flow is not tracked.
#[inline(always)]
pub fn lookup(key: &CtKey) -> Option<CtEntry> {
    let entry = CT.get_ptr_mut(key)?;
    // SAFETY: the pointer is into the map's value; a racing update is a benign torn clock.
    unsafe {
        (*entry).last_seen_ns = bpf_ktime_get_ns();
        Some(*entry)
    }
}

/// Whether a flow uses `key`, without touching its clock.
#[inline(always)]
pub fn exists(key: &CtKey) -> bool {
    // SAFETY: only the presence is read.
    unsafe { CT.get(key).is_some() }
}

pub fn forget(key: &CtKey) {
    let _ = CT.remove(key);
}

/// Records both directions of a new flow. Fails when the map refuses the write.
#[inline(always)]
pub fn create(forward: &CtKey, entry: &CtEntry, reply: &CtKey, reply_entry: &CtEntry) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let forward_entry = CtEntry {
        last_seen_ns: now,
        ..*entry
    };
    let reply_entry = CtEntry {
        last_seen_ns: now,
        ..*reply_entry
    };
    CT.insert(forward, &forward_entry, 0).is_ok() && CT.insert(reply, &reply_entry, 0).is_ok()
}
