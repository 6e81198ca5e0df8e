//! DaemonSets: one pod on every node the template's nodeSelector and tolerations admit,
//! replaced node by node (at most maxUnavailable at a time) when the template changes.
use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::template::{self, controller_uid, pod_active, pod_available, pod_ready, template_hash};
use super::{Controller, ObjectKey};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::status::ApiError;
use crate::api::watch::Change;
use crate::scheduler::predicates::{node_selector_matches, untolerated_taint};

pub struct DaemonSetController;

pub const HASH_LABEL: &str = "controller-revision-hash";
const EVERY: &str = "*";

/// Daemon pods ride out node trouble: they tolerate the node-condition taints.
fn daemon_tolerations(template: &Value) -> Vec<Value> {
    let mut tolerations = template
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        tolerations.push(json!({"key": key, "operator": "Exists"}));
    }
    tolerations
}

fn eligible(node: &Value, template: &Value, tolerations: &[Value]) -> bool {
    node_selector_matches(template, node)
        && untolerated_taint(node, tolerations, &["NoSchedule", "NoExecute"]).is_none()
}

impl DaemonSetController {
    async fn reconcile_one(
        &self,
        api: &Api,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Duration>, ApiError> {
        let daemonsets = template::resource("apps", "daemonsets")?;
        let pods = template::resource("", "pods")?;
        let Some(daemonset) = template::fetch_live(api, daemonsets, Some(namespace), name).await?
        else {
            return Ok(None);
        };
        let (nodes, _) = api
            .registry
            .list(template::resource("", "nodes")?, None, None)
            .await?;
        let mut template_spec = daemonset
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let hash = template_hash(&template_spec);
        let tolerations = daemon_tolerations(&template_spec);
        template_spec["spec"]["tolerations"] = json!(tolerations);
        template_spec["metadata"]["labels"][HASH_LABEL] = json!(hash);
        let uid = meta::uid(&daemonset).to_owned();
        let (all, _) = api.registry.list(pods, Some(namespace), None).await?;
        let mut by_node: HashMap<String, Vec<Value>> = HashMap::new();
        for pod in all
            .into_iter()
            .filter(|pod| controller_uid(pod) == Some(&uid) && pod_active(pod))
        {
            by_node
                .entry(
                    meta::str_field(&pod, "/spec/nodeName")
                        .unwrap_or("")
                        .to_owned(),
                )
                .or_default()
                .push(pod);
        }
        let delete = |pod: Value| async move {
            template::delete_if_present(api, pods, Some(namespace), meta::name(&pod))
                .await
                .map(|_| ())
        };
        let owner = template::owner_reference(&daemonset, "apps/v1", "DaemonSet");
        let (mut desired, mut scheduled, mut ready, mut updated, mut available, mut misscheduled) =
            (0, 0, 0, 0, 0, 0);
        let mut outdated = Vec::new();
        let mut unavailable = 0;
        let min_ready = daemonset
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        for node in &nodes {
            let node_name = meta::name(node).to_owned();
            let mut on_node = by_node.remove(&node_name).unwrap_or_default();
            if !eligible(node, &template_spec, &tolerations) {
                misscheduled += on_node.len();
                for pod in on_node {
                    delete(pod).await?;
                }
                continue;
            }
            desired += 1;
            if on_node.is_empty() {
                template::create_pod(
                    api,
                    namespace,
                    &template_spec,
                    &format!("{name}-"),
                    owner.clone(),
                    Some(&node_name),
                )
                .await?;
                unavailable += 1;
                continue;
            }
            for extra in on_node.split_off(1) {
                delete(extra).await?;
            }
            let pod = on_node.remove(0);
            scheduled += 1;
            ready += usize::from(pod_ready(&pod));
            let is_available = pod_available(&pod, min_ready);
            available += usize::from(is_available);
            unavailable += usize::from(!is_available);
            if meta::str_field(&pod, &format!("/metadata/labels/{HASH_LABEL}"))
                == Some(hash.as_str())
            {
                updated += 1;
            } else {
                outdated.push((is_available, pod));
            }
        }
        // Pods on nodes that no longer exist.
        for pod in by_node.into_values().flatten() {
            delete(pod).await?;
        }
        let max_unavailable = super::deployment::scaled_value(
            daemonset.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
            desired as i64,
            false,
            1,
        )
        .max(1);
        let rolling = meta::str_field(&daemonset, "/spec/updateStrategy/type") != Some("OnDelete");
        if rolling {
            // Unavailable outdated pods first: replacing them costs no availability.
            outdated.sort_by_key(|(is_available, _)| *is_available);
            let mut budget = max_unavailable - unavailable as i64;
            for (is_available, pod) in outdated {
                if is_available && budget <= 0 {
                    break;
                }
                if is_available {
                    budget -= 1;
                }
                delete(pod).await?;
            }
        }
        let status = json!({
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": scheduled,
            "numberReady": ready,
            "updatedNumberScheduled": updated,
            "numberAvailable": available,
            "numberUnavailable": desired - available,
            "numberMisscheduled": misscheduled,
            "observedGeneration": daemonset.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        template::write_status(api, daemonsets, &daemonset, status).await?;
        Ok((updated < desired || available < desired).then_some(Duration::from_secs(2)))
    }
}

impl Controller for DaemonSetController {
    const NAME: &'static str = "daemonset";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        // Nodes coming and going change where every daemon set belongs.
        if change.object.get("kind").and_then(Value::as_str) == Some("Node") {
            return vec![ObjectKey::new(None, EVERY)];
        }
        template::own_or_owner_key(change, "DaemonSet", "Pod")
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        template::keys_of(api, "apps", "daemonsets").await
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        if key.name == EVERY && key.namespace.is_none() {
            let mut again = None;
            for each in self.all_keys(api).await? {
                if let Some(after) = self
                    .reconcile_one(
                        api,
                        each.namespace.as_deref().unwrap_or("default"),
                        &each.name,
                    )
                    .await?
                {
                    again = Some(after);
                }
            }
            return Ok(again);
        }
        self.reconcile_one(
            api,
            key.namespace.as_deref().unwrap_or("default"),
            &key.name,
        )
        .await
    }
}
