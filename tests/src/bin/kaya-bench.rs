//! kaya-bench: side-by-side benchmark suites (`kaya-bench net [--quick]`); prints a table and
//! writes target/bench/<suite>.json.
use anyhow::{Context, bail};
use kaya_tests::baseline::{BaselineCluster, Interconnect};
use kaya_tests::bench::{BenchReport, iperf_gbps, median, percentile, rr_latency_us};
use kaya_tests::cluster::Cluster;
use kaya_tests::netns::TestNetns;
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

fn net(plan: &Plan) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("net");

    eprintln!("kaya: 2 nodes, pods a1 a2 on node-1, b1 on node-2");
    {
        let mut kaya = Cluster::new(2)?;
        for (node, name) in [(0, "a1"), (0, "a2"), (1, "b1")] {
            kaya.add_pod(node, name)?;
        }
        let pods = &kaya.pods;
        measure_pair(
            &mut report,
            plan,
            "same_node",
            "kaya",
            &Pair {
                client: &pods[0].netns,
                server: &pods[1].netns,
                server_ip: pods[1].ip,
            },
        )?;
        measure_pair(
            &mut report,
            plan,
            "cross_node",
            "kaya",
            &Pair {
                client: &pods[0].netns,
                server: &pods[2].netns,
                server_ip: pods[2].ip,
            },
        )?;
        let tag = kaya.tag.clone();
        cni_latency(
            &mut report,
            "kaya",
            |i, netns| kaya.cni(0, "ADD", &format!("bench{i}"), netns).map(drop),
            plan.cni_pods,
            &tag,
        )?;
        for i in 0..plan.cni_pods {
            // Released explicitly so the cluster's teardown has no leftovers to find.
            let path = PathBuf::from(format!(
                "/var/run/netns/kyt-{}-{tag}-c{i}",
                std::process::id()
            ));
            let _ = kaya.cni(0, "DEL", &format!("bench{i}"), &path);
        }
    }

    eprintln!("bridge-cni + routed: 2 nodes, pods a1 a2 on node-1, b1 on node-2");
    {
        let mut routed = BaselineCluster::new(2, Interconnect::Routed)?;
        for (node, name) in [(0, "a1"), (0, "a2"), (1, "b1")] {
            routed.add_pod(node, name)?;
        }
        let pods = &routed.pods;
        measure_pair(
            &mut report,
            plan,
            "same_node",
            "bridge-cni",
            &Pair {
                client: &pods[0].netns,
                server: &pods[1].netns,
                server_ip: pods[1].ip,
            },
        )?;
        measure_pair(
            &mut report,
            plan,
            "cross_node",
            "routed",
            &Pair {
                client: &pods[0].netns,
                server: &pods[2].netns,
                server_ip: pods[2].ip,
            },
        )?;
        let tag = format!("{}r", std::process::id());
        cni_latency(
            &mut report,
            "bridge-cni",
            |i, netns| routed.cni_add(0, &format!("bench{i}"), netns).map(drop),
            plan.cni_pods,
            &tag,
        )?;
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
        other => bail!("unknown suite {other:?} (suites: net)"),
    };
    println!("{}", report.table());
    let dir = std::env::var_os("KAYA_BENCH_DIR")
        .map_or_else(|| PathBuf::from("target/bench"), PathBuf::from);
    let path = report.write(&dir)?;
    println!("results: {}", path.display());
    Ok(())
}
