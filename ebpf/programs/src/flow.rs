//! The tuple a policy decides on: addresses, protocol and ports; ICMP echo ids stand in for
//! ports, ICMP errors name the flow they report on, and later fragments borrow the ports of
//! their datagram's first piece.
use aya_ebpf::programs::TcContext;
use kaya_ebpf_common::policy::{FragmentKey, FragmentPorts};

use crate::{
    maps::FRAGMENTS,
    packet::{ETH_HLEN, IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Summary},
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETER_PROBLEM: u8 = 12;
const ICMP_HEADER_LEN: u32 = 8;

/// Addresses and ports in network order.
#[derive(Clone, Copy, Default)]
pub struct Tuple {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
}

impl Tuple {
    /// The tuple of the other direction.
    #[inline(always)]
    pub fn reversed(&self) -> Tuple {
        Tuple {
            saddr: self.daddr,
            daddr: self.saddr,
            sport: self.dport,
            dport: self.sport,
            protocol: self.protocol,
        }
    }
}

#[derive(Clone, Copy)]
pub struct Flow {
    pub tuple: Tuple,
    /// An ICMP error: the packet it reports on (as that packet travelled).
    pub error_about: Option<Tuple>,
}

/// Whether reading a flow also records a first fragment's ports for the pieces after it:
/// once per packet is enough.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragments {
    Record,
    Skip,
}

/// The flow `ip` belongs to; `None` when its L4 header is cut short.
#[inline(always)]
pub fn of(ctx: &TcContext, ip: &Ipv4Summary, fragments: Fragments) -> Option<Flow> {
    let mut tuple = Tuple {
        saddr: ip.saddr,
        daddr: ip.daddr,
        protocol: ip.protocol,
        ..Tuple::default()
    };
    let l3_header = ip.l4_offset - ETH_HLEN as u32;
    match ip.protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            let fragment = FragmentKey {
                saddr: ip.saddr,
                daddr: ip.daddr,
                id: ip.id,
                protocol: ip.protocol,
                _pad: 0,
            };
            if ip.later_fragment {
                // Without its first piece the datagram has no ports: only rules for every
                // port can admit it.
                // SAFETY: the value is copied out at once.
                if let Some(ports) = unsafe { FRAGMENTS.get(&fragment) } {
                    tuple.sport = ports.sport;
                    tuple.dport = ports.dport;
                }
                return Some(Flow {
                    tuple,
                    error_about: None,
                });
            }
            if ip.total_len < l3_header + 4 {
                return None;
            }
            let ports = ctx.load::<[u16; 2]>(ip.l4_offset as usize).ok()?;
            tuple.sport = ports[0];
            tuple.dport = ports[1];
            if ip.more_fragments && fragments == Fragments::Record {
                let ports = FragmentPorts {
                    sport: ports[0],
                    dport: ports[1],
                };
                // A full map forgets an older datagram, never this packet.
                let _ = FRAGMENTS.insert(&fragment, &ports, 0);
            }
            Some(Flow {
                tuple,
                error_about: None,
            })
        }
        IPPROTO_ICMP if !ip.later_fragment => {
            if ip.total_len < l3_header + ICMP_HEADER_LEN {
                return None;
            }
            let header = ctx.load::<[u8; 8]>(ip.l4_offset as usize).ok()?;
            let id = u16::from_ne_bytes([header[4], header[5]]);
            let mut error_about = None;
            match header[0] {
                // The echo id plays the client's port, so a reply is the reversed request.
                ICMP_ECHO_REQUEST => tuple.sport = id,
                ICMP_ECHO_REPLY => tuple.dport = id,
                ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM => {
                    error_about = Some(quoted(ctx, ip.l4_offset + ICMP_HEADER_LEN)?);
                }
                _ => {}
            }
            Some(Flow { tuple, error_about })
        }
        _ => Some(Flow {
            tuple,
            error_about: None,
        }),
    }
}

/// The tuple of the IPv4 header (and first 8 bytes) an ICMP error quotes at `offset`.
#[inline(always)]
fn quoted(ctx: &TcContext, offset: u32) -> Option<Tuple> {
    let header = ctx.load::<[u8; 20]>(offset as usize).ok()?;
    let header_len = u32::from(header[0] & 0x0f) * 4;
    if header[0] >> 4 != 4 || header_len < 20 {
        return None;
    }
    let mut tuple = Tuple {
        saddr: u32::from_ne_bytes([header[12], header[13], header[14], header[15]]),
        daddr: u32::from_ne_bytes([header[16], header[17], header[18], header[19]]),
        protocol: header[9],
        ..Tuple::default()
    };
    let l4 = (offset + (header_len & 0x3c)) as usize;
    match tuple.protocol {
        IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP => {
            let ports = ctx.load::<[u16; 2]>(l4).ok()?;
            tuple.sport = ports[0];
            tuple.dport = ports[1];
        }
        IPPROTO_ICMP => {
            let header = ctx.load::<[u8; 8]>(l4).ok()?;
            if header[0] == ICMP_ECHO_REQUEST {
                tuple.sport = u16::from_ne_bytes([header[4], header[5]]);
            }
        }
        _ => {}
    }
    Some(tuple)
}
