//! ReplicaSets: keep `spec.replicas` active pods made from the template, deleting the least
//! useful ones first when there are too many, and report replicas, ready and available.
use std::time::Duration;

use serde_json::{Value, json};

use super::template::{self, controller_uid, pod_active, pod_available, pod_ready};
use super::{Controller, ObjectKey};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::status::ApiError;
use crate::api::watch::Change;

pub struct ReplicaSetController;

/// Most expendable first: unscheduled, then pending, then not ready, then the youngest.
fn deletion_rank(pod: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let scheduled = meta::str_field(pod, "/spec/nodeName").is_some_and(|node| !node.is_empty());
    let running = meta::str_field(pod, "/status/phase") == Some("Running");
    let created = meta::str_field(pod, "/metadata/creationTimestamp")
        .unwrap_or("")
        .to_owned();
    (
        u8::from(scheduled),
        u8::from(running),
        u8::from(pod_ready(pod)),
        std::cmp::Reverse(created),
    )
}

/// How many pods one pass creates at most (the rest follow on the next pass).
const BURST: i64 = 500;

impl Controller for ReplicaSetController {
    const NAME: &'static str = "replicaset";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        template::own_or_owner_key(change, "ReplicaSet", "Pod")
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        template::keys_of(api, "apps", "replicasets").await
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        let replicasets = template::resource("apps", "replicasets")?;
        let pods = template::resource("", "pods")?;
        let namespace = key.namespace.as_deref().unwrap_or("default");
        let Some(replicaset) =
            template::fetch_live(api, replicasets, Some(namespace), &key.name).await?
        else {
            return Ok(None);
        };
        let uid = meta::uid(&replicaset).to_owned();
        let (all, _) = api.registry.list(pods, Some(namespace), None).await?;
        let mut active: Vec<Value> = all
            .into_iter()
            .filter(|pod| controller_uid(pod) == Some(&uid) && pod_active(pod))
            .collect();
        let desired = replicaset
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let difference = desired - active.len() as i64;
        if difference > 0 {
            let owner = template::owner_reference(&replicaset, "apps/v1", "ReplicaSet");
            let template_spec = replicaset
                .pointer("/spec/template")
                .cloned()
                .unwrap_or(json!({}));
            for _ in 0..difference.min(BURST) {
                let created = template::create_pod(
                    api,
                    namespace,
                    &template_spec,
                    &format!("{}-", key.name),
                    owner.clone(),
                    None,
                )
                .await?;
                super::events::record(
                    api,
                    &replicaset,
                    true,
                    "SuccessfulCreate",
                    format!("Created pod: {}", meta::name(&created)),
                    "replicaset-controller",
                )
                .await;
                active.push(created);
            }
        } else if difference < 0 {
            active.sort_by_key(deletion_rank);
            let surplus: Vec<Value> = active.drain(..(-difference) as usize).collect();
            for pod in surplus {
                if template::delete_if_present(api, pods, Some(namespace), meta::name(&pod)).await?
                {
                    super::events::record(
                        api,
                        &replicaset,
                        true,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", meta::name(&pod)),
                        "replicaset-controller",
                    )
                    .await;
                }
            }
        }
        let min_ready = replicaset
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let ready = active.iter().filter(|pod| pod_ready(pod)).count();
        let available = active
            .iter()
            .filter(|pod| pod_available(pod, min_ready))
            .count();
        let status = json!({
            "replicas": active.len(),
            "fullyLabeledReplicas": active.len(),
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": replicaset.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        template::write_status(api, replicasets, &replicaset, status).await?;
        let more = difference > BURST || (ready > available && min_ready > 0);
        Ok(more.then(|| {
            Duration::from_secs(min_ready.clamp(0, 60) as u64).max(Duration::from_millis(100))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscheduled_and_unready_pods_go_first() {
        let pending =
            json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:02Z"}, "spec": {}});
        let running = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let young = json!({"metadata": {"creationTimestamp": "2026-01-01T00:00:09Z"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        let mut pods = vec![running.clone(), young.clone(), pending.clone()];
        pods.sort_by_key(deletion_rank);
        assert_eq!(pods, vec![pending, young, running]);
    }
}
