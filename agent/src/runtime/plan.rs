//! What the agent hands a pod's shim: everything resolved (images to layer directories,
//! volumes to host paths, env to strings), so the shim needs no Kubernetes types or API.
use crate::pods::resources::CgroupLimits;
use crate::pods::restart::RestartPolicy;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodPlan {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's hostname (its name, or spec.hostname).
    pub hostname: String,
    pub host_network: bool,
    pub restart_policy: RestartPolicy,
    pub termination_grace_secs: u64,
    /// The pod cgroup, relative to each hierarchy root (`kubepods/burstable/pod<uid>`).
    pub cgroup: String,
    pub pod_limits: CgroupLimits,
    /// Absent for hostNetwork pods.
    pub network: Option<NetworkPlan>,
    /// `/var/log/pods/<namespace>_<name>_<uid>`.
    pub log_dir: PathBuf,
    pub init_containers: Vec<ContainerPlan>,
    pub containers: Vec<ContainerPlan>,
}

/// How the shim calls the CNI plugin (CNI 1.1, as a container runtime does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkPlan {
    /// The network configuration list (`*.conflist`) the agent wrote for this node.
    pub conflist: serde_json::Value,
    /// Where plugin binaries are looked up (CNI_PATH).
    pub plugin_dirs: Vec<PathBuf>,
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// Image layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Variables set to the pod IP once the sandbox has one (downward API status.podIP).
    #[serde(default)]
    pub pod_ip_env: Vec<String>,
    pub working_dir: String,
    pub uid: u32,
    pub gid: u32,
    pub limits: CgroupLimits,
    pub security: SecurityPlan,
    pub mounts: Vec<MountPlan>,
    #[serde(default)]
    pub probes: ProbesPlan,
    #[serde(default)]
    pub lifecycle: LifecyclePlan,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityPlan {
    pub privileged: bool,
    pub read_only_root: bool,
    pub no_new_privileges: bool,
    /// `CAP_*` names the container keeps.
    pub capabilities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPlan {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
    /// tmpfs (emptyDir medium Memory) instead of a bind mount; the size limit in bytes.
    #[serde(default)]
    pub tmpfs_size: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionPlan {
    Exec {
        command: Vec<String>,
    },
    /// From the node to the pod IP (or `host`), as kubelet does.
    HttpGet {
        host: Option<String>,
        port: u16,
        path: String,
        scheme: String,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        host: Option<String>,
        port: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePlan {
    pub action: ActionPlan,
    pub initial_delay_ms: u64,
    pub period_ms: u64,
    pub timeout_ms: u64,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbesPlan {
    pub startup: Option<ProbePlan>,
    pub liveness: Option<ProbePlan>,
    pub readiness: Option<ProbePlan>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePlan {
    pub post_start: Option<ActionPlan>,
    pub pre_stop: Option<ActionPlan>,
}

/// Where a pod's runtime state lives: one directory per pod under the agent's state root.
#[derive(Debug, Clone)]
pub struct PodDir {
    pub root: PathBuf,
}

impl PodDir {
    pub fn new(state_root: &std::path::Path, uid: &str) -> PodDir {
        PodDir {
            root: state_root.join("pods").join(uid),
        }
    }
    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    pub fn pid(&self) -> PathBuf {
        self.root.join("shim.pid")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("shim.sock")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.root.join("shim.log")
    }
    pub fn namespace(&self, kind: &str) -> PathBuf {
        self.root.join("ns").join(kind)
    }
    pub fn cni_result(&self) -> PathBuf {
        self.root.join("cni-result.json")
    }
    /// libcontainer's state directory for this pod's containers.
    pub fn runtime_root(&self) -> PathBuf {
        self.root.join("runtime")
    }
    pub fn container(&self, name: &str) -> PathBuf {
        self.root.join("containers").join(name)
    }
    /// The log directory recorded in the pod's plan.
    pub fn plan_log_dir(&self) -> PathBuf {
        std::fs::read(self.plan())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<PodPlan>(&bytes).ok())
            .map(|plan| plan.log_dir)
            .unwrap_or_else(|| self.root.join("logs"))
    }
    pub fn etc_file(&self, name: &str) -> PathBuf {
        self.root.join("etc").join(name)
    }
}
