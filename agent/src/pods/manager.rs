//! The kubelet loop: keeps this node's pods in line with the static pod directory — new pods
//! are validated, their images pulled (with back-off) and volumes made, then handed to a
//! shim; removed or edited pods are stopped and cleaned up; shims that outlived an agent
//! restart are adopted, never duplicated.
use super::downward::PodFacts;
use super::env::ConfigError;
use super::planner::{NodeFacts, PlanInputs, PreparedImage, plan};
use super::pod_status::Stage;
use super::static_pods::StaticPodDir;
use super::validate::validate;
use super::volumes::{materialize, release};
use crate::images::digest::Digest;
use crate::images::distribution::Credentials;
use crate::images::pull::{PullError, PullPolicy, ensure_image};
use crate::images::reference::Reference;
use crate::images::store::{ImageStore, StoreError};
use crate::runtime::plan::{NetworkPlan, PodDir};
use crate::runtime::protocol::{ShimRequest, call};
use crate::runtime::status::PodRuntimeStatus;
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PULL_BACKOFF_START: Duration = Duration::from_secs(10);
const PULL_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Config problems (a ConfigMap not there yet) are retried at this pace.
const CONFIG_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("pod state directory {path:?}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub node_name: String,
    pub node_ip: String,
    pub static_pod_path: PathBuf,
    /// Pods live in `<state_dir>/pods/<uid>`.
    pub state_dir: PathBuf,
    pub log_root: PathBuf,
    pub image_root: PathBuf,
    pub shim_binary: PathBuf,
    pub network: Option<NetworkPlan>,
    /// A Docker config.json with registry credentials.
    pub registry_auth: Option<PathBuf>,
}

/// What the local API shows of one pod.
#[derive(Debug, Clone)]
pub struct PodView {
    pub uid: String,
    pub pod: Pod,
    pub stage: Stage,
    pub dir: PodDir,
}

pub type SharedPods = Arc<Mutex<BTreeMap<String, PodView>>>;

struct Managed {
    pod: Pod,
    stage: Stage,
    shim: Option<u32>,
    child: Option<Child>,
    next_try: Instant,
    pull_backoff: Option<Duration>,
    stopping: bool,
}

pub struct PodManager {
    config: ManagerConfig,
    store: ImageStore,
    source: StaticPodDir,
    pods: BTreeMap<String, Managed>,
    shared: SharedPods,
    ticks: u64,
}

/// A live kaya-shim with this pid (not a zombie, not a recycled pid of something else).
pub fn shim_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    matches!(state, Some(Some(state)) if state != 'Z' && state != 'X') && comm.trim() == "kaya-shim"
}

fn read_pid(dir: &PodDir) -> Option<u32> {
    std::fs::read_to_string(dir.pid()).ok()?.trim().parse().ok()
}

impl PodManager {
    pub fn new(config: ManagerConfig, shared: SharedPods) -> Result<PodManager, ManagerError> {
        let pods_dir = config.state_dir.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(|source| ManagerError::State {
            path: pods_dir.clone(),
            source,
        })?;
        let store = ImageStore::open(&config.image_root)?;
        let mut manager = PodManager {
            config,
            store,
            source: StaticPodDir::default(),
            pods: BTreeMap::new(),
            shared,
            ticks: 0,
        };
        manager.adopt();
        Ok(manager)
    }

    fn dir(&self, uid: &str) -> PodDir {
        PodDir::new(&self.config.state_dir, uid)
    }

    /// Takes over pods whose shims survived an agent restart.
    fn adopt(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.config.state_dir.join("pods")) else {
            return;
        };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            let dir = self.dir(&uid);
            let pod: Option<Pod> = std::fs::read(dir.root.join("pod.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let (Some(pod), Some(pid)) = (pod, read_pid(&dir)) else {
                // Half-made or finished: nothing runs there any more.
                release(&dir.root.join("volumes"));
                let _ = std::fs::remove_dir_all(&dir.root);
                continue;
            };
            let alive = shim_alive(pid);
            if alive {
                tracing::info!(%uid, pid, "adopted running pod");
            } else {
                // The shim died with the node's previous agent; a fresh one starts next round.
                tracing::warn!(%uid, pid, "pod shim is gone; restarting it");
            }
            self.pods.insert(
                uid,
                Managed {
                    pod,
                    stage: Stage::Running,
                    shim: alive.then_some(pid),
                    child: None,
                    next_try: Instant::now(),
                    pull_backoff: None,
                    stopping: false,
                },
            );
        }
    }

    /// One round: read the desired pods, converge, publish what the API shows.
    pub fn tick(&mut self) {
        self.ticks += 1;
        let scan = self
            .source
            .scan(&self.config.static_pod_path, &self.config.node_name);
        for error in &scan.errors {
            tracing::warn!(%error, "static pod manifest");
        }
        let desired: BTreeMap<String, Pod> =
            scan.pods.into_iter().map(|p| (p.uid, p.pod)).collect();
        let now = Instant::now();
        // Pods no longer wanted (removed, or edited into a new uid) stop.
        for (uid, managed) in self.pods.iter_mut() {
            if !desired.contains_key(uid) && !managed.stopping {
                managed.stopping = true;
                if managed.shim.is_some() {
                    let socket = PodDir::new(&self.config.state_dir, uid).socket();
                    if let Err(error) = call(
                        &socket,
                        &ShimRequest::Stop { grace_secs: None },
                        Duration::from_secs(5),
                    ) {
                        tracing::warn!(%uid, %error, "asking the shim to stop");
                    }
                }
            }
        }
        self.reap_children();
        let finished: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, m)| m.stopping && m.shim.is_none())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in finished {
            self.pods.remove(&uid);
            let dir = self.dir(&uid);
            release(&dir.root.join("volumes"));
            let _ = std::fs::remove_dir_all(&dir.root);
            tracing::info!(%uid, "pod removed");
        }
        for (uid, pod) in &desired {
            self.pods.entry(uid.clone()).or_insert_with(|| Managed {
                pod: pod.clone(),
                stage: Stage::Preparing { waiting: vec![] },
                shim: None,
                child: None,
                next_try: now,
                pull_backoff: None,
                stopping: false,
            });
        }
        let due: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, m)| {
                !m.stopping
                    && m.shim.is_none()
                    && !matches!(m.stage, Stage::Rejected { .. })
                    && m.next_try <= now
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in due {
            self.start(&uid, &scan.objects);
        }
        if self.ticks.is_multiple_of(300) {
            self.collect_images();
        }
        self.publish();
    }

    /// Notices shims that exited: our own children are reaped; adopted ones (children of the
    /// previous agent) are checked by pid. A pod still wanted gets a new shim next round.
    fn reap_children(&mut self) {
        for managed in self.pods.values_mut() {
            let exited = match &mut managed.child {
                Some(child) => matches!(child.try_wait(), Ok(Some(_))),
                None => managed.shim.is_some_and(|pid| !shim_alive(pid)),
            };
            if exited {
                managed.child = None;
                managed.shim = None;
            }
        }
    }

    fn credentials(&self, image: &str) -> Option<Credentials> {
        let path = self.config.registry_auth.as_ref()?;
        let json = std::fs::read(path).ok()?;
        Credentials::from_docker_config(&json, &Reference::parse(image).ok()?.registry)
    }

    fn start(&mut self, uid: &str, objects: &super::objects::PodObjects) {
        let Some(managed) = self.pods.get(uid) else {
            return;
        };
        let pod = managed.pod.clone();
        let valid = match validate(&pod) {
            Ok(valid) => valid,
            Err(error) => {
                tracing::warn!(%uid, %error, "pod rejected");
                if let Some(managed) = self.pods.get_mut(uid) {
                    managed.stage = Stage::Rejected {
                        message: error.to_string(),
                    };
                }
                return;
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let containers: Vec<_> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .cloned()
            .collect();
        let mut images = BTreeMap::new();
        let mut waiting = Vec::new();
        for container in &containers {
            let image = container.image.clone().unwrap_or_default();
            let policy = Reference::parse(&image)
                .ok()
                .and_then(|reference| {
                    PullPolicy::resolve(container.image_pull_policy.as_deref(), &reference)
                })
                .unwrap_or(PullPolicy::IfNotPresent);
            match ensure_image(&self.store, &image, policy, self.credentials(&image)).and_then(
                |record| {
                    let config = self.store.run_config(&record)?;
                    let layers = record
                        .layers
                        .iter()
                        .filter_map(|layer| Digest::parse(layer).ok())
                        .map(|layer| self.store.layer_path(&layer))
                        .collect();
                    Ok::<_, PullError>(PreparedImage {
                        record,
                        config,
                        layers,
                    })
                },
            ) {
                Ok(prepared) => {
                    images.insert(container.name.clone(), prepared);
                }
                Err(error) => waiting.push((
                    container.name.clone(),
                    error.reason().to_string(),
                    error.to_string(),
                )),
            }
        }
        let managed = self.pods.get_mut(uid).expect("present above");
        if !waiting.is_empty() {
            // As kubelet: the first failure says ErrImagePull, retries while backing off say
            // ImagePullBackOff; the wait doubles from 10 s to 5 minutes.
            let backoff = managed
                .pull_backoff
                .map_or(PULL_BACKOFF_START, |b| (b * 2).min(PULL_BACKOFF_MAX));
            if managed.pull_backoff.is_some() {
                for (_, reason, message) in &mut waiting {
                    if reason == "ErrImagePull" {
                        *reason = "ImagePullBackOff".into();
                        *message = format!("Back-off pulling image: {message}");
                    }
                }
            }
            managed.pull_backoff = Some(backoff);
            managed.next_try = Instant::now() + backoff;
            managed.stage = Stage::Preparing { waiting };
            return;
        }
        managed.pull_backoff = None;
        let dir = PodDir::new(&self.config.state_dir, uid);
        let facts = PodFacts {
            uid,
            node_name: &self.config.node_name,
            host_ip: &self.config.node_ip,
        };
        let node = NodeFacts {
            name: &self.config.node_name,
            ip: &self.config.node_ip,
            network: self.config.network.clone(),
            log_root: &self.config.log_root,
        };
        let made = std::fs::create_dir_all(&dir.root)
            .map_err(|error| {
                ConfigError::new("metadata", format!("{}: {error}", dir.root.display()))
            })
            .and_then(|()| materialize(&pod, &facts, objects, &dir.root.join("volumes")))
            .and_then(|volumes| {
                let inputs = PlanInputs {
                    uid,
                    node: &node,
                    images: &images,
                    volumes: &volumes,
                    objects,
                };
                plan(&pod, &valid, &inputs)
            });
        let plan = match made {
            Ok(plan) => plan,
            Err(error) => {
                let waiting = containers
                    .iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            "CreateContainerConfigError".to_string(),
                            error.to_string(),
                        )
                    })
                    .collect();
                managed.stage = Stage::Preparing { waiting };
                managed.next_try = Instant::now() + CONFIG_RETRY;
                return;
            }
        };
        match spawn_shim(&self.config.shim_binary, &dir, &pod, &plan) {
            Ok(child) => {
                tracing::info!(%uid, pod = %valid.name, pid = child.id(), "pod started");
                managed.shim = Some(child.id());
                managed.child = Some(child);
                managed.stage = Stage::Running;
            }
            Err(error) => {
                tracing::warn!(%uid, %error, "starting the pod shim");
                managed.next_try = Instant::now() + CONFIG_RETRY;
            }
        }
    }

    fn collect_images(&self) {
        let in_use: BTreeSet<String> = self
            .pods
            .values()
            .filter_map(|m| m.pod.spec.as_ref())
            .flat_map(|spec| {
                spec.containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
            })
            .filter_map(|c| Reference::parse(c.image.as_deref()?).ok())
            .map(|reference| reference.to_string())
            .collect();
        match self.store.collect_garbage(&in_use) {
            Ok(report) if report.images > 0 => tracing::info!(?report, "unused images removed"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "image garbage collection"),
        }
    }

    fn publish(&self) {
        let views = self
            .pods
            .iter()
            .map(|(uid, m)| {
                (
                    uid.clone(),
                    PodView {
                        uid: uid.clone(),
                        pod: m.pod.clone(),
                        stage: m.stage.clone(),
                        dir: self.dir(uid),
                    },
                )
            })
            .collect();
        if let Ok(mut shared) = self.shared.lock() {
            *shared = views;
        }
    }

    /// Shim pids by pod uid (for tests and `kaya pods`).
    pub fn shims(&self) -> BTreeMap<String, Option<u32>> {
        self.pods
            .iter()
            .map(|(uid, m)| (uid.clone(), m.shim))
            .collect()
    }
}

/// Writes the plan and starts the pod's shim in its own session, so it outlives the agent.
fn spawn_shim(
    binary: &Path,
    dir: &PodDir,
    pod: &Pod,
    plan: &crate::runtime::plan::PodPlan,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(&dir.root)?;
    std::fs::write(dir.plan(), serde_json::to_vec(plan)?)?;
    std::fs::write(dir.root.join("pod.json"), serde_json::to_vec(pod)?)?;
    let _ = std::fs::remove_file(dir.status());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.shim_log())?;
    let mut command = Command::new(binary);
    command
        .arg(&dir.root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    command.spawn()
}

/// Reads a pod's live status from its shim's report.
pub fn runtime_status(dir: &PodDir) -> Option<PodRuntimeStatus> {
    PodRuntimeStatus::read(&dir.status()).ok()
}
