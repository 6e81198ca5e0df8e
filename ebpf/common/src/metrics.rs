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
    /// A packet to a service frontend was translated to a backend (per-packet LB).
    ServiceTranslated = 11,
    /// A new connection to a service with no endpoints was refused (TCP RST / ICMP).
    ServiceRejected = 12,
    /// A reply was translated back to the service frontend (reverse NAT).
    ReplyTranslated = 13,
    /// A conntrack or affinity entry could not be written (map full): the packet was dropped.
    DropMapFull = 14,
    /// A service packet was dropped: malformed L4 header or a protocol the path cannot NAT.
    DropServiceUnsupported = 15,
    /// A socket's connect()/sendmsg() to a frontend was given a backend (socket LB).
    SocketTranslated = 16,
    /// A socket's connect()/sendmsg() to a frontend with no endpoints was refused.
    SocketRejected = 17,
    /// A packet from outside the cluster to a node frontend was translated (from_netdev).
    NodePortTranslated = 18,
    /// A reply to an outside client was translated and sent out of the uplink.
    NodePortReply = 19,
    /// An outside client of an `externalTrafficPolicy: Local` frontend reached a node with
    /// none of its endpoints: dropped, as kube-proxy does (load balancers health-check).
    DropNoLocalEndpoints = 20,
    /// The sending pod's egress policy allows no rule for the flow.
    DropPolicyEgress = 21,
    /// The receiving pod's ingress policy allows no rule for the flow.
    DropPolicyIngress = 22,
    /// Traffic the kernel routed to a pod (from the node itself, or unhandled by the
    /// other programs), passed by to_pod after its policy check.
    StackToPod = 23,
}

pub const REASON_COUNT: u32 = 24;
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
        Reason::ServiceTranslated,
        Reason::ServiceRejected,
        Reason::ReplyTranslated,
        Reason::DropMapFull,
        Reason::DropServiceUnsupported,
        Reason::SocketTranslated,
        Reason::SocketRejected,
        Reason::NodePortTranslated,
        Reason::NodePortReply,
        Reason::DropNoLocalEndpoints,
        Reason::DropPolicyEgress,
        Reason::DropPolicyIngress,
        Reason::StackToPod,
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
            Reason::ServiceTranslated => "service_translated",
            Reason::ServiceRejected => "service_rejected",
            Reason::ReplyTranslated => "reply_translated",
            Reason::DropMapFull => "drop_map_full",
            Reason::DropServiceUnsupported => "drop_service_unsupported",
            Reason::SocketTranslated => "socket_translated",
            Reason::SocketRejected => "socket_rejected",
            Reason::NodePortTranslated => "nodeport_translated",
            Reason::NodePortReply => "nodeport_reply",
            Reason::DropNoLocalEndpoints => "drop_no_local_endpoints",
            Reason::DropPolicyEgress => "drop_policy_egress",
            Reason::DropPolicyIngress => "drop_policy_ingress",
            Reason::StackToPod => "stack_to_pod",
        }
    }

    pub fn from_u32(value: u32) -> Option<Reason> {
        Reason::ALL.get(value as usize).copied()
    }
}
