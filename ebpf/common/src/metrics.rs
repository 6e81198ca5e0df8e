//! Per-CPU counters of forwarding decisions, indexed by `Reason`.
use crate::assert_size;

pub const METRICS_MAP: &str = "KY_METRICS_V1";

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
assert_size!(Counter, 16);

/// Why a program forwarded, passed or dropped a packet. Values are map indices: append only.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Delivered to a local pod with bpf_redirect_peer.
    LocalDelivery = 0,
    /// Encapsulated towards a remote node and redirected to the VXLAN device.
    TunnelEncap = 1,
    /// Handed to the kernel stack (node-bound, or leaving the cluster).
    ToStack = 2,
    /// Not IPv4 (ARP, IPv6...): handed to the kernel untouched.
    NotIpv4 = 3,
    /// Truncated or inconsistent Ethernet/IPv4 header.
    DropMalformed = 4,
    /// Source IP is not the pod attached to this interface.
    DropSpoofedSource = 5,
    /// Decapsulated overlay packet delivered to a local pod.
    OverlayDelivery = 6,
    /// Decapsulated overlay packet for this node's own stack.
    OverlayToStack = 7,
    /// Host traffic to a pod CIDR with no known node.
    DropNoTunnel = 8,
    /// Host traffic given a tunnel key on the VXLAN device.
    HostEncap = 9,
    /// A helper call failed (redirect, tunnel key...).
    DropHelperFailed = 10,
}

pub const REASON_COUNT: u32 = 11;
/// Size of the metrics array: room to append reasons without a new map version.
pub const METRICS_MAX: u32 = 64;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::LocalDelivery,
        Reason::TunnelEncap,
        Reason::ToStack,
        Reason::NotIpv4,
        Reason::DropMalformed,
        Reason::DropSpoofedSource,
        Reason::OverlayDelivery,
        Reason::OverlayToStack,
        Reason::DropNoTunnel,
        Reason::HostEncap,
        Reason::DropHelperFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Reason::LocalDelivery => "local_delivery",
            Reason::TunnelEncap => "tunnel_encap",
            Reason::ToStack => "to_stack",
            Reason::NotIpv4 => "not_ipv4",
            Reason::DropMalformed => "drop_malformed",
            Reason::DropSpoofedSource => "drop_spoofed_source",
            Reason::OverlayDelivery => "overlay_delivery",
            Reason::OverlayToStack => "overlay_to_stack",
            Reason::DropNoTunnel => "drop_no_tunnel",
            Reason::HostEncap => "host_encap",
            Reason::DropHelperFailed => "drop_helper_failed",
        }
    }

    pub fn from_u32(value: u32) -> Option<Reason> {
        Reason::ALL.get(value as usize).copied()
    }
}
