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

/// The kube-proxy baselines of `bench services` must load and have kube-proxy's structure,
/// or the comparison would be against something kube-proxy never runs.
#[test]
fn kube_proxy_rules_load_with_kube_proxys_structure() {
    use kaya_tests::kube_proxy;
    let netns = kaya_tests::netns::TestNetns::create("kube-proxy-rules").unwrap();
    let services = kube_proxy::synthetic(3, 3);
    kube_proxy::apply_iptables(
        &netns.path(),
        &kube_proxy::iptables_restore_input(&services, "10.128.0.0/9"),
    )
    .unwrap();
    let saved = netns.run_command(&["iptables-save", "-t", "nat"]).unwrap();
    assert_eq!(saved.matches(":KUBE-SVC-").count(), 3, "{saved}");
    assert_eq!(saved.matches(":KUBE-SEP-").count(), 9, "{saved}");
    // Three endpoints: 1/3, then 1/2 of the rest, then the remainder.
    assert_eq!(
        saved.matches("--probability 0.33333333349").count(),
        3,
        "{saved}"
    );
    assert_eq!(
        saved.matches("--probability 0.50000000000").count(),
        3,
        "{saved}"
    );
    assert_eq!(
        saved.matches("-j DNAT --to-destination 10.128.0.").count(),
        9,
        "{saved}"
    );

    kube_proxy::apply_nft(
        &netns.path(),
        &kube_proxy::nft_input(&services, "10.128.0.0/9"),
    )
    .unwrap();
    let table = netns
        .run_command(&["nft", "list", "table", "ip", "kube-proxy"])
        .unwrap();
    assert!(table.contains("map service-ips"), "{table}");
    assert_eq!(
        table.matches("numgen random mod 3 vmap").count(),
        3,
        "{table}"
    );
    assert!(
        table.contains("10.96.0.1 . tcp . 80 : goto service-"),
        "{table}"
    );
}
