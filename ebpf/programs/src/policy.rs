//! NetworkPolicy enforcement: identities of the two ends from the ipcache, the endpoint's
//! allow entries (LPM over identity, protocol and port), conntrack so replies of allowed
//! flows pass, per-rule counters and flow events.
use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key, programs::TcContext};
use kaya_ebpf_common::{
    ct::{CT_POLICY, CtEntry, CtKey},
    identity::IDENTITY_WORLD,
    metrics::Reason,
    policy::{
        CAUSE_NO_RULE, CAUSE_NOT_ISOLATED, CAUSE_RULE, DIRECTION_EGRESS, DIRECTION_INGRESS,
        FlowEvent, IDENTITY_ANY, ISOLATED_EGRESS, ISOLATED_INGRESS, POLICY_PREFIX_FULL, PolicyKey,
        VERDICT_DROPPED, VERDICT_FORWARDED,
    },
};

use crate::{
    flow::{self, Flow, Tuple},
    maps::{CT, FLOW_EVENTS, IPCACHE, POLICY, POLICY_ENDPOINTS, RULE_COUNTERS},
    packet::{IPPROTO_TCP, Ipv4Summary},
};

/// How long after its sender's last packet a flow's replies still pass: TCP connections
/// idle for long (keepalives are hours apart), datagram "flows" are short (as Cilium).
const TCP_LIFETIME_NS: u64 = 6 * 3600 * 1_000_000_000;
const DATAGRAM_LIFETIME_NS: u64 = 60 * 1_000_000_000;

/// One end of a flow as policy sees it.
#[derive(Clone, Copy)]
pub struct Peer {
    pub identity: u32,
    /// Identity of the most specific ipBlock prefix holding the address (0: none).
    pub cidr_identity: u32,
}

impl Peer {
    /// A peer nobody looked up (a locally delivered reply: no decision needs it).
    #[inline(always)]
    pub fn unknown() -> Peer {
        Peer {
            identity: IDENTITY_WORLD,
            cidr_identity: 0,
        }
    }

    /// The ipcache's view of `address`; outside every known prefix is the world.
    #[inline(always)]
    pub fn of(address: u32) -> Peer {
        match IPCACHE.get(&Key::new(32, address)) {
            Some(entry) => Peer {
                identity: if entry.identity == 0 {
                    IDENTITY_WORLD
                } else {
                    entry.identity
                },
                cidr_identity: entry.cidr_identity,
            },
            None => Peer::unknown(),
        }
    }
}

#[derive(Clone, Copy)]
struct Allowed {
    rule_id: u32,
    cause: u8,
}

/// Whether `endpoint_id`'s policy in `direction` admits `peer` on `protocol`/`dport`.
#[inline(always)]
fn decide(
    endpoint_id: u32,
    direction: u8,
    peer: &Peer,
    protocol: u8,
    dport: u16,
    len: u32,
) -> Option<Allowed> {
    let isolation = if direction == DIRECTION_INGRESS {
        ISOLATED_INGRESS
    } else {
        ISOLATED_EGRESS
    };
    // SAFETY: the value is copied out at once.
    let isolated = unsafe { POLICY_ENDPOINTS.get(&endpoint_id) }
        .is_some_and(|policy| policy.flags & isolation != 0);
    if !isolated {
        return Some(Allowed {
            rule_id: 0,
            cause: CAUSE_NOT_ISOLATED,
        });
    }
    // The peer's own identity, its ipBlock identity, then the entries for every peer; the
    // LPM match on each falls back from the exact port to the protocol to any protocol.
    let lookup = |identity: u32| {
        let key = Key::new(
            POLICY_PREFIX_FULL,
            PolicyKey {
                endpoint_id,
                identity,
                direction,
                protocol,
                dport,
            },
        );
        POLICY.get(&key).map(|entry| entry.rule_id)
    };
    let rule_id = lookup(peer.identity)
        .or_else(|| {
            (peer.cidr_identity != 0)
                .then(|| lookup(peer.cidr_identity))
                .flatten()
        })
        .or_else(|| lookup(IDENTITY_ANY))?;
    count_rule(rule_id, len);
    Some(Allowed {
        rule_id,
        cause: CAUSE_RULE,
    })
}

#[inline(always)]
fn count_rule(rule_id: u32, len: u32) {
    if let Some(counter) = RULE_COUNTERS.get_ptr_mut(rule_id) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(len);
        }
    }
}

#[inline(always)]
fn ct_key(tuple: &Tuple) -> CtKey {
    CtKey {
        saddr: tuple.saddr,
        daddr: tuple.daddr,
        sport: tuple.sport,
        dport: tuple.dport,
        protocol: tuple.protocol,
        direction: CT_POLICY,
        _pad: 0,
    }
}

/// Whether a flow some policy admitted carries `tuple` and was active recently.
#[inline(always)]
fn admitted(tuple: &Tuple, now: u64) -> bool {
    // SAFETY: the value is copied out at once.
    let Some(entry) = (unsafe { CT.get(&ct_key(tuple)) }) else {
        return false;
    };
    let lifetime = if tuple.protocol == IPPROTO_TCP {
        TCP_LIFETIME_NS
    } else {
        DATAGRAM_LIFETIME_NS
    };
    now.saturating_sub(entry.last_seen_ns) < lifetime
}

/// A reply of an admitted flow, or an ICMP error about one.
#[inline(always)]
fn is_reply(flow: &Flow) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    match &flow.error_about {
        Some(quoted) => admitted(quoted, now) || admitted(&quoted.reversed(), now),
        None => admitted(&flow.tuple.reversed(), now),
    }
}

/// Records (or refreshes) an admitted flow; true when it is new.
#[inline(always)]
fn track(tuple: &Tuple) -> bool {
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = ct_key(tuple);
    if let Some(entry) = CT.get_ptr_mut(&key) {
        // SAFETY: a racing update is a benign torn clock.
        unsafe { (*entry).last_seen_ns = now };
        return false;
    }
    let entry = CtEntry {
        last_seen_ns: now,
        ..CtEntry::default()
    };
    // A full map only means replies must pass the other end's policy on their own.
    let _ = CT.insert(&key, &entry, 0);
    true
}

/// What a packet is to policy, judged on its tuple before any translation.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// A reply of an admitted flow, or an ICMP error about one: policy never stops these.
    Reply,
    /// Anything else: the policies it crosses decide.
    New,
    /// Its L4 header is cut short.
    Malformed,
}

/// Classifies a packet. Not inlined, like `admit`: the callers' frames are near the
/// verifier's 512-byte stack limit.
#[inline(never)]
pub fn classify(ctx: &TcContext, ip: &Ipv4Summary) -> Sent {
    // Every packet is classified, replies included, so a first fragment's ports are recorded
    // here, once, under the addresses its later pieces carry (those are never translated).
    match flow::of(ctx, ip, flow::Fragments::Record) {
        Some(flow) if is_reply(&flow) => Sent::Reply,
        Some(_) => Sent::New,
        None => Sent::Malformed,
    }
}

/// A packet to check: where, its sender, and whose policies it crosses (endpoint ids; 0
/// for none).
pub struct Check {
    pub point: u8,
    pub src: Peer,
    /// The sending pod (egress policy).
    pub sender: u32,
    /// The receiving pod (ingress policy).
    pub receiver: u32,
}

/// Checks a packet that is not a reply, as it travels now (after any service
/// translation), against the sender's egress and the receiver's ingress policy; an
/// admitted packet is tracked so its flow's replies pass. `Some` is the drop reason.
#[inline(never)]
pub fn admit(ctx: &TcContext, ip: &Ipv4Summary, check: &Check) -> Option<Reason> {
    let Some(flow) = flow::of(ctx, ip, flow::Fragments::Skip) else {
        return Some(Reason::DropMalformed);
    };
    let (point, src) = (check.point, &check.src);
    let dst = &Peer::of(ip.daddr);
    let tuple = &flow.tuple;
    let len = ctx.len();
    let mut decided = None;
    if check.sender != 0 {
        let endpoint_id = check.sender;
        let verdict = decide(
            endpoint_id,
            DIRECTION_EGRESS,
            dst,
            tuple.protocol,
            tuple.dport,
            len,
        );
        let Some(allowed) = verdict else {
            emit(point, tuple, src, dst, endpoint_id, DIRECTION_EGRESS, None);
            return Some(Reason::DropPolicyEgress);
        };
        decided = Some((endpoint_id, DIRECTION_EGRESS, allowed));
    }
    if check.receiver != 0 {
        let endpoint_id = check.receiver;
        let verdict = decide(
            endpoint_id,
            DIRECTION_INGRESS,
            src,
            tuple.protocol,
            tuple.dport,
            len,
        );
        let Some(allowed) = verdict else {
            emit(point, tuple, src, dst, endpoint_id, DIRECTION_INGRESS, None);
            return Some(Reason::DropPolicyIngress);
        };
        decided = Some((endpoint_id, DIRECTION_INGRESS, allowed));
    }
    if track(tuple)
        && let Some((endpoint_id, direction, allowed)) = decided
    {
        emit(
            point,
            tuple,
            src,
            dst,
            endpoint_id,
            direction,
            Some(allowed),
        );
    }
    None
}

#[inline(always)]
fn emit(
    point: u8,
    tuple: &Tuple,
    src: &Peer,
    dst: &Peer,
    endpoint_id: u32,
    direction: u8,
    allowed: Option<Allowed>,
) {
    let (verdict, cause, rule_id) = match allowed {
        Some(allowed) => (VERDICT_FORWARDED, allowed.cause, allowed.rule_id),
        None => (VERDICT_DROPPED, CAUSE_NO_RULE, 0),
    };
    let event = FlowEvent {
        // SAFETY: plain helper call.
        time_ns: unsafe { bpf_ktime_get_ns() },
        saddr: tuple.saddr,
        daddr: tuple.daddr,
        sport: u16::from_be(tuple.sport),
        dport: u16::from_be(tuple.dport),
        src_identity: src.identity,
        dst_identity: dst.identity,
        endpoint_id,
        rule_id,
        protocol: tuple.protocol,
        direction,
        verdict,
        cause,
        point,
        _pad: [0; 7],
    };
    // A full ring buffer loses the event, never the packet.
    let _ = FLOW_EVENTS.output::<FlowEvent>(&event, 0);
}
