//! Deployments: one ReplicaSet per template version (named by the template's hash), rolled
//! from old to new within maxSurge/maxUnavailable (or all at once for Recreate), numbered
//! revisions a rollback can return to, old ReplicaSets pruned to the history limit, and
//! status with the Available/Progressing conditions `kubectl rollout status` reads.
use std::time::Duration;

use serde_json::{Value, json};

use super::template::{self, controller_uid, template_hash, template_without_label};
use super::{Controller, ObjectKey};
use crate::api::admission;
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::status::ApiError;
use crate::api::watch::Change;

pub struct DeploymentController;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const HASH_LABEL: &str = "pod-template-hash";

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

pub fn revision(replicaset: &Value) -> i64 {
    meta::str_field(
        replicaset,
        &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")),
    )
    .and_then(|text| text.parse().ok())
    .unwrap_or(0)
}

/// An int-or-percent of `total` (percentages rounded up for surge, down for unavailable).
pub fn scaled_value(value: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match value {
        Some(Value::Number(number)) => number.as_i64().unwrap_or(default),
        Some(Value::String(text)) => match text
            .strip_suffix('%')
            .and_then(|number| number.parse::<i64>().ok())
        {
            Some(percent) if round_up => (percent * total + 99) / 100,
            Some(percent) => percent * total / 100,
            None => text.parse().unwrap_or(default),
        },
        _ => default,
    }
}

fn condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    previous: Option<&Value>,
    progressed: bool,
) -> Value {
    let now = meta::now();
    let same = previous.is_some_and(|previous| previous["status"] == status);
    let transition = if same {
        previous
            .map(|p| p["lastTransitionTime"].clone())
            .unwrap_or(json!(now))
    } else {
        json!(now)
    };
    let update = if same && !progressed && previous.is_some_and(|p| p["reason"] == reason) {
        previous
            .map(|p| p["lastUpdateTime"].clone())
            .unwrap_or(json!(now))
    } else {
        json!(now)
    };
    json!({"type": kind, "status": status, "reason": reason, "message": message, "lastUpdateTime": update, "lastTransitionTime": transition})
}

fn find_condition<'a>(deployment: &'a Value, kind: &str) -> Option<&'a Value> {
    deployment
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
}

/// A new ReplicaSet for the deployment's current template.
fn new_replicaset(deployment: &Value, hash: &str, revision: i64) -> Value {
    let name = format!("{}-{hash}", meta::name(deployment));
    let mut template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(json!({}));
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = deployment
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(json!({}));
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    labels[HASH_LABEL] = json!(hash);
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": meta::namespace(deployment),
            "labels": labels,
            "annotations": {REVISION: revision.to_string()},
            "ownerReferences": [template::owner_reference(deployment, "apps/v1", "Deployment")],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": deployment.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)),
            "selector": selector,
            "template": template,
        },
    })
}

impl DeploymentController {
    async fn set_replicas(
        &self,
        api: &Api,
        replicaset: &mut Value,
        replicas: i64,
        deployment_replicas: i64,
        bump_revision: Option<i64>,
    ) -> Result<(), ApiError> {
        let current = int(replicaset, "/spec/replicas");
        if current == replicas && bump_revision.is_none() {
            return Ok(());
        }
        let resource = template::resource("apps", "replicasets")?;
        let mut updated = replicaset.clone();
        updated["spec"]["replicas"] = json!(replicas);
        let annotations = meta::metadata_mut(&mut updated)
            .entry("annotations")
            .or_insert_with(|| json!({}));
        annotations["deployment.kubernetes.io/desired-replicas"] =
            json!(deployment_replicas.to_string());
        if let Some(revision) = bump_revision {
            annotations[REVISION] = json!(revision.to_string());
        }
        *replicaset = api
            .registry
            .update(resource, updated, meta::resource_version(replicaset))
            .await?;
        if current != replicas {
            // The event belongs to the deployment, which the ReplicaSet's owner reference names.
            let owner = replicaset
                .pointer("/metadata/ownerReferences/0")
                .cloned()
                .unwrap_or(json!({}));
            let deployment = json!({"kind": "Deployment", "apiVersion": "apps/v1",
                "metadata": {"name": owner["name"], "uid": owner["uid"], "namespace": meta::namespace(replicaset)}});
            let direction = if replicas > current { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} to {replicas}",
                meta::name(replicaset)
            );
            super::events::record(
                api,
                &deployment,
                true,
                "ScalingReplicaSet",
                message,
                "deployment-controller",
            )
            .await;
        }
        Ok(())
    }
}

impl DeploymentController {
    /// Scales old ReplicaSets down as far as availability allows: first pods that are not
    /// available anyway, then available ones down to `replicas - max_unavailable`.
    async fn scale_down_olds(
        &self,
        api: &Api,
        olds: &mut [Value],
        new: &Value,
        replicas: i64,
        max_unavailable: i64,
    ) -> Result<(), ApiError> {
        let min_available = replicas - max_unavailable;
        let all_pods: i64 = olds.iter().map(|rs| int(rs, "/spec/replicas")).sum::<i64>()
            + int(new, "/spec/replicas");
        let new_unavailable =
            (int(new, "/spec/replicas") - int(new, "/status/availableReplicas")).max(0);
        let mut cleanup = all_pods - min_available - new_unavailable;
        if cleanup <= 0 {
            return Ok(());
        }
        for old in olds.iter_mut() {
            let current = int(old, "/spec/replicas");
            let unhealthy = (current - int(old, "/status/availableReplicas"))
                .max(0)
                .min(cleanup);
            if unhealthy > 0 {
                self.set_replicas(api, old, current - unhealthy, replicas, None)
                    .await?;
                cleanup -= unhealthy;
            }
        }
        let available: i64 = olds
            .iter()
            .map(|rs| int(rs, "/status/availableReplicas").min(int(rs, "/spec/replicas")))
            .sum::<i64>()
            + int(new, "/status/availableReplicas");
        let mut budget = available - min_available;
        for old in olds.iter_mut() {
            if budget <= 0 {
                break;
            }
            let current = int(old, "/spec/replicas");
            let cut = current.min(budget);
            if cut > 0 {
                self.set_replicas(api, old, current - cut, replicas, None)
                    .await?;
                budget -= cut;
            }
        }
        Ok(())
    }
}

impl Controller for DeploymentController {
    const NAME: &'static str = "deployment";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        template::own_or_owner_key(change, "Deployment", "ReplicaSet")
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        template::keys_of(api, "apps", "deployments").await
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        let deployments = template::resource("apps", "deployments")?;
        let replicasets = template::resource("apps", "replicasets")?;
        let namespace = key.namespace.as_deref().unwrap_or("default");
        let Some(deployment) =
            template::fetch_live(api, deployments, Some(namespace), &key.name).await?
        else {
            return Ok(None);
        };
        let uid = meta::uid(&deployment).to_owned();
        let (all, _) = api
            .registry
            .list(replicasets, Some(namespace), None)
            .await?;
        let mut owned: Vec<Value> = all
            .into_iter()
            .filter(|rs| controller_uid(rs) == Some(&uid))
            .collect();
        owned.sort_by_key(revision);
        let template_spec = deployment
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let newest_revision = owned.iter().map(revision).max().unwrap_or(0);
        let position = owned.iter().position(|rs| {
            template_without_label(&rs["spec"]["template"], HASH_LABEL) == template_spec
        });
        let replicas = int(&deployment, "/spec/replicas");
        let paused = deployment.pointer("/spec/paused") == Some(&json!(true));
        let mut new = match position {
            Some(index) => owned.remove(index),
            None if paused => json!(null),
            None => {
                let hash = template_hash(&template_spec);
                let prepared = admission::prepare_create(
                    &api.registry,
                    replicasets,
                    Some(namespace),
                    new_replicaset(&deployment, &hash, newest_revision + 1),
                )
                .await?;
                match api.registry.create(replicasets, prepared).await {
                    Ok(created) => created,
                    // Made by an earlier pass whose list did not see it yet.
                    Err(ApiError::AlreadyExists { .. }) => {
                        return Ok(Some(Duration::from_millis(50)));
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        let mut olds = owned;
        if !new.is_null() && revision(&new) < newest_revision {
            // A rollback: the old template becomes the newest revision again.
            let current = int(&new, "/spec/replicas");
            self.set_replicas(api, &mut new, current, replicas, Some(newest_revision + 1))
                .await?;
        }
        let strategy =
            meta::str_field(&deployment, "/spec/strategy/type").unwrap_or("RollingUpdate");
        let surge = scaled_value(
            deployment.pointer("/spec/strategy/rollingUpdate/maxSurge"),
            replicas,
            true,
            1,
        );
        let mut unavailable = scaled_value(
            deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            replicas,
            false,
            0,
        );
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        if !paused && !new.is_null() {
            if strategy == "Recreate" {
                for old in olds.iter_mut() {
                    self.set_replicas(api, old, 0, replicas, None).await?;
                }
                if olds.iter().all(|old| int(old, "/status/replicas") == 0) {
                    self.set_replicas(api, &mut new, replicas, replicas, None)
                        .await?;
                }
            } else {
                let total: i64 = olds.iter().map(|rs| int(rs, "/spec/replicas")).sum::<i64>()
                    + int(&new, "/spec/replicas");
                let new_replicas = int(&new, "/spec/replicas");
                let target = if new_replicas < replicas {
                    (new_replicas + (replicas + surge - total).max(0)).min(replicas)
                } else {
                    replicas
                };
                self.set_replicas(api, &mut new, target, replicas, None)
                    .await?;
                self.scale_down_olds(api, &mut olds, &new, replicas, unavailable)
                    .await?;
            }
        }
        // Keep at most revisionHistoryLimit old ReplicaSets that are scaled to nothing.
        let limit = deployment
            .pointer("/spec/revisionHistoryLimit")
            .and_then(Value::as_i64)
            .unwrap_or(10)
            .max(0) as usize;
        let idle: Vec<&Value> = olds
            .iter()
            .filter(|rs| int(rs, "/spec/replicas") == 0 && int(rs, "/status/replicas") == 0)
            .collect();
        for rs in idle.iter().take(idle.len().saturating_sub(limit)) {
            template::delete_if_present(api, replicasets, Some(namespace), meta::name(rs)).await?;
        }
        let everything: Vec<&Value> = olds
            .iter()
            .chain(std::iter::once(&new).filter(|rs| !rs.is_null()))
            .collect();
        let sum = |pointer: &str| everything.iter().map(|rs| int(rs, pointer)).sum::<i64>();
        let (current, ready, available) = (
            sum("/status/replicas"),
            sum("/status/readyReplicas"),
            sum("/status/availableReplicas"),
        );
        let updated = if new.is_null() {
            0
        } else {
            int(&new, "/status/replicas")
        };
        let generation = deployment
            .pointer("/metadata/generation")
            .cloned()
            .unwrap_or(json!(1));
        let complete = updated == replicas && current == replicas && available == replicas;
        let new_name = meta::name(&new).to_owned();
        let available_condition = if available >= replicas - unavailable {
            condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                find_condition(&deployment, "Available"),
                false,
            )
        } else {
            condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                find_condition(&deployment, "Available"),
                false,
            )
        };
        let previous_progress = find_condition(&deployment, "Progressing");
        let progressed = deployment.get("status").is_some_and(|status| {
            status["updatedReplicas"] != json!(updated)
                || status["availableReplicas"] != json!(available)
        });
        let deadline = deployment
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(600);
        let stalled = !complete
            && !progressed
            && previous_progress
                .and_then(|p| p["lastUpdateTime"].as_str())
                .and_then(meta::parse_time)
                .is_some_and(|since| meta::now_seconds() - since > deadline);
        let progressing = if complete {
            condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                previous_progress,
                progressed,
            )
        } else if stalled
            || previous_progress.is_some_and(|p| p["reason"] == "ProgressDeadlineExceeded")
                && !progressed
        {
            condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                previous_progress,
                false,
            )
        } else {
            condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{new_name}\" is progressing."),
                previous_progress,
                progressed,
            )
        };
        let status = json!({
            "observedGeneration": generation,
            "replicas": current,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": (current.max(replicas) - available).max(0),
            "conditions": [available_condition, progressing],
        });
        let mut object = deployment.clone();
        if !new.is_null() {
            let annotations = meta::metadata_mut(&mut object)
                .entry("annotations")
                .or_insert_with(|| json!({}));
            annotations[REVISION] = json!(revision(&new).to_string());
        }
        object["status"] = status;
        if object != deployment {
            api.registry
                .update(deployments, object, meta::resource_version(&deployment))
                .await?;
        }
        Ok((!complete).then_some(Duration::from_secs(2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surge_rounds_up_and_unavailability_down() {
        assert_eq!(scaled_value(Some(&json!("25%")), 10, true, 0), 3);
        assert_eq!(scaled_value(Some(&json!("25%")), 10, false, 0), 2);
        assert_eq!(scaled_value(Some(&json!(2)), 10, false, 0), 2);
        assert_eq!(scaled_value(None, 10, false, 1), 1);
    }

    #[test]
    fn new_replicasets_carry_the_hash_and_revision() {
        let deployment = json!({"metadata": {"name": "web", "namespace": "demo", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
        let rs = new_replicaset(&deployment, "abc", 3);
        assert_eq!(rs["metadata"]["name"], "web-abc");
        assert_eq!(rs["spec"]["selector"]["matchLabels"][HASH_LABEL], "abc");
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"][HASH_LABEL],
            "abc"
        );
        assert_eq!(revision(&rs), 3);
        assert_eq!(rs["metadata"]["ownerReferences"][0]["uid"], "u1");
    }
}
