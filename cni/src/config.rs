//! The plugin's network configuration (stdin) and runtime environment (CNI_* variables),
//! parsed and validated into `NetConf` and `Env`.
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::spec::{CniError, check_version, code};

#[derive(Debug, Clone)]
pub struct IpamConf {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub agent_socket: PathBuf,
    pub mtu: u32,
    pub host_if_prefix: String,
    pub ipam: IpamConf,
    pub prev_result: Option<Value>,
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ValidAttachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// Longest host interface prefix: the name is the prefix plus 8 hex digits, at most 15.
const MAX_PREFIX: usize = 7;

fn invalid(msg: String) -> CniError {
    CniError::new(code::INVALID_CONFIG, msg)
}

/// The JSON object at `path` ("" for the top level).
fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, CniError> {
    value.as_object().ok_or_else(|| {
        let what = if path.is_empty() {
            "network config"
        } else {
            path
        };
        invalid(format!("{what} must be a json object"))
    })
}

/// Field `key` of `object`, decoded; errors name the field by its full path, which serde's
/// own messages do not ("invalid value: integer `-1`, expected u32").
fn optional<T: DeserializeOwned>(
    object: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<T>, CniError> {
    let name = if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    };
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value)
            .map(Some)
            .map_err(|err| invalid(format!("network config field {name}: {err}"))),
    }
}

fn required<T: DeserializeOwned>(
    object: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<T, CniError> {
    optional(object, path, key)?.ok_or_else(|| {
        let name = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        };
        invalid(format!("network config field {name} is missing"))
    })
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        // Decode to a value first so a syntax error (code 6) is told apart from a
        // well-formed config with bad fields (code 7).
        let value: Value = serde_json::from_slice(stdin).map_err(|err| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("network config is not valid json: {err}"),
            )
        })?;
        let top = object(&value, "")?;
        // The version first: a config of an unknown version is code 1 whatever else it holds.
        let cni_version: String = required(top, "", "cniVersion")?;
        check_version(&cni_version)?;
        let ipam: Value = required(top, "", "ipam")?;
        let ipam = object(&ipam, "network config field ipam")?;
        let conf = NetConf {
            cni_version,
            name: required(top, "", "name")?,
            plugin_type: required(top, "", "type")?,
            agent_socket: required(top, "", "agentSocket")?,
            mtu: required(top, "", "mtu")?,
            host_if_prefix: required(top, "", "hostIfPrefix")?,
            ipam: IpamConf {
                subnet: required(ipam, "ipam", "subnet")?,
                gateway: required(ipam, "ipam", "gateway")?,
                data_dir: required(ipam, "ipam", "dataDir")?,
            },
            prev_result: optional(top, "", "prevResult")?,
            valid_attachments: optional(top, "", "cni.dev/valid-attachments")?,
        };
        conf.validate()?;
        Ok(conf)
    }

    fn validate(&self) -> Result<(), CniError> {
        let invalid = |msg: String| Err(invalid(msg));
        if self.name.is_empty() {
            return invalid("network config field name is empty".into());
        }
        if self.host_if_prefix.is_empty()
            || self.host_if_prefix.len() > MAX_PREFIX
            || !self
                .host_if_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        {
            return invalid(format!(
                "hostIfPrefix {:?} must be 1-{MAX_PREFIX} ascii letters or digits",
                self.host_if_prefix
            ));
        }
        if !(576..=9000).contains(&self.mtu) {
            return invalid(format!("mtu {} is outside 576..=9000", self.mtu));
        }
        if self.ipam.subnet.prefix_len() > 30 {
            return invalid(format!("ipam.subnet {} is too small", self.ipam.subnet));
        }
        if !self.ipam.subnet.contains(&self.ipam.gateway) {
            return invalid(format!(
                "ipam.gateway {} is outside ipam.subnet {}",
                self.ipam.gateway, self.ipam.subnet
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Status,
    Gc,
}

/// The CNI_* environment of one invocation.
#[derive(Debug, Clone)]
pub struct Env {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
}

impl Env {
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Env, CniError> {
        let missing = |name: &str| {
            CniError::new(
                code::INVALID_ENV,
                format!("environment variable {name} is not set"),
            )
        };
        let command = match get("CNI_COMMAND")
            .ok_or_else(|| missing("CNI_COMMAND"))?
            .as_str()
        {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_COMMAND {other:?} is not a cni command"),
                ));
            }
        };
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let var = |name: &str| -> Result<String, CniError> {
            match get(name) {
                Some(value) if !value.is_empty() => Ok(value),
                _ if needs_attachment => Err(missing(name)),
                _ => Ok(String::new()),
            }
        };
        let container_id = var("CNI_CONTAINERID")?;
        let ifname = var("CNI_IFNAME")?;
        // DEL may come after the namespace is gone; ADD and CHECK need it.
        let netns = match command {
            Command::Add | Command::Check => var("CNI_NETNS")?,
            _ => get("CNI_NETNS").unwrap_or_default(),
        };
        if needs_attachment && !valid_container_id(&container_id) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_CONTAINERID {container_id:?} must be an alphanumeric character \
                     followed by alphanumerics, '_', '.' or '-'"
                ),
            ));
        }
        if needs_attachment && !valid_ifname(&ifname) {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_IFNAME {ifname:?} is not a valid interface name"),
            ));
        }
        Ok(Env {
            command,
            container_id,
            netns,
            ifname,
        })
    }
}

/// The spec's container id grammar; it also keeps the id safe to store as one line of an
/// IPAM reservation file.
fn valid_container_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The spec's interface name rules (the kernel's): at most 15 bytes, not `.` or `..`, no
/// `/`, `:` or whitespace.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

/// Host-side veth name: the prefix and 8 hex digits of a stable hash of the attachment.
pub fn host_ifname(prefix: &str, container_id: &str, ifname: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{prefix}{hash:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"kaya","type":"kaya-cni",
        "agentSocket":"/run/kaya/n1/agent.sock","mtu":1450,"hostIfPrefix":"kyn1",
        "ipam":{"subnet":"10.244.1.0/24","gateway":"10.244.1.1","dataDir":"/run/kaya/n1/ipam"}}"#;

    #[test]
    fn parses_a_good_config() {
        let conf = NetConf::parse(CONF.as_bytes()).unwrap();
        assert_eq!(conf.mtu, 1450);
        assert_eq!(conf.ipam.gateway, Ipv4Addr::new(10, 244, 1, 1));
    }

    #[test]
    fn syntax_errors_are_decode_failures() {
        let err = NetConf::parse(b"{not json").unwrap_err();
        assert_eq!(err.code, code::DECODE_FAILURE);
    }

    #[test]
    fn bad_fields_are_invalid_config_naming_the_field() {
        let err =
            NetConf::parse(CONF.replace("\"mtu\":1450", "\"mtu\":10").as_bytes()).unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
        assert!(err.msg.contains("mtu"), "{}", err.msg);
        let err =
            NetConf::parse(CONF.replace("10.244.1.1\"", "10.9.9.9\"").as_bytes()).unwrap_err();
        assert!(err.msg.contains("gateway"), "{}", err.msg);
        let err = NetConf::parse(CONF.replace(",\"mtu\":1450", "").as_bytes()).unwrap_err();
        assert!(err.msg.contains("mtu"), "{}", err.msg);
        let err = NetConf::parse(CONF.replace("1450", "-1").as_bytes()).unwrap_err();
        assert!(err.msg.contains("field mtu"), "{}", err.msg);
        let err = NetConf::parse(CONF.replace("10.244.1.0/24", "banana").as_bytes()).unwrap_err();
        assert!(err.msg.contains("field ipam.subnet"), "{}", err.msg);
        let err = NetConf::parse(br#"{"cniVersion":"1.1.0","ipam":3}"#).unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
        let err = NetConf::parse(b"[]").unwrap_err();
        assert_eq!(err.code, code::INVALID_CONFIG);
        assert!(err.msg.contains("json object"), "{}", err.msg);
        let err =
            NetConf::parse(CONF.replace("\"kyn1\"", "\"kyn1-too-long\"").as_bytes()).unwrap_err();
        assert!(err.msg.contains("hostIfPrefix"), "{}", err.msg);
    }

    #[test]
    fn unsupported_version_is_code_1() {
        let err = NetConf::parse(CONF.replace("1.1.0", "9.0.0").as_bytes()).unwrap_err();
        assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
    }

    #[test]
    fn env_requires_attachment_for_add() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let err = Env::from_vars(vars(&[("CNI_COMMAND", "ADD")])).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("CNI_CONTAINERID"));
        let env = Env::from_vars(vars(&[("CNI_COMMAND", "VERSION")])).unwrap();
        assert_eq!(env.command, Command::Version);
        let env = Env::from_vars(vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap();
        assert_eq!(env.netns, "");
        let err = Env::from_vars(vars(&[("CNI_COMMAND", "FROB")])).unwrap_err();
        assert!(err.msg.contains("FROB"));
        let err = Env::from_vars(vars(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "-bad\nid"),
            ("CNI_NETNS", "/var/run/netns/p"),
            ("CNI_IFNAME", "eth0"),
        ]))
        .unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.contains("CNI_CONTAINERID"), "{}", err.msg);
        for ifname in ["..", "eth:0", "a-name-longer-than-15"] {
            let vars = move |name: &str| match name {
                "CNI_COMMAND" => Some("ADD".to_owned()),
                "CNI_CONTAINERID" => Some("c1".to_owned()),
                "CNI_NETNS" => Some("/var/run/netns/p".to_owned()),
                "CNI_IFNAME" => Some(ifname.to_owned()),
                _ => None,
            };
            let err = Env::from_vars(vars).unwrap_err();
            assert!(err.msg.contains("CNI_IFNAME"), "{}", err.msg);
        }
    }

    #[test]
    fn host_ifnames_are_stable_and_short() {
        let a = host_ifname("kyn1", "abc", "eth0");
        assert_eq!(a, host_ifname("kyn1", "abc", "eth0"));
        assert_ne!(a, host_ifname("kyn1", "abc", "eth1"));
        assert!(a.len() <= 15);
        assert!(a.starts_with("kyn1"));
    }
}
