//! Nodes: IPAM gives every node a pod CIDR from the cluster CIDR (a store key per CIDR, so
//! never twice); the lifecycle controller marks a node whose lease stopped being renewed
//! NotReady with the unreachable taint, and evicts its pods once their toleration runs out.
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::template;
use super::{Controller, ObjectKey};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::registry::Change as Write;
use crate::api::status::ApiError;
use crate::api::watch::Change;
use crate::store::{EventKind, StoreError};

#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster_cidr: Ipv4Net,
    pub node_cidr_prefix: u8,
    /// How long a node's lease may go unrenewed before the node is NotReady.
    pub monitor_grace: Duration,
}

const RANGE_PREFIX: &str = "/registry/ranges/podcidrs/";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const RELEASE: &str = "release ";

pub struct NodeIpamController {
    settings: Settings,
}

impl NodeIpamController {
    pub fn new(settings: Settings) -> NodeIpamController {
        NodeIpamController { settings }
    }

    async fn claim(&self, api: &Api, node: &str) -> Result<Option<String>, ApiError> {
        let store = api.registry.store().clone();
        let listing = tokio::task::spawn_blocking(move || store.list(RANGE_PREFIX, None))
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))?
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        let used: std::collections::HashSet<String> = listing
            .items
            .iter()
            .filter_map(|object| {
                object
                    .key
                    .strip_prefix(RANGE_PREFIX)
                    .map(|cidr| cidr.replace('_', "/"))
            })
            .collect();
        let subnets = self
            .settings
            .cluster_cidr
            .subnets(self.settings.node_cidr_prefix)
            .map_err(|error| ApiError::Internal(format!("cluster CIDR: {error}")))?;
        for subnet in subnets {
            let cidr = subnet.to_string();
            if used.contains(&cidr) {
                continue;
            }
            let store = api.registry.store().clone();
            let key = format!("{RANGE_PREFIX}{}", cidr.replace('/', "_"));
            let owner = node.as_bytes().to_vec();
            match tokio::task::spawn_blocking(move || store.create(&key, &owner)).await {
                Ok(Ok(_)) => return Ok(Some(cidr)),
                Ok(Err(StoreError::AlreadyExists { .. })) => continue,
                Ok(Err(error)) => return Err(ApiError::Internal(error.to_string())),
                Err(error) => return Err(ApiError::Internal(error.to_string())),
            }
        }
        Ok(None)
    }
}

impl Controller for NodeIpamController {
    const NAME: &'static str = "node-ipam";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        if change.object.get("kind") != Some(&json!("Node")) {
            return Vec::new();
        }
        let cidr = meta::str_field(&change.object, "/spec/podCIDR").unwrap_or("");
        match change.kind {
            EventKind::Delete if !cidr.is_empty() => {
                vec![ObjectKey::new(None, &format!("{RELEASE}{cidr}"))]
            }
            EventKind::Put if cidr.is_empty() => vec![ObjectKey::of(&change.object)],
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        let (nodes, _) = api
            .registry
            .list(template::resource("", "nodes")?, None, None)
            .await?;
        Ok(nodes
            .iter()
            .filter(|node| meta::str_field(node, "/spec/podCIDR").is_none_or(str::is_empty))
            .map(ObjectKey::of)
            .collect())
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        if let Some(cidr) = key.name.strip_prefix(RELEASE) {
            let store = api.registry.store().clone();
            let range_key = format!("{RANGE_PREFIX}{}", cidr.replace('/', "_"));
            let _ = tokio::task::spawn_blocking(move || store.delete(&range_key, None)).await;
            return Ok(None);
        }
        let nodes = template::resource("", "nodes")?;
        let Some(node) = template::fetch(api, nodes, None, &key.name).await? else {
            return Ok(None);
        };
        if meta::str_field(&node, "/spec/podCIDR").is_some_and(|cidr| !cidr.is_empty()) {
            return Ok(None);
        }
        let Some(cidr) = self.claim(api, &key.name).await? else {
            tracing::warn!(node = key.name, cidr = %self.settings.cluster_cidr, "no pod CIDR left for the node");
            return Ok(Some(Duration::from_secs(10)));
        };
        let result = api
            .registry
            .read_modify_write(nodes, None, &key.name, |mut node| {
                node["spec"]["podCIDR"] = json!(cidr);
                node["spec"]["podCIDRs"] = json!([cidr]);
                Ok(Write::Write(node))
            })
            .await;
        if result.is_err() {
            let store = api.registry.store().clone();
            let range_key = format!("{RANGE_PREFIX}{}", cidr.replace('/', "_"));
            let _ = tokio::task::spawn_blocking(move || store.delete(&range_key, None)).await;
        }
        result.map(|_| None)
    }
}

/// Deletes a pod whose toleration of its node's NoExecute taint ran out.
async fn evict(api: &Api, pod: &Value) -> Result<(), ApiError> {
    let pods = template::resource("", "pods")?;
    if template::delete_if_present(api, pods, meta::namespace(pod), meta::name(pod)).await? {
        let message = format!(
            "Marking for deletion Pod {}/{}",
            meta::namespace(pod).unwrap_or(""),
            meta::name(pod)
        );
        super::events::record(
            api,
            pod,
            true,
            "TaintManagerEviction",
            message,
            "taint-controller",
        )
        .await;
    }
    Ok(())
}

pub struct NodeLifecycleController {
    settings: Settings,
}

impl NodeLifecycleController {
    pub fn new(settings: Settings) -> NodeLifecycleController {
        NodeLifecycleController { settings }
    }
}

/// Seconds left before a pod must leave a node with `taint`: None = tolerated for ever.
pub fn toleration_left(pod: &Value, taint: &Value, now: i64) -> Option<i64> {
    let key = taint["key"].as_str().unwrap_or("");
    let effect = taint["effect"].as_str().unwrap_or("");
    let added = taint["timeAdded"]
        .as_str()
        .and_then(meta::parse_time)
        .unwrap_or(now);
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matching = tolerations.iter().find(|toleration| {
        let operator = toleration["operator"].as_str().unwrap_or("Equal");
        let key_ok = toleration["key"]
            .as_str()
            .is_none_or(|k| k.is_empty() || k == key);
        let value_ok = operator == "Exists"
            || toleration["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        let effect_ok = toleration["effect"]
            .as_str()
            .is_none_or(|e| e.is_empty() || e == effect);
        key_ok && value_ok && effect_ok
    });
    match matching {
        None => Some(0),
        Some(toleration) => toleration["tolerationSeconds"]
            .as_i64()
            .map(|seconds| (added + seconds - now).max(0)),
    }
}

fn lease_renewed(lease: &Value) -> Option<i64> {
    meta::str_field(lease, "/spec/renewTime").and_then(meta::parse_time)
}

impl Controller for NodeLifecycleController {
    const NAME: &'static str = "node-lifecycle";
    const RESYNC: Duration = Duration::from_secs(1);

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.object.get("kind").and_then(Value::as_str) {
            Some("Node") => vec![ObjectKey::of(&change.object)],
            Some("Lease") if meta::namespace(&change.object) == Some("kube-node-lease") => {
                vec![ObjectKey::new(None, meta::name(&change.object))]
            }
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        let (nodes, _) = api
            .registry
            .list(template::resource("", "nodes")?, None, None)
            .await?;
        Ok(nodes.iter().map(ObjectKey::of).collect())
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        let nodes = template::resource("", "nodes")?;
        let Some(node) = template::fetch(api, nodes, None, &key.name).await? else {
            return Ok(None);
        };
        let now = meta::now_seconds();
        let renewed = match api
            .registry
            .get(
                template::resource("coordination.k8s.io", "leases")?,
                Some("kube-node-lease"),
                &key.name,
            )
            .await
        {
            Ok(lease) => lease_renewed(&lease),
            Err(ApiError::NotFound { .. }) => None,
            Err(error) => return Err(error),
        };
        // A node never heard from counts from its creation.
        let last = renewed
            .or_else(|| {
                meta::str_field(&node, "/metadata/creationTimestamp").and_then(meta::parse_time)
            })
            .unwrap_or(now);
        let grace = self.settings.monitor_grace.as_secs() as i64;
        let lost = now - last > grace;
        let tainted = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|taint| taint["key"] == UNREACHABLE_TAINT);
        if lost != tainted {
            api.registry
                .read_modify_write(nodes, None, &key.name, |mut node| {
                    let taints = node["spec"].as_object_mut().map(|spec| spec.entry("taints").or_insert_with(|| json!([])));
                    if let Some(Value::Array(taints)) = taints {
                        taints.retain(|taint| taint["key"] != UNREACHABLE_TAINT);
                        if lost {
                            // NoSchedule keeps new pods off; NoExecute evicts the ones there.
                            taints.push(json!({"key": UNREACHABLE_TAINT, "effect": "NoSchedule", "timeAdded": meta::now()}));
                            taints.push(json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": meta::now()}));
                        }
                    }
                    if lost && let Some(conditions) = node.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                        for condition in conditions.iter_mut() {
                            condition["status"] = json!("Unknown");
                            condition["reason"] = json!("NodeStatusUnknown");
                            condition["message"] = json!("Kubelet stopped posting node status.");
                            condition["lastTransitionTime"] = json!(meta::now());
                        }
                    }
                    Ok(Write::Write(node))
                })
                .await?;
            return Ok(Some(Duration::from_millis(10)));
        }
        if !lost {
            return Ok(None);
        }
        let Some(taint) = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|taint| taint["key"] == UNREACHABLE_TAINT && taint["effect"] == "NoExecute")
            .cloned()
        else {
            return Ok(None);
        };
        let pods = template::resource("", "pods")?;
        let (all, _) = api.registry.list(pods, None, None).await?;
        let mut soonest: Option<i64> = None;
        for pod in all.iter().filter(|pod| {
            meta::str_field(pod, "/spec/nodeName") == Some(key.name.as_str())
                && !meta::is_deleting(pod)
        }) {
            match toleration_left(pod, &taint, now) {
                Some(0) => evict(api, pod).await?,
                Some(left) => soonest = Some(soonest.map_or(left, |s| s.min(left))),
                None => {}
            }
        }
        Ok(soonest.map(|seconds| Duration::from_secs(seconds as u64)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_decide_how_long_a_pod_stays() {
        let taint = json!({"key": UNREACHABLE_TAINT, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"});
        let added = meta::parse_time("2026-01-01T00:00:00Z").unwrap();
        let pod = |tolerations: Value| json!({"spec": {"tolerations": tolerations}});
        assert_eq!(toleration_left(&pod(json!([])), &taint, added), Some(0));
        assert_eq!(
            toleration_left(
                &pod(
                    json!([{"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}])
                ),
                &taint,
                added + 100
            ),
            Some(200)
        );
        assert_eq!(
            toleration_left(&pod(json!([{"operator": "Exists"}])), &taint, added),
            None
        );
        assert_eq!(
            toleration_left(
                &pod(json!([{"key": "other", "operator": "Exists"}])),
                &taint,
                added
            ),
            Some(0)
        );
    }
}
