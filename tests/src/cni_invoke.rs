//! Invokes one CNI plugin binary inside a node's network namespace, as a runtime on that node
//! would: CNI_* environment, the network config on stdin, the result or error on stdout.
use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::netns::enter_on_exec;

pub struct Invocation<'a> {
    pub plugin: &'a Path,
    /// Directory the plugin looks up delegated plugins in (CNI_PATH).
    pub cni_path: &'a Path,
    pub command: &'a str,
    pub container_id: &'a str,
    pub pod_netns: &'a Path,
    pub ifname: &'a str,
}

/// A plugin that exited non-zero, with the error object it printed.
#[derive(Debug, thiserror::Error)]
#[error("cni plugin failed with code {code}: {msg} (stdout {stdout:?}, stderr {stderr:?})")]
pub struct PluginFailure {
    pub code: u64,
    pub msg: String,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the plugin with `config` as stdin; `Ok(Value::Null)` when it succeeds silently.
pub fn invoke(
    node_netns: &Path,
    call: &Invocation<'_>,
    config: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    invoke_raw(node_netns, call, &serde_json::to_vec(config)?)
}

/// Like `invoke`, with arbitrary stdin bytes (for malformed-input tests).
pub fn invoke_raw(
    node_netns: &Path,
    call: &Invocation<'_>,
    stdin: &[u8],
) -> anyhow::Result<serde_json::Value> {
    let mut process = Command::new(call.plugin);
    process
        .env_clear()
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.pod_netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", call.cni_path)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    enter_on_exec(&mut process, node_netns)?;
    let mut child = process
        .spawn()
        .with_context(|| format!("spawning {}", call.plugin.display()))?;
    child
        .stdin
        .take()
        .context("plugin stdin")?
        .write_all(stdin)?;
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        let error: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_default();
        return Err(PluginFailure {
            code: error["code"].as_u64().unwrap_or(0),
            msg: error["msg"].as_str().unwrap_or_default().to_owned(),
            stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
        .into());
    }
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&stdout).with_context(|| format!("plugin printed {stdout:?}"))
}

/// The CNI error code of a failed invocation (0 when the failure was not the plugin's).
pub fn failure_code(err: &anyhow::Error) -> u64 {
    err.downcast_ref::<PluginFailure>().map_or(0, |f| f.code)
}
