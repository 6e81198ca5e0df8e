//! The `services` benchmark suite: the same services and endpoints programmed by kaya (the
//! plan plus ordered map writes into freshly loaded maps) and as kube-proxy's iptables and
//! nftables rules (loaded whole into a fresh namespace, as a kube-proxy restart does).
use kaya_agent::datapath::{Datapath, lb::LbMaps, lb::LbTable};
use kaya_agent::services::catalog::{EndpointDef, PortDef, ServiceDef, SliceDef};
use kaya_agent::services::{Catalog, NodeView, ObjectName, Protocol, plan};
use std::time::Instant;

use crate::bench::{BenchReport, median};
use crate::kube_proxy::{self, RenderedService};
use crate::netns::TestNetns;

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
