//! Pods run by the cluster's agents (their kubelet role): static pod manifests per node, the
//! agent's pods API, and stopping every pod shim a node started when the cluster goes.
use crate::cluster::Cluster;
use anyhow::bail;
use kaya_agent::pods::manager::shim_alive;
use kaya_agent::runtime::plan::PodDir;
use kaya_agent::runtime::protocol::{ShimRequest, call};
use kaya_agent_api::{Request, Response};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Whether a Pod object (as the agent lists it) has condition Ready=True.
pub fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

impl Cluster {
    /// Node `index`'s static pod directory (kubelet's staticPodPath).
    pub fn static_pods_dir(&self, index: usize) -> PathBuf {
        self.nodes[index]
            .state_dir(&self.state_root)
            .join("static-pods")
    }

    pub fn write_static_pod(&self, index: usize, file: &str, yaml: &str) -> anyhow::Result<()> {
        let dir = self.static_pods_dir(index);
        let temporary = dir.join(format!(".{file}.tmp"));
        std::fs::write(&temporary, yaml)?;
        std::fs::rename(&temporary, dir.join(file))?;
        Ok(())
    }

    pub fn remove_static_pod(&self, index: usize, file: &str) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(
            self.static_pods_dir(index).join(file),
        )?)
    }

    pub fn agent_request(&self, index: usize, request: &Request) -> anyhow::Result<Response> {
        Ok(kaya_agent_api::call(
            &self.socket_path(index),
            request,
            Duration::from_secs(70),
        )?)
    }

    pub fn list_pods(&self, index: usize) -> anyhow::Result<Vec<Value>> {
        match self.agent_request(index, &Request::ListPods)? {
            Response::Pods { pods } => Ok(pods),
            other => bail!("ListPods: {other:?}"),
        }
    }

    /// Waits until pod `namespace/name` on node `index` satisfies `done`.
    pub fn wait_pod(
        &self,
        index: usize,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let pods = self.list_pods(index).unwrap_or_default();
            let pod = pods.into_iter().find(|pod| pod["metadata"]["name"] == name);
            if let Some(pod) = &pod
                && done(pod)
            {
                return Ok(pod.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name}: timed out after {timeout:?} waiting for {what}; last: {:#}\nagent log:\n{}",
                    pod.unwrap_or_default(),
                    self.nodes[index].agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn exec_in_pod(
        &self,
        index: usize,
        name: &str,
        container: Option<&str>,
        command: &[&str],
    ) -> anyhow::Result<(i32, String)> {
        let request = Request::PodExec {
            namespace: "default".into(),
            name: name.into(),
            container: container.map(str::to_string),
            command: command.iter().map(|c| c.to_string()).collect(),
        };
        match self.agent_request(index, &request)? {
            Response::Exec {
                exit_code, stdout, ..
            } => Ok((exit_code, stdout)),
            other => bail!("exec in {name}: {other:?}"),
        }
    }

    /// Pod directories of node `index` (one per pod the agent runs).
    pub fn pod_dirs(&self, index: usize) -> Vec<PodDir> {
        let pods = self.nodes[index].state_dir(&self.state_root).join("pods");
        let mut dirs: Vec<PodDir> = std::fs::read_dir(pods)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| PodDir { root: entry.path() })
            .collect();
        dirs.sort_by(|a, b| a.root.cmp(&b.root));
        dirs
    }

    /// Stops every pod shim of node `index`; see [`stop_shims`].
    pub fn stop_pods(&self, index: usize) {
        stop_shims(&self.nodes[index].state_dir(&self.state_root).join("pods"));
    }
}

/// Stops every pod shim under `pods_dir` (grace 0) and waits for them, killing any that do
/// not finish, then releases their volumes: shims run in their own sessions and outlive the
/// agent by design. Call it with the agent stopped, or the agent starts the shims again.
pub fn stop_shims(pods_dir: &Path) {
    let dirs: Vec<PodDir> = std::fs::read_dir(pods_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| PodDir { root: entry.path() })
        .collect();
    let shims: Vec<u32> = dirs
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.pid()).ok()?.trim().parse().ok())
        .filter(|pid| shim_alive(*pid))
        .collect();
    for dir in &dirs {
        let _ = call(
            &dir.socket(),
            &ShimRequest::Stop {
                grace_secs: Some(0),
            },
            Duration::from_secs(2),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for pid in &shims {
        while shim_alive(*pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if shim_alive(*pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    // Volumes (tmpfs for memory-backed emptyDirs) are the agent's to release.
    for dir in &dirs {
        kaya_agent::pods::volumes::release(&dir.root.join("volumes"));
    }
}
