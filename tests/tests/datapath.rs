//! Datapath packet tests: every forwarding decision of from_pod, from_overlay and to_overlay
//! on packets built with etherparse, checked by verdict, output bytes, trace event and counter.
use etherparse::{EtherType, Ethernet2Header, IpFragOffset, IpNumber, Ipv4Header, PacketBuilder};
use kaya_agent::datapath::{PROG_FROM_OVERLAY, PROG_FROM_POD, PROG_TO_OVERLAY};
use kaya_ebpf_common::{
    endpoint::EndpointInfo,
    identity::IDENTITY_REMOTE_NODE,
    metrics::Reason,
    trace::{POINT_FROM_OVERLAY, POINT_FROM_POD, POINT_TO_OVERLAY},
};
use kaya_tests::datapath::{
    TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TEST_RUN_IFINDEX, TestDatapath,
};
use std::net::Ipv4Addr;

const OVERLAY_IFINDEX: u32 = 99;
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const REMOTE_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const POD_A: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const POD_B: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const POD_A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa, 1];
const HOST_A_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa, 2];
const POD_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb, 1];
const HOST_B_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xb, 2];
const POD_B_IFINDEX: u32 = 77;
const IDENTITY_A: u32 = 4242;

fn ip_be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// A node with pod A (on the test-run interface) and pod B, and one remote node.
fn node() -> TestDatapath {
    let mut dp = TestDatapath::new(OVERLAY_IFINDEX, NODE_IP).expect("datapath loads");
    dp.add_endpoint(
        POD_A,
        EndpointInfo {
            ifindex: TEST_RUN_IFINDEX,
            identity: IDENTITY_A,
            pod_mac: POD_A_MAC,
            host_mac: HOST_A_MAC,
            endpoint_id: 1,
        },
    );
    dp.add_endpoint(
        POD_B,
        EndpointInfo {
            ifindex: POD_B_IFINDEX,
            identity: 300,
            pod_mac: POD_B_MAC,
            host_mac: HOST_B_MAC,
            endpoint_id: 2,
        },
    );
    dp.set_tunnels(&[("10.244.2.0/24".parse().unwrap(), REMOTE_NODE_IP)]);
    dp
}

/// Frames as pod A's eth0 sends them: from its MAC to its gateway (the host veth).
fn tcp(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(POD_A_MAC, HOST_A_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .tcp(40000, 80, 1, 65535);
    let payload = b"hello kaya";
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(POD_A_MAC, HOST_A_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(5353, 53);
    let mut out = Vec::new();
    builder.write(&mut out, b"query").unwrap();
    out
}

fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(POD_A_MAC, HOST_A_MAC)
        .ipv4(src.octets(), dst.octets(), 64)
        .icmpv4_echo_request(7, 1);
    let mut out = Vec::new();
    builder.write(&mut out, &[0xab; 32]).unwrap();
    out
}

/// An IPv4 fragment (no L4 header when `offset_units` > 0).
fn fragment(dst: Ipv4Addr, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut ip = Ipv4Header::new(
        payload.len() as u16,
        64,
        IpNumber::UDP,
        POD_A.octets(),
        dst.octets(),
    )
    .unwrap();
    ip.more_fragments = more;
    ip.fragment_offset = IpFragOffset::try_new(offset_units).unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    let eth = Ethernet2Header {
        source: POD_A_MAC,
        destination: HOST_A_MAC,
        ether_type: EtherType::IPV4,
    };
    let mut out = Vec::new();
    eth.write(&mut out).unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

fn single_event(outcome: &kaya_tests::datapath::Outcome) -> kaya_ebpf_common::trace::TraceEvent {
    assert_eq!(
        outcome.events.len(),
        1,
        "one trace event per decision: {:?}",
        outcome.events
    );
    outcome.events[0]
}

#[test]
fn local_delivery_redirects_to_peer_with_rewritten_macs() {
    let mut dp = node();
    let packet = tcp(POD_A, POD_B);
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        &out.packet[0..6],
        &POD_B_MAC,
        "destination MAC is pod B's eth0"
    );
    assert_eq!(
        &out.packet[6..12],
        &HOST_B_MAC,
        "source MAC is pod B's gateway"
    );
    assert_eq!(&out.packet[12..], &packet[12..], "L3 and above untouched");
    let event = single_event(&out);
    assert_eq!(event.reason, Reason::LocalDelivery as u32);
    assert_eq!(event.ifindex_out, POD_B_IFINDEX);
    assert_eq!(event.point, kaya_ebpf_common::trace::POINT_FROM_POD);
    assert_eq!(dp.counter("local_delivery"), 1);
}

#[test]
fn remote_pod_gets_tunnel_key_and_overlay_redirect() {
    let mut dp = node();
    let packet = tcp(POD_A, REMOTE_POD);
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        out.packet, packet,
        "encapsulation is the VXLAN device's job"
    );
    let event = single_event(&out);
    assert_eq!(event.reason, Reason::TunnelEncap as u32);
    assert_eq!(
        event.tunnel_remote,
        ip_be(REMOTE_NODE_IP),
        "tunnel key targets the owning node"
    );
    assert_eq!(event.vni, IDENTITY_A, "the VNI carries the source identity");
    assert_eq!(
        event.ifindex_out, OVERLAY_IFINDEX,
        "redirected to the VXLAN device"
    );
    assert_eq!(dp.counter("tunnel_encap"), 1);
}

#[test]
fn unknown_destination_goes_to_the_stack_untouched() {
    let mut dp = node();
    for dst in [OUTSIDE, NODE_IP, Ipv4Addr::new(10, 244, 9, 9)] {
        let packet = udp(POD_A, dst);
        let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
        assert_eq!(out.verdict, TC_ACT_OK, "{dst}");
        assert_eq!(out.packet, packet);
        assert_eq!(single_event(&out).reason, Reason::ToStack as u32);
    }
    assert_eq!(dp.counter("to_stack"), 3);
}

#[test]
fn non_ip_frames_pass_to_the_stack() {
    let mut dp = node();
    let mut arp = Vec::new();
    Ethernet2Header {
        source: POD_A_MAC,
        destination: [0xff; 6],
        ether_type: EtherType::ARP,
    }
    .write(&mut arp)
    .unwrap();
    arp.extend_from_slice(&[0u8; 28]);
    let out = dp.run(PROG_FROM_POD, &arp, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK);
    assert_eq!(out.packet, arp);
    assert_eq!(single_event(&out).reason, Reason::NotIpv4 as u32);
}

#[test]
fn truncated_ipv4_header_is_dropped() {
    let mut dp = node();
    // BPF_PROG_TEST_RUN itself refuses IPv4 frames shorter than 20 bytes of header, so the
    // truncation is one the kernel lets through: a header announcing options (IHL 6, 24
    // bytes) cut after its first 20 bytes.
    let mut packet = tcp(POD_A, POD_B)[..14 + 20].to_vec();
    packet[14] = 0x46;
    packet[16..18].copy_from_slice(&24u16.to_be_bytes());
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(single_event(&out).reason, Reason::DropMalformed as u32);
    // A complete header whose packet is cut short of its payload.
    let packet = tcp(POD_A, POD_B);
    let out = dp
        .run(PROG_FROM_POD, &packet[..packet.len() - 4], TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(dp.counter("drop_malformed"), 2);
}

#[test]
fn header_length_below_minimum_is_dropped() {
    let mut dp = node();
    let mut packet = tcp(POD_A, POD_B);
    packet[14] = 0x44; // version 4, IHL 4 (16 bytes)
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(single_event(&out).reason, Reason::DropMalformed as u32);
}

#[test]
fn total_length_beyond_frame_is_dropped() {
    let mut dp = node();
    let mut packet = tcp(POD_A, POD_B);
    let claimed = (packet.len() - 14 + 100) as u16;
    packet[16..18].copy_from_slice(&claimed.to_be_bytes());
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(single_event(&out).reason, Reason::DropMalformed as u32);
}

#[test]
fn wrong_ip_version_under_ipv4_ethertype_is_dropped() {
    let mut dp = node();
    let mut packet = tcp(POD_A, POD_B);
    packet[14] = 0x65; // version 6
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(single_event(&out).reason, Reason::DropMalformed as u32);
}

#[test]
fn fragments_are_forwarded_without_reading_l4() {
    let mut dp = node();
    let first = fragment(POD_B, 0, true, &[1u8; 64]);
    let later = fragment(REMOTE_POD, 8, false, &[2u8; 24]);
    let out = dp.run(PROG_FROM_POD, &first, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(&out.packet[14..], &first[14..]);
    assert_eq!(single_event(&out).reason, Reason::LocalDelivery as u32);
    let out = dp.run(PROG_FROM_POD, &later, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let event = single_event(&out);
    assert_eq!(event.reason, Reason::TunnelEncap as u32);
    assert_eq!(event.protocol, 17);
}

#[test]
fn icmp_is_delivered_locally_and_across_the_overlay() {
    let mut dp = node();
    let out = dp
        .run(PROG_FROM_POD, &icmp_echo(POD_A, POD_B), TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(single_event(&out).protocol, 1);
    let out = dp
        .run(
            PROG_FROM_POD,
            &icmp_echo(POD_A, REMOTE_POD),
            TEST_RUN_IFINDEX,
        )
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(single_event(&out).tunnel_remote, ip_be(REMOTE_NODE_IP));
}

#[test]
fn spoofed_source_is_dropped() {
    let mut dp = node();
    // Pod B's address, but arriving on pod A's interface.
    let out = dp
        .run(PROG_FROM_POD, &tcp(POD_B, REMOTE_POD), TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(single_event(&out).reason, Reason::DropSpoofedSource as u32);
    // An address no local pod has.
    let out = dp
        .run(PROG_FROM_POD, &tcp(OUTSIDE, POD_B), TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(dp.counter("drop_spoofed_source"), 2);
}

#[test]
fn overlay_traffic_is_delivered_to_local_pods() {
    let mut dp = node();
    let packet = tcp(REMOTE_POD, POD_B);
    let out = dp
        .run(PROG_FROM_OVERLAY, &packet, TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(&out.packet[0..6], &POD_B_MAC);
    assert_eq!(&out.packet[6..12], &HOST_B_MAC);
    let event = single_event(&out);
    assert_eq!(event.point, POINT_FROM_OVERLAY);
    assert_eq!(event.reason, Reason::OverlayDelivery as u32);
    assert_eq!(event.ifindex_out, POD_B_IFINDEX);
}

#[test]
fn overlay_traffic_for_the_node_goes_to_the_stack() {
    let mut dp = node();
    let packet = udp(REMOTE_POD, Ipv4Addr::new(10, 244, 1, 1));
    let out = dp
        .run(PROG_FROM_OVERLAY, &packet, TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_OK);
    assert_eq!(out.packet, packet);
    assert_eq!(single_event(&out).reason, Reason::OverlayToStack as u32);
    let mut bad = packet.clone();
    bad[14] = 0x43;
    let out = dp.run(PROG_FROM_OVERLAY, &bad, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(
        out.verdict, TC_ACT_SHOT,
        "malformed inner packets are dropped"
    );
}

#[test]
fn host_traffic_into_the_overlay_gets_a_tunnel_key() {
    let mut dp = node();
    let packet = tcp(Ipv4Addr::new(10, 244, 1, 1), REMOTE_POD);
    let out = dp.run(PROG_TO_OVERLAY, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_OK);
    let event = single_event(&out);
    assert_eq!(event.point, POINT_TO_OVERLAY);
    assert_eq!(event.reason, Reason::HostEncap as u32);
    assert_eq!(event.tunnel_remote, ip_be(REMOTE_NODE_IP));
    assert_eq!(event.vni, IDENTITY_REMOTE_NODE);
    // Nothing owns this CIDR: there is no node to send it to.
    let out = dp
        .run(
            PROG_TO_OVERLAY,
            &tcp(NODE_IP, Ipv4Addr::new(10, 244, 7, 1)),
            TEST_RUN_IFINDEX,
        )
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(single_event(&out).reason, Reason::DropNoTunnel as u32);
}

#[test]
fn removed_endpoint_is_no_longer_delivered_locally() {
    let mut dp = node();
    dp.endpoints.remove(POD_B).unwrap();
    let out = dp
        .run(PROG_FROM_POD, &tcp(POD_A, POD_B), TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(out.verdict, TC_ACT_OK);
    assert_eq!(single_event(&out).reason, Reason::ToStack as u32);
    assert_eq!(single_event(&out).point, POINT_FROM_POD);
}
