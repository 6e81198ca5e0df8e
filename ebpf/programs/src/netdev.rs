//! The node's uplink: outside clients of node frontends (NodePort, externalIPs,
//! LoadBalancer IPs) are translated on ingress and sent to a local backend or through the
//! overlay; replies to them leave through the uplink with a FIB-resolved neighbour.
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_neigh,
    programs::TcContext,
};
use kaya_ebpf_common::{identity::IDENTITY_WORLD, metrics::Reason, trace::POINT_FROM_NETDEV};

use crate::{
    delivery::deliver_to_endpoint,
    maps::{config, endpoint},
    observe::{Decision, record},
    overlay,
    packet::{self, Parsed},
    policy, reject,
    translate::{self, Outcome},
};

/// Sends a rewritten reply out of the uplink; the kernel's FIB and neighbour table supply
/// the next hop and MACs.
#[inline(always)]
pub fn send_out() -> i32 {
    let uplink = config().uplink_ifindex;
    if uplink == 0 {
        return TC_ACT_SHOT as i32;
    }
    // SAFETY: plain helper call; no explicit next hop (params NULL, length 0).
    unsafe { bpf_redirect_neigh(uplink, core::ptr::null_mut(), 0, 0) as i32 }
}

pub fn from_netdev(ctx: &TcContext) -> i32 {
    // Everything the node receives passes here: only service frontends are ours, the rest
    // goes to the stack unrecorded.
    let mut ip = match packet::parse(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::NotIpv4 | Parsed::Malformed => return TC_ACT_OK as i32,
    };
    let mut decision = Decision::about(&ip);
    // The client as it arrived, before any SNAT: that is whom the backend's policy judges
    // (looked up only for packets that reach a local pod, not for all the node's traffic).
    let client = ip.saddr;
    match translate::from_netdev(ctx, &mut ip) {
        Outcome::Untouched | Outcome::ToNetdev => TC_ACT_OK as i32,
        Outcome::Translated(reason) => {
            if let Some(target) = endpoint(ip.daddr) {
                let check = policy::Check {
                    point: POINT_FROM_NETDEV,
                    src: policy::Peer::of(client),
                    sender: 0,
                    receiver: target.endpoint_id,
                };
                if let Some(drop) = policy::admit(ctx, &ip, &check) {
                    return record(ctx, POINT_FROM_NETDEV, drop, decision, TC_ACT_SHOT as i32);
                }
                return deliver_to_endpoint(ctx, POINT_FROM_NETDEV, &target, decision, reason);
            }
            match overlay::encapsulate(ctx, ip.daddr, IDENTITY_WORLD, &mut decision) {
                Some(verdict) if verdict != TC_ACT_SHOT as i32 => {
                    record(ctx, POINT_FROM_NETDEV, reason, decision, verdict)
                }
                Some(verdict) => record(
                    ctx,
                    POINT_FROM_NETDEV,
                    Reason::DropHelperFailed,
                    decision,
                    verdict,
                ),
                None => record(
                    ctx,
                    POINT_FROM_NETDEV,
                    Reason::DropNoTunnel,
                    decision,
                    TC_ACT_SHOT as i32,
                ),
            }
        }
        Outcome::Reject(ports) => {
            // SAFETY: the context pointer is valid for the whole program run.
            let ingress = unsafe { (*ctx.skb.skb).ifindex };
            let verdict = reject::refuse(ctx, &ip, &ports, reject::Bounce::OutOf(ingress));
            record(
                ctx,
                POINT_FROM_NETDEV,
                Reason::ServiceRejected,
                decision,
                verdict,
            )
        }
        Outcome::Drop(reason) => {
            record(ctx, POINT_FROM_NETDEV, reason, decision, TC_ACT_SHOT as i32)
        }
    }
}
