//! Pod objects as the API shows them: the spec as given plus a status (phase, conditions,
//! container statuses, IPs, start time) from the shim's report or the kubelet's own stage.
use crate::runtime::status::{ContainerState, ContainerStatus, Phase, PodRuntimeStatus};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// Where a pod is before (or instead of) running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The spec is invalid; nothing runs.
    Rejected { message: String },
    /// Images or config are not ready; per container (name, reason, message).
    Preparing {
        waiting: Vec<(String, String, String)>,
    },
    /// A shim runs the pod; its status.json tells the rest.
    Running,
}

fn state_json(state: &ContainerState) -> Value {
    match state {
        ContainerState::Waiting { reason, message } => {
            json!({"waiting": {"reason": reason, "message": message}})
        }
        ContainerState::Running { started_at } => json!({"running": {"startedAt": started_at}}),
        ContainerState::Terminated {
            exit_code,
            signal,
            reason,
            message,
            started_at,
            finished_at,
        } => {
            let mut terminated = json!({"exitCode": exit_code, "reason": reason, "startedAt": started_at, "finishedAt": finished_at});
            if !message.is_empty() {
                terminated["message"] = json!(message);
            }
            if let Some(signal) = signal {
                terminated["signal"] = json!(signal);
            }
            json!({"terminated": terminated})
        }
    }
}

fn container_json(status: &ContainerStatus) -> Value {
    let mut value = json!({
        "name": status.name,
        "image": status.image,
        "imageID": status.image_id,
        "ready": status.ready,
        "started": status.started,
        "restartCount": status.restart_count,
        "state": state_json(&status.state),
        "lastState": status.last_state.as_ref().map(state_json).unwrap_or_else(|| json!({})),
    });
    if let Some(id) = &status.container_id {
        value["containerID"] = json!(id);
    }
    value
}

fn condition(kind: &str, ok: bool, reason: Option<&str>) -> Value {
    let mut value = json!({"type": kind, "status": if ok { "True" } else { "False" }});
    if let (false, Some(reason)) = (ok, reason) {
        value["reason"] = json!(reason);
    }
    value
}

/// The pod with its status, as `kubectl get pod -o json` would show it.
pub fn pod_json(
    pod: &Pod,
    uid: &str,
    node_name: &str,
    host_ip: &str,
    stage: &Stage,
    runtime: Option<&PodRuntimeStatus>,
) -> Value {
    let mut value = serde_json::to_value(pod).unwrap_or_else(|_| json!({}));
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Pod");
    value["metadata"]["uid"] = json!(uid);
    if value["metadata"]["namespace"].is_null() {
        value["metadata"]["namespace"] = json!("default");
    }
    value["spec"]["nodeName"] = json!(node_name);
    let spec = pod.spec.as_ref();
    let image = |name: &str| {
        spec.into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    let status = match (stage, runtime) {
        (Stage::Rejected { message }, _) => json!({
            "phase": "Failed",
            "reason": "Invalid",
            "message": message,
            "hostIP": host_ip,
            "conditions": [condition("PodScheduled", true, None)],
        }),
        (Stage::Running, Some(runtime)) => {
            let containers_ready =
                !runtime.containers.is_empty() && runtime.containers.iter().all(|c| c.ready);
            let mut status = json!({
                "phase": match runtime.phase { Phase::Pending => "Pending", Phase::Running => "Running", Phase::Succeeded => "Succeeded", Phase::Failed => "Failed" },
                "hostIP": host_ip,
                "hostIPs": [{"ip": host_ip}],
                "conditions": [
                    condition("PodScheduled", true, None),
                    condition("Initialized", runtime.initialized, Some("ContainersNotInitialized")),
                    condition("ContainersReady", containers_ready, Some("ContainersNotReady")),
                    condition("Ready", containers_ready, Some("ContainersNotReady")),
                ],
                "containerStatuses": runtime.containers.iter().map(container_json).collect::<Vec<_>>(),
                "initContainerStatuses": runtime.init_containers.iter().map(container_json).collect::<Vec<_>>(),
                "qosClass": Value::Null,
            });
            if let Some(ip) = runtime.pod_ips.first() {
                status["podIP"] = json!(ip);
                status["podIPs"] = json!(
                    runtime
                        .pod_ips
                        .iter()
                        .map(|ip| json!({"ip": ip}))
                        .collect::<Vec<_>>()
                );
            }
            if let Some(start) = &runtime.start_time {
                status["startTime"] = json!(start);
            }
            if let Some(error) = &runtime.sandbox_error {
                status["message"] = json!(error);
            }
            status
        }
        (Stage::Preparing { .. }, _) | (Stage::Running, None) => {
            let waiting = match stage {
                Stage::Preparing { waiting } => waiting.clone(),
                _ => vec![],
            };
            let statuses = |list: &[k8s_openapi::api::core::v1::Container]| -> Vec<Value> {
                list.iter()
                    .map(|c| {
                        let (reason, message) = waiting
                            .iter()
                            .find(|(name, _, _)| name == &c.name)
                            .map(|(_, reason, message)| (reason.clone(), message.clone()))
                            .unwrap_or_else(|| ("ContainerCreating".into(), String::new()));
                        let mut status = ContainerStatus::new(&c.name, &image(&c.name), "");
                        status.state = ContainerState::Waiting { reason, message };
                        container_json(&status)
                    })
                    .collect()
            };
            json!({
                "phase": "Pending",
                "hostIP": host_ip,
                "conditions": [
                    condition("PodScheduled", true, None),
                    condition("Initialized", false, Some("ContainersNotInitialized")),
                    condition("ContainersReady", false, Some("ContainersNotReady")),
                    condition("Ready", false, Some("ContainersNotReady")),
                ],
                "containerStatuses": statuses(spec.map(|s| s.containers.as_slice()).unwrap_or_default()),
                "initContainerStatuses": statuses(spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default()),
            })
        }
    };
    value["status"] = status;
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_yaml::from_str(
            "metadata: {name: web}\nspec:\n  containers: [{name: app, image: busybox}]",
        )
        .unwrap()
    }

    #[test]
    fn running_pods_report_conditions_and_containers() {
        let mut runtime = PodRuntimeStatus {
            phase: Phase::Running,
            initialized: true,
            pod_ips: vec!["10.1.0.4".into()],
            ..Default::default()
        };
        let mut app = ContainerStatus::new("app", "busybox", "busybox@sha256:1");
        app.state = ContainerState::Running {
            started_at: "2026-11-30T10:00:00Z".into(),
        };
        app.ready = true;
        app.container_id = Some("kaya://x".into());
        runtime.containers.push(app);
        let value = pod_json(
            &pod(),
            "u1",
            "n1",
            "10.0.0.1",
            &Stage::Running,
            Some(&runtime),
        );
        assert_eq!(value["status"]["phase"], "Running");
        assert_eq!(value["status"]["podIP"], "10.1.0.4");
        assert_eq!(
            value["status"]["conditions"][3],
            json!({"type": "Ready", "status": "True"})
        );
        assert_eq!(
            value["status"]["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-11-30T10:00:00Z"
        );
        assert_eq!(value["metadata"]["namespace"], "default");
        assert_eq!(value["spec"]["nodeName"], "n1");
    }

    #[test]
    fn preparing_and_rejected_pods_say_why() {
        let stage = Stage::Preparing {
            waiting: vec![(
                "app".into(),
                "ImagePullBackOff".into(),
                "back-off pulling".into(),
            )],
        };
        let value = pod_json(&pod(), "u1", "n1", "10.0.0.1", &stage, None);
        assert_eq!(value["status"]["phase"], "Pending");
        assert_eq!(
            value["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ImagePullBackOff"
        );
        let rejected = pod_json(
            &pod(),
            "u1",
            "n1",
            "10.0.0.1",
            &Stage::Rejected {
                message: "spec.x: bad".into(),
            },
            None,
        );
        assert_eq!(rejected["status"]["phase"], "Failed");
        assert_eq!(rejected["status"]["message"], "spec.x: bad");
    }
}
