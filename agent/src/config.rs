//! The agent's node configuration (standalone mode): from a YAML file or flags, validated.
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Another node of the cluster, as the overlay needs it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    pub name: String,
    #[serde(rename = "nodeIP")]
    pub node_ip: Ipv4Addr,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Short name that prefixes everything host-global this agent creates (1–5 of [a-z0-9]),
    /// so several agents can share a kernel in separate network namespaces.
    pub instance: String,
    pub node_name: String,
    /// This node's underlay address (the VXLAN source).
    #[serde(rename = "nodeIP")]
    pub node_ip: Ipv4Addr,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Ipv4Net,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Ipv4Net,
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// MTU of the underlay; pods and the overlay get this minus the VXLAN overhead.
    #[serde(default = "default_mtu")]
    pub underlay_mtu: u32,
    /// Root of the per-instance state directories.
    #[serde(default = "default_state_root")]
    pub state_root: PathBuf,
    /// Mount point of bpffs.
    #[serde(default = "default_bpffs")]
    pub bpffs: PathBuf,
    /// Emit a trace event per forwarding decision.
    #[serde(default)]
    pub trace: bool,
    #[serde(default)]
    pub services: ServicesConfig,
    /// `host:port` to serve Prometheus metrics on; off when absent.
    #[serde(default)]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// The kubelet role: pods run from a static pod directory.
    #[serde(default)]
    pub pods: PodsConfig,
}

/// Running pods (the kubelet role).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodsConfig {
    /// kubelet's staticPodPath: the Pods (and the ConfigMaps and Secrets they use) this node
    /// runs. No pods run when absent.
    #[serde(default)]
    pub static_pod_path: Option<PathBuf>,
    #[serde(default = "default_image_root")]
    pub image_root: PathBuf,
    #[serde(default = "default_log_root")]
    pub log_root: PathBuf,
    /// The kaya-shim binary; next to the agent's own binary when absent.
    #[serde(default)]
    pub shim_binary: Option<PathBuf>,
    /// Where CNI plugins are found (CNI_PATH); the agent's own directory comes first.
    #[serde(default = "default_cni_bin_dirs")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// A Docker config.json with registry credentials.
    #[serde(default)]
    pub registry_auth: Option<PathBuf>,
    /// How often the static pod directory is rescanned and pods converged.
    #[serde(default = "default_pods_poll_ms")]
    pub poll_ms: u64,
}

impl Default for PodsConfig {
    fn default() -> Self {
        PodsConfig {
            static_pod_path: None,
            image_root: default_image_root(),
            log_root: default_log_root(),
            shim_binary: None,
            cni_bin_dirs: default_cni_bin_dirs(),
            registry_auth: None,
            poll_ms: default_pods_poll_ms(),
        }
    }
}

fn default_image_root() -> PathBuf {
    PathBuf::from("/var/lib/kaya/images")
}
fn default_log_root() -> PathBuf {
    PathBuf::from("/var/log/pods")
}
fn default_cni_bin_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
}
fn default_pods_poll_ms() -> u64 {
    200
}

/// Service load balancing (the kube-proxy replacement).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicesConfig {
    /// Directory of Service/EndpointSlice manifests (standalone mode).
    #[serde(default = "default_manifests")]
    pub manifests: PathBuf,
    /// How often the manifest directory is rescanned.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Socket-level LB on the cgroup hooks; off leaves translation to the per-packet path.
    #[serde(default = "default_true", rename = "socketLB")]
    pub socket_lb: bool,
    /// cgroup v2 directory the socket programs attach to; the host's cgroup2 root if absent.
    #[serde(default)]
    pub cgroup_root: Option<PathBuf>,
    #[serde(default)]
    pub map_sizes: MapSizes,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            manifests: default_manifests(),
            poll_ms: default_poll_ms(),
            socket_lb: true,
            cgroup_root: None,
            map_sizes: MapSizes::default(),
        }
    }
}

/// Capacities of the service maps (applied when the maps are created; pinned maps keep
/// their size across restarts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MapSizes {
    pub services: u32,
    pub backends: u32,
    pub affinity: u32,
    pub conntrack: u32,
    pub sock_rev_nat: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        use kaya_ebpf_common::{ct::CT_MAX, lb};
        MapSizes {
            services: lb::SERVICES_MAX,
            backends: lb::BACKENDS_MAX,
            affinity: lb::AFFINITY_MAX,
            conntrack: CT_MAX,
            sock_rev_nat: lb::SOCK_REVNAT_MAX,
        }
    }
}

fn default_manifests() -> PathBuf {
    PathBuf::from("/etc/kaya/manifests")
}
/// A stat per manifest file per round; 50 ms keeps a policy change within the 100 ms
/// enforcement target.
fn default_poll_ms() -> u64 {
    50
}
fn default_true() -> bool {
    true
}

fn default_mtu() -> u32 {
    1500
}
fn default_state_root() -> PathBuf {
    PathBuf::from("/run/kaya")
}
fn default_bpffs() -> PathBuf {
    PathBuf::from("/sys/fs/bpf")
}

impl AgentConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|err| match err {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: AgentConfig =
            serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
                path: PathBuf::from("<inline>"),
                source,
            })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.instance.is_empty()
            || self.instance.len() > 5
            || !self
                .instance
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return invalid(format!(
                "instance {:?} must be 1-5 characters of [a-z0-9] (it prefixes device names)",
                self.instance
            ));
        }
        if self.node_name.is_empty() {
            return invalid("nodeName must not be empty".into());
        }
        if !self.cluster_cidr.contains(&self.pod_cidr) {
            return invalid(format!(
                "podCIDR {} is not inside clusterCIDR {}",
                self.pod_cidr, self.cluster_cidr
            ));
        }
        if self.pod_cidr.prefix_len() > 29 {
            return invalid(format!(
                "podCIDR {} is too small (at most /29)",
                self.pod_cidr
            ));
        }
        if self.underlay_mtu < 576 + kaya_ebpf_common::tunnel::VXLAN_OVERHEAD {
            return invalid(format!("underlayMtu {} is too small", self.underlay_mtu));
        }
        let sizes = &self.services.map_sizes;
        for (name, size) in [
            ("services", sizes.services),
            ("backends", sizes.backends),
            ("affinity", sizes.affinity),
            ("conntrack", sizes.conntrack),
            ("sockRevNat", sizes.sock_rev_nat),
        ] {
            if !(16..=16_777_216).contains(&size) {
                return invalid(format!(
                    "services.mapSizes.{name} {size} is outside 16-16777216"
                ));
            }
        }
        if !(10..=60_000).contains(&self.services.poll_ms) {
            return invalid(format!(
                "services.pollMs {} is outside 10-60000",
                self.services.poll_ms
            ));
        }
        for peer in &self.peers {
            if !self.cluster_cidr.contains(&peer.pod_cidr) {
                return invalid(format!(
                    "peer {}: podCIDR {} is not inside clusterCIDR {}",
                    peer.name, peer.pod_cidr, self.cluster_cidr
                ));
            }
            if peer.pod_cidr.contains(&self.pod_cidr.network())
                || self.pod_cidr.contains(&peer.pod_cidr.network())
            {
                return invalid(format!(
                    "peer {}: podCIDR {} overlaps this node's {}",
                    peer.name, peer.pod_cidr, self.pod_cidr
                ));
            }
            if peer.node_ip == self.node_ip {
                return invalid(format!("peer {} has this node's own nodeIP", peer.name));
            }
        }
        Ok(())
    }

    /// MTU for pod interfaces and the VXLAN device.
    pub fn pod_mtu(&self) -> u32 {
        self.underlay_mtu - kaya_ebpf_common::tunnel::VXLAN_OVERHEAD
    }

    /// The pods' gateway: the first address of the pod CIDR, held by the overlay device.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_cidr.network()) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
instance: n1
nodeName: node-1
nodeIP: 192.168.50.1
podCIDR: 10.244.1.0/24
clusterCIDR: 10.244.0.0/16
peers:
  - name: node-2
    nodeIP: 192.168.50.2
    podCIDR: 10.244.2.0/24
";

    #[test]
    fn parses_and_derives_gateway_and_mtu() {
        let config = AgentConfig::from_yaml(GOOD).unwrap();
        assert_eq!(config.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(config.pod_mtu(), 1450);
        assert_eq!(config.peers[0].name, "node-2");
    }

    #[test]
    fn rejects_long_instance_names() {
        let err =
            AgentConfig::from_yaml(&GOOD.replace("instance: n1", "instance: toolong")).unwrap_err();
        assert!(err.to_string().contains("instance"), "{err}");
    }

    #[test]
    fn rejects_overlapping_peer_cidr() {
        let err =
            AgentConfig::from_yaml(&GOOD.replace("10.244.2.0/24", "10.244.1.0/25")).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }

    #[test]
    fn rejects_pod_cidr_outside_cluster() {
        let err =
            AgentConfig::from_yaml(&GOOD.replace("podCIDR: 10.244.1.0/24", "podCIDR: 10.9.0.0/24"))
                .unwrap_err();
        assert!(err.to_string().contains("not inside"), "{err}");
    }

    #[test]
    fn rejects_unknown_fields_and_bad_addresses() {
        assert!(AgentConfig::from_yaml(&format!("{GOOD}bogus: 1\n")).is_err());
        let err = AgentConfig::from_yaml(&GOOD.replace("192.168.50.1", "300.1.1.1")).unwrap_err();
        assert!(err.to_string().contains("parsing"), "{err}");
    }
}
