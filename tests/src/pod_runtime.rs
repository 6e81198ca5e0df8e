//! Runs pods through the real kaya-shim and libcontainer without an agent: a node state
//! directory, the busybox test image imported into an image store, plans built here, and
//! helpers to wait on status, read CRI logs, exec and stop. Everything is torn down on drop.
use crate::binaries::workspace_binary;
use crate::oci_image::{LayerCompression, TestImage};
use anyhow::{Context, bail};
use kaya_agent::images::digest::Digest;
use kaya_agent::images::oci_layout;
use kaya_agent::images::store::{ImageRecord, ImageStore};
use kaya_agent::pods::cri_log;
use kaya_agent::pods::resources::CgroupLimits;
use kaya_agent::pods::restart::RestartPolicy;
use kaya_agent::runtime::plan::{
    ActionPlan, ContainerPlan, MountPlan, PodDir, PodPlan, ProbePlan, SecurityPlan,
};
use kaya_agent::runtime::protocol::{ShimRequest, ShimResponse, call};
use kaya_agent::runtime::spec::DEFAULT_CAPABILITIES;
use kaya_agent::runtime::status::{ContainerState, PodRuntimeStatus};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct TestNode {
    pub root: tempfile::TempDir,
    pub store: ImageStore,
    pub image: ImageRecord,
}

impl TestNode {
    pub fn new() -> anyhow::Result<TestNode> {
        let root = tempfile::Builder::new().prefix("kaya-node-").tempdir()?;
        let store = ImageStore::open(&root.path().join("images"))?;
        let tarball = root.path().join("busybox.tar");
        TestImage::busybox(LayerCompression::Gzip)?
            .write_layout(&tarball, "kaya.test/busybox:v1")?;
        let image = oci_layout::import(&store, &tarball, None)?.remove(0);
        Ok(TestNode { root, store, image })
    }

    pub fn layers(&self) -> Vec<PathBuf> {
        self.image
            .layers
            .iter()
            .map(|layer| {
                self.store
                    .layer_path(&Digest::parse(layer).expect("stored digest"))
            })
            .collect()
    }

    /// A container of the busybox image running `args`, with Kubernetes' defaults.
    pub fn container(&self, name: &str, args: &[&str]) -> ContainerPlan {
        ContainerPlan {
            name: name.to_string(),
            image: self.image.name.clone(),
            image_id: self.image.image_id(),
            layers: self.layers(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
            env: vec![PATH_ENV.to_string()],
            pod_ip_env: vec![],
            working_dir: String::new(),
            uid: 0,
            gid: 0,
            limits: CgroupLimits {
                cpu_shares: 2,
                cpu_quota_us: None,
                memory_limit: None,
            },
            security: SecurityPlan {
                capabilities: DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect(),
                ..SecurityPlan::default()
            },
            mounts: vec![],
            probes: Default::default(),
            lifecycle: Default::default(),
        }
    }

    pub fn pod(&self, name: &str, containers: Vec<ContainerPlan>) -> PodPlan {
        let uid = format!("{:016x}", rand::random::<u64>());
        PodPlan {
            log_dir: self
                .root
                .path()
                .join("logs")
                .join(format!("default_{name}_{uid}")),
            cgroup: format!("kubepods/besteffort/pod{uid}"),
            uid,
            namespace: "default".into(),
            name: name.into(),
            hostname: name.into(),
            host_network: true,
            restart_policy: RestartPolicy::Always,
            termination_grace_secs: 5,
            pod_limits: CgroupLimits {
                cpu_shares: 2,
                cpu_quota_us: None,
                memory_limit: None,
            },
            network: None,
            init_containers: vec![],
            containers,
        }
    }

    pub fn start(&self, plan: PodPlan) -> anyhow::Result<RunningPod> {
        let dir = PodDir::new(self.root.path(), &plan.uid);
        std::fs::create_dir_all(&dir.root)?;
        std::fs::write(dir.plan(), serde_json::to_vec(&plan)?)?;
        let log = std::fs::File::create(dir.shim_log())?;
        let child = Command::new(workspace_binary("kaya-shim"))
            .arg(&dir.root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting kaya-shim")?;
        Ok(RunningPod { dir, child, plan })
    }
}

pub struct RunningPod {
    pub dir: PodDir,
    pub child: Child,
    pub plan: PodPlan,
}

impl RunningPod {
    pub fn status(&self) -> Option<PodRuntimeStatus> {
        PodRuntimeStatus::read(&self.dir.status()).ok()
    }

    /// Polls status until `done` holds; the error shows the last status and the shim's log.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&PodRuntimeStatus) -> bool,
    ) -> anyhow::Result<PodRuntimeStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status();
            if let Some(status) = &status
                && done(status)
            {
                return Ok(status.clone());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.shim_log()).unwrap_or_default();
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last status {status:#?}; shim log: {log}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn container<'a>(
        status: &'a PodRuntimeStatus,
        name: &str,
    ) -> &'a kaya_agent::runtime::status::ContainerStatus {
        status
            .containers
            .iter()
            .chain(&status.init_containers)
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no container {name} in {status:#?}"))
    }

    /// The text a container's run (`restart`) wrote, one line per record.
    pub fn logs(&self, container: &str, restart: u32) -> String {
        let path = self
            .plan
            .log_dir
            .join(container)
            .join(format!("{restart}.log"));
        cri_log::read(&path, false)
            .map(|lines| lines.into_iter().map(|line| line.text + "\n").collect())
            .unwrap_or_default()
    }

    pub fn exec(&self, container: &str, command: &[&str]) -> anyhow::Result<ShimResponse> {
        let request = ShimRequest::Exec {
            container: container.to_string(),
            command: command.iter().map(|c| c.to_string()).collect(),
            timeout_ms: 10_000,
        };
        Ok(call(&self.dir.socket(), &request, Duration::from_secs(15))?)
    }

    pub fn shim_log(&self) -> String {
        std::fs::read_to_string(self.dir.shim_log()).unwrap_or_default()
    }

    /// Asks the shim to stop the pod and waits for it to exit.
    pub fn stop(
        &mut self,
        grace_secs: Option<u64>,
        timeout: Duration,
    ) -> anyhow::Result<PodRuntimeStatus> {
        call(
            &self.dir.socket(),
            &ShimRequest::Stop { grace_secs },
            Duration::from_secs(5),
        )?;
        let deadline = Instant::now() + timeout;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("shim did not finish within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.status().context("no final status")
    }
}

impl Drop for RunningPod {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = call(
                &self.dir.socket(),
                &ShimRequest::Stop {
                    grace_secs: Some(0),
                },
                Duration::from_secs(2),
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An exec probe checking every `period_ms`, failing after `failures` misses.
pub fn exec_probe(command: &[&str], period_ms: u64, failures: u32) -> ProbePlan {
    ProbePlan {
        action: ActionPlan::Exec {
            command: command.iter().map(|c| c.to_string()).collect(),
        },
        initial_delay_ms: 0,
        period_ms,
        timeout_ms: 2_000,
        success_threshold: 1,
        failure_threshold: failures,
    }
}

/// A host directory mounted read-write at `destination` (an emptyDir).
pub fn shared_dir(node: &TestNode, name: &str, destination: &str) -> MountPlan {
    let source = node.root.path().join("volumes").join(name);
    std::fs::create_dir_all(&source).expect("volume directory");
    MountPlan {
        source,
        destination: destination.to_string(),
        read_only: false,
        tmpfs_size: None,
    }
}

pub fn exec_output(response: ShimResponse) -> (i32, String) {
    match response {
        ShimResponse::Exec {
            exit_code, stdout, ..
        } => (exit_code, stdout),
        other => panic!("exec failed: {other:?}"),
    }
}

pub fn running(state: &ContainerState) -> bool {
    matches!(state, ContainerState::Running { .. })
}
