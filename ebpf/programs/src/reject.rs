//! Refusing a new flow to a service without endpoints, as kube-proxy's REJECT does: TCP gets
//! a RST, UDP an ICMP port unreachable, both sent from the frontend back into the client pod.
use aya_ebpf::{
    bindings::{TC_ACT_SHOT, bpf_adj_room_mode::BPF_ADJ_ROOM_MAC},
    helpers::{bpf_csum_diff, bpf_redirect, bpf_redirect_peer, bpf_skb_change_tail},
    programs::TcContext,
};

use crate::packet::{ETH_HLEN, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, Ipv4Summary, Ports};

const IP_HLEN: usize = 20;
const TCP_HLEN: usize = 20;
const ICMP_HLEN: usize = 8;
/// The original IP header plus the first 8 bytes of its payload (RFC 792).
const ICMP_QUOTE: usize = IP_HLEN + 8;
const TTL: u8 = 64;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;

/// Where the refusal goes: back into the pod behind a veth, or back out of the uplink.
#[derive(Clone, Copy)]
pub enum Bounce {
    ToPod(u32),
    OutOf(u32),
}

/// Turns the packet into its refusal and sends it back where the client is.
/// Packets with IP options, RSTs and other protocols are dropped instead.
#[inline(always)]
pub fn refuse(ctx: &TcContext, ip: &Ipv4Summary, ports: &Ports, bounce: Bounce) -> i32 {
    if ip.l4_offset as usize != ETH_HLEN + IP_HLEN {
        return TC_ACT_SHOT as i32;
    }
    let built = match ip.protocol {
        IPPROTO_TCP => tcp_reset(ctx, ip, ports),
        IPPROTO_UDP => port_unreachable(ctx, ip),
        _ => Err(()),
    };
    if built.is_err() || swap_macs(ctx).is_err() {
        return TC_ACT_SHOT as i32;
    }
    match bounce {
        // SAFETY: plain helper call; the host end of the client's veth, whose peer is the
        // client's eth0.
        Bounce::ToPod(veth) => unsafe { bpf_redirect_peer(veth, 0) as i32 },
        // SAFETY: plain helper call; out of the interface the client's frame came in on,
        // to the MAC it came from.
        Bounce::OutOf(uplink) => unsafe { bpf_redirect(uplink, 0) as i32 },
    }
}

fn swap_macs(ctx: &TcContext) -> Result<(), ()> {
    let macs: [u8; 12] = ctx.load(0).map_err(|_| ())?;
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    ctx.store(0, &swapped, 0).map_err(|_| ())
}

/// One's-complement sum of `words`, folded and inverted. bpf_csum_diff sums native-order
/// words, so the result goes back into the packet with `to_ne_bytes`.
#[inline(always)]
fn checksum<const N: usize>(words: &mut [u8; N]) -> u16 {
    // SAFETY: the buffer is on the stack, N bytes long and a multiple of 4 (asserted by the
    // callers' sizes).
    let sum = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            words.as_mut_ptr().cast(),
            N as u32,
            0,
        )
    };
    let mut folded = sum as u64;
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    !(folded as u16)
}

#[inline(always)]
fn ip_header(total_len: u16, protocol: u8, saddr: u32, daddr: u32) -> [u8; IP_HLEN] {
    let mut header = [0u8; IP_HLEN];
    header[0] = 0x45;
    header[2..4].copy_from_slice(&total_len.to_be_bytes());
    header[6] = 0x40; // don't fragment
    header[8] = TTL;
    header[9] = protocol;
    header[12..16].copy_from_slice(&saddr.to_ne_bytes());
    header[16..20].copy_from_slice(&daddr.to_ne_bytes());
    let csum = checksum(&mut header);
    header[10..12].copy_from_slice(&csum.to_ne_bytes());
    header
}

fn tcp_reset(ctx: &TcContext, ip: &Ipv4Summary, ports: &Ports) -> Result<(), ()> {
    let offset = ETH_HLEN + IP_HLEN;
    let header: [u8; TCP_HLEN] = ctx.load(offset).map_err(|_| ())?;
    let flags = header[13];
    if flags & TCP_RST != 0 {
        return Err(());
    }
    let data_offset = usize::from(header[12] >> 4) * 4;
    let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let ack = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    // RFC 793: answer an ACK with its own ack number; otherwise acknowledge the segment.
    let (reset_seq, reset_ack, reset_flags) = if flags & TCP_ACK != 0 {
        (ack, 0, TCP_RST)
    } else {
        let payload = (ip.total_len as usize).saturating_sub(IP_HLEN + data_offset) as u32;
        let span = payload + u32::from(flags & TCP_SYN != 0) + u32::from(flags & TCP_FIN != 0);
        (0, seq.wrapping_add(span), TCP_RST | TCP_ACK)
    };
    // SAFETY: plain helper call; shrinks the frame to exactly the headers written below.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (offset + TCP_HLEN) as u32, 0) } != 0 {
        return Err(());
    }
    // Pseudo header (12 bytes) followed by the TCP header, summed together.
    let mut segment = [0u8; 12 + TCP_HLEN];
    segment[0..4].copy_from_slice(&ip.daddr.to_ne_bytes());
    segment[4..8].copy_from_slice(&ip.saddr.to_ne_bytes());
    segment[9] = IPPROTO_TCP;
    segment[10..12].copy_from_slice(&(TCP_HLEN as u16).to_be_bytes());
    segment[12..14].copy_from_slice(&ports.dport.to_ne_bytes());
    segment[14..16].copy_from_slice(&ports.sport.to_ne_bytes());
    segment[16..20].copy_from_slice(&reset_seq.to_be_bytes());
    segment[20..24].copy_from_slice(&reset_ack.to_be_bytes());
    segment[24] = (TCP_HLEN as u8 / 4) << 4;
    segment[25] = reset_flags;
    let csum = checksum(&mut segment);
    segment[28..30].copy_from_slice(&csum.to_ne_bytes());
    let ip_out = ip_header((IP_HLEN + TCP_HLEN) as u16, IPPROTO_TCP, ip.daddr, ip.saddr);
    ctx.store(ETH_HLEN, &ip_out, 0).map_err(|_| ())?;
    let mut tcp = [0u8; TCP_HLEN];
    tcp.copy_from_slice(&segment[12..]);
    ctx.store(offset, &tcp, 0).map_err(|_| ())
}

fn port_unreachable(ctx: &TcContext, ip: &Ipv4Summary) -> Result<(), ()> {
    // Keep the quoted part, then open room for the new IP and ICMP headers in front of it.
    // SAFETY: plain helper call.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_HLEN + ICMP_QUOTE) as u32, 0) } != 0 {
        return Err(());
    }
    ctx.adjust_room((IP_HLEN + ICMP_HLEN) as i32, BPF_ADJ_ROOM_MAC, 0)
        .map_err(|_| ())?;
    let quote_offset = ETH_HLEN + IP_HLEN + ICMP_HLEN;
    let quote: [u8; ICMP_QUOTE] = ctx.load(quote_offset).map_err(|_| ())?;
    let mut message = [0u8; ICMP_HLEN + ICMP_QUOTE];
    message[0] = 3; // destination unreachable
    message[1] = 3; // port unreachable
    message[ICMP_HLEN..].copy_from_slice(&quote);
    let csum = checksum(&mut message);
    message[2..4].copy_from_slice(&csum.to_ne_bytes());
    let total = (IP_HLEN + ICMP_HLEN + ICMP_QUOTE) as u16;
    let ip_out = ip_header(total, IPPROTO_ICMP, ip.daddr, ip.saddr);
    ctx.store(ETH_HLEN, &ip_out, 0).map_err(|_| ())?;
    let mut icmp = [0u8; ICMP_HLEN];
    icmp.copy_from_slice(&message[..ICMP_HLEN]);
    ctx.store(ETH_HLEN + IP_HLEN, &icmp, 0).map_err(|_| ())
}
