//! The benchmark baselines are real networks: pods reach each other through them.
use kaya_tests::baseline::{BaselineCluster, Interconnect};
use kaya_tests::probe::{EchoServer, tcp_echo, udp_echo};

fn cross_node_works(interconnect: Interconnect) {
    let mut cluster = BaselineCluster::new(2, interconnect).expect("baseline cluster");
    cluster.add_pod(0, "a1").unwrap();
    cluster.add_pod(0, "a2").unwrap();
    cluster.add_pod(1, "b1").unwrap();
    let _servers: Vec<EchoServer> = cluster
        .pods
        .iter()
        .map(|p| EchoServer::start(&p.netns.path()).unwrap())
        .collect();
    let a1 = &cluster.pods[0];
    for to in &cluster.pods[1..] {
        tcp_echo(&a1.netns.path(), to.ip)
            .unwrap_or_else(|e| panic!("{interconnect:?} tcp to {}: {e:#}", to.ip));
        udp_echo(&a1.netns.path(), to.ip)
            .unwrap_or_else(|e| panic!("{interconnect:?} udp to {}: {e:#}", to.ip));
    }
}

#[test]
fn routed_baseline_connects_pods_across_nodes() {
    cross_node_works(Interconnect::Routed);
}

#[test]
fn flannel_vxlan_baseline_connects_pods_across_nodes() {
    cross_node_works(Interconnect::FlannelVxlan);
}
