//! Traffic leaving a pod: service translation first, then deliver locally with redirect_peer,
//! tunnel to the owning node, or hand to the kernel (node-bound, or leaving the cluster).
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_peer,
    programs::TcContext,
};
use aya_log_ebpf::warn;
use kaya_ebpf_common::{
    endpoint::EndpointInfo,
    identity::{IDENTITY_HOST, IDENTITY_WORLD},
    metrics::Reason,
    trace::{POINT_FROM_POD, POINT_TO_POD},
};

use crate::{
    maps::endpoint,
    netdev,
    observe::{Decision, count, record},
    overlay,
    packet::{self, Parsed},
    policy, reject,
    translate::{self, Outcome},
};

pub fn from_pod(ctx: &TcContext) -> i32 {
    let mut ip = match packet::parse(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::NotIpv4 => {
            return record(
                ctx,
                POINT_FROM_POD,
                Reason::NotIpv4,
                Decision::default(),
                TC_ACT_OK as i32,
            );
        }
        Parsed::Malformed => {
            return record(
                ctx,
                POINT_FROM_POD,
                Reason::DropMalformed,
                Decision::default(),
                TC_ACT_SHOT as i32,
            );
        }
    };
    let mut decision = Decision::about(&ip);
    // SAFETY: the context pointer is valid for the whole program run.
    let ingress = unsafe { (*ctx.skb.skb).ifindex };
    // Only the pod plugged into this veth may use its address.
    let source = match endpoint(ip.saddr) {
        Some(source) if source.ifindex == ingress => source,
        _ => {
            return record(
                ctx,
                POINT_FROM_POD,
                Reason::DropSpoofedSource,
                decision,
                TC_ACT_SHOT as i32,
            );
        }
    };
    // Replies are recognised by the tuple the peer answers, before any translation.
    let sent = policy::classify(ctx, &ip);
    if sent == policy::Sent::Malformed {
        return record(
            ctx,
            POINT_FROM_POD,
            Reason::DropMalformed,
            decision,
            TC_ACT_SHOT as i32,
        );
    }
    let source_ip = ip.saddr;
    match translate::from_pod(ctx, &mut ip) {
        Outcome::Untouched => {}
        Outcome::Translated(reason) => count(reason, ctx.len()),
        Outcome::ToNetdev => {
            let verdict = netdev::send_out();
            return record(
                ctx,
                POINT_FROM_POD,
                Reason::NodePortReply,
                decision,
                verdict,
            );
        }
        Outcome::Reject(ports) => {
            let verdict = reject::refuse(ctx, &ip, &ports, reject::Bounce::ToPod(ingress));
            return record(
                ctx,
                POINT_FROM_POD,
                Reason::ServiceRejected,
                decision,
                verdict,
            );
        }
        Outcome::Drop(reason) => {
            return record(ctx, POINT_FROM_POD, reason, decision, TC_ACT_SHOT as i32);
        }
    }
    let target = endpoint(ip.daddr);
    // The sender's identity: for the policy check, and for the VNI of what leaves the node;
    // a reply delivered locally needs neither.
    let src = if sent == policy::Sent::New || target.is_none() {
        policy::Peer::of(source_ip)
    } else {
        policy::Peer::unknown()
    };
    if sent == policy::Sent::New {
        // Policy sees the flow as it travels: towards the backend, not the service.
        let check = policy::Check {
            point: POINT_FROM_POD,
            src,
            sender: source.endpoint_id,
            receiver: target.map_or(0, |t| t.endpoint_id),
        };
        if let Some(reason) = policy::admit(ctx, &ip, &check) {
            return record(ctx, POINT_FROM_POD, reason, decision, TC_ACT_SHOT as i32);
        }
    }
    if let Some(target) = target {
        return deliver_to_endpoint(
            ctx,
            POINT_FROM_POD,
            &target,
            decision,
            Reason::LocalDelivery,
        );
    }
    // The VNI carries the sender's identity: the receiving node needs no lookup for it.
    let identity = if src.identity == IDENTITY_WORLD {
        source.identity
    } else {
        src.identity
    };
    match overlay::encapsulate(ctx, ip.daddr, identity, &mut decision) {
        Some(verdict) => {
            let reason = if verdict == TC_ACT_SHOT as i32 {
                Reason::DropHelperFailed
            } else {
                Reason::TunnelEncap
            };
            record(ctx, POINT_FROM_POD, reason, decision, verdict)
        }
        None => record(
            ctx,
            POINT_FROM_POD,
            Reason::ToStack,
            decision,
            TC_ACT_OK as i32,
        ),
    }
}

/// Traffic the kernel routes into a pod (tc egress of its host veth; what the other programs
/// deliver skips this hook). The pod's own node may always reach it, as Kubernetes requires
/// for probes; anything else meets the pod's ingress policy.
pub fn to_pod(ctx: &TcContext) -> i32 {
    let ip = match packet::parse(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::NotIpv4 => return TC_ACT_OK as i32,
        Parsed::Malformed => {
            let drop = TC_ACT_SHOT as i32;
            return record(
                ctx,
                POINT_TO_POD,
                Reason::DropMalformed,
                Decision::default(),
                drop,
            );
        }
    };
    let decision = Decision::about(&ip);
    let Some(target) = endpoint(ip.daddr) else {
        return TC_ACT_OK as i32;
    };
    match policy::classify(ctx, &ip) {
        policy::Sent::Reply => {}
        policy::Sent::Malformed => {
            let drop = TC_ACT_SHOT as i32;
            return record(ctx, POINT_TO_POD, Reason::DropMalformed, decision, drop);
        }
        policy::Sent::New => {
            let mut src = policy::Peer::of(ip.saddr);
            // Packets the node sends never arrived on an interface; forwarded ones did.
            // SAFETY: the context pointer is valid for the whole program run.
            let from_this_node = unsafe { (*ctx.skb.skb).ingress_ifindex } == 0;
            if from_this_node {
                src.identity = IDENTITY_HOST;
            }
            let check = policy::Check {
                point: POINT_TO_POD,
                src,
                sender: 0,
                receiver: if src.identity == IDENTITY_HOST {
                    0
                } else {
                    target.endpoint_id
                },
            };
            if let Some(reason) = policy::admit(ctx, &ip, &check) {
                return record(ctx, POINT_TO_POD, reason, decision, TC_ACT_SHOT as i32);
            }
        }
    }
    record(
        ctx,
        POINT_TO_POD,
        Reason::StackToPod,
        decision,
        TC_ACT_OK as i32,
    )
}

/// Delivers to a local pod and records the outcome under `delivered`.
#[inline(always)]
pub fn deliver_to_endpoint(
    ctx: &TcContext,
    point: u8,
    target: &EndpointInfo,
    mut decision: Decision,
    delivered: Reason,
) -> i32 {
    decision.ifindex_out = target.ifindex;
    let verdict = deliver_local(ctx, target);
    let reason = if verdict == TC_ACT_SHOT as i32 {
        Reason::DropHelperFailed
    } else {
        delivered
    };
    record(ctx, point, reason, decision, verdict)
}

/// Rewrites the Ethernet header for the target pod and switches the packet straight into
/// its network namespace, skipping the host's routing and the veth's backlog queue.
#[inline(always)]
fn deliver_local(ctx: &TcContext, target: &EndpointInfo) -> i32 {
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&target.pod_mac);
    macs[6..].copy_from_slice(&target.host_mac);
    if ctx.store(0, &macs, 0).is_err() {
        warn!(ctx, "kaya: rewriting ethernet header failed");
        return TC_ACT_SHOT as i32;
    }
    // SAFETY: plain helper call; it only records the target for after the program returns.
    unsafe { bpf_redirect_peer(target.ifindex, 0) as i32 }
}
