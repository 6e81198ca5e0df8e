//! Service load balancing shared by the tc and socket paths: frontend lookup and backend
//! selection (random slot, or the client's affinity entry while it is fresh).
use aya_ebpf::helpers::{bpf_get_prandom_u32, bpf_ktime_get_ns};
use kaya_ebpf_common::lb::{
    AffinityKey, AffinityValue, Backend, BackendKey, SVC_FLAG_AFFINITY, ServiceKey, ServiceValue,
};

use crate::maps::{AFFINITY, BACKENDS, SERVICES};

/// Affinity entries keyed by network namespace (socket path) rather than client IP.
pub const AFFINITY_BY_NETNS: u16 = 1;

/// The frontend (slot 0) for a destination, if it is a service.
#[inline(always)]
pub fn frontend(address: u32, port: u16, protocol: u8) -> Option<ServiceValue> {
    slot(address, port, protocol, 0)
}

#[inline(always)]
fn slot(address: u32, port: u16, protocol: u8, slot: u16) -> Option<ServiceValue> {
    let key = ServiceKey {
        address,
        port,
        slot,
        protocol,
        _pad: [0; 3],
    };
    // SAFETY: the value is copied out before the map can change it.
    unsafe { SERVICES.get(&key).copied() }
}

#[inline(always)]
pub fn backend(id: u32) -> Option<Backend> {
    // SAFETY: as above.
    unsafe { BACKENDS.get(&BackendKey { id }).copied() }
}

/// Who is asking, for session affinity.
#[derive(Clone, Copy)]
pub struct Client {
    pub id: u32,
    pub scope: u16,
}

impl Client {
    /// A client known by its IPv4 address (the tc paths).
    pub fn by_address(address: u32) -> Self {
        Client {
            id: address,
            scope: 0,
        }
    }
}

/// Picks a backend for a new flow to the frontend (address, port, protocol).
#[inline(always)]
pub fn select(
    address: u32,
    port: u16,
    protocol: u8,
    service: &ServiceValue,
    client: Client,
) -> Option<(u32, Backend)> {
    if service.count == 0 {
        return None;
    }
    let affinity_key = AffinityKey {
        client: client.id,
        rev_nat_id: service.rev_nat_id,
        _pad: client.scope,
    };
    let affinity = service.flags & SVC_FLAG_AFFINITY != 0;
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if affinity {
        // SAFETY: copied out at once.
        if let Some(entry) = unsafe { AFFINITY.get(&affinity_key).copied() } {
            let timeout_ns = u64::from(service.affinity_timeout_s) * 1_000_000_000;
            if now.wrapping_sub(entry.last_used_ns) < timeout_ns
                && let Some(chosen) = backend(entry.backend_id)
            {
                remember(&affinity_key, entry.backend_id, now);
                return Some((entry.backend_id, chosen));
            }
        }
    }
    // SAFETY: plain helper call.
    let slot = (unsafe { bpf_get_prandom_u32() } % u32::from(service.count)) as u16 + 1;
    let id = slot_backend(address, port, protocol, slot)
        // A concurrent shrink may have removed the slot just picked; slot 1 always exists
        // while count > 0 because the agent writes the new count before deleting slots.
        .or_else(|| slot_backend(address, port, protocol, 1))?;
    let chosen = backend(id)?;
    if affinity {
        remember(&affinity_key, id, now);
    }
    Some((id, chosen))
}

#[inline(always)]
fn slot_backend(address: u32, port: u16, protocol: u8, index: u16) -> Option<u32> {
    slot(address, port, protocol, index).map(|value| value.backend_id)
}

#[inline(always)]
fn remember(key: &AffinityKey, backend_id: u32, now: u64) {
    let value = AffinityValue {
        backend_id,
        _pad: 0,
        last_used_ns: now,
    };
    // LRU: a full map evicts the oldest client, which only loses its stickiness.
    let _ = AFFINITY.insert(key, &value, 0);
}
