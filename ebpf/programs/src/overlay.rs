//! The VXLAN overlay: tunnel keys towards remote nodes, and decapsulated traffic from them.
use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{BPF_F_ZERO_CSUM_TX, TC_ACT_OK, TC_ACT_SHOT, bpf_tunnel_key},
    helpers::{bpf_redirect, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key},
    maps::lpm_trie::Key,
    programs::TcContext,
};
use kaya_ebpf_common::{
    identity::{IDENTITY_REMOTE_NODE, IDENTITY_UNKNOWN},
    metrics::Reason,
    trace::{POINT_FROM_OVERLAY, POINT_TO_OVERLAY},
};

use crate::{
    delivery::deliver_to_endpoint,
    maps::{TUNNELS, config, endpoint},
    observe::{Decision, count, record},
    packet::{self, Parsed},
    policy,
    translate::{self, Outcome},
};

const PACKET_HOST: u32 = 0;
const TUNNEL_TTL: u8 = 64;

/// Node that owns the pod CIDR containing `daddr`, as network-order IPv4.
#[inline(always)]
fn remote_node(daddr: u32) -> Option<u32> {
    TUNNELS
        .get(&Key::new(32, daddr))
        .map(|tunnel| tunnel.node_ip)
}

#[inline(always)]
fn set_tunnel_key(ctx: &TcContext, node_ip_be: u32, vni: u32) -> bool {
    // SAFETY: an all-zero bpf_tunnel_key is a valid value.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    key.tunnel_id = vni;
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be(node_ip_be);
    key.tunnel_ttl = TUNNEL_TTL;
    // SAFETY: key lives on the stack for the duration of the call; size matches the type.
    let ret = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.skb.skb,
            &mut key,
            size_of::<bpf_tunnel_key>() as u32,
            BPF_F_ZERO_CSUM_TX as u64,
        )
    };
    ret == 0
}

/// Tunnel key already attached to the skb (by VXLAN receive, or by from_pod on egress).
#[inline(always)]
fn tunnel_key(ctx: &TcContext) -> Option<bpf_tunnel_key> {
    // SAFETY: as in set_tunnel_key; the helper fills the key or fails.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    let ret = unsafe {
        bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size_of::<bpf_tunnel_key>() as u32, 0)
    };
    (ret == 0).then_some(key)
}

/// For a pod packet to another node's pod CIDR: tunnel key with the sender's identity as the
/// VNI, then redirect to the VXLAN device. `None` when `daddr` is not in a remote pod CIDR.
#[inline(always)]
pub fn encapsulate(
    ctx: &TcContext,
    daddr: u32,
    identity: u32,
    decision: &mut Decision,
) -> Option<i32> {
    let node_ip = remote_node(daddr)?;
    let overlay = config().overlay_ifindex;
    decision.tunnel_remote = node_ip;
    decision.vni = identity;
    decision.ifindex_out = overlay;
    if overlay == 0 || !set_tunnel_key(ctx, node_ip, identity) {
        return Some(TC_ACT_SHOT as i32);
    }
    // SAFETY: plain helper call.
    Some(unsafe { bpf_redirect(overlay, 0) as i32 })
}

pub fn from_overlay(ctx: &TcContext) -> i32 {
    let mut decision = Decision::default();
    if let Some(key) = tunnel_key(ctx) {
        decision.vni = key.tunnel_id;
        // SAFETY: IPv4 tunnels fill the remote_ipv4 member.
        decision.tunnel_remote = unsafe { key.__bindgen_anon_1.remote_ipv4 }.to_be();
    } else {
        decision.vni = IDENTITY_UNKNOWN;
    }
    let mut ip = match packet::parse(ctx) {
        Parsed::Ipv4(ip) => ip,
        Parsed::NotIpv4 => {
            return record(
                ctx,
                POINT_FROM_OVERLAY,
                Reason::NotIpv4,
                decision,
                TC_ACT_OK as i32,
            );
        }
        Parsed::Malformed => {
            return record(
                ctx,
                POINT_FROM_OVERLAY,
                Reason::DropMalformed,
                decision,
                TC_ACT_SHOT as i32,
            );
        }
    };
    let decision = Decision {
        vni: decision.vni,
        tunnel_remote: decision.tunnel_remote,
        ..Decision::about(&ip)
    };
    let sent = policy::classify(ctx, &ip);
    if sent == policy::Sent::Malformed {
        return record(
            ctx,
            POINT_FROM_OVERLAY,
            Reason::DropMalformed,
            decision,
            TC_ACT_SHOT as i32,
        );
    }
    let sender = ip.saddr;
    match translate::from_overlay(ctx, &mut ip) {
        Outcome::Untouched | Outcome::Reject(_) => {}
        Outcome::Translated(reason) => count(reason, ctx.len()),
        Outcome::ToNetdev => {
            let verdict = crate::netdev::send_out();
            return record(
                ctx,
                POINT_FROM_OVERLAY,
                Reason::NodePortReply,
                decision,
                verdict,
            );
        }
        Outcome::Drop(reason) => {
            return record(
                ctx,
                POINT_FROM_OVERLAY,
                reason,
                decision,
                TC_ACT_SHOT as i32,
            );
        }
    }
    if let Some(target) = endpoint(ip.daddr) {
        // The sender's identity came in the VNI; the ipcache adds its ipBlock identity.
        if sent == policy::Sent::New
            && let Some(reason) = policy::admit(
                ctx,
                &ip,
                &policy::Check {
                    point: POINT_FROM_OVERLAY,
                    src: policy::Peer {
                        identity: decision.vni,
                        cidr_identity: policy::Peer::of(sender).cidr_identity,
                    },
                    sender: 0,
                    receiver: target.endpoint_id,
                },
            )
        {
            return record(
                ctx,
                POINT_FROM_OVERLAY,
                reason,
                decision,
                TC_ACT_SHOT as i32,
            );
        }
        return deliver_to_endpoint(
            ctx,
            POINT_FROM_OVERLAY,
            &target,
            decision,
            Reason::OverlayDelivery,
        );
    }
    // The inner destination MAC is the sending pod's gateway, not this device: without this
    // the stack would discard the packet as addressed to another host.
    if ctx.change_type(PACKET_HOST).is_err() {
        return record(
            ctx,
            POINT_FROM_OVERLAY,
            Reason::DropHelperFailed,
            decision,
            TC_ACT_SHOT as i32,
        );
    }
    record(
        ctx,
        POINT_FROM_OVERLAY,
        Reason::OverlayToStack,
        decision,
        TC_ACT_OK as i32,
    )
}

pub fn to_overlay(ctx: &TcContext) -> i32 {
    if tunnel_key(ctx).is_some() {
        // Keyed by from_pod already; counted there.
        return TC_ACT_OK as i32;
    }
    let ip = match packet::parse(ctx) {
        Parsed::Ipv4(ip) => ip,
        // Neighbour discovery and the like have no remote node to go to.
        Parsed::NotIpv4 | Parsed::Malformed => {
            return record(
                ctx,
                POINT_TO_OVERLAY,
                Reason::DropNoTunnel,
                Decision::default(),
                TC_ACT_SHOT as i32,
            );
        }
    };
    let mut decision = Decision {
        vni: IDENTITY_REMOTE_NODE,
        ..Decision::about(&ip)
    };
    let Some(node_ip) = remote_node(ip.daddr) else {
        return record(
            ctx,
            POINT_TO_OVERLAY,
            Reason::DropNoTunnel,
            decision,
            TC_ACT_SHOT as i32,
        );
    };
    decision.tunnel_remote = node_ip;
    if !set_tunnel_key(ctx, node_ip, IDENTITY_REMOTE_NODE) {
        return record(
            ctx,
            POINT_TO_OVERLAY,
            Reason::DropHelperFailed,
            decision,
            TC_ACT_SHOT as i32,
        );
    }
    record(
        ctx,
        POINT_TO_OVERLAY,
        Reason::HostEncap,
        decision,
        TC_ACT_OK as i32,
    )
}
