//! kaya-demo: brings up two simulated nodes with two pods each, sends traffic between every
//! pair, shows what crossed the VXLAN overlay and what the eBPF redirect delivered locally,
//! then puts a ClusterIP Service in front of the pods and uses it, and finally isolates one
//! pod with a NetworkPolicy and shows the verdicts with `kaya observe`.
use kaya_agent::datapath::lb::LbMaps;
use kaya_agent::services::{FrontendAddr, Protocol};
use kaya_ebpf_common::tunnel::VXLAN_PORT;
use kaya_tests::capture::VxlanCapture;
use kaya_tests::cluster::Cluster;
use kaya_tests::probe::{ECHO_PORT, EchoServer, icmp_echo, tcp_echo, udp_echo};
use std::net::Ipv4Addr;

const DEMO_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);

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
    println!("\na Service: ClusterIP {DEMO_VIP}:{ECHO_PORT} in front of all four pods");
    let mut endpoints = String::new();
    for pod in &cluster.pods {
        let node = &cluster.nodes[pod.node].name;
        endpoints += &format!("  - {{addresses: [{}], nodeName: {node}}}\n", pod.ip);
    }
    cluster.apply_manifest(
        "echo.yaml",
        &format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: echo, namespace: demo}}\n\
             spec: {{clusterIP: {DEMO_VIP}, ports: [{{port: {ECHO_PORT}}}]}}\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: echo-1, namespace: demo, labels: {{kubernetes.io/service-name: echo}}}}\n\
             addressType: IPv4\nports: [{{port: {ECHO_PORT}}}]\nendpoints:\n{endpoints}"
        ),
    )?;
    let frontend = FrontendAddr {
        address: DEMO_VIP,
        port: ECHO_PORT,
        protocol: Protocol::Tcp,
    };
    cluster.wait_frontend(&frontend, 4)?;
    println!("node-1's service table (kaya bpf lb list):");
    let maps = LbMaps::open_pinned(&cluster.nodes[0].bpf_dir())?;
    for line in kaya_agent::inspect::lb::services(&maps.read_table()?).lines() {
        println!("  {line}");
    }
    for (index, pod) in cluster.pods.iter().enumerate() {
        let per_packet = tcp_echo(&pod.netns.path(), DEMO_VIP).is_ok();
        // kaya-probe runs inside the pod's cgroup, where the socket hooks apply.
        let socket = cluster.probe(index, &["tcp", &format!("{DEMO_VIP}:{ECHO_PORT}")])?;
        println!(
            "  {} -> {DEMO_VIP}: per-packet LB {}, socket LB {}",
            pod.name,
            if per_packet { "ok" } else { "FAIL" },
            socket
        );
    }

    network_policy(&cluster)?;

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

/// Pods and a policy letting only web21 reach web11; every pod probes web11, and node-1's
/// `kaya observe` shows the verdicts.
fn network_policy(cluster: &Cluster) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};
    println!("\na NetworkPolicy: web11 accepts only web21, on port {ECHO_PORT}");
    let mut manifests = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n");
    for pod in &cluster.pods {
        manifests += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: demo, labels: {{app: {}}}}}\nspec: {{nodeName: {}, containers: []}}\nstatus: {{podIP: {}}}\n",
            pod.name, pod.name, cluster.nodes[pod.node].name, pod.ip
        );
    }
    manifests += &format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: web11-from-web21, namespace: demo}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: web11}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web21}}}}}}], ports: [{{port: {ECHO_PORT}}}]}}]\n"
    );
    cluster.apply_manifest("policy.yaml", &manifests)?;
    // Applied within the poll interval; give the agents a moment.
    std::thread::sleep(Duration::from_millis(300));
    let (mut observer, lines) = cluster.observe(0, &["--to-pod", "demo/web11"])?;
    std::thread::sleep(Duration::from_millis(200));
    let target = &cluster.pods[0];
    for (index, pod) in cluster.pods.iter().enumerate().skip(1) {
        let out = cluster.probe(
            index,
            &["matrix", "500", &format!("tcp:{}:{ECHO_PORT}", target.ip)],
        )?;
        let verdict = if out.ends_with(" ok") {
            "allowed"
        } else {
            "denied"
        };
        println!("  {} -> {}: {verdict}", pod.name, target.name);
    }
    println!("kaya observe --to-pod demo/web11 on node-1:");
    let deadline = Instant::now() + Duration::from_secs(1);
    while let Ok((_, line)) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        println!("  {line}");
    }
    observer.kill()?;
    observer.wait()?;
    Ok(())
}
