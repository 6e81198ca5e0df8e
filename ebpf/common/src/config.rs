//! The single-entry configuration map the agent writes before attaching programs.
use crate::{assert_offset, assert_size};

pub const CONFIG_MAP: &str = "KY_CONFIG_V1";
/// Index of the only entry in the config array.
pub const CONFIG_KEY: u32 = 0;

/// Emit a trace event for every forwarding decision (tests and `kaya observe`).
pub const FLAG_TRACE: u32 = 1 << 0;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfig {
    /// ifindex of the collect_md VXLAN device; 0 until the overlay exists.
    pub overlay_ifindex: u32,
    /// FLAG_* bits.
    pub flags: u32,
    /// Underlay IPv4 address of this node, network byte order.
    pub node_ip: u32,
    pub _pad: u32,
}
assert_size!(DatapathConfig, 16);
assert_offset!(DatapathConfig, node_ip, 8);
