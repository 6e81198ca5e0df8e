//! Datapath packet tests of service translation on the tc path: DNAT to a backend with
//! conntrack, reverse NAT of replies (local and over the overlay), session affinity,
//! hairpin, refusal without endpoints (TCP RST, ICMP port unreachable), backend removal and
//! malformed packets. Every rewritten packet must carry valid checksums.
use etherparse::{Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use kaya_agent::datapath::{PROG_FROM_NETDEV, PROG_FROM_OVERLAY, PROG_FROM_POD};
use kaya_agent::services::{BackendAddr, Frontend, FrontendAddr, FrontendKind, Protocol};
use kaya_ebpf_common::{
    config::HAIRPIN_IP, ct::CT_POLICY, endpoint::EndpointInfo, metrics::Reason,
};
use kaya_tests::datapath::{
    TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TEST_RUN_IFINDEX, TEST_SNAT_IP, TestDatapath,
};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

const OVERLAY_IFINDEX: u32 = 99;
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);
const REMOTE_NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const LOCAL_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const REMOTE_BACKEND: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 5);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa, 1];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0xa, 2];
const CLIENT_PORT: u16 = 40000;

/// A node with the client pod on the test-run interface, a second local pod, and a remote
/// node owning 10.244.2.0/24.
fn node() -> TestDatapath {
    let mut dp = TestDatapath::new(OVERLAY_IFINDEX, NODE_IP).expect("datapath loads");
    let endpoint = |ifindex, last| EndpointInfo {
        ifindex,
        identity: 300 + ifindex,
        pod_mac: [0x02, 0, 0, 0, last, 1],
        host_mac: [0x02, 0, 0, 0, last, 2],
        endpoint_id: ifindex,
    };
    dp.add_endpoint(CLIENT, endpoint(TEST_RUN_IFINDEX, 0xa));
    dp.add_endpoint(LOCAL_BACKEND, endpoint(77, 0xb));
    dp.set_tunnels(&[("10.244.2.0/24".parse().unwrap(), REMOTE_NODE_IP)]);
    dp
}

fn frontend(protocol: Protocol, backends: &[Ipv4Addr], affinity: Option<u32>) -> Frontend {
    Frontend {
        addr: FrontendAddr {
            address: VIP,
            port: 80,
            protocol,
        },
        kind: FrontendKind::ClusterIp,
        service: "default/web:http".into(),
        backends: (backends.iter())
            .map(|address| BackendAddr {
                address: *address,
                port: 8080,
                protocol,
            })
            .collect(),
        affinity_timeout_s: affinity,
        preserve_source: false,
        drop_without_local: false,
    }
}

fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), syn: bool) -> Vec<u8> {
    let mut builder = PacketBuilder::ethernet2(CLIENT_MAC, HOST_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 65535);
    if syn {
        builder = builder.syn();
    } else {
        builder = builder.ack(1).psh();
    }
    let mut out = Vec::new();
    builder
        .write(&mut out, if syn { b"" } else { b"GET /" })
        .unwrap();
    out
}

fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, HOST_MAC)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1);
    let mut out = Vec::new();
    builder.write(&mut out, b"query").unwrap();
    out
}

/// (source, destination) of a packet, after checking every checksum in it.
fn endpoints_of(packet: &[u8]) -> ((Ipv4Addr, u16), (Ipv4Addr, u16)) {
    let sliced = SlicedPacket::from_ethernet(packet).expect("output parses");
    let Some(NetSlice::Ipv4(ip)) = sliced.net else {
        panic!("output is not ipv4");
    };
    let header = ip.header().to_header();
    assert_eq!(
        header.header_checksum,
        header.calc_header_checksum(),
        "ipv4 header checksum"
    );
    let src = Ipv4Addr::from(header.source);
    let dst = Ipv4Addr::from(header.destination);
    match sliced.transport.expect("transport header") {
        TransportSlice::Tcp(tcp) => {
            let expected = tcp
                .to_header()
                .calc_checksum_ipv4(&header, tcp.payload())
                .unwrap();
            assert_eq!(tcp.checksum(), expected, "tcp checksum");
            ((src, tcp.source_port()), (dst, tcp.destination_port()))
        }
        TransportSlice::Udp(udp) => {
            let expected = udp
                .to_header()
                .calc_checksum_ipv4(&header, udp.payload())
                .unwrap();
            assert_eq!(udp.checksum(), expected, "udp checksum");
            ((src, udp.source_port()), (dst, udp.destination_port()))
        }
        TransportSlice::Icmpv4(icmp) => ((src, 0), (dst, icmp.type_u8() as u16)),
        other => panic!("unexpected transport {other:?}"),
    }
}

#[test]
fn tcp_to_a_vip_is_translated_to_the_backend_and_the_reply_back_to_the_vip() {
    let mut dp = node();
    dp.set_frontends(&[frontend(Protocol::Tcp, &[REMOTE_BACKEND], None)]);
    let syn = tcp((CLIENT, CLIENT_PORT), (VIP, 80), true);
    let out = dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "tunnelled to the backend's node"
    );
    assert_eq!(
        endpoints_of(&out.packet),
        ((CLIENT, CLIENT_PORT), (REMOTE_BACKEND, 8080))
    );
    assert_eq!(dp.counter(Reason::ServiceTranslated.name()), 1);

    // Later packets of the flow follow the conntrack entry.
    let data = tcp((CLIENT, CLIENT_PORT), (VIP, 80), false);
    let out = dp.run(PROG_FROM_POD, &data, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(
        endpoints_of(&out.packet).1,
        (REMOTE_BACKEND, 8080),
        "established flow keeps its backend"
    );

    // The backend's reply arrives over the overlay and leaves as the VIP.
    let reply = tcp((REMOTE_BACKEND, 8080), (CLIENT, CLIENT_PORT), false);
    let out = dp.run(PROG_FROM_OVERLAY, &reply, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "delivered to the client pod");
    assert_eq!(
        endpoints_of(&out.packet),
        ((VIP, 80), (CLIENT, CLIENT_PORT))
    );
    assert_eq!(dp.counter(Reason::ReplyTranslated.name()), 1);
}

#[test]
fn a_local_backends_reply_is_translated_on_its_own_veth() {
    // The backend sits on the test-run interface here; the client is the other local pod.
    let mut dp = TestDatapath::new(OVERLAY_IFINDEX, NODE_IP).unwrap();
    let info = |ifindex| EndpointInfo {
        ifindex,
        identity: 300,
        pod_mac: CLIENT_MAC,
        host_mac: HOST_MAC,
        endpoint_id: ifindex,
    };
    dp.add_endpoint(LOCAL_BACKEND, info(TEST_RUN_IFINDEX));
    dp.add_endpoint(CLIENT, info(TEST_RUN_IFINDEX));
    dp.set_frontends(&[frontend(Protocol::Udp, &[LOCAL_BACKEND], None)]);
    let request = udp((CLIENT, 5353), (VIP, 80));
    let out = dp.run(PROG_FROM_POD, &request, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(endpoints_of(&out.packet).1, (LOCAL_BACKEND, 8080));
    let reply = udp((LOCAL_BACKEND, 8080), (CLIENT, 5353));
    let out = dp.run(PROG_FROM_POD, &reply, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(endpoints_of(&out.packet), ((VIP, 80), (CLIENT, 5353)));
}

#[test]
fn new_flows_spread_over_backends_but_affinity_sticks_to_one() {
    let backends = [
        REMOTE_BACKEND,
        Ipv4Addr::new(10, 244, 2, 6),
        Ipv4Addr::new(10, 244, 2, 7),
        Ipv4Addr::new(10, 244, 2, 8),
    ];
    let chosen = |dp: &mut TestDatapath| -> BTreeSet<Ipv4Addr> {
        (0..40)
            .map(|i| {
                let syn = tcp((CLIENT, 41000 + i), (VIP, 80), true);
                let out = dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
                endpoints_of(&out.packet).1.0
            })
            .collect()
    };
    let mut dp = node();
    dp.set_frontends(&[frontend(Protocol::Tcp, &backends, None)]);
    // 40 random picks of 4 land on one backend with probability 4^-39.
    assert!(
        chosen(&mut dp).len() > 1,
        "random selection uses several backends"
    );

    let mut dp = node();
    dp.set_frontends(&[frontend(Protocol::Tcp, &backends, Some(60))]);
    assert_eq!(
        chosen(&mut dp).len(),
        1,
        "ClientIP affinity keeps one backend"
    );
}

#[test]
fn a_pod_reaching_itself_through_its_service_is_hairpinned() {
    let mut dp = node();
    dp.set_frontends(&[frontend(Protocol::Tcp, &[CLIENT], None)]);
    let syn = tcp((CLIENT, CLIENT_PORT), (VIP, 80), true);
    let out = dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let hairpin = Ipv4Addr::from(HAIRPIN_IP);
    // The source becomes the hairpin address, or the pod would answer itself directly.
    assert_eq!(
        endpoints_of(&out.packet),
        ((hairpin, CLIENT_PORT), (CLIENT, 8080))
    );
    let reply = tcp((CLIENT, 8080), (hairpin, CLIENT_PORT), false);
    let out = dp.run(PROG_FROM_POD, &reply, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    assert_eq!(
        endpoints_of(&out.packet),
        ((VIP, 80), (CLIENT, CLIENT_PORT))
    );
}

#[test]
fn without_endpoints_tcp_gets_a_reset_and_udp_a_port_unreachable() {
    let mut dp = node();
    dp.set_frontends(&[
        frontend(Protocol::Tcp, &[], None),
        frontend(Protocol::Udp, &[], None),
    ]);
    let syn = tcp((CLIENT, CLIENT_PORT), (VIP, 80), true);
    let out = dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(
        out.verdict, TC_ACT_REDIRECT,
        "answered back into the client"
    );
    let sliced = SlicedPacket::from_ethernet(&out.packet).unwrap();
    let Some(TransportSlice::Tcp(rst)) = &sliced.transport else {
        panic!("a tcp reset");
    };
    assert!(rst.rst() && rst.ack(), "RST+ACK");
    assert_eq!(rst.acknowledgment_number(), 1001, "acknowledges the SYN");
    assert_eq!(
        endpoints_of(&out.packet),
        ((VIP, 80), (CLIENT, CLIENT_PORT))
    );
    assert_eq!(dp.counter(Reason::ServiceRejected.name()), 1);

    let query = udp((CLIENT, 5353), (VIP, 80));
    let out = dp.run(PROG_FROM_POD, &query, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT);
    let sliced = SlicedPacket::from_ethernet(&out.packet).unwrap();
    let Some(TransportSlice::Icmpv4(icmp)) = &sliced.transport else {
        panic!("an icmp error");
    };
    assert!(
        matches!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
        ),
        "{:?}",
        icmp.icmp_type()
    );
    let header = icmp.header();
    assert_eq!(
        header.checksum,
        header.icmp_type.calc_checksum(icmp.payload()),
        "icmp checksum"
    );
    // The error quotes the offending datagram's IP header and first 8 bytes.
    assert_eq!(
        &icmp.payload()[12..20],
        &[CLIENT.octets(), VIP.octets()].concat()[..]
    );
    assert_eq!(endpoints_of(&out.packet).1.0, CLIENT);
}

#[test]
fn flows_of_a_removed_backend_move_and_others_stay() {
    let kept = [Ipv4Addr::new(10, 244, 2, 6), Ipv4Addr::new(10, 244, 2, 7)];
    let mut dp = node();
    dp.set_frontends(&[frontend(
        Protocol::Tcp,
        &[REMOTE_BACKEND, kept[0], kept[1]],
        None,
    )]);
    let mut flows = Vec::new();
    for i in 0..30 {
        let syn = tcp((CLIENT, 42000 + i), (VIP, 80), true);
        let out = dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
        flows.push((42000 + i, endpoints_of(&out.packet).1.0));
    }
    // 30 random picks of 3 all avoiding one backend has probability 2 * (2/3)^30.
    assert!(flows.iter().any(|(_, b)| *b == REMOTE_BACKEND));
    assert!(flows.iter().any(|(_, b)| kept.contains(b)));
    let report = dp.set_frontends(&[frontend(Protocol::Tcp, &kept, None)]);
    assert_eq!(report.removed_backends.len(), 1);
    for (port, before) in flows {
        let data = tcp((CLIENT, port), (VIP, 80), false);
        let out = dp.run(PROG_FROM_POD, &data, TEST_RUN_IFINDEX).unwrap();
        let after = endpoints_of(&out.packet).1.0;
        if before == REMOTE_BACKEND {
            assert!(kept.contains(&after), "a flow of the removed backend moves");
        } else {
            assert_eq!(after, before, "a flow to a remaining backend keeps it");
        }
    }
    assert!(
        (dp.services.conntrack().entries().iter())
            .filter(|(key, _)| key.direction != CT_POLICY)
            .all(|(_, entry)| dp.services.table().backends.contains_key(&entry.backend_id)),
        "no conntrack entry names the removed backend"
    );
}

#[test]
fn malformed_service_packets_are_dropped() {
    let mut dp = node();
    dp.set_frontends(&[frontend(Protocol::Tcp, &[REMOTE_BACKEND], None)]);
    // TCP header cut to 10 bytes by the IP total length.
    let mut packet = tcp((CLIENT, CLIENT_PORT), (VIP, 80), true);
    let short_total = (20 + 10) as u16;
    packet[16..18].copy_from_slice(&short_total.to_be_bytes());
    packet[24..26].copy_from_slice(&[0, 0]);
    let checksum = etherparse::Ipv4HeaderSlice::from_slice(&packet[14..34])
        .unwrap()
        .to_header()
        .calc_header_checksum();
    packet[24..26].copy_from_slice(&checksum.to_be_bytes());
    packet.truncate(14 + 30);
    let out = dp.run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT);
    assert_eq!(dp.counter(Reason::DropMalformed.name()), 1);
    assert_eq!(dp.counter(Reason::ServiceTranslated.name()), 0);
}

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const NODE_PORT: u16 = 30080;

fn node_port(backends: &[Ipv4Addr], preserve_source: bool) -> Frontend {
    Frontend {
        addr: FrontendAddr {
            address: NODE_IP,
            port: NODE_PORT,
            protocol: Protocol::Tcp,
        },
        kind: FrontendKind::NodePort,
        preserve_source,
        ..frontend(Protocol::Tcp, backends, None)
    }
}

#[test]
fn node_port_from_outside_is_snated_to_a_remote_backend_and_the_reply_leaves_by_the_uplink() {
    let mut dp = node();
    dp.set_frontends(&[node_port(&[REMOTE_BACKEND], false)]);
    let syn = tcp((OUTSIDE, 50000), (NODE_IP, NODE_PORT), true);
    let out = dp.run(PROG_FROM_NETDEV, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "into the overlay");
    let ((src, sport), dst) = endpoints_of(&out.packet);
    assert_eq!(dst, (REMOTE_BACKEND, 8080));
    assert_eq!(
        src, TEST_SNAT_IP,
        "SNAT to the gateway so the reply comes back here"
    );
    assert!(
        sport >= 61000,
        "SNAT port outside the ephemeral range: {sport}"
    );
    assert_eq!(dp.counter(Reason::NodePortTranslated.name()), 1);

    let reply = tcp((REMOTE_BACKEND, 8080), (TEST_SNAT_IP, sport), false);
    let out = dp.run(PROG_FROM_OVERLAY, &reply, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "out of the uplink");
    assert_eq!(
        endpoints_of(&out.packet),
        ((NODE_IP, NODE_PORT), (OUTSIDE, 50000))
    );
    assert_eq!(dp.counter(Reason::NodePortReply.name()), 1);
}

#[test]
fn external_traffic_policy_local_keeps_the_client_address() {
    let mut dp = TestDatapath::new(OVERLAY_IFINDEX, NODE_IP).unwrap();
    dp.add_endpoint(
        LOCAL_BACKEND,
        EndpointInfo {
            ifindex: TEST_RUN_IFINDEX,
            identity: 300,
            pod_mac: CLIENT_MAC,
            host_mac: HOST_MAC,
            endpoint_id: 1,
        },
    );
    dp.set_frontends(&[node_port(&[LOCAL_BACKEND], true)]);
    let syn = tcp((OUTSIDE, 50000), (NODE_IP, NODE_PORT), true);
    let out = dp.run(PROG_FROM_NETDEV, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "to the local backend");
    assert_eq!(
        endpoints_of(&out.packet),
        ((OUTSIDE, 50000), (LOCAL_BACKEND, 8080))
    );
    let reply = tcp((LOCAL_BACKEND, 8080), (OUTSIDE, 50000), false);
    let out = dp.run(PROG_FROM_POD, &reply, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "out of the uplink");
    assert_eq!(
        endpoints_of(&out.packet),
        ((NODE_IP, NODE_PORT), (OUTSIDE, 50000))
    );
}

#[test]
fn the_uplink_leaves_cluster_ips_and_other_traffic_alone_and_refuses_empty_node_ports() {
    let mut dp = node();
    dp.set_frontends(&[
        frontend(Protocol::Tcp, &[REMOTE_BACKEND], None),
        node_port(&[], false),
    ]);
    for packet in [
        tcp((OUTSIDE, 50000), (VIP, 80), true),
        tcp((OUTSIDE, 50000), (NODE_IP, 22), true),
    ] {
        let out = dp.run(PROG_FROM_NETDEV, &packet, TEST_RUN_IFINDEX).unwrap();
        assert_eq!(out.verdict, TC_ACT_OK);
        assert_eq!(out.packet, packet, "untouched");
    }
    let syn = tcp((OUTSIDE, 50000), (NODE_IP, NODE_PORT), true);
    let out = dp.run(PROG_FROM_NETDEV, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_REDIRECT, "bounced out of the uplink");
    let sliced = SlicedPacket::from_ethernet(&out.packet).unwrap();
    let Some(TransportSlice::Tcp(rst)) = &sliced.transport else {
        panic!("a tcp reset");
    };
    assert!(rst.rst());
    assert_eq!(
        endpoints_of(&out.packet),
        ((NODE_IP, NODE_PORT), (OUTSIDE, 50000))
    );
}

#[test]
fn a_direct_connection_reusing_a_translated_flows_ports_is_not_reverse_translated() {
    let mut dp = node();
    dp.set_frontends(&[frontend(Protocol::Tcp, &[REMOTE_BACKEND], None)]);
    let syn = tcp((CLIENT, CLIENT_PORT), (VIP, 80), true);
    dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
    // Later the client connects to the backend directly from the same port.
    let direct = tcp((CLIENT, CLIENT_PORT), (REMOTE_BACKEND, 8080), true);
    let out = dp.run(PROG_FROM_POD, &direct, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(endpoints_of(&out.packet).1, (REMOTE_BACKEND, 8080));
    let syn_ack = tcp((REMOTE_BACKEND, 8080), (CLIENT, CLIENT_PORT), false);
    let out = dp
        .run(PROG_FROM_OVERLAY, &syn_ack, TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(
        endpoints_of(&out.packet).0,
        (REMOTE_BACKEND, 8080),
        "the direct flow's reply keeps the backend as its source"
    );
    // And a new connection to the VIP from that port again is translated both ways.
    dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
    let out = dp
        .run(PROG_FROM_OVERLAY, &syn_ack, TEST_RUN_IFINDEX)
        .unwrap();
    assert_eq!(
        endpoints_of(&out.packet).0,
        (VIP, 80),
        "reply of the new VIP flow"
    );
}

#[test]
fn a_full_service_map_is_an_error_naming_the_setting_and_is_counted() {
    use kaya_agent::config::MapSizes;
    use kaya_agent::datapath::{Datapath, ct::CtMap, lb::LbMaps, loader};
    use kaya_agent::services::{NodeView, sync::ServiceSync};
    let pin_dir =
        std::path::Path::new("/sys/fs/bpf").join(format!("kaya-test-full-{}", std::process::id()));
    let sizes = MapSizes {
        services: 16,
        ..MapSizes::default()
    };
    let mut datapath = Datapath::load_sized(&pin_dir, &sizes).unwrap();
    let maps = LbMaps::open(&mut datapath).unwrap();
    let ct = CtMap::open(&mut datapath).unwrap();
    let node = NodeView {
        name: "node-1".into(),
        addresses: vec![NODE_IP],
    };
    let mut sync = ServiceSync::new(maps, ct, node).unwrap();
    // 20 services with one backend each need 40 slots.
    let services = kaya_tests::kube_proxy::synthetic(20, 1);
    let catalog = kaya_tests::services_bench::catalog(&services);
    let err = sync.apply(&catalog).unwrap_err().to_string();
    assert!(
        err.contains("is full") && err.contains("services.mapSizes.services"),
        "{err}"
    );
    assert_eq!(sync.stats.map_full_total, 1);
    assert_eq!(sync.stats.sync_errors_total, 1);
    // What fitted stays programmed and consistent; nothing was lost silently.
    assert!(sync.stats.services_map_entries <= 16);
    drop(sync);
    drop(datapath);
    loader::unpin_all(&pin_dir).unwrap();
}

#[test]
fn external_and_load_balancer_ips_are_translated_from_outside_and_from_pods() {
    let external = Ipv4Addr::new(198, 51, 100, 7);
    let balancer = Ipv4Addr::new(198, 51, 100, 8);
    let mut dp = node();
    let on = |address, kind| Frontend {
        addr: FrontendAddr {
            address,
            port: 80,
            protocol: Protocol::Tcp,
        },
        kind,
        ..frontend(Protocol::Tcp, &[REMOTE_BACKEND], None)
    };
    dp.set_frontends(&[
        on(external, FrontendKind::ExternalIp),
        on(balancer, FrontendKind::LoadBalancer),
    ]);
    for address in [external, balancer] {
        let syn = tcp((OUTSIDE, 50001), (address, 80), true);
        let out = dp.run(PROG_FROM_NETDEV, &syn, TEST_RUN_IFINDEX).unwrap();
        assert_eq!(out.verdict, TC_ACT_REDIRECT);
        let ((src, _), dst) = endpoints_of(&out.packet);
        assert_eq!((src, dst), (TEST_SNAT_IP, (REMOTE_BACKEND, 8080)));
        let syn = tcp((CLIENT, CLIENT_PORT), (address, 80), true);
        let out = dp.run(PROG_FROM_POD, &syn, TEST_RUN_IFINDEX).unwrap();
        assert_eq!(
            endpoints_of(&out.packet),
            ((CLIENT, CLIENT_PORT), (REMOTE_BACKEND, 8080)),
            "a pod reaching {address} needs no SNAT"
        );
    }
}

#[test]
fn local_policy_without_local_endpoints_drops_outside_clients() {
    let mut dp = node();
    dp.set_frontends(&[Frontend {
        drop_without_local: true,
        ..node_port(&[], true)
    }]);
    let syn = tcp((OUTSIDE, 50000), (NODE_IP, NODE_PORT), true);
    let out = dp.run(PROG_FROM_NETDEV, &syn, TEST_RUN_IFINDEX).unwrap();
    assert_eq!(out.verdict, TC_ACT_SHOT, "dropped, not refused");
    assert_eq!(dp.counter(Reason::DropNoLocalEndpoints.name()), 1);
    assert_eq!(dp.counter(Reason::ServiceRejected.name()), 0);
}
