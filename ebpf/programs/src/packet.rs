//! Bounds-checked parsing of the Ethernet, IPv4 and L4 port headers every program starts from.
use aya_ebpf::programs::TcContext;

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IPV4_MIN_HLEN: u32 = 20;
/// Offsets of IPv4 header fields from the start of the frame.
pub const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub const IP_SADDR_OFF: usize = ETH_HLEN + 12;
pub const IP_DADDR_OFF: usize = ETH_HLEN + 16;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// What the programs need of an IPv4 packet; addresses stay in network byte order.
#[derive(Clone, Copy)]
pub struct Ipv4Summary {
    pub saddr: u32,
    pub daddr: u32,
    pub protocol: u8,
    /// Offset of the L4 header from the start of the frame (options included).
    pub l4_offset: u32,
    /// Length of the IP datagram per its header.
    pub total_len: u32,
    /// Not the first fragment: no L4 header to read.
    pub later_fragment: bool,
    /// More fragments follow (with `later_fragment` false: the first piece).
    pub more_fragments: bool,
    /// IPv4 identification, which ties the fragments of one datagram together.
    pub id: u16,
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
    let fragment_field = u16::from_be_bytes([first[6], first[7]]);
    let fragment_offset = fragment_field & 0x1fff;
    Parsed::Ipv4(Ipv4Summary {
        protocol: first[9],
        saddr: u32::from_ne_bytes([first[12], first[13], first[14], first[15]]),
        daddr: u32::from_ne_bytes([first[16], first[17], first[18], first[19]]),
        l4_offset: ETH_HLEN as u32 + header_len,
        total_len,
        later_fragment: fragment_offset != 0,
        more_fragments: fragment_field & 0x2000 != 0,
        id: u16::from_be_bytes([first[4], first[5]]),
    })
}

/// The ports of a TCP, UDP or SCTP header (network byte order) and where its checksum is.
#[derive(Clone, Copy)]
pub struct Ports {
    pub sport: u16,
    pub dport: u16,
    /// Offset of the L4 checksum from the start of the frame; 0 for SCTP (CRC32c, not
    /// incrementally updatable).
    pub csum_offset: u32,
    /// A TCP segment that opens a connection (SYN without ACK).
    pub tcp_syn: bool,
}

pub enum L4 {
    Ports(Ports),
    /// ICMP, a later fragment, or another protocol: nothing to translate by port.
    NoPorts,
    Malformed,
}

/// Reads the L4 ports of `ip`; a port header cut short by the datagram's end is malformed.
#[inline(always)]
pub fn ports(ctx: &TcContext, ip: &Ipv4Summary) -> L4 {
    let (header_len, csum_field) = match ip.protocol {
        IPPROTO_TCP => (20, 16),
        IPPROTO_UDP => (8, 6),
        IPPROTO_SCTP => (12, 0),
        _ => return L4::NoPorts,
    };
    if ip.later_fragment {
        return L4::NoPorts;
    }
    let l3_header = ip.l4_offset - ETH_HLEN as u32;
    if ip.total_len < l3_header + header_len {
        return L4::Malformed;
    }
    let Ok(ports) = ctx.load::<[u16; 2]>(ip.l4_offset as usize) else {
        return L4::Malformed;
    };
    let tcp_syn = ip.protocol == IPPROTO_TCP
        && match ctx.load::<u8>(ip.l4_offset as usize + 13) {
            Ok(flags) => flags & 0x12 == 0x02,
            Err(_) => return L4::Malformed,
        };
    L4::Ports(Ports {
        sport: ports[0],
        dport: ports[1],
        csum_offset: if csum_field == 0 {
            0
        } else {
            ip.l4_offset + csum_field
        },
        tcp_syn,
    })
}
