//! Local pod endpoints: pod IP → host-side veth and MACs, for delivery with redirect_peer.
use crate::{assert_offset, assert_size};

pub const ENDPOINTS_MAP: &str = "KY_ENDPOINTS_V1";
pub const ENDPOINTS_MAX: u32 = 65_536;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// Pod IPv4 address, network byte order.
    pub ip: u32,
}
assert_size!(EndpointKey, 4);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// ifindex of the host side of the pod's veth (redirect_peer target).
    pub ifindex: u32,
    /// Security identity of the pod, carried as the VXLAN VNI.
    pub identity: u32,
    /// MAC of the pod's eth0.
    pub pod_mac: [u8; 6],
    /// MAC of the host side of the veth (the pod's gateway).
    pub host_mac: [u8; 6],
    /// Agent-assigned endpoint id, stable for the endpoint's life.
    pub endpoint_id: u32,
}
assert_size!(EndpointInfo, 24);
assert_offset!(EndpointInfo, pod_mac, 8);
assert_offset!(EndpointInfo, host_mac, 14);
assert_offset!(EndpointInfo, endpoint_id, 20);
