//! kaya-bench: side-by-side benchmark suites (`kaya-bench net [--quick]`); prints a table and
//! writes target/bench/<suite>.json.
use anyhow::{Context, bail};
use kaya_tests::baseline::{BaselineCluster, Interconnect};
use kaya_tests::bench::{BenchReport, iperf_gbps, median, percentile, rr_latency_us};
use kaya_tests::cluster::Cluster;
use kaya_tests::netns::TestNetns;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Plan {
    repetitions: usize,
    iperf_seconds: u32,
    rr_iterations: usize,
    cni_pods: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                repetitions: 1,
                iperf_seconds: 1,
                rr_iterations: 1000,
                cni_pods: 20,
            }
        } else {
            Plan {
                repetitions: 3,
                iperf_seconds: 4,
                rr_iterations: 5000,
                cni_pods: 100,
            }
        }
    }
}

/// A pair of pod namespaces to measure between.
struct Pair<'a> {
    client: &'a TestNetns,
    server: &'a TestNetns,
    server_ip: std::net::Ipv4Addr,
}

fn measure_pair(
    report: &mut BenchReport,
    plan: &Plan,
    prefix: &str,
    implementation: &str,
    pair: &Pair<'_>,
) -> anyhow::Result<()> {
    let (mut gbps, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.repetitions {
        gbps.push(iperf_gbps(
            pair.client,
            pair.server,
            pair.server_ip,
            plan.iperf_seconds,
        )?);
        let (a, b) = rr_latency_us(
            &pair.client.path(),
            &pair.server.path(),
            pair.server_ip,
            plan.rr_iterations,
        )?;
        p50.push(a);
        p99.push(b);
    }
    report.push(
        &format!("{prefix}_tcp_gbps"),
        implementation,
        median(&mut gbps),
        "Gbit/s",
        true,
    );
    report.push(
        &format!("{prefix}_rr_p50_us"),
        implementation,
        median(&mut p50),
        "us",
        false,
    );
    report.push(
        &format!("{prefix}_rr_p99_us"),
        implementation,
        median(&mut p99),
        "us",
        false,
    );
    eprintln!("  {implementation} {prefix}: done");
    Ok(())
}

fn cni_latency(
    report: &mut BenchReport,
    implementation: &str,
    mut add: impl FnMut(usize, &Path) -> anyhow::Result<()>,
    pods: usize,
    tag: &str,
) -> anyhow::Result<()> {
    let namespaces: Vec<TestNetns> = (0..pods)
        .map(|i| TestNetns::create(&format!("{tag}-c{i}")))
        .collect::<anyhow::Result<_>>()?;
    let mut samples = Vec::with_capacity(pods);
    for (i, netns) in namespaces.iter().enumerate() {
        let start = Instant::now();
        add(i, &netns.path())?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    report.push(
        "cni_add_p50_ms",
        implementation,
        percentile(&samples, 0.5),
        "ms",
        false,
    );
    report.push(
        "cni_add_p99_ms",
        implementation,
        percentile(&samples, 0.99),
        "ms",
        false,
    );
    Ok(())
}

/// Measures a1 -> a2 (same node) and a1 -> b1 (across nodes) of a three-pod topology.
fn measure_three_pods(
    report: &mut BenchReport,
    plan: &Plan,
    pods: [(&TestNetns, Ipv4Addr); 3],
    same_node_impl: &str,
    cross_node_impl: &str,
) -> anyhow::Result<()> {
    let [a1, a2, b1] = pods;
    for (prefix, implementation, server) in [
        ("same_node", same_node_impl, a2),
        ("cross_node", cross_node_impl, b1),
    ] {
        let pair = Pair {
            client: a1.0,
            server: server.0,
            server_ip: server.1,
        };
        measure_pair(report, plan, prefix, implementation, &pair)?;
    }
    Ok(())
}

const THREE_PODS: [(usize, &str); 3] = [(0, "a1"), (0, "a2"), (1, "b1")];

fn net(plan: &Plan) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("net");

    eprintln!("kaya: 2 nodes, pods a1 a2 on node-1, b1 on node-2");
    {
        let mut kaya = Cluster::new(2)?;
        for (node, name) in THREE_PODS {
            kaya.add_pod(node, name)?;
        }
        let p = &kaya.pods;
        let pods = [
            (&p[0].netns, p[0].ip),
            (&p[1].netns, p[1].ip),
            (&p[2].netns, p[2].ip),
        ];
        measure_three_pods(&mut report, plan, pods, "kaya", "kaya")?;
        let tag = kaya.tag.clone();
        let add = |i, netns: &Path| kaya.cni(0, "ADD", &format!("bench{i}"), netns).map(drop);
        cni_latency(&mut report, "kaya", add, plan.cni_pods, &tag)?;
        for i in 0..plan.cni_pods {
            // Released explicitly (DEL needs no namespace) so teardown finds no leftovers.
            kaya.cni(0, "DEL", &format!("bench{i}"), Path::new(""))?;
        }
    }

    eprintln!("bridge-cni + routed: 2 nodes, pods a1 a2 on node-1, b1 on node-2");
    {
        let mut routed = BaselineCluster::new(2, Interconnect::Routed)?;
        for (node, name) in THREE_PODS {
            routed.add_pod(node, name)?;
        }
        let p = &routed.pods;
        let pods = [
            (&p[0].netns, p[0].ip),
            (&p[1].netns, p[1].ip),
            (&p[2].netns, p[2].ip),
        ];
        measure_three_pods(&mut report, plan, pods, "bridge-cni", "routed")?;
        let tag = format!("{}r", std::process::id());
        let add = |i, netns: &Path| routed.cni_add(0, &format!("bench{i}"), netns).map(drop);
        cni_latency(&mut report, "bridge-cni", add, plan.cni_pods, &tag)?;
    }

    eprintln!("flannel-vxlan: 2 nodes, pods a1 on node-1, b1 on node-2");
    {
        let mut flannel = BaselineCluster::new(2, Interconnect::FlannelVxlan)?;
        flannel.add_pod(0, "a1")?;
        flannel.add_pod(1, "b1")?;
        let pods = &flannel.pods;
        measure_pair(
            &mut report,
            plan,
            "cross_node",
            "flannel-vxlan",
            &Pair {
                client: &pods[0].netns,
                server: &pods[1].netns,
                server_ip: pods[1].ip,
            },
        )?;
    }
    Ok(report)
}

/// Service load balancing: kaya (socket LB, tc only) against kube-proxy's iptables and
/// nftables modes at 1, 1,000 and 10,000 services, and the backend addressed directly.
fn services(quick: bool) -> anyhow::Result<BenchReport> {
    use kaya_tests::services_bench::{ConnectionPlan, connections, program_time};
    let mut report = BenchReport::new("services");
    let scales = [1, 1000, 10000];
    let plan = if quick {
        ConnectionPlan {
            millis: 1000,
            repetitions: 1,
            iperf_seconds: 2,
        }
    } else {
        ConnectionPlan {
            millis: 3000,
            repetitions: 3,
            iperf_seconds: 4,
        }
    };
    connections(&mut report, &plan, &scales)?;
    program_time(&mut report, &scales, plan.repetitions)?;
    Ok(report)
}

/// NetworkPolicy: kaya against an iptables rendering of the same rules at 0, 100, 1,000
/// and 10,000 rules selecting the server, both against no policy; and enforcement time.
fn policy(quick: bool) -> anyhow::Result<BenchReport> {
    use kaya_tests::policy_bench::{PolicyPlan, run};
    let mut report = BenchReport::new("policy");
    let plan = if quick {
        PolicyPlan {
            repetitions: 1,
            iperf_seconds: 1,
            rr_iterations: 1000,
            enforcement_rounds: 1,
        }
    } else {
        PolicyPlan {
            repetitions: 7,
            iperf_seconds: 3,
            rr_iterations: 5000,
            enforcement_rounds: 5,
        }
    };
    let scales = [0, 100, 1000, 10000];
    kaya_tests::policy_bench::datapath_cost(&mut report, &scales, plan.repetitions)?;
    run(&mut report, &plan, &scales)?;
    Ok(report)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let suite = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .context("usage: kaya-bench <suite> [--quick]")?;
    let plan = Plan::new(quick);
    let report = match suite.as_str() {
        "net" => net(&plan)?,
        "services" => services(quick)?,
        "policy" => policy(quick)?,
        "pods" => kaya_tests::pods_bench::run(quick)?,
        "control-plane" => kaya_tests::control_plane_bench::run(quick)?,
        other => {
            bail!("unknown suite {other:?} (suites: net, services, policy, pods, control-plane)")
        }
    };
    println!("{}", report.table());
    let dir = std::env::var_os("KAYA_BENCH_DIR")
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from);
    let path = report.write(&dir)?;
    println!("results: {}", path.display());
    Ok(())
}
