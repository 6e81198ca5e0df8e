//! Bounds-checked parsing of the Ethernet and IPv4 headers every program starts from.
use aya_ebpf::programs::TcContext;

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPV4_MIN_HLEN: u32 = 20;

/// What the programs need of an IPv4 packet; addresses stay in network byte order.
#[derive(Clone, Copy)]
pub struct Ipv4Summary {
    pub saddr: u32,
    pub daddr: u32,
    pub protocol: u8,
}

pub enum Parsed {
    Ipv4(Ipv4Summary),
    NotIpv4,
    Malformed,
}

/// Reads the L2/L3 headers. A frame whose headers are truncated or inconsistent is
/// `Malformed`: forwarding it would hand the peer garbage.
#[inline(always)]
pub fn parse(ctx: &TcContext) -> Parsed {
    let len = ctx.len();
    if (len as usize) < ETH_HLEN {
        return Parsed::Malformed;
    }
    let Ok(ethertype) = ctx.load::<u16>(12) else {
        return Parsed::Malformed;
    };
    if u16::from_be(ethertype) != ETH_P_IP {
        return Parsed::NotIpv4;
    }
    let Ok(first) = ctx.load::<[u8; 20]>(ETH_HLEN) else {
        return Parsed::Malformed;
    };
    let version = first[0] >> 4;
    let header_len = u32::from(first[0] & 0x0f) * 4;
    let total_len = u32::from(u16::from_be_bytes([first[2], first[3]]));
    let l3_len = len - ETH_HLEN as u32;
    if version != 4 || header_len < IPV4_MIN_HLEN || total_len < header_len || total_len > l3_len {
        return Parsed::Malformed;
    }
    Parsed::Ipv4(Ipv4Summary {
        protocol: first[9],
        saddr: u32::from_ne_bytes([first[12], first[13], first[14], first[15]]),
        daddr: u32::from_ne_bytes([first[16], first[17], first[18], first[19]]),
    })
}
