//! Baseline topologies for side-by-side benchmarks, built the way their projects build them:
//! Debian's bridge + host-local CNI plugins for pods, and between nodes either plain routes
//! (no overlay) or a flannel-style kernel VXLAN (`flannel.1` with per-node route, permanent
//! neighbour and FDB entries, as flannel's vxlan backend programs them).
use anyhow::Context;
use ipnet::Ipv4Net;
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cni_invoke::{Invocation, invoke};
use crate::netns::{self, TestNetns};
use crate::underlay;

const DEBIAN_CNI_DIR: &str = "/usr/lib/cni";
const FLANNEL_DEVICE: &str = "flannel.1";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interconnect {
    /// Pod CIDR routes via the other node's underlay address.
    Routed,
    /// flannel's vxlan backend.
    FlannelVxlan,
}

pub struct BaselineNode {
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub netns: TestNetns,
}

pub struct BaselinePod {
    pub node: usize,
    pub ip: Ipv4Addr,
    pub netns: TestNetns,
}

pub struct BaselineCluster {
    tag: String,
    interconnect: Interconnect,
    ipam_dir: PathBuf,
    pub nodes: Vec<BaselineNode>,
    pub pods: Vec<BaselinePod>,
    underlay: TestNetns,
}

fn write_sysctl(netns: &TestNetns, key: &str, value: &str) -> anyhow::Result<()> {
    let (key, value) = (key.to_owned(), value.to_owned());
    netns.run(move || std::fs::write(Path::new("/proc/sys").join(&key), &value))??;
    Ok(())
}

impl BaselineCluster {
    pub fn new(count: usize, interconnect: Interconnect) -> anyhow::Result<Self> {
        let tag = netns::unique_tag();
        let underlay = underlay::create(&format!("{tag}-bul"))?;
        let ipam_dir = std::env::temp_dir().join(format!("kaya-baseline-{tag}"));
        let mut cluster = BaselineCluster {
            tag,
            interconnect,
            ipam_dir,
            nodes: Vec::new(),
            pods: Vec::new(),
            underlay,
        };
        for index in 0..count {
            let ip = Ipv4Addr::new(192, 168, 60, index as u8 + 1);
            let netns = underlay::plug_node(
                &cluster.underlay,
                &format!("{}-node{}", cluster.tag, index + 1),
                &format!("b{}", index + 1),
                ip,
            )?;
            write_sysctl(&netns, "net/ipv4/ip_forward", "1")?;
            cluster.nodes.push(BaselineNode {
                ip,
                pod_cidr: format!("10.244.{}.0/24", index + 1).parse()?,
                netns,
            });
        }
        match interconnect {
            Interconnect::Routed => cluster.route_pod_cidrs()?,
            Interconnect::FlannelVxlan => cluster.flannel_vxlan()?,
        }
        Ok(cluster)
    }

    fn route_pod_cidrs(&self) -> anyhow::Result<()> {
        for node in &self.nodes {
            for peer in self.nodes.iter().filter(|p| p.ip != node.ip) {
                node.netns.ip(&[
                    "route",
                    "add",
                    &peer.pod_cidr.to_string(),
                    "via",
                    &peer.ip.to_string(),
                ])?;
            }
        }
        Ok(())
    }

    fn flannel_vxlan(&self) -> anyhow::Result<()> {
        let mut macs = Vec::new();
        for node in &self.nodes {
            let ip = node.ip.to_string();
            node.netns.ip(&[
                "link",
                "add",
                FLANNEL_DEVICE,
                "type",
                "vxlan",
                "id",
                "1",
                "local",
                &ip,
                "dev",
                "eth0",
                "dstport",
                "8472",
                "nolearning",
            ])?;
            node.netns
                .ip(&["link", "set", FLANNEL_DEVICE, "mtu", "1450", "up"])?;
            node.netns.ip(&[
                "addr",
                "add",
                &format!("{}/32", node.pod_cidr.network()),
                "dev",
                FLANNEL_DEVICE,
            ])?;
            let show = node.netns.ip(&["-o", "link", "show", FLANNEL_DEVICE])?;
            let mac = show
                .split_whitespace()
                .skip_while(|w| *w != "link/ether")
                .nth(1)
                .context("flannel.1 has no MAC")?
                .to_owned();
            macs.push(mac);
        }
        for node in &self.nodes {
            for (peer, mac) in self
                .nodes
                .iter()
                .zip(&macs)
                .filter(|(p, _)| p.ip != node.ip)
            {
                let gateway = peer.pod_cidr.network().to_string();
                node.netns.ip(&[
                    "route",
                    "add",
                    &peer.pod_cidr.to_string(),
                    "via",
                    &gateway,
                    "dev",
                    FLANNEL_DEVICE,
                    "onlink",
                ])?;
                node.netns.ip(&[
                    "neigh",
                    "add",
                    &gateway,
                    "lladdr",
                    mac,
                    "dev",
                    FLANNEL_DEVICE,
                    "nud",
                    "permanent",
                ])?;
                let status = std::process::Command::new("bridge")
                    .args([
                        "-n",
                        node.netns.name(),
                        "fdb",
                        "append",
                        mac,
                        "dev",
                        FLANNEL_DEVICE,
                        "dst",
                    ])
                    .arg(peer.ip.to_string())
                    .status()?;
                anyhow::ensure!(status.success(), "bridge fdb append failed");
            }
        }
        Ok(())
    }

    fn mtu(&self) -> u32 {
        match self.interconnect {
            Interconnect::Routed => 1500,
            Interconnect::FlannelVxlan => 1450,
        }
    }

    /// A pod namespace on `node`, plumbed by Debian's bridge plugin with host-local IPAM.
    pub fn add_pod(&mut self, node: usize, name: &str) -> anyhow::Result<&BaselinePod> {
        let netns = TestNetns::create(&format!("{}-pod-{name}", self.tag))?;
        let ip = self.cni_add(node, name, &netns.path())?;
        self.pods.push(BaselinePod { node, ip, netns });
        Ok(self.pods.last().expect("just pushed"))
    }

    /// One bridge + host-local ADD; returns the pod address.
    pub fn cni_add(
        &self,
        node: usize,
        container_id: &str,
        pod_netns: &Path,
    ) -> anyhow::Result<Ipv4Addr> {
        let conf = json!({
            "cniVersion": "1.0.0",
            "name": "cbr0",
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "mtu": self.mtu(),
            "ipam": {
                "type": "host-local",
                "subnet": self.nodes[node].pod_cidr.to_string(),
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.ipam_dir.join(format!("node{node}")),
            }
        });
        let plugin = Path::new(DEBIAN_CNI_DIR).join("bridge");
        let call = Invocation {
            plugin: &plugin,
            cni_path: Path::new(DEBIAN_CNI_DIR),
            command: "ADD",
            container_id,
            pod_netns,
            ifname: "eth0",
        };
        let result = invoke(&self.nodes[node].netns.path(), &call, &conf)?;
        let address = result["ips"][0]["address"]
            .as_str()
            .context("bridge result has no address")?;
        Ok(address.parse::<Ipv4Net>()?.addr())
    }
}

impl Drop for BaselineCluster {
    fn drop(&mut self) {
        self.pods.clear();
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.ipam_dir);
    }
}
