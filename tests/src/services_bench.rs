//! The `services` benchmark suite. Programming time: the same services and endpoints
//! programmed by kaya (the plan plus ordered map writes into freshly loaded maps) and as
//! kube-proxy's iptables and nftables rules (loaded whole into a fresh namespace, as a
//! kube-proxy restart does). Connections: short-connection rate, connect latency and
//! throughput through a service VIP with kaya and kube-proxy, and to the backend directly.
use anyhow::Context;
use kaya_agent::datapath::{Datapath, lb::LbMaps, lb::LbTable};
use kaya_agent::services::FrontendAddr;
use kaya_agent::services::catalog::{EndpointDef, PortDef, ServiceDef, SliceDef};
use kaya_agent::services::{Catalog, NodeView, ObjectName, Protocol, plan};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use crate::baseline::{BaselineCluster, Interconnect};
use crate::bench::{BenchReport, IPERF_PORT, iperf_gbps_via, median};
use crate::cluster::Cluster;
use crate::kube_proxy::{self, RenderedService};
use crate::netns::TestNetns;
use crate::probe::{OneShotServer, probe_command};

pub const ENDPOINTS_PER_SERVICE: usize = 10;
const CLUSTER_CIDR: &str = "10.128.0.0/9";

/// The catalog kaya plans from, for the same services kube-proxy gets.
pub fn catalog(services: &[RenderedService]) -> Catalog {
    let mut catalog = Catalog::default();
    for (index, service) in services.iter().enumerate() {
        let name = ObjectName {
            namespace: "bench".into(),
            name: format!("svc-{index}"),
        };
        catalog.upsert_service(ServiceDef {
            name: name.clone(),
            cluster_ip: Some(service.vip),
            ports: vec![PortDef {
                name: "http".into(),
                port: service.port,
                protocol: Protocol::Tcp,
                node_port: None,
            }],
            external_ips: vec![],
            load_balancer_ips: vec![],
            affinity_timeout_s: None,
            internal_local: false,
            external_local: false,
        });
        catalog.upsert_slice(SliceDef {
            name: ObjectName {
                namespace: "bench".into(),
                name: format!("svc-{index}-1"),
            },
            service: name,
            ports: vec![("http".into(), 8080, Protocol::Tcp)],
            endpoints: (service.endpoints.iter())
                .map(|(ip, _)| EndpointDef {
                    addresses: vec![*ip],
                    ready: true,
                    serving: true,
                    terminating: false,
                    node_name: Some("node-2".into()),
                })
                .collect(),
        });
    }
    catalog
}

/// Milliseconds for kaya to go from desired state to programmed maps, from empty maps.
fn kaya_program_ms(services: &[RenderedService]) -> anyhow::Result<f64> {
    let catalog = catalog(services);
    let pin_dir =
        std::path::Path::new("/sys/fs/bpf").join(format!("kaya-bench-{}", std::process::id()));
    kaya_agent::datapath::loader::ensure_bpffs(std::path::Path::new("/sys/fs/bpf"))?;
    let result = (|| -> anyhow::Result<f64> {
        let mut datapath = Datapath::load(&pin_dir)?;
        let mut maps = LbMaps::open(&mut datapath)?;
        let node = NodeView {
            name: "node-1".into(),
            addresses: vec![std::net::Ipv4Addr::new(192, 168, 50, 1)],
        };
        let started = Instant::now();
        let plan = plan(&catalog, &node);
        let mut table = LbTable::default();
        table.sync(&plan.frontends, &mut maps)?;
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            table.slots.len() == services.len() * (ENDPOINTS_PER_SERVICE + 1),
            "kaya programmed {} slots",
            table.slots.len()
        );
        Ok(elapsed)
    })();
    let _ = kaya_agent::datapath::loader::unpin_all(&pin_dir);
    result
}

pub fn program_time(
    report: &mut BenchReport,
    scales: &[usize],
    repetitions: usize,
) -> anyhow::Result<()> {
    for &scale in scales {
        let services = kube_proxy::synthetic(scale, ENDPOINTS_PER_SERVICE);
        let iptables_input = kube_proxy::iptables_restore_input(&services, CLUSTER_CIDR);
        let nft_input = kube_proxy::nft_input(&services, CLUSTER_CIDR);
        let (mut kaya, mut iptables, mut nft) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repetitions {
            kaya.push(kaya_program_ms(&services)?);
            let netns = TestNetns::create("bench-kp")?;
            iptables.push(
                kube_proxy::apply_iptables(&netns.path(), &iptables_input)?.as_secs_f64() * 1e3,
            );
            nft.push(kube_proxy::apply_nft(&netns.path(), &nft_input)?.as_secs_f64() * 1e3);
        }
        let scale = scale as u64;
        report.push_scaled(
            "program_time_ms",
            scale,
            "kaya-socket-lb",
            median(&mut kaya),
            "ms",
            false,
        );
        report.push_scaled(
            "program_time_ms",
            scale,
            "kube-proxy-iptables",
            median(&mut iptables),
            "ms",
            false,
        );
        report.push_scaled(
            "program_time_ms",
            scale,
            "kube-proxy-nftables",
            median(&mut nft),
            "ms",
            false,
        );
    }
    Ok(())
}

/// The service every connection case measures: created last, so kube-proxy's iptables
/// rules walk past every other service to reach it.
const TARGET_VIP: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
const TARGET_PORT: u16 = 80;
const APP_PORT: u16 = 8080;
/// kube-proxy's `clusterCIDR` for the baseline: pod sources are not masqueraded.
const POD_CIDR: &str = "10.244.0.0/16";

pub struct ConnectionPlan {
    pub millis: u64,
    pub repetitions: usize,
    pub iperf_seconds: u32,
}

/// `scale` services for kube-proxy: `scale - 1` synthetic ones, then the target (its HTTP
/// port and its iperf3 port) in front of the real server pod.
fn rendered(scale: usize, server: Ipv4Addr) -> Vec<RenderedService> {
    let mut services = kube_proxy::synthetic(scale - 1, ENDPOINTS_PER_SERVICE);
    for (name, port, target) in [
        ("http", TARGET_PORT, APP_PORT),
        ("iperf", IPERF_PORT, IPERF_PORT),
    ] {
        services.push(RenderedService {
            name: format!("bench/target:{name}"),
            vip: TARGET_VIP,
            port,
            protocol: "tcp",
            endpoints: vec![(server, target)],
        });
    }
    services
}

/// The same services as kaya's manifests (Service + EndpointSlice per service).
fn manifests(scale: usize, server: Ipv4Addr) -> String {
    let mut out = String::new();
    for (index, service) in rendered(scale, server).iter().enumerate() {
        if service.name.starts_with("bench/target:") {
            continue;
        }
        let _ = std::fmt::Write::write_fmt(
            &mut out,
            format_args!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{index}, namespace: bench}}\nspec: {{clusterIP: {}, ports: [{{name: http, port: 80}}]}}\n\
                 ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{index}-1, namespace: bench, labels: {{kubernetes.io/service-name: s{index}}}}}\naddressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints: [{}]\n",
                service.vip,
                (service.endpoints.iter())
                    .map(|(ip, _)| format!("{{addresses: [{ip}]}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    out + &format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: target, namespace: bench}}\nspec:\n  clusterIP: {TARGET_VIP}\n  ports: [{{name: http, port: {TARGET_PORT}}}, {{name: iperf, port: {IPERF_PORT}}}]\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: target-1, namespace: bench, labels: {{kubernetes.io/service-name: target}}}}\naddressType: IPv4\nports: [{{name: http, port: {APP_PORT}}}, {{name: iperf, port: {IPERF_PORT}}}]\nendpoints: [{{addresses: [{server}]}}]\n"
    )
}

struct Rate {
    per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs kaya-probe's connection-rate loop in `netns` (and `cgroup`, for the socket hooks).
fn rate(
    netns: &TestNetns,
    cgroup: Option<&Path>,
    target: (Ipv4Addr, u16),
    millis: u64,
) -> anyhow::Result<Rate> {
    let target = format!("{}:{}", target.0, target.1);
    let args = ["rate", &target, &millis.to_string()];
    let mut command = probe_command(&netns.path(), cgroup, &args)?;
    let output = command.output().context("running kaya-probe rate")?;
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let field = |key: &str| -> anyhow::Result<f64> {
        (line.split_whitespace())
            .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("kaya-probe printed no {key}: {line:?}"))?
            .parse()
            .with_context(|| format!("kaya-probe {key}: {line:?}"))
    };
    anyhow::ensure!(field("failed")? == 0.0, "connections failed: {line}");
    Ok(Rate {
        per_s: field("per_s")?,
        p50_us: field("connect_p50_us")?,
        p99_us: field("connect_p99_us")?,
    })
}

/// One implementation's connection-rate run, for round-robin measurement.
type RateRun<'a> = Box<dyn FnMut(u64) -> anyhow::Result<Rate> + 'a>;

/// Runs every contender once to warm up, then `repetitions` rounds of each in turn (so
/// drift on a noisy machine hits all alike), and pushes their medians at `scale`.
fn round_robin(
    report: &mut BenchReport,
    plan: &ConnectionPlan,
    scale: usize,
    contenders: &mut [(&str, RateRun<'_>)],
) -> anyhow::Result<()> {
    for (name, run) in contenders.iter_mut() {
        run(plan.millis / 4).with_context(|| format!("{name} warm-up at {scale} services"))?;
    }
    let mut samples: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
        contenders.iter().map(|_| Default::default()).collect();
    for _ in 0..plan.repetitions {
        for ((name, run), (per_s, p50, p99)) in contenders.iter_mut().zip(&mut samples) {
            let rate = run(plan.millis).with_context(|| format!("{name} at {scale} services"))?;
            per_s.push(rate.per_s);
            p50.push(rate.p50_us);
            p99.push(rate.p99_us);
        }
    }
    let scale = scale as u64;
    for ((name, _), (per_s, p50, p99)) in contenders.iter().zip(&mut samples) {
        report.push_scaled(
            "short_conn_rate",
            scale,
            name,
            median(per_s),
            "conn/s",
            true,
        );
        report.push_scaled("connect_p50_us", scale, name, median(p50), "us", false);
        report.push_scaled("connect_p99_us", scale, name, median(p99), "us", false);
    }
    Ok(())
}

/// Throughput of each contender in turn, `repetitions` rounds, medians pushed.
type ThroughputRun<'a> = Box<dyn FnMut() -> anyhow::Result<f64> + 'a>;

fn throughput_round_robin(
    report: &mut BenchReport,
    plan: &ConnectionPlan,
    contenders: &mut [(&str, ThroughputRun<'_>)],
) -> anyhow::Result<()> {
    let mut samples: Vec<Vec<f64>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..plan.repetitions {
        for ((name, run), gbps) in contenders.iter_mut().zip(&mut samples) {
            gbps.push(run().with_context(|| format!("{name} throughput"))?);
        }
    }
    for ((name, _), gbps) in contenders.iter().zip(&mut samples) {
        report.push("vip_throughput_gbps", name, median(gbps), "Gbit/s", true);
    }
    Ok(())
}

/// Client on node 1, server on node 2, for every implementation: kaya with socket LB and
/// with the tc path only, the backend addressed directly, and kube-proxy's two modes on a
/// flannel-style VXLAN baseline. Both topologies exist at once so runs can alternate.
pub fn connections(
    report: &mut BenchReport,
    plan: &ConnectionPlan,
    scales: &[usize],
) -> anyhow::Result<()> {
    eprintln!("kaya: 2 nodes; flannel-style baseline: 2 nodes; client on node-1, server on node-2");
    let mut kaya = Cluster::new(2)?;
    kaya.add_pod(0, "client")?;
    kaya.add_pod(1, "server")?;
    let mut base = BaselineCluster::new(2, Interconnect::FlannelVxlan)?;
    base.add_pod(0, "client")?;
    base.add_pod(1, "server")?;
    let (client, server) = (&kaya.pods[0], &kaya.pods[1]);
    let (base_client, base_server) = (&base.pods[0], &base.pods[1]);
    let base_node = base.nodes[0].netns.path();
    let _app = OneShotServer::start(&server.netns.path(), APP_PORT)?;
    let _base_app = OneShotServer::start(&base_server.netns.path(), APP_PORT)?;
    let cgroup = kaya.cgroup.join(&kaya.nodes[0].instance);
    let vip = (TARGET_VIP, TARGET_PORT);
    let to_vip = (TARGET_VIP, IPERF_PORT);
    let iperf = |client: &TestNetns, cgroup: Option<&Path>, server: &TestNetns, target| {
        iperf_gbps_via(client, cgroup, server, target, plan.iperf_seconds)
    };
    let base_iperf = || iperf(&base_client.netns, None, &base_server.netns, to_vip);
    for (index, &scale) in scales.iter().enumerate() {
        eprintln!("{scale} services: programming kaya and kube-proxy-iptables");
        let services = rendered(scale, base_server.ip);
        kaya.apply_manifest("bench.yaml", &manifests(scale, server.ip))?;
        let target = FrontendAddr {
            address: TARGET_VIP,
            port: TARGET_PORT,
            protocol: Protocol::Tcp,
        };
        // Both agents done, so neither competes for the CPU during the runs.
        kaya.wait_frontend(&target, 1)?;
        kube_proxy::apply_iptables(
            &base_node,
            &kube_proxy::iptables_restore_input(&services, POD_CIDR),
        )?;
        eprintln!("{scale} services: connection rates");
        let mut contenders: Vec<(&str, RateRun<'_>)> = vec![
            (
                "kaya-socket-lb",
                Box::new(|ms| rate(&client.netns, Some(&cgroup), vip, ms)),
            ),
            ("kaya-tc", Box::new(|ms| rate(&client.netns, None, vip, ms))),
            (
                "direct",
                Box::new(|ms| rate(&client.netns, None, (server.ip, APP_PORT), ms)),
            ),
            (
                "kube-proxy-iptables",
                Box::new(|ms| rate(&base_client.netns, None, vip, ms)),
            ),
        ];
        round_robin(report, plan, scale, &mut contenders)?;
        if index == 0 {
            let mut contenders: Vec<(&str, ThroughputRun<'_>)> = vec![
                (
                    "kaya-socket-lb",
                    Box::new(|| iperf(&client.netns, Some(&cgroup), &server.netns, to_vip)),
                ),
                (
                    "kaya-tc",
                    Box::new(|| iperf(&client.netns, None, &server.netns, to_vip)),
                ),
                (
                    "direct",
                    Box::new(|| iperf(&client.netns, None, &server.netns, (server.ip, IPERF_PORT))),
                ),
                ("kube-proxy-iptables", Box::new(base_iperf)),
            ];
            throughput_round_robin(report, plan, &mut contenders)?;
        }
        eprintln!("{scale} services: kube-proxy-nftables");
        kube_proxy::apply_iptables(
            &base_node,
            &kube_proxy::iptables_restore_input(&[], POD_CIDR),
        )?;
        kube_proxy::apply_nft(&base_node, &kube_proxy::nft_input(&services, POD_CIDR))?;
        let mut contenders: Vec<(&str, RateRun<'_>)> = vec![(
            "kube-proxy-nftables",
            Box::new(|ms| rate(&base_client.netns, None, vip, ms)),
        )];
        round_robin(report, plan, scale, &mut contenders)?;
        if index == 0 {
            let mut contenders: Vec<(&str, ThroughputRun<'_>)> =
                vec![("kube-proxy-nftables", Box::new(base_iperf))];
            throughput_round_robin(report, plan, &mut contenders)?;
        }
        kube_proxy::remove_nft(&base_node)?;
    }
    Ok(())
}
