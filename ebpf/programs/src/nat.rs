//! Address and port rewrites with incremental IPv4 and L4 checksum updates.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};

use crate::packet::{IP_CSUM_OFF, IP_DADDR_OFF, IP_SADDR_OFF, IPPROTO_UDP, Ipv4Summary, Ports};

/// Which end of the packet a rewrite applies to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum End {
    Source,
    Destination,
}

/// Rewrites one end's address and (when non-zero) port. SCTP cannot be updated in place
/// (its checksum is a CRC), so it is refused: the caller drops rather than corrupt.
#[inline(always)]
pub fn rewrite(
    ctx: &TcContext,
    ip: &Ipv4Summary,
    ports: &Ports,
    end: End,
    address: u32,
    port: u16,
) -> Result<(), ()> {
    if ports.csum_offset == 0 {
        return Err(());
    }
    // A UDP checksum of zero means "none" and must stay zero.
    let mangled = if ip.protocol == IPPROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    let (old_address, address_off, old_port, port_off) = match end {
        End::Source => (ip.saddr, IP_SADDR_OFF, ports.sport, ip.l4_offset as usize),
        End::Destination => (
            ip.daddr,
            IP_DADDR_OFF,
            ports.dport,
            ip.l4_offset as usize + 2,
        ),
    };
    let csum = ports.csum_offset as usize;
    if address != old_address {
        ctx.l4_csum_replace(
            csum,
            u64::from(old_address),
            u64::from(address),
            u64::from(BPF_F_PSEUDO_HDR) | mangled | 4,
        )
        .map_err(|_| ())?;
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old_address), u64::from(address), 4)
            .map_err(|_| ())?;
        ctx.store(address_off, &address, 0).map_err(|_| ())?;
    }
    if port != 0 && port != old_port {
        ctx.l4_csum_replace(csum, u64::from(old_port), u64::from(port), mangled | 2)
            .map_err(|_| ())?;
        ctx.store(port_off, &port, 0).map_err(|_| ())?;
    }
    Ok(())
}
