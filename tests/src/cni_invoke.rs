//! Invokes one CNI plugin binary inside a node's network namespace, as a runtime on that node
//! would: CNI_* environment, the network config on stdin, the result or error on stdout.
use anyhow::{Context, bail};
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

/// Runs the plugin; `Ok(Value::Null)` when it succeeds with no output (DEL, CHECK).
pub fn invoke(
    node_netns: &Path,
    call: &Invocation<'_>,
    config: &serde_json::Value,
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
        .write_all(&serde_json::to_vec(config)?)?;
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{} {} failed: {stdout} {}",
            call.plugin.display(),
            call.command,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(&stdout).with_context(|| format!("plugin printed {stdout:?}"))
}
