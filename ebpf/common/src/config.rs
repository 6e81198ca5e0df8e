//! The single-entry configuration map the agent writes before attaching programs.
use crate::{assert_offset, assert_size};

/// V2: uplink ifindex and the hairpin address joined the layout.
pub const CONFIG_MAP: &str = "KY_CONFIG_V2";
/// Index of the only entry in the config array.
pub const CONFIG_KEY: u32 = 0;

/// Emit a trace event for every forwarding decision (tests and `kaya observe`).
pub const FLAG_TRACE: u32 = 1 << 0;

/// Source address given to hairpinned service traffic (a pod reaching itself through its own
/// service): the pod's kernel would discard a packet whose source is its own address.
pub const HAIRPIN_IP: [u8; 4] = [169, 254, 42, 1];

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfig {
    /// ifindex of the collect_md VXLAN device; 0 until the overlay exists.
    pub overlay_ifindex: u32,
    /// FLAG_* bits.
    pub flags: u32,
    /// Underlay IPv4 address of this node, network byte order.
    pub node_ip: u32,
    /// ifindex of the node's uplink (NodePort replies leave through it); 0 if unknown.
    pub uplink_ifindex: u32,
    /// HAIRPIN_IP, network byte order.
    pub hairpin_ip: u32,
    /// Source for NodePort traffic SNATed towards a backend: the node's pod gateway address,
    /// so backends on any node route replies back through the overlay. 0: no SNAT possible.
    pub snat_ip: u32,
}
assert_size!(DatapathConfig, 24);
assert_offset!(DatapathConfig, node_ip, 8);
assert_offset!(DatapathConfig, hairpin_ip, 16);
assert_offset!(DatapathConfig, snat_ip, 20);
