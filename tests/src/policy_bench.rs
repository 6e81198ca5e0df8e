//! The policy benchmark: throughput and request/response latency between two pods on
//! different nodes with N rules selecting the server, kaya against the same policies
//! rendered as iptables rules the way Calico's and kube-router's iptables dataplanes do
//! (conntrack accept first, a per-pod chain jumping to one chain per policy, a mark per
//! match), and both against no policy at all — a second server pod on the same node that no
//! policy selects, measured in the same rounds; plus the time from a policy change to its
//! enforcement.
use anyhow::{Context, bail};
use std::fmt::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::baseline::{BaselineCluster, Interconnect};
use crate::bench::{BenchReport, IPERF_PORT, iperf_gbps, median, rr_latency_us};
use crate::cluster::Cluster;
use crate::kube_proxy;
use crate::netns::{TestNetns, in_netns};
use crate::probe::OneShotServer;

/// Port of `rr_latency_us`'s server.
const RR_PORT: u16 = 7300;
/// Port the enforcement probe connects to.
const PROBE_PORT: u16 = 7400;
const POLICY_FILE: &str = "bench-policies.yaml";
const ALLOW_FILE: &str = "bench-allow-client.yaml";

pub struct PolicyPlan {
    pub repetitions: usize,
    pub iperf_seconds: u32,
    pub rr_iterations: usize,
    pub enforcement_rounds: usize,
}

/// `n` policies selecting the server, each admitting one outside address on TCP 80: rules
/// a packet of the client never matches, so an iptables rendering walks them all. A policy
/// without rules isolates the server even at n = 0 (the rendering's final DROP).
pub fn kaya_rules(n: usize) -> String {
    let mut out = String::from(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: isolate, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: []
",
    );
    for i in 0..n {
        let _ = write!(
            out,
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p{i:05}, namespace: bench}}\nspec:\n  podSelector: {{matchLabels: {{app: server}}}}\n  ingress: [{{from: [{{ipBlock: {{cidr: {}/32}}}}], ports: [{{port: 80}}]}}]\n",
            rule_source(i)
        );
    }
    out
}

/// The policy admitting the client (by its labels) to the measured ports.
pub fn kaya_allow_client() -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: zz-allow-client, namespace: bench}}\nspec:\n  podSelector: {{matchLabels: {{app: server}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: client}}}}}}], ports: [{{port: {IPERF_PORT}}}, {{port: {RR_PORT}}}, {{port: {PROBE_PORT}}}]}}]\n"
    )
}

fn rule_source(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + i as u32)
}

/// The pods and namespace as manifests, so policies can select them.
fn inventory(client: Ipv4Addr, server: Ipv4Addr, open: Ipv4Addr) -> String {
    let pod = |name: &str, ip: Ipv4Addr| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: bench, labels: {{app: {name}}}}}\nspec: {{containers: []}}\nstatus: {{podIP: {ip}}}\n"
        )
    };
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: bench}\n".to_string()
        + &pod("client", client)
        + &pod("server", server)
        + &pod("open", open)
}

/// The same `n` rules (and, with `allow_client`, the client's) for iptables-restore, as an
/// iptables policy dataplane renders them on the server's node.
pub fn iptables_rules(n: usize, server: Ipv4Addr, client: Option<Ipv4Addr>) -> String {
    let mut chains = String::from("*filter\n:KYB-FORWARD - [0:0]\n:KYB-TW-SERVER - [0:0]\n");
    let mut rules = String::from(
        "-A FORWARD -j KYB-FORWARD\n\
         -A KYB-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A KYB-FORWARD -m conntrack --ctstate INVALID -j DROP\n",
    );
    let _ = writeln!(rules, "-A KYB-FORWARD -d {server}/32 -j KYB-TW-SERVER");
    rules += "-A KYB-TW-SERVER -j MARK --set-xmark 0x0/0x10000\n";
    let policies = (0..n)
        .map(|i| {
            (
                format!("KYB-PI-{i:05}"),
                format!("-s {}/32 -p tcp -m tcp --dport 80", rule_source(i)),
            )
        })
        .chain(client.map(|client| {
            let ports = format!("{IPERF_PORT},{RR_PORT},{PROBE_PORT}");
            (
                "KYB-PI-ALLOW-CLIENT".to_string(),
                format!("-s {client}/32 -p tcp -m multiport --dports {ports}"),
            )
        }));
    for (chain, matcher) in policies {
        let _ = writeln!(chains, ":{chain} - [0:0]");
        let _ = writeln!(rules, "-A KYB-TW-SERVER -j {chain}");
        let _ = writeln!(
            rules,
            "-A KYB-TW-SERVER -m mark --mark 0x10000/0x10000 -j ACCEPT"
        );
        let _ = writeln!(
            rules,
            "-A {chain} {matcher} -j MARK --set-xmark 0x10000/0x10000"
        );
        let _ = writeln!(rules, "-A {chain} -m mark --mark 0x10000/0x10000 -j RETURN");
    }
    rules += "-A KYB-TW-SERVER -j DROP\nCOMMIT\n";
    chains + &rules
}

fn apply_iptables(netns: &Path, input: &str) -> anyhow::Result<Duration> {
    kube_proxy::load(netns, "iptables-restore", &["-w"], input)
}

/// Writes a manifest on every node of `cluster` (atomically), or removes it.
fn put(cluster: &Cluster, file: &str, yaml: Option<&str>) -> anyhow::Result<()> {
    match yaml {
        Some(yaml) => cluster.apply_manifest(file, yaml),
        None => {
            for index in 0..cluster.nodes.len() {
                let path = cluster.manifests_dir(index).join(file);
                match std::fs::remove_file(&path) {
                    Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                        return Err(err.into());
                    }
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

/// Waits until every agent reports exactly `count` policies in force.
fn wait_policies(cluster: &Cluster, count: usize) -> anyhow::Result<()> {
    use kaya_agent::policy::names::{FlowNames, NAMES_FILE};
    let deadline = Instant::now() + Duration::from_secs(120);
    for node in &cluster.nodes {
        let path = node.state_dir(&cluster.state_root).join(NAMES_FILE);
        while !FlowNames::load(&path).is_ok_and(|names| names.policies.len() == count) {
            if Instant::now() > deadline {
                bail!(
                    "{} never had {count} policies in force:\n{}",
                    node.name,
                    node.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

/// From `client`, new connections to `target` every 2 ms (each given 10 ms) from
/// `change()` on: milliseconds until the outcome differs from `before` (true: connected) for
/// three attempts in a row, timed from the first of them — a refused or lost connection on
/// a busy 2-core machine is not yet a policy taking effect.
fn time_to_flip(
    client: &Path,
    target: (Ipv4Addr, u16),
    before: bool,
    change: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    const STREAK: usize = 3;
    // At most one attempt per 2 ms: a tight loop of successful connects would load the
    // 2-core machine enough to slow the agent it is timing.
    let connects = move || {
        let started = Instant::now();
        let ok = TcpStream::connect_timeout(&SocketAddr::from(target), Duration::from_millis(10))
            .is_ok();
        std::thread::sleep(Duration::from_millis(2).saturating_sub(started.elapsed()));
        ok
    };
    let steady = in_netns(client, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        // The previous change may still be settling: wait for STREAK outcomes of `before`.
        let mut streak = 0;
        while streak < STREAK && Instant::now() < deadline {
            streak = if connects() == before { streak + 1 } else { 0 };
        }
        streak == STREAK
    })?;
    if !steady {
        bail!("connections to {target:?} were not steadily {before} before the change");
    }
    let started = Instant::now();
    change()?;
    in_netns(client, move || {
        let mut first_flipped = None;
        let mut streak = 0;
        while started.elapsed() < Duration::from_secs(10) {
            if connects() != before {
                first_flipped.get_or_insert(started.elapsed());
                streak += 1;
                if streak == STREAK {
                    let flipped = first_flipped.expect("set above");
                    return Ok(flipped.as_secs_f64() * 1e3);
                }
            } else {
                (first_flipped, streak) = (None, 0);
            }
        }
        bail!("no change within 10 s")
    })?
}

/// One contender's measurement: (throughput, rr p50, rr p99).
type Run<'a> = Box<dyn FnMut() -> anyhow::Result<(f64, f64, f64)> + 'a>;

fn pair_run<'a>(
    client: &'a TestNetns,
    server: &'a TestNetns,
    server_ip: Ipv4Addr,
    plan: &'a PolicyPlan,
) -> Run<'a> {
    Box::new(move || {
        let gbps = iperf_gbps(client, server, server_ip, plan.iperf_seconds)?;
        let (p50, p99) = rr_latency_us(
            &client.path(),
            &server.path(),
            server_ip,
            plan.rr_iterations,
        )?;
        Ok((gbps, p50, p99))
    })
}

/// Runs each contender once per repetition, in turn, and pushes the medians at `scale`.
/// For each (with policy, without) pair of contender indexes it also pushes the throughput
/// lost to policy, paired within each round (adjacent runs share the machine's drift) and
/// then the median over rounds.
fn round_robin(
    report: &mut BenchReport,
    plan: &PolicyPlan,
    scale: u64,
    contenders: &mut [(&str, Run<'_>)],
    pairs: &[(usize, usize)],
) -> anyhow::Result<()> {
    let mut samples: Vec<[Vec<f64>; 3]> = contenders.iter().map(|_| Default::default()).collect();
    for _ in 0..plan.repetitions {
        for ((name, run), sample) in contenders.iter_mut().zip(&mut samples) {
            let (gbps, p50, p99) = run().with_context(|| format!("{name} at {scale} rules"))?;
            sample[0].push(gbps);
            sample[1].push(p50);
            sample[2].push(p99);
        }
    }
    for &(with, without) in pairs {
        let mut loss: Vec<f64> = (samples[with][0].iter())
            .zip(&samples[without][0])
            .map(|(with, without)| (1.0 - with / without) * 100.0)
            .collect();
        let name = contenders[with].0;
        report.push_scaled(
            "throughput_loss_vs_no_policy_pct",
            scale,
            name,
            median(&mut loss),
            "%",
            false,
        );
    }
    for ((name, _), [gbps, p50, p99]) in contenders.iter().zip(&mut samples) {
        report.push_scaled("pod_to_pod_gbps", scale, name, median(gbps), "Gbit/s", true);
        report.push_scaled("rr_p50_us", scale, name, median(p50), "us", false);
        report.push_scaled("rr_p99_us", scale, name, median(p99), "us", false);
    }
    Ok(())
}

/// The datapath's own cost, free of the machine's network noise: from_pod's time per packet
/// (BPF_PROG_TEST_RUN, kernel-timed, trace off) for a data segment from a client pod to a
/// server pod on the same node, the server selected by `n` rules (and admitting the client)
/// or by none.
pub fn datapath_cost(
    report: &mut BenchReport,
    scales: &[usize],
    rounds: usize,
) -> anyhow::Result<()> {
    use crate::datapath::{TEST_RUN_IFINDEX, TestDatapath};
    use kaya_agent::datapath::PROG_FROM_POD;
    use kaya_agent::manifests::{Parsed, parse_file};
    use kaya_agent::policy::compile::{Inputs, NodeContext};
    use kaya_ebpf_common::endpoint::EndpointInfo;
    const REPEAT: u32 = 200_000;
    let (client, server) = (Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 3));
    let mut dp = TestDatapath::with_trace(99, Ipv4Addr::new(192, 168, 70, 1), false)?;
    for (ip, id) in [(client, 10), (server, 11)] {
        let info = EndpointInfo {
            ifindex: TEST_RUN_IFINDEX,
            identity: 256,
            pod_mac: [2, 0, 0, 0, 0, 1],
            host_mac: [2, 0, 0, 0, 0, 2],
            endpoint_id: id,
        };
        dp.add_endpoint(ip, info);
    }
    let mut packet = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(client.octets(), server.octets(), 64)
        .tcp(40000, IPERF_PORT, 1, 65535)
        .ack(1)
        .write(&mut packet, &[0u8; 1400])?;
    let node = NodeContext {
        endpoints: [(client, 10), (server, 11)].into(),
        host_addresses: vec![],
        peers: vec![],
    };
    eprintln!("from_pod cost per packet: {rounds} rounds of {REPEAT} test runs per case");
    for &scale in scales {
        let yaml = format!(
            "{}---\n{}---\n{}",
            inventory(client, server, Ipv4Addr::new(10, 244, 1, 4)),
            kaya_rules(scale),
            kaya_allow_client()
        );
        let mut with = Inputs::default();
        for object in parse_file(Path::new("bench.yaml"), &yaml)? {
            match object {
                Parsed::Namespace(ns) => {
                    with.namespaces.insert(ns.name.clone(), ns);
                }
                Parsed::Pod(pod) => with.pods.push(pod),
                Parsed::Policy(policy) => with.policies.push(policy),
                _ => {}
            }
        }
        let without = Inputs {
            policies: Vec::new(),
            ..with.clone()
        };
        let (mut policed, mut open) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            dp.set_policy(&with, &node);
            policed.push(
                dp.time_per_run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX, REPEAT)?
                    .as_nanos() as f64,
            );
            dp.set_policy(&without, &node);
            open.push(
                dp.time_per_run(PROG_FROM_POD, &packet, TEST_RUN_IFINDEX, REPEAT)?
                    .as_nanos() as f64,
            );
        }
        let scale = scale as u64;
        report.push_scaled(
            "from_pod_ns_per_packet",
            scale,
            "kaya",
            median(&mut policed),
            "ns",
            false,
        );
        report.push_scaled(
            "from_pod_ns_per_packet",
            scale,
            "kaya-no-policy",
            median(&mut open),
            "ns",
            false,
        );
    }
    Ok(())
}

fn server_node_index(cluster: &Cluster) -> usize {
    cluster.pods[1].node
}

pub fn run(report: &mut BenchReport, plan: &PolicyPlan, scales: &[usize]) -> anyhow::Result<()> {
    eprintln!("kaya: 2 nodes; flannel-style baseline: 2 nodes; client on node-1, server on node-2");
    let mut kaya = Cluster::new(2)?;
    kaya.add_pod(0, "client")?;
    kaya.add_pod(1, "server")?;
    kaya.add_pod(1, "open")?;
    let mut base = BaselineCluster::new(2, Interconnect::FlannelVxlan)?;
    base.add_pod(0, "client")?;
    base.add_pod(1, "server")?;
    base.add_pod(1, "open")?;
    let (client, server, open) = (&kaya.pods[0], &kaya.pods[1], &kaya.pods[2]);
    let (base_client, base_server, base_open) = (&base.pods[0], &base.pods[1], &base.pods[2]);
    let base_node = base.nodes[1].netns.path();
    let _probe = OneShotServer::start(&server.netns.path(), PROBE_PORT)?;
    let _base_probe = OneShotServer::start(&base_server.netns.path(), PROBE_PORT)?;
    kaya.apply_manifest(
        "bench-inventory.yaml",
        &inventory(client.ip, server.ip, open.ip),
    )?;
    for &scale in scales {
        eprintln!("{scale} rules: programming kaya and the iptables rendering");
        let programmed = Instant::now();
        put(&kaya, POLICY_FILE, Some(&kaya_rules(scale)))?;
        put(&kaya, ALLOW_FILE, Some(&kaya_allow_client()))?;
        wait_policies(&kaya, scale + 2)?;
        let kaya_ms = programmed.elapsed().as_secs_f64() * 1e3;
        let iptables_ms = apply_iptables(
            &base_node,
            &iptables_rules(scale, base_server.ip, Some(base_client.ip)),
        )?
        .as_secs_f64()
            * 1e3;
        report.push_scaled(
            "program_from_empty_ms",
            scale as u64,
            "kaya",
            kaya_ms,
            "ms",
            false,
        );
        report.push_scaled(
            "program_from_empty_ms",
            scale as u64,
            "iptables-calico-style",
            iptables_ms,
            "ms",
            false,
        );

        eprintln!("{scale} rules: throughput and request/response, with and without policy");
        let mut contenders: Vec<(&str, Run<'_>)> = vec![
            (
                "kaya",
                pair_run(&client.netns, &server.netns, server.ip, plan),
            ),
            (
                "kaya-no-policy",
                pair_run(&client.netns, &open.netns, open.ip, plan),
            ),
            (
                "iptables-calico-style",
                pair_run(&base_client.netns, &base_server.netns, base_server.ip, plan),
            ),
            (
                "flannel-no-policy",
                pair_run(&base_client.netns, &base_open.netns, base_open.ip, plan),
            ),
        ];
        // Pairs: kaya against its unselected pod, the iptables rendering against flannel's.
        round_robin(
            report,
            plan,
            scale as u64,
            &mut contenders,
            &[(0, 1), (2, 3)],
        )?;

        eprintln!("{scale} rules: time from a policy change to enforcement");
        let (mut kaya_allow, mut kaya_deny, mut ipt_allow) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.enforcement_rounds {
            let target = (server.ip, PROBE_PORT);
            kaya_deny.push(time_to_flip(&client.netns.path(), target, true, || {
                put(&kaya, ALLOW_FILE, None)
            })?);
            kaya_allow.push(time_to_flip(&client.netns.path(), target, false, || {
                put(&kaya, ALLOW_FILE, Some(&kaya_allow_client()))
            })?);
            apply_iptables(&base_node, &iptables_rules(scale, base_server.ip, None))?;
            let base_target = (base_server.ip, PROBE_PORT);
            let full = iptables_rules(scale, base_server.ip, Some(base_client.ip));
            ipt_allow.push(time_to_flip(
                &base_client.netns.path(),
                base_target,
                false,
                || apply_iptables(&base_node, &full).map(drop),
            )?);
        }
        let server_node = &kaya.nodes[server_node_index(&kaya)];
        if let Some(line) = (server_node.agent_log().lines()).rfind(|l| l.contains("policy synced"))
        {
            eprintln!("{scale} rules: last sync on the server's node: {line}");
        }
        let scale_u = scale as u64;
        report.push_scaled(
            "enforce_allow_ms",
            scale_u,
            "kaya",
            median(&mut kaya_allow),
            "ms",
            false,
        );
        report.push_scaled(
            "enforce_deny_ms",
            scale_u,
            "kaya",
            median(&mut kaya_deny),
            "ms",
            false,
        );
        report.push_scaled(
            "enforce_allow_ms",
            scale_u,
            "iptables-calico-style",
            median(&mut ipt_allow),
            "ms",
            false,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderings_carry_every_rule_and_the_client_last() {
        let yaml = kaya_rules(3) + "---\n" + &kaya_allow_client();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &serde_yaml::Value| !v.is_null())
            .collect();
        assert_eq!(docs.len(), 5);
        let ipt = iptables_rules(
            3,
            Ipv4Addr::new(10, 244, 2, 2),
            Some(Ipv4Addr::new(10, 244, 1, 2)),
        );
        assert_eq!(
            ipt.matches(" -j MARK --set-xmark 0x10000/0x10000").count(),
            4
        );
        assert!(ipt.contains("-A KYB-PI-00002 -s 172.16.0.2/32"));
        let last_jump = ipt
            .lines()
            .rfind(|l| l.starts_with("-A KYB-TW-SERVER -j KYB-PI"))
            .unwrap();
        assert_eq!(last_jump, "-A KYB-TW-SERVER -j KYB-PI-ALLOW-CLIENT");
        assert!(ipt.ends_with("-A KYB-TW-SERVER -j DROP\nCOMMIT\n"));
    }
}
