//! Per-packet service translation on the tc path: DNAT of new and tracked flows to their
//! backend (with hairpin SNAT), and reverse translation of their replies.
use kaya_ebpf_common::{
    ct::{CT_FLAG_SNAT, CT_FORWARD, CT_REPLY, CtEntry, CtKey},
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
    service: &kaya_ebpf_common::lb::ServiceValue,
) -> Outcome {
    let forward_key = key(ip, ports, CT_FORWARD);
    if let Some(entry) = ct::lookup(&forward_key) {
        // A flow keeps its backend while the backend exists; a removed backend's flows
        // pick again rather than blackhole.
        if lb::backend(entry.backend_id).is_some() {
            return apply(ctx, ip, ports, &entry, Reason::ServiceTranslated);
        }
        ct::forget(&forward_key);
    }
    let client = Client {
        id: ip.saddr,
        scope: 0,
    };
    let Some((backend_id, backend)) =
        lb::select(ip.daddr, ports.dport, ip.protocol, service, client)
    else {
        return Outcome::Reject(*ports);
    };
    let hairpin = backend.address == ip.saddr;
    let snat_address = if hairpin { config().hairpin_ip } else { 0 };
    let entry = CtEntry {
        nat_saddr: snat_address,
        nat_daddr: backend.address,
        nat_sport: 0,
        nat_dport: backend.port,
        backend_id,
        rev_nat_id: service.rev_nat_id,
        flags: if hairpin { CT_FLAG_SNAT } else { 0 },
        ..CtEntry::default()
    };
    let reply_key = CtKey {
        saddr: backend.address,
        daddr: if hairpin { snat_address } else { ip.saddr },
        sport: backend.port,
        dport: ports.sport,
        protocol: ip.protocol,
        direction: CT_REPLY,
        _pad: 0,
    };
    let reply_entry = CtEntry {
        nat_saddr: ip.daddr,
        nat_sport: ports.dport,
        nat_daddr: if hairpin { ip.saddr } else { 0 },
        nat_dport: 0,
        backend_id,
        rev_nat_id: service.rev_nat_id,
        ..CtEntry::default()
    };
    if !ct::create(&forward_key, &entry, &reply_key, &reply_entry) {
        return Outcome::Drop(Reason::DropMapFull);
    }
    apply(ctx, ip, ports, &entry, Reason::ServiceTranslated)
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
    if entry.nat_saddr != 0 {
        if nat::rewrite(
            ctx,
            ip,
            &ports,
            End::Source,
            entry.nat_saddr,
            entry.nat_sport,
        )
        .is_err()
        {
            return Outcome::Drop(Reason::DropServiceUnsupported);
        }
        ip.saddr = entry.nat_saddr;
        if entry.nat_sport != 0 {
            ports.sport = entry.nat_sport;
        }
    }
    if entry.nat_daddr != 0 {
        if nat::rewrite(
            ctx,
            ip,
            &ports,
            End::Destination,
            entry.nat_daddr,
            entry.nat_dport,
        )
        .is_err()
        {
            return Outcome::Drop(Reason::DropServiceUnsupported);
        }
        ip.daddr = entry.nat_daddr;
    }
    Outcome::Translated(reason)
}
