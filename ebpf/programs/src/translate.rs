//! Per-packet service translation on the tc path: DNAT of new and tracked flows to their
//! backend (with hairpin SNAT, and SNAT of outside clients of node frontends), and reverse
//! translation of their replies.
use aya_ebpf::helpers::bpf_get_prandom_u32;
use kaya_ebpf_common::{
    ct::{CT_FLAG_SNAT, CT_FLAG_TO_NETDEV, CT_FORWARD, CT_REPLY, CtEntry, CtKey},
    lb::{SVC_FLAG_DROP_WITHOUT_LOCAL, SVC_FLAG_EXTERNAL, SVC_FLAG_PRESERVE_SOURCE, ServiceValue},
    metrics::Reason,
};

use crate::{
    ct,
    lb::{self, Client},
    maps::config,
    nat::{self, End},
    packet::{self, Ipv4Summary, L4, Ports},
};

pub enum Outcome {
    /// Not service traffic; route the packet as it is.
    Untouched,
    /// Rewritten; route by the new destination in the summary.
    Translated(Reason),
    /// A reply to a client outside the cluster, rewritten: send it out of the uplink (its
    /// source is now a node address, which the local stack would take for a martian).
    ToNetdev,
    /// A new flow to a service without endpoints: refuse it.
    Reject(Ports),
    Drop(Reason),
}

/// Traffic from a local pod: a service frontend is translated to a backend; a reply of a
/// translated flow (from a local backend) gets the frontend back as its source.
#[inline(always)]
pub fn from_pod(ctx: &aya_ebpf::programs::TcContext, ip: &mut Ipv4Summary) -> Outcome {
    let ports = match packet::ports(ctx, ip) {
        L4::Ports(ports) => ports,
        L4::NoPorts => return Outcome::Untouched,
        L4::Malformed => return Outcome::Drop(Reason::DropMalformed),
    };
    match lb::frontend(ip.daddr, ports.dport, ip.protocol) {
        Some(service) => forward(ctx, ip, &ports, &service),
        None if ports.tcp_syn => {
            // A new direct connection may reuse the tuple of a closed translated one: its
            // replies must not be translated by that flow's leftover entry.
            ct::forget(&CtKey {
                saddr: ip.daddr,
                daddr: ip.saddr,
                sport: ports.dport,
                dport: ports.sport,
                protocol: ip.protocol,
                direction: CT_REPLY,
                _pad: 0,
            });
            Outcome::Untouched
        }
        None => reply(ctx, ip, &ports),
    }
}

/// Decapsulated traffic: only replies from remote backends need translating here; requests
/// were translated on the client's node.
#[inline(always)]
pub fn from_overlay(ctx: &aya_ebpf::programs::TcContext, ip: &mut Ipv4Summary) -> Outcome {
    match packet::ports(ctx, ip) {
        L4::Ports(ports) => reply(ctx, ip, &ports),
        L4::NoPorts => Outcome::Untouched,
        L4::Malformed => Outcome::Drop(Reason::DropMalformed),
    }
}

#[inline(always)]
fn key(ip: &Ipv4Summary, ports: &Ports, direction: u8) -> CtKey {
    CtKey {
        saddr: ip.saddr,
        daddr: ip.daddr,
        sport: ports.sport,
        dport: ports.dport,
        protocol: ip.protocol,
        direction,
        _pad: 0,
    }
}

#[inline(always)]
fn forward(
    ctx: &aya_ebpf::programs::TcContext,
    ip: &mut Ipv4Summary,
    ports: &Ports,
    service: &ServiceValue,
) -> Outcome {
    let forward_key = key(ip, ports, CT_FORWARD);
    if let Some(entry) = tracked(ip, ports, &forward_key) {
        return apply(ctx, ip, ports, &entry, Reason::ServiceTranslated);
    }
    let client = Client::by_address(ip.saddr);
    let Some((backend_id, backend)) =
        lb::select(ip.daddr, ports.dport, ip.protocol, service, client)
    else {
        return Outcome::Reject(*ports);
    };
    let hairpin = backend.address == ip.saddr;
    let entry = CtEntry {
        nat_saddr: if hairpin { config().hairpin_ip } else { 0 },
        nat_daddr: backend.address,
        nat_dport: backend.port,
        backend_id,
        rev_nat_id: service.rev_nat_id,
        flags: if hairpin { CT_FLAG_SNAT } else { 0 },
        ..CtEntry::default()
    };
    open(ctx, ip, ports, &entry, 0, Reason::ServiceTranslated)
}

/// Where the replies of a flow translated by `entry` come from and go to: the backend,
/// answering the (possibly SNATed) client.
#[inline(always)]
fn reply_key(entry: &CtEntry, ip: &Ipv4Summary, ports: &Ports) -> CtKey {
    CtKey {
        saddr: entry.nat_daddr,
        daddr: if entry.nat_saddr != 0 {
            entry.nat_saddr
        } else {
            ip.saddr
        },
        sport: entry.nat_dport,
        dport: if entry.nat_sport != 0 {
            entry.nat_sport
        } else {
            ports.sport
        },
        protocol: ip.protocol,
        direction: CT_REPLY,
        _pad: 0,
    }
}

/// Records a new flow (its forward `entry` and the reply entry it implies: back to the
/// frontend, and to the client's own address and port where they were SNATed), then
/// rewrites the packet.
#[inline(always)]
fn open(
    ctx: &aya_ebpf::programs::TcContext,
    ip: &mut Ipv4Summary,
    ports: &Ports,
    entry: &CtEntry,
    reply_flags: u16,
    reason: Reason,
) -> Outcome {
    let reply_entry = CtEntry {
        nat_saddr: ip.daddr,
        nat_sport: ports.dport,
        nat_daddr: if entry.nat_saddr != 0 { ip.saddr } else { 0 },
        nat_dport: if entry.nat_sport != 0 { ports.sport } else { 0 },
        backend_id: entry.backend_id,
        rev_nat_id: entry.rev_nat_id,
        flags: reply_flags,
        ..CtEntry::default()
    };
    let forward_key = key(ip, ports, CT_FORWARD);
    if !ct::create(
        &forward_key,
        entry,
        &reply_key(entry, ip, ports),
        &reply_entry,
    ) {
        return Outcome::Drop(Reason::DropMapFull);
    }
    apply(ctx, ip, ports, entry, reason)
}

/// The flow's forward entry, if the flow can go on with it: its backend still exists, its
/// reply entry too (the LRU or a direct connection's SYN may have dropped it), and this is
/// not a TCP SYN (a new connection reusing a closed flow's ports picks afresh). Otherwise
/// the entry is dropped and the caller sets the flow up again.
#[inline(always)]
fn tracked(ip: &Ipv4Summary, ports: &Ports, forward_key: &CtKey) -> Option<CtEntry> {
    let entry = ct::lookup(forward_key)?;
    if lb::backend(entry.backend_id).is_some()
        && ct::exists(&reply_key(&entry, ip, ports))
        && !ports.tcp_syn
    {
        return Some(entry);
    }
    ct::forget(forward_key);
    None
}

#[inline(always)]
fn reply(ctx: &aya_ebpf::programs::TcContext, ip: &mut Ipv4Summary, ports: &Ports) -> Outcome {
    match ct::lookup(&key(ip, ports, CT_REPLY)) {
        Some(entry) => apply(ctx, ip, ports, &entry, Reason::ReplyTranslated),
        None => Outcome::Untouched,
    }
}

/// Applies a conntrack entry's rewrite: the source first (it reads the old addresses from
/// `ip`), then the destination; `ip` ends up describing the rewritten packet.
#[inline(always)]
fn apply(
    ctx: &aya_ebpf::programs::TcContext,
    ip: &mut Ipv4Summary,
    ports: &Ports,
    entry: &CtEntry,
    reason: Reason,
) -> Outcome {
    let mut ports = *ports;
    let rewritten = (entry.nat_saddr == 0
        || rewrite(
            ctx,
            ip,
            &mut ports,
            End::Source,
            entry.nat_saddr,
            entry.nat_sport,
        )
        .is_ok())
        && (entry.nat_daddr == 0
            || rewrite(
                ctx,
                ip,
                &mut ports,
                End::Destination,
                entry.nat_daddr,
                entry.nat_dport,
            )
            .is_ok());
    if !rewritten {
        return Outcome::Drop(Reason::DropServiceUnsupported);
    }
    if entry.flags & CT_FLAG_TO_NETDEV != 0 {
        Outcome::ToNetdev
    } else {
        Outcome::Translated(reason)
    }
}

/// Rewrites one end of the packet and makes `ip` and `ports` describe the result (a zero
/// port keeps the old one).
#[inline(always)]
fn rewrite(
    ctx: &aya_ebpf::programs::TcContext,
    ip: &mut Ipv4Summary,
    ports: &mut Ports,
    end: End,
    address: u32,
    port: u16,
) -> Result<(), ()> {
    nat::rewrite(ctx, ip, ports, end, address, port)?;
    let (ip_field, port_field) = match end {
        End::Source => (&mut ip.saddr, &mut ports.sport),
        End::Destination => (&mut ip.daddr, &mut ports.dport),
    };
    *ip_field = address;
    if port != 0 {
        *port_field = port;
    }
    Ok(())
}

/// SNAT source ports for outside clients: above Linux's default ephemeral range, so they
/// never meet the node's own connections from the same address.
const SNAT_PORT_MIN: u32 = 61_000;
const SNAT_PORT_SPAN: u32 = 65_536 - SNAT_PORT_MIN;
const SNAT_PORT_TRIES: u32 = 4;

/// Traffic arriving on the node's uplink: a node frontend (NodePort, externalIPs,
/// LoadBalancer IP) is translated to a backend; with `externalTrafficPolicy: Cluster` the
/// client is SNATed to the node's gateway address so the reply comes back to this node.
#[inline(always)]
pub fn from_netdev(ctx: &aya_ebpf::programs::TcContext, ip: &mut Ipv4Summary) -> Outcome {
    let ports = match packet::ports(ctx, ip) {
        L4::Ports(ports) => ports,
        L4::NoPorts | L4::Malformed => return Outcome::Untouched,
    };
    let Some(service) = lb::frontend(ip.daddr, ports.dport, ip.protocol) else {
        return Outcome::Untouched;
    };
    if service.flags & SVC_FLAG_EXTERNAL == 0 {
        return Outcome::Untouched;
    }
    let forward_key = key(ip, &ports, CT_FORWARD);
    if let Some(entry) = tracked(ip, &ports, &forward_key) {
        return apply(ctx, ip, &ports, &entry, Reason::NodePortTranslated);
    }
    let client = Client::by_address(ip.saddr);
    let Some((backend_id, backend)) =
        lb::select(ip.daddr, ports.dport, ip.protocol, &service, client)
    else {
        if service.flags & SVC_FLAG_DROP_WITHOUT_LOCAL != 0 {
            return Outcome::Drop(Reason::DropNoLocalEndpoints);
        }
        return Outcome::Reject(ports);
    };
    external_flow(ctx, ip, &ports, &service, backend_id, backend)
}

#[inline(always)]
fn external_flow(
    ctx: &aya_ebpf::programs::TcContext,
    ip: &mut Ipv4Summary,
    ports: &Ports,
    service: &ServiceValue,
    backend_id: u32,
    backend: kaya_ebpf_common::lb::Backend,
) -> Outcome {
    // externalTrafficPolicy: Local keeps the client's address; Cluster SNATs it.
    let (nat_saddr, nat_sport) = if service.flags & SVC_FLAG_PRESERVE_SOURCE != 0 {
        (0, 0)
    } else {
        let snat_ip = config().snat_ip;
        if snat_ip == 0 {
            return Outcome::Drop(Reason::DropServiceUnsupported);
        }
        match free_snat_port(snat_ip, &backend, ip.protocol) {
            Some(port) => (snat_ip, port),
            None => return Outcome::Drop(Reason::DropMapFull),
        }
    };
    let entry = CtEntry {
        nat_saddr,
        nat_sport,
        nat_daddr: backend.address,
        nat_dport: backend.port,
        backend_id,
        rev_nat_id: service.rev_nat_id,
        flags: if nat_saddr == 0 { 0 } else { CT_FLAG_SNAT },
        ..CtEntry::default()
    };
    open(
        ctx,
        ip,
        ports,
        &entry,
        CT_FLAG_TO_NETDEV,
        Reason::NodePortTranslated,
    )
}

/// A source port whose reply tuple (backend → SNAT address) no flow uses yet.
#[inline(always)]
fn free_snat_port(
    snat_ip: u32,
    backend: &kaya_ebpf_common::lb::Backend,
    protocol: u8,
) -> Option<u16> {
    for _ in 0..SNAT_PORT_TRIES {
        // SAFETY: plain helper call.
        let port = (SNAT_PORT_MIN + unsafe { bpf_get_prandom_u32() } % SNAT_PORT_SPAN) as u16;
        let candidate = CtKey {
            saddr: backend.address,
            daddr: snat_ip,
            sport: backend.port,
            dport: port.to_be(),
            protocol,
            direction: CT_REPLY,
            _pad: 0,
        };
        if !ct::exists(&candidate) {
            return Some(port.to_be());
        }
    }
    None
}
