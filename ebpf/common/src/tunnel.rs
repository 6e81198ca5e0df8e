//! Overlay routing: remote pod CIDR (LPM) → underlay IP of the node that owns it.
use crate::assert_size;

pub const TUNNELS_MAP: &str = "KY_TUNNELS_V1";
pub const TUNNELS_MAX: u32 = 4_096;
/// UDP port of the VXLAN overlay (flannel's, so firewalls written for flannel fit).
pub const VXLAN_PORT: u16 = 8472;
/// Bytes a VXLAN encapsulation adds: outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Value of the tunnel LPM map; the key is `aya::maps::lpm_trie::Key<u32>` (prefix, address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelEndpoint {
    /// Underlay IPv4 of the remote node, network byte order.
    pub node_ip: u32,
    pub _pad: u32,
}
assert_size!(TunnelEndpoint, 8);
