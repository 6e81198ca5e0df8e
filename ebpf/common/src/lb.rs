//! Service load-balancing maps: frontends (VIP, port, protocol, slot), backends, session
//! affinity and the socket-level reverse translation.
use crate::{assert_offset, assert_size};

pub const SERVICES_MAP: &str = "KY_LB_SERVICES_V1";
pub const BACKENDS_MAP: &str = "KY_LB_BACKENDS_V1";
pub const AFFINITY_MAP: &str = "KY_LB_AFFINITY_V1";
pub const SOCK_REVNAT_MAP: &str = "KY_LB_SOCK_REVNAT_V1";

/// Default capacities; the agent can resize every map at load time (`lbMapSizes`).
pub const SERVICES_MAX: u32 = 262_144;
pub const BACKENDS_MAX: u32 = 131_072;
pub const AFFINITY_MAX: u32 = 65_536;
pub const SOCK_REVNAT_MAX: u32 = 131_072;

/// Session affinity by client IP (`sessionAffinity: ClientIP`).
pub const SVC_FLAG_AFFINITY: u16 = 1 << 0;
/// Frontend on a node address (NodePort, externalIPs, LoadBalancer ingress): from_netdev
/// translates it for outside clients.
pub const SVC_FLAG_EXTERNAL: u16 = 1 << 1;
/// externalTrafficPolicy: Local: keep the client's source address (no SNAT).
pub const SVC_FLAG_PRESERVE_SOURCE: u16 = 1 << 2;
/// With SVC_FLAG_PRESERVE_SOURCE and no backends: the service has endpoints, just none on
/// this node, so outside clients are dropped rather than refused (kube-proxy's behaviour).
pub const SVC_FLAG_DROP_WITHOUT_LOCAL: u16 = 1 << 3;

/// One frontend slot. Slot 0 is the frontend itself (backend count, flags); slots 1..=count
/// each name one backend, so a random pick is one more lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    /// Frontend IPv4, network byte order.
    pub address: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    pub slot: u16,
    /// IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP.
    pub protocol: u8,
    pub _pad: [u8; 3],
}
assert_size!(ServiceKey, 12);
assert_offset!(ServiceKey, slot, 6);
assert_offset!(ServiceKey, protocol, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceValue {
    /// Slot > 0: the backend this slot selects. Slot 0: unused.
    pub backend_id: u32,
    /// Slot 0: number of backend slots. 0 means the service has no endpoints (reject).
    pub count: u16,
    /// Names the frontend: the affinity scope, and how conntrack entries find their service.
    pub rev_nat_id: u16,
    /// SVC_FLAG_* bits (slot 0).
    pub flags: u16,
    pub _pad: u16,
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` (slot 0, with SVC_FLAG_AFFINITY).
    pub affinity_timeout_s: u32,
}
assert_size!(ServiceValue, 16);
assert_offset!(ServiceValue, flags, 8);
assert_offset!(ServiceValue, affinity_timeout_s, 12);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BackendKey {
    pub id: u32,
}
assert_size!(BackendKey, 4);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Backend (pod) IPv4, network byte order.
    pub address: u32,
    /// Target port, network byte order.
    pub port: u16,
    pub protocol: u8,
    pub _pad: u8,
}
assert_size!(Backend, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// Client IPv4, network byte order.
    pub client: u32,
    pub rev_nat_id: u16,
    pub _pad: u16,
}
assert_size!(AffinityKey, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad: u32,
    /// bpf_ktime_get_ns of the last connection that used this entry.
    pub last_used_ns: u64,
}
assert_size!(AffinityValue, 16);

/// A socket whose connect()/sendmsg() went to a backend instead of the VIP, so recvmsg()
/// and getpeername() can show the VIP again.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SockRevNatKey {
    pub cookie: u64,
    pub address: u32,
    pub port: u16,
    pub _pad: u16,
}
assert_size!(SockRevNatKey, 16);
assert_offset!(SockRevNatKey, address, 8);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevNat {
    pub address: u32,
    pub port: u16,
    pub rev_nat_id: u16,
}
assert_size!(SockRevNat, 8);
