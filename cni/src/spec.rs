//! The CNI specification's wire types: error codes and objects, versions, results.
use serde::Serialize;
use serde_json::{Value, json};

pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Well-known error codes of the CNI specification.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const CONTAINER_UNKNOWN: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    pub const PLUGIN_NOT_AVAILABLE: u32 = 50;
    /// Plugin-specific (100+): the address pool of the node is exhausted. Not 11: retrying
    /// does not help until a pod is deleted, and the runtime should say so plainly.
    pub const IPAM_EXHAUSTED: u32 = 100;
    /// Plugin-specific: the agent answered and refused the endpoint. Unlike an unreachable
    /// agent (11, try again later) this is a definite answer, and none of the well-known
    /// codes (2 unsupported field, 5 i/o, 7 invalid config) describes it.
    pub const AGENT_REFUSED: u32 = 101;
}

/// A CNI error object; printed on stdout with a non-zero exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("cni error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut value = serde_json::to_value(self).expect("error object serializes");
        value["cniVersion"] = json!(cni_version);
        value
    }
}

pub fn check_version(version: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&version) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("cniVersion {version:?} is not supported"),
        )
        .with_details(format!("supported: {}", SUPPORTED_VERSIONS.join(", "))))
    }
}

pub fn version_result(cni_version: &str) -> Value {
    json!({"cniVersion": cni_version, "supportedVersions": SUPPORTED_VERSIONS})
}

/// What kaya-cni adds to a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plumbed {
    pub host_ifname: String,
    pub host_mac: String,
    pub pod_ifname: String,
    pub pod_mac: String,
    pub netns: String,
    /// `<ip>/32`: the result states what is configured on the pod interface. The pod has no
    /// on-link subnet; everything, its node's other pods included, goes through the gateway,
    /// which the datapath answers for on the host veth.
    pub address: String,
    pub gateway: String,
}

/// Builds the result in `cni_version`, appending to `prev` (a chained plugin's result) when
/// given: interfaces, ips and routes are kept and ours come after, indices adjusted.
pub fn build_result(cni_version: &str, prev: Option<&Value>, plumbed: &Plumbed) -> Value {
    let list = |key: &str| -> Vec<Value> {
        prev.and_then(|p| p.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = list("interfaces");
    let mut ips = list("ips");
    let mut routes = list("routes");
    let pod_index = interfaces.len() + 1;
    interfaces.push(json!({"name": plumbed.host_ifname, "mac": plumbed.host_mac}));
    interfaces.push(
        json!({"name": plumbed.pod_ifname, "mac": plumbed.pod_mac, "sandbox": plumbed.netns}),
    );
    let mut ip =
        json!({"address": plumbed.address, "gateway": plumbed.gateway, "interface": pod_index});
    if cni_version.starts_with("0.") {
        ip["version"] = json!("4");
    }
    ips.push(ip);
    routes.push(json!({"dst": "0.0.0.0/0", "gw": plumbed.gateway}));
    let dns = prev
        .and_then(|p| p.get("dns"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "cniVersion": cni_version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": dns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plumbed() -> Plumbed {
        Plumbed {
            host_ifname: "kyn1deadbeef".into(),
            host_mac: "02:00:00:00:00:01".into(),
            pod_ifname: "eth0".into(),
            pod_mac: "02:00:00:00:00:02".into(),
            netns: "/var/run/netns/p".into(),
            address: "10.244.1.5/32".into(),
            gateway: "10.244.1.1".into(),
        }
    }

    #[test]
    fn versions_are_negotiated() {
        assert!(check_version("1.1.0").is_ok());
        assert!(check_version("0.4.0").is_ok());
        let err = check_version("2.0.0").unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
        assert!(err.msg.contains("2.0.0"));
    }

    #[test]
    fn result_points_ips_at_the_pod_interface() {
        let result = build_result("1.1.0", None, &plumbed());
        assert_eq!(result["interfaces"][1]["sandbox"], "/var/run/netns/p");
        assert_eq!(result["ips"][0]["interface"], 1);
        assert_eq!(result["ips"][0]["address"], "10.244.1.5/32");
        assert!(result["ips"][0].get("version").is_none());
        assert_eq!(result["routes"][0]["gw"], "10.244.1.1");
    }

    #[test]
    fn chained_result_keeps_previous_entries() {
        let prev = json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "lo"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["10.96.0.10"]}
        });
        let result = build_result("1.1.0", Some(&prev), &plumbed());
        assert_eq!(result["interfaces"].as_array().unwrap().len(), 3);
        assert_eq!(result["ips"][1]["interface"], 2);
        assert_eq!(result["dns"]["nameservers"][0], "10.96.0.10");
    }

    #[test]
    fn old_versions_carry_ip_version() {
        let result = build_result("0.4.0", None, &plumbed());
        assert_eq!(result["ips"][0]["version"], "4");
    }

    #[test]
    fn errors_serialize_per_spec() {
        let err = CniError::new(code::TRY_AGAIN_LATER, "agent unreachable").with_details("socket");
        let value = err.to_json("1.1.0");
        assert_eq!(value["code"], 11);
        assert_eq!(value["msg"], "agent unreachable");
        assert_eq!(value["details"], "socket");
        assert_eq!(value["cniVersion"], "1.1.0");
    }
}
