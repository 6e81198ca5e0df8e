//! The CNI network configuration the agent writes for kaya-cni: the node's pod CIDR,
//! gateway, MTU and where to reach this agent.
use serde_json::json;
use std::path::{Path, PathBuf};

use crate::{config::AgentConfig, instance::Instance};

pub const CONFLIST_NAME: &str = "10-kaya.conflist";
pub const NETWORK_NAME: &str = "kaya";

#[derive(Debug, thiserror::Error)]
#[error("writing cni config {path}: {source}")]
pub struct CniConfError {
    path: PathBuf,
    source: std::io::Error,
}

pub fn render(config: &AgentConfig, instance: &Instance) -> serde_json::Value {
    json!({
        "cniVersion": "1.1.0",
        "name": NETWORK_NAME,
        "plugins": [{
            "type": "kaya-cni",
            "agentSocket": instance.socket_path(),
            "mtu": config.pod_mtu(),
            "hostIfPrefix": instance.host_veth_prefix(),
            "ipam": {
                "subnet": config.pod_cidr.to_string(),
                "gateway": config.gateway().to_string(),
                "dataDir": instance.ipam_dir(),
            }
        }]
    })
}

pub fn write(dir: &Path, conflist: &serde_json::Value) -> Result<PathBuf, CniConfError> {
    let path = dir.join(CONFLIST_NAME);
    let err = |source| CniConfError {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(conflist).expect("json value serializes"),
    )
    .map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_carries_subnet_gateway_mtu_and_socket() {
        let config = AgentConfig::from_yaml(
            "instance: n1\nnodeName: a\nnodeIP: 192.168.50.1\npodCIDR: 10.244.1.0/24\nclusterCIDR: 10.244.0.0/16\n",
        )
        .unwrap();
        let instance = Instance::new("n1", Path::new("/run/kaya"), Path::new("/sys/fs/bpf"));
        let conf = render(&config, &instance);
        let plugin = &conf["plugins"][0];
        assert_eq!(plugin["type"], "kaya-cni");
        assert_eq!(plugin["mtu"], 1450);
        assert_eq!(plugin["ipam"]["gateway"], "10.244.1.1");
        assert_eq!(plugin["agentSocket"], "/run/kaya/n1/agent.sock");
        assert_eq!(plugin["hostIfPrefix"], "kyn1");
    }
}
