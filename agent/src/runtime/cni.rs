//! Calls the node's CNI plugins for a pod sandbox the way libcni does: ADD through the list
//! in order (each plugin gets the previous result), DEL in reverse with the cached result.
use super::plan::NetworkPlan;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cni conflist has no plugins")]
    NoPlugins,
    #[error("cni plugin {plugin:?} not found in {dirs:?}")]
    NotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("cni {command} {plugin}: {source}")]
    Spawn {
        command: &'static str,
        plugin: String,
        source: std::io::Error,
    },
    #[error("cni {command} {plugin} failed (code {code}): {message}")]
    Plugin {
        command: &'static str,
        plugin: String,
        code: u64,
        message: String,
    },
    #[error("cni {command} {plugin}: output is not a result: {source}")]
    Output {
        command: &'static str,
        plugin: String,
        source: serde_json::Error,
    },
}

/// The sandbox being attached: the container id CNI sees, its netns, pod identity for CNI_ARGS.
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    pub namespace: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
}

pub fn add(network: &NetworkPlan, attachment: &Attachment<'_>) -> Result<Value, CniError> {
    let mut result: Option<Value> = None;
    for plugin in plugins(network)? {
        result = Some(run(network, "ADD", plugin, attachment, result.as_ref())?);
    }
    Ok(result.unwrap_or(Value::Null))
}

pub fn del(
    network: &NetworkPlan,
    attachment: &Attachment<'_>,
    cached: Option<&Value>,
) -> Result<(), CniError> {
    for plugin in plugins(network)?.iter().rev() {
        run(network, "DEL", plugin, attachment, cached)?;
    }
    Ok(())
}

/// The pod's IPv4 addresses from a CNI result (`ips[].address`, prefix removed).
pub fn pod_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|address| address.split('/').next().unwrap_or(address).to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn plugins(network: &NetworkPlan) -> Result<&Vec<Value>, CniError> {
    network.conflist["plugins"]
        .as_array()
        .filter(|list| !list.is_empty())
        .ok_or(CniError::NoPlugins)
}

fn run(
    network: &NetworkPlan,
    command: &'static str,
    plugin: &Value,
    attachment: &Attachment<'_>,
    previous: Option<&Value>,
) -> Result<Value, CniError> {
    let name = plugin["type"].as_str().unwrap_or_default().to_string();
    let path = network
        .plugin_dirs
        .iter()
        .map(|dir| dir.join(&name))
        .find(|path| !name.is_empty() && path.exists())
        .ok_or_else(|| CniError::NotFound {
            plugin: name.clone(),
            dirs: network.plugin_dirs.clone(),
        })?;
    let mut config = plugin.clone();
    config["name"] = network.conflist["name"].clone();
    config["cniVersion"] = network.conflist["cniVersion"].clone();
    if let Some(previous) = previous {
        config["prevResult"] = previous.clone();
    }
    let spawn_error = |source| CniError::Spawn {
        command,
        plugin: name.clone(),
        source,
    };
    let cni_path = std::env::join_paths(&network.plugin_dirs).unwrap_or_default();
    let mut child = Command::new(&path)
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", attachment.container_id)
        .env("CNI_NETNS", attachment.netns)
        .env("CNI_IFNAME", &network.interface)
        .env("CNI_PATH", cni_path)
        .env(
            "CNI_ARGS",
            format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                attachment.namespace, attachment.pod_name, attachment.container_id, attachment.pod_uid
            ),
        )
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&serde_json::to_vec(&config).unwrap_or_default())
            .map_err(spawn_error)?;
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let error: Value = serde_json::from_str(&stdout).unwrap_or_else(|_| json!({}));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = error["msg"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{stdout}{stderr}").trim().to_string());
        let details = error["details"]
            .as_str()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(CniError::Plugin {
            command,
            plugin: name,
            code: error["code"].as_u64().unwrap_or(0),
            message: format!("{message}{details}"),
        });
    }
    if stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&stdout).map_err(|source| CniError::Output {
        command,
        plugin: name,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pod_ips_from_a_result() {
        let result = json!({"ips": [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64"}]});
        assert_eq!(pod_ips(&result), ["10.1.0.5", "fd00::5"]);
        assert!(pod_ips(&Value::Null).is_empty());
    }

    #[test]
    fn missing_plugins_are_named() {
        let network = NetworkPlan {
            conflist: json!({"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "absent-plugin"}]}),
            plugin_dirs: vec![PathBuf::from("/nonexistent")],
            interface: "eth0".into(),
        };
        let attachment = Attachment {
            container_id: "c",
            netns: Path::new("/x"),
            namespace: "d",
            pod_name: "p",
            pod_uid: "u",
        };
        let error = add(&network, &attachment).unwrap_err().to_string();
        assert!(
            error.contains("absent-plugin") && error.contains("/nonexistent"),
            "{error}"
        );
        let empty = NetworkPlan {
            conflist: json!({"plugins": []}),
            ..network
        };
        assert!(matches!(add(&empty, &attachment), Err(CniError::NoPlugins)));
    }
}
