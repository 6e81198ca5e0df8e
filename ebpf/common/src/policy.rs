//! NetworkPolicy maps: the ipcache (address → identity), per-endpoint isolation and allow
//! entries, per-rule counters, fragment tracking and the flow events `kaya observe` reads.
use crate::{assert_offset, assert_size};

/// LPM trie, key `Key<u32>` (prefix, IPv4 in network order) → `IpcacheEntry`.
pub const IPCACHE_MAP: &str = "KY_IPCACHE_V1";
pub const IPCACHE_MAX: u32 = 131_072;
/// LPM trie, key `Key<PolicyKey>` → `PolicyEntry`: the allow entries of every local endpoint.
pub const POLICY_MAP: &str = "KY_POLICY_V1";
pub const POLICY_MAX: u32 = 262_144;
/// Hash, endpoint id → `EndpointPolicy`: which directions of an endpoint are isolated.
pub const POLICY_ENDPOINTS_MAP: &str = "KY_POLICY_ENDPOINTS_V1";
pub const POLICY_ENDPOINTS_MAX: u32 = 65_536;
/// Per-CPU array of `metrics::Counter`, indexed by rule id.
pub const RULE_COUNTERS_MAP: &str = "KY_POLICY_RULES_V1";
pub const RULE_COUNTERS_MAX: u32 = 65_536;
/// LRU hash, `FragmentKey` → `FragmentPorts`: ports of a fragmented datagram's first piece.
pub const FRAGMENTS_MAP: &str = "KY_FRAGMENTS_V1";
pub const FRAGMENTS_MAX: u32 = 8_192;
/// Ring buffer of `FlowEvent`s.
pub const FLOW_EVENTS_MAP: &str = "KY_FLOW_EVENTS_V1";
pub const FLOW_EVENTS_BYTES: u32 = 1024 * 1024;

/// `PolicyKey::identity` matching every peer (`from`/`to` absent or empty).
pub const IDENTITY_ANY: u32 = 0;
/// CIDR identities (one per ipBlock prefix) are local to a node and never travel in a VNI,
/// so they live above the 24 bits pod identities use.
pub const FIRST_CIDR_IDENTITY: u32 = 1 << 24;

pub const DIRECTION_INGRESS: u8 = 1;
pub const DIRECTION_EGRESS: u8 = 2;
/// `EndpointPolicy::flags`: a policy of this type selects the endpoint.
pub const ISOLATED_INGRESS: u32 = 1 << 0;
pub const ISOLATED_EGRESS: u32 = 1 << 1;

/// Prefix lengths of `PolicyKey` (bits): everything, protocol without port, any protocol.
pub const POLICY_PREFIX_FULL: u32 = 96;
pub const POLICY_PREFIX_PROTOCOL: u32 = 80;
pub const POLICY_PREFIX_ANY: u32 = 72;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IpcacheEntry {
    /// Security identity of the address (pod, host, remote node; world when absent).
    pub identity: u32,
    /// Identity of the most specific ipBlock prefix holding the address; 0 if none.
    pub cidr_identity: u32,
    /// Underlay IPv4 of the node hosting the address (network order); 0 when not a pod.
    pub tunnel_ip: u32,
    pub _pad: u32,
}
assert_size!(IpcacheEntry, 16);

/// The data of the policy LPM key; fields are matched in order, so a shorter prefix leaves
/// the port, then the protocol, unspecified. `dport` is network order so port ranges are
/// bit prefixes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyKey {
    pub endpoint_id: u32,
    /// Peer identity (pod, reserved or CIDR), or IDENTITY_ANY.
    pub identity: u32,
    pub direction: u8,
    pub protocol: u8,
    pub dport: u16,
}
assert_size!(PolicyKey, 12);
assert_offset!(PolicyKey, direction, 8);
assert_offset!(PolicyKey, dport, 10);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyEntry {
    /// Index into the rule counters; names the policy rule that allowed the flow.
    pub rule_id: u32,
    pub _pad: u32,
}
assert_size!(PolicyEntry, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// ISOLATED_* bits.
    pub flags: u32,
}
assert_size!(EndpointPolicy, 4);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub saddr: u32,
    pub daddr: u32,
    /// IPv4 identification field.
    pub id: u16,
    pub protocol: u8,
    pub _pad: u8,
}
assert_size!(FragmentKey, 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentPorts {
    pub sport: u16,
    pub dport: u16,
}
assert_size!(FragmentPorts, 4);

/// `FlowEvent::verdict`.
pub const VERDICT_FORWARDED: u8 = 1;
pub const VERDICT_DROPPED: u8 = 2;

/// `FlowEvent::cause`: why the policy decided as it did.
pub const CAUSE_NOT_ISOLATED: u8 = 1;
pub const CAUSE_RULE: u8 = 2;
pub const CAUSE_NO_RULE: u8 = 3;

/// One policy decision: every denied packet, and the first allowed packet of each flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    /// bpf_ktime_get_ns (CLOCK_MONOTONIC).
    pub time_ns: u64,
    /// Addresses (network order) and ports (host order) as the policy saw them.
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub src_identity: u32,
    pub dst_identity: u32,
    /// The endpoint whose policy decided.
    pub endpoint_id: u32,
    /// The allowing rule (CAUSE_RULE), else 0.
    pub rule_id: u32,
    pub protocol: u8,
    /// DIRECTION_INGRESS or DIRECTION_EGRESS.
    pub direction: u8,
    pub verdict: u8,
    pub cause: u8,
    /// `trace::POINT_*` of the program that decided.
    pub point: u8,
    pub _pad: [u8; 7],
}
assert_size!(FlowEvent, 48);
assert_offset!(FlowEvent, src_identity, 20);
assert_offset!(FlowEvent, protocol, 36);
