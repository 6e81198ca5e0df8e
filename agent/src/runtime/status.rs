//! What a shim reports about its pod (written atomically to `status.json` on every change),
//! in Kubernetes' own terms so the agent maps it straight onto PodStatus.
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: String,
    },
    Terminated {
        exit_code: i32,
        signal: Option<i32>,
        reason: String,
        message: String,
        started_at: String,
        finished_at: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// `kaya://<id>` of the current (or last) run.
    pub container_id: Option<String>,
    pub state: ContainerState,
    pub last_state: Option<ContainerState>,
    pub restart_count: u32,
    pub ready: bool,
    pub started: bool,
}

impl ContainerStatus {
    pub fn new(name: &str, image: &str, image_id: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            image: image.to_string(),
            image_id: image_id.to_string(),
            container_id: None,
            state: ContainerState::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodRuntimeStatus {
    pub phase: Phase,
    pub pod_ips: Vec<String>,
    pub start_time: Option<String>,
    /// Why the sandbox (namespaces, network) could not be made, if it could not.
    pub sandbox_error: Option<String>,
    pub initialized: bool,
    pub init_containers: Vec<ContainerStatus>,
    pub containers: Vec<ContainerStatus>,
    /// The pod is being stopped (preStop, SIGTERM, grace period).
    pub terminating: bool,
    /// Everything is stopped and torn down; the shim has exited.
    pub finished: bool,
    pub shim_pid: u32,
}

impl PodRuntimeStatus {
    pub fn read(path: &Path) -> std::io::Result<PodRuntimeStatus> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let temporary = path.with_extension("json.tmp");
        std::fs::write(
            &temporary,
            serde_json::to_vec(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&temporary, path)
    }

    /// Kubernetes' phase rules: Pending until every container has started once; Succeeded
    /// or Failed when all have terminated for good; Running otherwise.
    pub fn compute_phase(&self, restarts: bool) -> Phase {
        if !self.initialized || self.containers.iter().any(|c| c.container_id.is_none()) {
            return if self
                .init_containers
                .iter()
                .any(|c| failed_for_good(c, restarts))
            {
                Phase::Failed
            } else {
                Phase::Pending
            };
        }
        let all_terminated = self
            .containers
            .iter()
            .all(|c| matches!(c.state, ContainerState::Terminated { .. }));
        if all_terminated && !restarts {
            if self
                .containers
                .iter()
                .all(|c| matches!(c.state, ContainerState::Terminated { exit_code: 0, .. }))
            {
                return Phase::Succeeded;
            }
            return Phase::Failed;
        }
        Phase::Running
    }
}

fn failed_for_good(container: &ContainerStatus, restarts: bool) -> bool {
    !restarts
        && matches!(container.state, ContainerState::Terminated { exit_code, .. } if exit_code != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminated(code: i32) -> ContainerState {
        ContainerState::Terminated {
            exit_code: code,
            signal: None,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: String::new(),
            started_at: String::new(),
            finished_at: String::new(),
        }
    }

    #[test]
    fn phases_follow_kubernetes() {
        let mut status = PodRuntimeStatus::default();
        let mut app = ContainerStatus::new("app", "i", "i@x");
        status.containers.push(app.clone());
        assert_eq!(status.compute_phase(true), Phase::Pending);
        status.initialized = true;
        app.container_id = Some("kaya://1".into());
        app.state = ContainerState::Running {
            started_at: String::new(),
        };
        status.containers[0] = app.clone();
        assert_eq!(status.compute_phase(true), Phase::Running);
        status.containers[0].state = terminated(0);
        assert_eq!(status.compute_phase(false), Phase::Succeeded);
        status.containers[0].state = terminated(1);
        assert_eq!(status.compute_phase(false), Phase::Failed);
        assert_eq!(
            status.compute_phase(true),
            Phase::Running,
            "a restarting pod is Running"
        );

        let mut blocked = PodRuntimeStatus::default();
        let mut init = ContainerStatus::new("init", "i", "i@x");
        init.state = terminated(2);
        blocked.init_containers.push(init);
        blocked
            .containers
            .push(ContainerStatus::new("app", "i", "i@x"));
        assert_eq!(blocked.compute_phase(true), Phase::Pending);
        assert_eq!(blocked.compute_phase(false), Phase::Failed);
    }
}
