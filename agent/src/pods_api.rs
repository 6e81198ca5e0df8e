//! The pods half of the agent's local API: pod status, logs (tail, since, previous) and exec,
//! answered from the kubelet's published view, the shims' reports and the CRI log files.
use crate::images::store::ImageStore;
use crate::pods::cri_log;
use crate::pods::manager::{PodView, SharedPods, runtime_status};
use crate::pods::node_status::{HostFacts, node_json};
use crate::pods::pod_status::pod_json;
use crate::runtime::protocol::{ShimRequest, ShimResponse, call};
use kaya_agent_api::{Request, Response};
use std::time::Duration;

pub struct PodsApi {
    pub pods: SharedPods,
    pub node_name: String,
    pub node_ip: String,
    pub image_root: std::path::PathBuf,
}

fn error(message: String) -> Response {
    Response::Error { message }
}

impl PodsApi {
    /// Answers pod requests; `None` for requests that are not about pods.
    pub fn handle(&self, request: &Request) -> Option<Response> {
        Some(match request {
            Request::ListPods => Response::Pods { pods: self.list() },
            Request::NodeStatus => {
                let images = ImageStore::open(&self.image_root)
                    .and_then(|store| store.images())
                    .map(|images| images.into_values().collect::<Vec<_>>())
                    .unwrap_or_default();
                let host = HostFacts::gather(&self.image_root);
                Response::Node {
                    node: node_json(&self.node_name, &self.node_ip, &host, &images),
                }
            }
            Request::PodLogs {
                namespace,
                name,
                container,
                tail,
                since_time,
                previous,
                timestamps,
            } => match self.find(namespace, name) {
                Err(message) => error(message),
                Ok(view) => self.logs(
                    &view,
                    container.as_deref(),
                    *tail,
                    since_time.as_deref(),
                    *previous,
                    *timestamps,
                ),
            },
            Request::PodExec {
                namespace,
                name,
                container,
                command,
            } => match self.find(namespace, name) {
                Err(message) => error(message),
                Ok(view) => exec(&view, container.as_deref(), command),
            },
            _ => return None,
        })
    }

    fn list(&self) -> Vec<serde_json::Value> {
        let views: Vec<PodView> = self
            .pods
            .lock()
            .map(|pods| pods.values().cloned().collect())
            .unwrap_or_default();
        views
            .iter()
            .map(|view| {
                let runtime = runtime_status(&view.dir);
                pod_json(
                    &view.pod,
                    &view.uid,
                    &self.node_name,
                    &self.node_ip,
                    &view.stage,
                    runtime.as_ref(),
                )
            })
            .collect()
    }

    fn find(&self, namespace: &str, name: &str) -> Result<PodView, String> {
        let pods = self
            .pods
            .lock()
            .map_err(|_| "pod table unavailable".to_string())?;
        pods.values()
            .find(|view| {
                view.pod.metadata.name.as_deref() == Some(name)
                    && view.pod.metadata.namespace.as_deref().unwrap_or("default") == namespace
            })
            .cloned()
            .ok_or_else(|| format!("pods \"{name}\" not found in namespace {namespace:?}"))
    }

    fn logs(
        &self,
        view: &PodView,
        container: Option<&str>,
        tail: Option<usize>,
        since_time: Option<&str>,
        previous: bool,
        timestamps: bool,
    ) -> Response {
        let container = match pick_container(view, container) {
            Ok(name) => name,
            Err(message) => return error(message),
        };
        let Some(runtime) = runtime_status(&view.dir) else {
            return error(format!(
                "container {container:?} in pod {:?} has not started",
                view.pod.metadata.name.as_deref().unwrap_or("")
            ));
        };
        let Some(status) = runtime
            .containers
            .iter()
            .chain(&runtime.init_containers)
            .find(|c| c.name == container)
        else {
            return error(format!("container {container:?} has no status yet"));
        };
        let run = if previous {
            match status.restart_count.checked_sub(1) {
                Some(run) => run,
                None => {
                    return error(format!(
                        "previous terminated container {container:?} not found"
                    ));
                }
            }
        } else {
            status.restart_count
        };
        let log_dir = view.dir.plan_log_dir().join(&container);
        let path = log_dir.join(format!("{run}.log"));
        let lines = match cri_log::read(&path, true) {
            Ok(lines) => lines,
            Err(read) => return error(format!("reading log of container {container:?}: {read}")),
        };
        let mut lines: Vec<String> = lines
            .into_iter()
            // RFC 3339 UTC timestamps of equal precision order as strings.
            .filter(|line| since_time.is_none_or(|since| line.time.as_str() >= since))
            .map(|line| {
                if timestamps {
                    format!("{} {}", line.time, line.text)
                } else {
                    line.text
                }
            })
            .collect();
        if let Some(tail) = tail {
            let skip = lines.len().saturating_sub(tail);
            lines.drain(..skip);
        }
        Response::Logs { lines }
    }
}

fn pick_container(view: &PodView, container: Option<&str>) -> Result<String, String> {
    let spec = view.pod.spec.as_ref().ok_or("pod has no spec")?;
    let names: Vec<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    match container {
        Some(name) if names.contains(&name) => Ok(name.to_string()),
        Some(name) => Err(format!(
            "container {name} is not valid for pod (choose one of: {})",
            names.join(", ")
        )),
        None if spec.containers.len() == 1 => Ok(spec.containers[0].name.clone()),
        None => Err(format!(
            "a container name must be specified, choose one of: {}",
            names.join(", ")
        )),
    }
}

fn exec(view: &PodView, container: Option<&str>, command: &[String]) -> Response {
    let container = match pick_container(view, container) {
        Ok(name) => name,
        Err(message) => return error(message),
    };
    if command.is_empty() {
        return error("exec needs a command".into());
    }
    let request = ShimRequest::Exec {
        container,
        command: command.to_vec(),
        timeout_ms: 60_000,
    };
    match call(&view.dir.socket(), &request, Duration::from_secs(65)) {
        Ok(ShimResponse::Exec {
            exit_code,
            stdout,
            stderr,
        }) => Response::Exec {
            exit_code,
            stdout,
            stderr,
        },
        Ok(ShimResponse::Error { message }) => error(message),
        Ok(ShimResponse::Ok) => error("unexpected answer from the pod's shim".into()),
        Err(failure) => error(failure.to_string()),
    }
}
