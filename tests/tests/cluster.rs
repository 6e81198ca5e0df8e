//! Cluster tests: simulated nodes (network namespaces) each running a real kaya-agent, pods
//! plumbed by the real kaya-cni, real traffic between them.
use kaya_tests::capture::VxlanCapture;
use kaya_tests::cluster::Cluster;
use kaya_tests::probe::{EchoServer, icmp_echo, tcp_echo, udp_echo};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kaya_ebpf_common::tunnel::VXLAN_PORT;

#[test]
fn three_nodes_three_pods_full_mesh_over_tcp_udp_and_icmp() {
    let mut cluster = Cluster::new(3).expect("cluster starts");
    for node in 0..3 {
        for pod in 0..3 {
            cluster
                .add_pod(node, &format!("p{}{}", node + 1, pod + 1))
                .expect("pod added");
        }
    }
    let mut servers = Vec::new();
    for pod in &cluster.pods {
        servers.push(EchoServer::start(&pod.netns.path()).expect("pod echo server"));
    }
    for node in &cluster.nodes {
        servers.push(EchoServer::start(&node.netns.path()).expect("node echo server"));
    }
    let before: Vec<u64> = (0..3)
        .map(|n| cluster.counters(n).unwrap()["local_delivery"].packets)
        .collect();
    let capture = VxlanCapture::start(&cluster.underlay.path(), VXLAN_PORT).expect("capture");

    let mut failures = Vec::new();
    let mut same_node_probes = 0u64;
    for from in &cluster.pods {
        for to in &cluster.pods {
            if from.ip == to.ip {
                continue;
            }
            if from.node == to.node {
                same_node_probes += 1;
            }
            for (kind, result) in [
                ("tcp", tcp_echo(&from.netns.path(), to.ip)),
                ("udp", udp_echo(&from.netns.path(), to.ip)),
                ("icmp", icmp_echo(&from.netns.path(), to.ip)),
            ] {
                if let Err(err) = result {
                    failures.push(format!("{kind} {} -> {}: {err:#}", from.name, to.name));
                }
            }
        }
        let own_node = cluster.nodes[from.node].ip;
        for (kind, result) in [
            ("tcp", tcp_echo(&from.netns.path(), own_node)),
            ("udp", udp_echo(&from.netns.path(), own_node)),
            ("icmp", icmp_echo(&from.netns.path(), own_node)),
        ] {
            if let Err(err) = result {
                failures.push(format!("{kind} {} -> own node: {err:#}", from.name));
            }
        }
    }
    // Every node reaches every pod: its own through the /32 route on the veth, the others'
    // through to_overlay (and the replies back to its stack through from_overlay).
    for node in &cluster.nodes {
        for pod in &cluster.pods {
            for (kind, result) in [
                ("tcp", tcp_echo(&node.netns.path(), pod.ip)),
                ("udp", udp_echo(&node.netns.path(), pod.ip)),
            ] {
                if let Err(err) = result {
                    failures.push(format!("{kind} {} -> {}: {err:#}", node.name, pod.name));
                }
            }
        }
    }
    let frames = capture.finish();
    assert!(
        failures.is_empty(),
        "{} probes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Every cross-node pod pair was seen encapsulated on the underlay, outer addresses being
    // the two nodes and the VNI a pod identity.
    let seen: BTreeSet<(Ipv4Addr, Ipv4Addr)> =
        frames.iter().map(|f| (f.inner_src, f.inner_dst)).collect();
    for from in &cluster.pods {
        for to in cluster.pods.iter().filter(|to| to.node != from.node) {
            assert!(
                seen.contains(&(from.ip, to.ip)),
                "no VXLAN frame {} -> {} on the underlay",
                from.name,
                to.name
            );
        }
    }
    for frame in &frames {
        let nodes: Vec<Ipv4Addr> = cluster.nodes.iter().map(|n| n.ip).collect();
        assert!(
            nodes.contains(&frame.outer_src) && nodes.contains(&frame.outer_dst),
            "{frame:?}"
        );
        // The VNI names the sender: a pod's identity, or "remote node" for a node's own stack
        // (whose overlay traffic leaves from its gateway address).
        let from_pod = cluster.pods.iter().any(|p| p.ip == frame.inner_src);
        let expected = if from_pod {
            kaya_ebpf_common::identity::IDENTITY_DEFAULT_POD
        } else {
            kaya_ebpf_common::identity::IDENTITY_REMOTE_NODE
        };
        assert_eq!(frame.vni, expected, "{frame:?}");
    }
    // Same-node pairs never touched the underlay and were delivered by redirect_peer: each
    // TCP, UDP and ICMP probe is at least one packet each way through from_pod.
    for (from, to) in &seen {
        let node_of = |ip: &Ipv4Addr| cluster.pods.iter().find(|p| p.ip == *ip).map(|p| p.node);
        assert_ne!(
            node_of(from),
            node_of(to),
            "same-node traffic {from} -> {to} went over VXLAN"
        );
    }
    let delivered: u64 = (0..3)
        .map(|n| cluster.counters(n).unwrap()["local_delivery"].packets - before[n])
        .sum();
    assert!(
        delivered >= same_node_probes * 3 * 2,
        "local_delivery counted {delivered} packets for {same_node_probes} same-node pairs"
    );
    drop(servers);
}

/// A TCP stream between pods on different nodes keeps going, without a reset, while both
/// agents are killed and restarted: programs stay attached and maps pinned.
#[test]
fn tcp_stream_survives_agent_restarts_on_both_ends() {
    let mut cluster = Cluster::new(2).expect("cluster starts");
    cluster.add_pod(0, "client").unwrap();
    cluster.add_pod(1, "server").unwrap();
    let (client_ns, server_ip) = (cluster.pods[0].netns.path(), cluster.pods[1].ip);

    let server = kaya_tests::netns::spawn_in_netns(&cluster.pods[1].netns.path(), || {
        let listener = TcpListener::bind(("0.0.0.0", 7100)).unwrap();
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8];
        // Echo 8-byte sequence numbers back until the client closes.
        while stream.read_exact(&mut buf).is_ok() {
            if stream.write_all(&buf).is_err() {
                break;
            }
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let (client_stop, client_echoed) = (stop.clone(), echoed.clone());
    let client = kaya_tests::netns::spawn_in_netns(&client_ns, move || -> Result<u64, String> {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddr::from((server_ip, 7100)),
            Duration::from_secs(3),
        )
        .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut seq = 0u64;
        let mut buf = [0u8; 8];
        while !client_stop.load(Ordering::Relaxed) {
            stream
                .write_all(&seq.to_be_bytes())
                .map_err(|e| format!("write {seq}: {e}"))?;
            stream
                .read_exact(&mut buf)
                .map_err(|e| format!("read {seq}: {e}"))?;
            if u64::from_be_bytes(buf) != seq {
                return Err(format!(
                    "echo of {seq} came back as {}",
                    u64::from_be_bytes(buf)
                ));
            }
            seq += 1;
            client_echoed.store(seq, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(seq)
    })
    .unwrap();

    let wait_progress = |what: &str| {
        let start = echoed.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while echoed.load(Ordering::Relaxed) < start + 50 {
            assert!(
                Instant::now() < deadline,
                "stream stalled {what} at {start}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_progress("before the restart");
    cluster.kill_agent(0).unwrap();
    cluster.kill_agent(1).unwrap();
    wait_progress("while both agents were down");
    cluster.start_agent(0).unwrap();
    cluster.start_agent(1).unwrap();
    wait_progress("after both agents restarted");
    stop.store(true, Ordering::Relaxed);
    let total = client
        .join()
        .unwrap()
        .expect("stream ran without error or reset");
    assert!(total >= 150, "only {total} round trips");
    drop(server);
    for node in 0..2 {
        let log = cluster.nodes[node].agent_log();
        let adopted = |what: &str| {
            log.lines()
                .any(|line| line.contains(what) && line.contains("how=Adopted"))
        };
        assert!(
            adopted("overlay program attached") && adopted("endpoint programmed"),
            "restarted agent replaced the programs in place on the overlay and the pod:\n{log}"
        );
    }
}

/// `kaya bpf ...` shows a running node's live maps: its pods, the other nodes' CIDRs and the
/// counters, read from the pinned maps.
#[test]
fn kaya_cli_lists_live_datapath_state() {
    let mut cluster = Cluster::new(2).expect("cluster starts");
    cluster.add_pod(0, "a").unwrap();
    cluster.add_pod(0, "b").unwrap();
    let kaya = |what: &str| {
        let output = std::process::Command::new(kaya_tests::binaries::workspace_binary("kaya"))
            .args(["bpf", what, "--instance", &cluster.nodes[0].instance])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let endpoints = kaya("endpoints");
    for pod in &cluster.pods {
        assert!(
            endpoints.contains(&format!("{} ", pod.ip)),
            "{} missing:\n{endpoints}",
            pod.ip
        );
    }
    let tunnels = kaya("tunnels");
    let peer = &cluster.nodes[1];
    let row = tunnels
        .lines()
        .find(|line| line.starts_with(&peer.pod_cidr.to_string()))
        .unwrap_or_else(|| panic!("{} missing:\n{tunnels}", peer.pod_cidr));
    assert!(row.contains(&peer.ip.to_string()), "{row}");
    tcp_echo_between_pods(&cluster);
    let metrics = kaya("metrics");
    let delivered: u64 = metrics
        .lines()
        .find(|line| line.starts_with("local_delivery"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no local_delivery row:\n{metrics}"));
    assert!(delivered > 0, "{metrics}");
}

fn tcp_echo_between_pods(cluster: &Cluster) {
    let _server = EchoServer::start(&cluster.pods[1].netns.path()).unwrap();
    tcp_echo(&cluster.pods[0].netns.path(), cluster.pods[1].ip).unwrap();
}
