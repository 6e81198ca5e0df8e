//! Datapath packet tests of NetworkPolicy: ipBlock prefixes with except, named ports, endPort
//! ranges, ICMP, replies of admitted flows, fragments, to_pod for stack-routed traffic, and
//! per-rule counters. Policies go through the agent's compiler and sync, as in production.
use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use kaya_agent::datapath::{PROG_FROM_POD, PROG_TO_POD};
use kaya_agent::objects::ObjectName;
use kaya_agent::policy::{
    compile::{Inputs, NodeContext},
    inventory::{NamedPort, PodDef},
    spec::PolicyDef,
};
use kaya_agent::services::Protocol;
use kaya_ebpf_common::endpoint::EndpointInfo;
use kaya_tests::datapath::{
    TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, TEST_RUN_IFINDEX, TestDatapath,
};
use std::net::Ipv4Addr;

const OVERLAY_IFINDEX: u32 = 99;
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 60, 1);
/// Both pods sit on the test-run interface (the kernel only accepts real ifindexes), told
/// apart by their endpoint ids.
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);
const CLIENT_ID: u32 = 10;
const SERVER_ID: u32 = 11;
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 1, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 1, 2];

fn pod(name: &str, ip: Ipv4Addr, ports: &[(&str, u16, Protocol)]) -> PodDef {
    PodDef {
        name: ObjectName {
            namespace: "x".into(),
            name: name.into(),
        },
        labels: [("pod".to_string(), name.to_string())].into(),
        ip: Some(ip),
        node: Some("node-1".into()),
        ports: (ports.iter())
            .map(|(name, port, protocol)| NamedPort {
                name: name.to_string(),
                port: *port,
                protocol: *protocol,
            })
            .collect(),
    }
}

/// A node with the client and server pods (server: `web` = TCP 8080) under `policies`.
fn node(policies: &[&str]) -> TestDatapath {
    let mut dp = TestDatapath::new(OVERLAY_IFINDEX, NODE_IP).expect("datapath loads");
    for (ip, id, mac) in [(CLIENT, CLIENT_ID, MAC_A), (SERVER, SERVER_ID, MAC_B)] {
        dp.add_endpoint(
            ip,
            EndpointInfo {
                ifindex: TEST_RUN_IFINDEX,
                identity: 256,
                pod_mac: mac,
                host_mac: mac,
                endpoint_id: id,
            },
        );
    }
    set_policies(&mut dp, policies);
    dp
}

fn set_policies(dp: &mut TestDatapath, policies: &[&str]) {
    let policies = (policies.iter())
        .map(|yaml| {
            let yaml = format!("metadata: {{name: p, namespace: x}}\nspec:\n{yaml}");
            PolicyDef::from_k8s(&serde_yaml::from_str(&yaml).unwrap()).unwrap()
        })
        .collect();
    apply(dp, policies);
}

/// Programs `policies` over the two pods through the agent's compiler and sync.
fn apply(dp: &mut TestDatapath, policies: Vec<PolicyDef>) {
    let inputs = Inputs {
        namespaces: Default::default(),
        pods: vec![
            pod("client", CLIENT, &[]),
            pod(
                "server",
                SERVER,
                &[("web", 8080, Protocol::Tcp), ("dns", 53, Protocol::Udp)],
            ),
        ],
        policies,
    };
    let node = NodeContext {
        endpoints: [(CLIENT, CLIENT_ID), (SERVER, SERVER_ID)].into(),
        host_addresses: vec![NODE_IP],
        peers: vec![],
    };
    dp.set_policy(&inputs, &node);
}

fn tcp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), syn: bool) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 65535);
    let builder = if syn { builder.syn() } else { builder.ack(1) };
    let mut out = Vec::new();
    builder.write(&mut out, b"").unwrap();
    out
}

fn udp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let mut out = Vec::new();
    (PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(src.0.octets(), dst.0.octets(), 64)
        .udp(src.1, dst.1))
    .write(&mut out, b"query")
    .unwrap();
    out
}

fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, request: bool) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src.octets(), dst.octets(), 64);
    let builder = if request {
        builder.icmpv4_echo_request(7, 1)
    } else {
        builder.icmpv4_echo_reply(7, 1)
    };
    let mut out = Vec::new();
    builder.write(&mut out, b"ping").unwrap();
    out
}

/// The verdict of from_pod on a packet the pod at `src` sends.
fn send(dp: &mut TestDatapath, packet: &[u8]) -> i32 {
    dp.run(PROG_FROM_POD, packet, TEST_RUN_IFINDEX)
        .unwrap()
        .verdict
}

#[test]
fn ip_blocks_admit_their_prefix_minus_the_excepts() {
    let mut dp = node(&["  podSelector: {matchLabels: {pod: client}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.244.1.3/32]}}]}]"]);
    let to = |dp: &mut TestDatapath, ip: [u8; 4]| {
        send(dp, &tcp((CLIENT, 40000), (Ipv4Addr::from(ip), 80), true))
    };
    assert_eq!(
        to(&mut dp, [10, 2, 3, 4]),
        TC_ACT_OK,
        "inside the block: to the stack"
    );
    assert_eq!(to(&mut dp, [10, 1, 200, 1]), TC_ACT_SHOT, "in an except");
    assert_eq!(to(&mut dp, [11, 0, 0, 1]), TC_ACT_SHOT, "outside the block");
    assert_eq!(
        to(&mut dp, [10, 244, 1, 3]),
        TC_ACT_SHOT,
        "the server's /32 is excepted"
    );
    assert_eq!(dp.counter("drop_policy_egress"), 3);
    // Widen: the server's own address is now in a block of its own.
    set_policies(
        &mut dp,
        &["  podSelector: {matchLabels: {pod: client}}
  policyTypes: [Egress]
  egress:
    - {to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16, 10.244.1.3/32]}}]}
    - {to: [{ipBlock: {cidr: 10.244.1.0/30}}]}"],
    );
    assert_eq!(
        to(&mut dp, [10, 244, 1, 3]),
        TC_ACT_REDIRECT,
        "delivered to the server"
    );
    assert_eq!(to(&mut dp, [10, 1, 200, 1]), TC_ACT_SHOT);
}

#[test]
fn named_ports_resolve_on_the_receiving_pod_and_keep_their_protocol() {
    let mut dp = node(&["  podSelector: {matchLabels: {pod: server}}
  ingress: [{ports: [{port: web}, {port: dns, protocol: UDP}]}]"]);
    assert_eq!(
        send(&mut dp, &tcp((CLIENT, 40000), (SERVER, 8080), true)),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        send(&mut dp, &tcp((CLIENT, 40001), (SERVER, 8081), true)),
        TC_ACT_SHOT
    );
    assert_eq!(
        send(&mut dp, &udp((CLIENT, 40002), (SERVER, 8080))),
        TC_ACT_SHOT,
        "web is TCP"
    );
    assert_eq!(
        send(&mut dp, &udp((CLIENT, 40003), (SERVER, 53))),
        TC_ACT_REDIRECT
    );
    assert_eq!(dp.counter("drop_policy_ingress"), 2);
    // Per-rule counters saw the two admitted packets under the one rule.
    let counters = dp.policy.rule_counters();
    assert_eq!(counters.len(), 1, "{counters:?}");
    assert_eq!(counters[0].0, "x/p ingress[0]");
    assert_eq!(counters[0].1.packets, 2);
}

#[test]
fn end_port_ranges_are_inclusive_at_both_ends() {
    let mut dp = node(&["  podSelector: {matchLabels: {pod: server}}
  ingress: [{ports: [{port: 8000, endPort: 8100}]}]"]);
    for (port, verdict) in [
        (7999, TC_ACT_SHOT),
        (8000, TC_ACT_REDIRECT),
        (8063, TC_ACT_REDIRECT),
        (8064, TC_ACT_REDIRECT),
        (8100, TC_ACT_REDIRECT),
        (8101, TC_ACT_SHOT),
    ] {
        let packet = tcp((CLIENT, 41000 + port % 1000), (SERVER, port), true);
        assert_eq!(send(&mut dp, &packet), verdict, "port {port}");
    }
}

#[test]
fn icmp_needs_a_rule_for_every_port_and_its_replies_pass() {
    let mut dp = node(&["  podSelector: {matchLabels: {pod: server}}
  ingress: [{ports: [{port: 80}]}]"]);
    assert_eq!(
        send(&mut dp, &icmp_echo(CLIENT, SERVER, true)),
        TC_ACT_SHOT,
        "port rules only"
    );
    // Every port: ICMP admitted; the client is isolated on ingress, yet the reply passes.
    let both =
        "  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: client}}}]}]";
    set_policies(&mut dp, &[both]);
    assert_eq!(
        send(&mut dp, &icmp_echo(CLIENT, SERVER, true)),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        send(&mut dp, &icmp_echo(SERVER, CLIENT, false)),
        TC_ACT_REDIRECT,
        "echo reply"
    );
    assert_eq!(
        send(&mut dp, &icmp_echo(SERVER, CLIENT, true)),
        TC_ACT_SHOT,
        "a request of the server's own is not a reply"
    );
}

#[test]
fn replies_of_admitted_flows_pass_and_new_flows_the_other_way_do_not() {
    // Both pods isolated on ingress; only client -> server:80 is allowed.
    let mut dp = node(&[
        "  podSelector: {}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: client}}}], ports: [{port: 80}, {port: 80, protocol: UDP}]}]",
    ]);
    assert_eq!(
        send(&mut dp, &tcp((CLIENT, 40000), (SERVER, 80), true)),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        send(&mut dp, &tcp((SERVER, 80), (CLIENT, 40000), false)),
        TC_ACT_REDIRECT,
        "syn-ack"
    );
    assert_eq!(
        send(&mut dp, &tcp((SERVER, 80), (CLIENT, 40001), true)),
        TC_ACT_SHOT,
        "other tuple"
    );
    assert_eq!(
        send(&mut dp, &tcp((SERVER, 40000), (CLIENT, 80), true)),
        TC_ACT_SHOT,
        "server as client"
    );
    assert_eq!(
        send(&mut dp, &udp((CLIENT, 5000), (SERVER, 80))),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        send(&mut dp, &udp((SERVER, 80), (CLIENT, 5000))),
        TC_ACT_REDIRECT,
        "udp reply"
    );
    // Forward packets meet the policy every time: after the rule goes, the flow stops.
    set_policies(&mut dp, &["  podSelector: {}\n  ingress: []"]);
    assert_eq!(
        send(&mut dp, &tcp((CLIENT, 40000), (SERVER, 80), false)),
        TC_ACT_SHOT
    );
}

/// An Ethernet frame around `ip` (its checksum filled in) and `payload`, for packets
/// etherparse's builder cannot make (fragments, SCTP).
fn frame(mut ip: Ipv4Header, payload: &[u8]) -> Vec<u8> {
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = Vec::new();
    etherparse::Ethernet2Header {
        source: MAC_A,
        destination: MAC_B,
        ether_type: etherparse::EtherType::IPV4,
    }
    .write(&mut out)
    .unwrap();
    ip.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

/// The two fragments of a UDP datagram to `port` (first: UDP header and 16 bytes).
fn fragments(port: u16, id: u16) -> (Vec<u8>, Vec<u8>) {
    let payload = [7u8; 40];
    let mut udp = etherparse::UdpHeader::without_ipv4_checksum(40001, port, payload.len()).unwrap();
    udp.checksum = 0;
    let mut datagram = udp.to_bytes().to_vec();
    datagram.extend_from_slice(&payload);
    let piece = |offset: usize, data: &[u8], more: bool| {
        let mut ip = Ipv4Header::new(
            data.len() as u16,
            64,
            IpNumber::UDP,
            CLIENT.octets(),
            SERVER.octets(),
        )
        .unwrap();
        ip.identification = id;
        ip.more_fragments = more;
        ip.fragment_offset = etherparse::IpFragOffset::try_new((offset / 8) as u16).unwrap();
        frame(ip, data)
    };
    (
        piece(0, &datagram[..24], true),
        piece(24, &datagram[24..], false),
    )
}

#[test]
fn later_fragments_follow_the_verdict_on_their_first_piece() {
    let mut dp = node(&["  podSelector: {matchLabels: {pod: server}}
  ingress: [{ports: [{port: 53, protocol: UDP}]}]"]);
    let (first, rest) = fragments(53, 0x1111);
    assert_eq!(send(&mut dp, &first), TC_ACT_REDIRECT);
    assert_eq!(
        send(&mut dp, &rest),
        TC_ACT_REDIRECT,
        "ports remembered from the first piece"
    );
    let (first, rest) = fragments(54, 0x2222);
    assert_eq!(send(&mut dp, &first), TC_ACT_SHOT);
    assert_eq!(send(&mut dp, &rest), TC_ACT_SHOT);
    let (_, orphan) = fragments(53, 0x3333);
    assert_eq!(
        send(&mut dp, &orphan),
        TC_ACT_SHOT,
        "no first piece seen: no ports to allow"
    );
}

#[test]
fn traffic_the_stack_routes_into_a_pod_meets_its_ingress_policy_unless_from_the_node() {
    let mut dp = node(&["  podSelector: {matchLabels: {pod: server}}
  ingress: [{from: [{ipBlock: {cidr: 172.16.0.0/12}}]}]"]);
    let from = |ip: [u8; 4]| tcp((Ipv4Addr::from(ip), 40000), (SERVER, 80), true);
    // Forwarded: received on an interface (the uplink, say) and routed to the pod.
    let forwarded = |dp: &mut TestDatapath, packet: &[u8]| {
        let uplink = TEST_RUN_IFINDEX;
        let out = dp.run_forwarded(PROG_TO_POD, packet, TEST_RUN_IFINDEX, uplink);
        out.unwrap().verdict
    };
    assert_eq!(
        forwarded(&mut dp, &from([172, 16, 9, 9])),
        TC_ACT_OK,
        "admitted by the block"
    );
    assert_eq!(
        forwarded(&mut dp, &from([8, 8, 8, 8])),
        TC_ACT_SHOT,
        "the world is not"
    );
    // Sent by the node itself (kubelet probes), from any of its addresses: always admitted.
    let sent = |dp: &mut TestDatapath, packet: &[u8]| {
        let out = dp.run_forwarded(PROG_TO_POD, packet, TEST_RUN_IFINDEX, 0);
        out.unwrap().verdict
    };
    assert_eq!(sent(&mut dp, &from([8, 8, 8, 8])), TC_ACT_OK);
    assert_eq!(
        forwarded(&mut dp, &from(NODE_IP.octets())),
        TC_ACT_OK,
        "host identity"
    );
    assert_eq!(dp.counter("drop_policy_ingress"), 1);
}

#[test]
fn a_malformed_policy_edit_is_refused_with_the_field_and_the_last_good_one_stays() {
    let mut dp = node(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    let good = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: q, namespace: x}\nspec: {podSelector: {matchLabels: {pod: server}}, ingress: []}\n";
    std::fs::write(&file, good).unwrap();
    let mut source = kaya_agent::manifests::ManifestDir::new(dir.path());
    assert!(source.rescan().unwrap().errors.is_empty());
    apply(&mut dp, source.policy_inputs().policies);
    let syn = tcp((CLIENT, 40000), (SERVER, 80), true);
    assert_eq!(
        send(&mut dp, &syn),
        TC_ACT_SHOT,
        "isolated by the good policy"
    );
    // An edit that, read leniently, would open port 80.
    let bad = good.replace(
        "ingress: []",
        "ingress: [{ports: [{port: 80, endPort: 70}]}]",
    );
    std::fs::write(&file, bad).unwrap();
    let scan = source.rescan().unwrap();
    let err = scan
        .errors
        .first()
        .expect("the edit is refused")
        .to_string();
    assert!(
        err.contains("p.yaml")
            && err.contains("NetworkPolicy x/q")
            && err.contains("spec.ingress[0].ports[0].endPort"),
        "{err}"
    );
    apply(&mut dp, source.policy_inputs().policies);
    assert_eq!(
        send(&mut dp, &syn),
        TC_ACT_SHOT,
        "the last good version stays in force"
    );
}

/// An SCTP packet (common header and an empty DATA chunk; etherparse builds no SCTP).
fn sctp(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&src.1.to_be_bytes());
    payload.extend_from_slice(&dst.1.to_be_bytes());
    payload.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // verification tag, checksum
    payload.extend_from_slice(&[0, 3, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // DATA
    let ip = Ipv4Header::new(
        payload.len() as u16,
        64,
        IpNumber::SCTP,
        src.0.octets(),
        dst.0.octets(),
    )
    .unwrap();
    frame(ip, &payload)
}

#[test]
fn sctp_ports_are_matched_with_their_protocol() {
    // Both pods isolated on ingress; SCTP 9999 admitted from anyone.
    let mut dp = node(&["  podSelector: {}
  ingress: [{ports: [{port: 9999, protocol: SCTP}]}]"]);
    assert_eq!(
        send(&mut dp, &sctp((CLIENT, 5000), (SERVER, 9999))),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        send(&mut dp, &sctp((CLIENT, 5000), (SERVER, 9998))),
        TC_ACT_SHOT
    );
    let tcp_syn = tcp((CLIENT, 5000), (SERVER, 9999), true);
    assert_eq!(send(&mut dp, &tcp_syn), TC_ACT_SHOT, "TCP is not SCTP");
    // The association's replies reach the isolated client; a new one the other way does not.
    assert_eq!(
        send(&mut dp, &sctp((SERVER, 9999), (CLIENT, 5000))),
        TC_ACT_REDIRECT
    );
    assert_eq!(
        send(&mut dp, &sctp((SERVER, 9999), (CLIENT, 5001))),
        TC_ACT_SHOT
    );
}
