//! kaya-demo: brings up two simulated nodes with two pods each, sends traffic between every
//! pair, and shows what crossed the VXLAN overlay and what the eBPF redirect delivered locally.
use kaya_ebpf_common::tunnel::VXLAN_PORT;
use kaya_tests::capture::VxlanCapture;
use kaya_tests::cluster::Cluster;
use kaya_tests::probe::{EchoServer, icmp_echo, tcp_echo, udp_echo};

fn main() -> anyhow::Result<()> {
    println!("kaya demo: 2 simulated nodes (network namespaces), one kaya-agent each");
    let mut cluster = Cluster::new(2)?;
    for node in &cluster.nodes {
        println!(
            "  {} underlay {} pod cidr {} (instance {})",
            node.name, node.ip, node.pod_cidr, node.instance
        );
    }
    for node in 0..2 {
        for pod in 0..2 {
            let pod = cluster.add_pod(node, &format!("web{}{}", node + 1, pod + 1))?;
            println!(
                "  pod {} on node-{} got {} from kaya-cni",
                pod.name,
                node + 1,
                pod.ip
            );
        }
    }
    let _servers: Vec<EchoServer> = cluster
        .pods
        .iter()
        .map(|pod| EchoServer::start(&pod.netns.path()))
        .collect::<anyhow::Result<_>>()?;
    let capture = VxlanCapture::start(&cluster.underlay.path(), VXLAN_PORT)?;
    println!(
        "\n{:<8} {:<8} {:<6} {:<6} {:<6} path",
        "from", "to", "tcp", "udp", "icmp"
    );
    for from in &cluster.pods {
        for to in cluster.pods.iter().filter(|to| to.ip != from.ip) {
            let mark = |ok: bool| if ok { "ok" } else { "FAIL" };
            let path = if from.node == to.node {
                "same node: eBPF redirect_peer"
            } else {
                "cross node: VXLAN"
            };
            println!(
                "{:<8} {:<8} {:<6} {:<6} {:<6} {path}",
                from.name,
                to.name,
                mark(tcp_echo(&from.netns.path(), to.ip).is_ok()),
                mark(udp_echo(&from.netns.path(), to.ip).is_ok()),
                mark(icmp_echo(&from.netns.path(), to.ip).is_ok()),
            );
        }
    }
    let frames = capture.finish();
    println!("\nVXLAN frames seen on the underlay bridge (UDP {VXLAN_PORT}):");
    for frame in frames.iter().take(12) {
        println!(
            "  outer {} -> {} vni {}  inner {} -> {} proto {}",
            frame.outer_src,
            frame.outer_dst,
            frame.vni,
            frame.inner_src,
            frame.inner_dst,
            frame.inner_protocol
        );
    }
    println!("\ndatapath counters (packets):");
    for (index, node) in cluster.nodes.iter().enumerate() {
        let counters = cluster.counters(index)?;
        let line: Vec<String> = counters
            .iter()
            .filter(|(_, c)| c.packets > 0)
            .map(|(name, c)| format!("{name}={}", c.packets))
            .collect();
        println!("  {}: {}", node.name, line.join(" "));
    }
    println!("\ncleaning up");
    Ok(())
}
