//! Connection tracking for translated flows: one entry per direction, keyed by the tuple as
//! the packet carries it, holding the rewrite that direction needs.
use crate::{assert_offset, assert_size};

pub const CT_MAP: &str = "KY_CT_V1";
/// Default capacity (LRU: the oldest flows go first when it is full).
pub const CT_MAX: u32 = 262_144;

/// The original direction (client → frontend).
pub const CT_FORWARD: u8 = 0;
/// Replies (backend → client, after translation).
pub const CT_REPLY: u8 = 1;
/// Policy tracking: a flow some node's policy allowed, keyed by the tuple on the wire (after
/// service translation), so its replies pass both ends' policies.
pub const CT_POLICY: u8 = 2;

/// Forward entry: the source was rewritten too (hairpin, NodePort SNAT).
pub const CT_FLAG_SNAT: u16 = 1 << 0;
/// Reply entry: the client is outside the cluster; send the reply out of the node uplink.
pub const CT_FLAG_TO_NETDEV: u16 = 1 << 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    /// CT_FORWARD, CT_REPLY or CT_POLICY.
    pub direction: u8,
    pub _pad: u16,
}
assert_size!(CtKey, 16);
assert_offset!(CtKey, protocol, 12);

/// The rewrite for packets matching the key. Addresses and ports are network order; zero
/// means "leave unchanged".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtEntry {
    /// New source (forward: SNAT address; reply: the frontend VIP).
    pub nat_saddr: u32,
    /// New destination (forward: the backend; reply: the client before SNAT).
    pub nat_daddr: u32,
    pub nat_sport: u16,
    pub nat_dport: u16,
    /// Backend chosen for the flow (forward entries), so a removed backend's flows can go.
    pub backend_id: u32,
    pub rev_nat_id: u16,
    /// CT_FLAG_* bits.
    pub flags: u16,
    pub _pad: u32,
    /// bpf_ktime_get_ns when the flow last carried a packet.
    pub last_seen_ns: u64,
}
assert_size!(CtEntry, 32);
assert_offset!(CtEntry, backend_id, 12);
assert_offset!(CtEntry, last_seen_ns, 24);
