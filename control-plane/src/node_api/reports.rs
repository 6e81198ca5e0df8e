//! What agents write through the node API, each limited to the caller's own node: its Node
//! object and status, the status and termination of pods bound to it, and its lease.
use serde_json::{Value, json};

use super::proto::{PodStatusReport, PodTerminated};
use crate::api::admission;
use crate::api::deletion::{self, DeleteOptions};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::registry::Change;
use crate::api::resources;
use crate::api::status::ApiError;

fn parse(bytes: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::BadRequest(format!("{what} is not valid JSON: {error}")))
}

fn not_yours(node: &str, what: String) -> ApiError {
    ApiError::Forbidden(format!(
        "node \"{node}\" may not change {what}: it is not bound to that node"
    ))
}

/// Creates the node, or refreshes its labels, addresses and status (spec stays the
/// control plane's: pod CIDR, taints, unschedulable).
pub async fn register(api: &Api, node: &str, body: &[u8]) -> Result<Value, ApiError> {
    let nodes = resources::require("", "nodes")?;
    let mut given = parse(body, "the node")?;
    let name = meta::name(&given);
    if name != node {
        return Err(ApiError::Forbidden(format!(
            "node \"{node}\" may not register a node named \"{name}\""
        )));
    }
    match api.registry.get(nodes, None, node).await {
        Err(ApiError::NotFound { .. }) => {
            if let Some(spec) = given.get_mut("spec").and_then(Value::as_object_mut) {
                // A node may not pick its own pod CIDR or clear taints; IPAM assigns the CIDR.
                spec.remove("podCIDR");
                spec.remove("podCIDRs");
            }
            let prepared = admission::prepare_create(&api.registry, nodes, None, given).await?;
            match api.registry.create(nodes, prepared).await {
                Err(ApiError::AlreadyExists { .. }) => api.registry.get(nodes, None, node).await,
                other => other,
            }
        }
        Ok(_) => {
            api.registry
                .read_modify_write(nodes, None, node, |mut current| {
                    if let Some(labels) = given.pointer("/metadata/labels").cloned() {
                        current["metadata"]["labels"] = labels;
                    }
                    if let Some(status) = given.get("status").cloned() {
                        current["status"] = status;
                    }
                    Ok(Change::Write(current))
                })
                .await
        }
        Err(error) => Err(error),
    }
}

async fn own_pod(api: &Api, node: &str, namespace: &str, name: &str) -> Result<Value, ApiError> {
    let pod = api
        .registry
        .get(resources::require("", "pods")?, Some(namespace), name)
        .await?;
    if meta::str_field(&pod, "/spec/nodeName") != Some(node) {
        return Err(not_yours(node, format!("pod {namespace}/{name}")));
    }
    Ok(pod)
}

pub async fn pod_status(api: &Api, node: &str, report: &PodStatusReport) -> Result<(), ApiError> {
    let status = parse(&report.status_json, "the pod status")?;
    if !status.is_object() {
        return Err(ApiError::BadRequest(
            "the pod status must be an object".into(),
        ));
    }
    own_pod(api, node, &report.namespace, &report.name).await?;
    api.registry
        .read_modify_write(
            resources::require("", "pods")?,
            Some(&report.namespace),
            &report.name,
            |mut pod| {
                if meta::str_field(&pod, "/spec/nodeName") != Some(node) {
                    return Err(not_yours(
                        node,
                        format!("pod {}/{}", report.namespace, report.name),
                    ));
                }
                let qos = pod.pointer("/status/qosClass").cloned();
                let mut status = status.clone();
                if status.get("qosClass").is_none()
                    && let Some(qos) = qos
                {
                    status["qosClass"] = qos;
                }
                pod["status"] = status;
                Ok(Change::Write(pod))
            },
        )
        .await
        .map(|_| ())
}

/// The agent has stopped the pod's containers: the pod object goes now.
pub async fn pod_terminated(api: &Api, node: &str, report: &PodTerminated) -> Result<(), ApiError> {
    own_pod(api, node, &report.namespace, &report.name).await?;
    let options = DeleteOptions {
        grace_period: Some(0),
        precondition_uid: (!report.uid.is_empty()).then(|| report.uid.clone()),
        ..DeleteOptions::default()
    };
    match deletion::delete(
        &api.registry,
        resources::require("", "pods")?,
        Some(&report.namespace),
        &report.name,
        &options,
    )
    .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

pub async fn node_status(api: &Api, node: &str, body: &[u8]) -> Result<(), ApiError> {
    let status = parse(body, "the node status")?;
    api.registry
        .read_modify_write(
            resources::require("", "nodes")?,
            None,
            node,
            |mut current| {
                current["status"] = status.clone();
                Ok(Change::Write(current))
            },
        )
        .await
        .map(|_| ())
}

/// Lease times carry microseconds (MicroTime).
fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

pub async fn renew_lease(api: &Api, node: &str, duration: u32) -> Result<(), ApiError> {
    let leases = resources::require("coordination.k8s.io", "leases")?;
    let duration = if duration == 0 { 40 } else { duration };
    let renewed = api
        .registry
        .read_modify_write(leases, Some("kube-node-lease"), node, |mut lease| {
            lease["spec"]["renewTime"] = json!(micro_now());
            lease["spec"]["leaseDurationSeconds"] = json!(duration);
            Ok(Change::Write(lease))
        })
        .await;
    match renewed {
        Err(ApiError::NotFound { .. }) => {
            let owner = api
                .registry
                .get(resources::require("", "nodes")?, None, node)
                .await?;
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease",
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": meta::uid(&owner)}]},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": micro_now()},
            });
            let prepared =
                admission::prepare_create(&api.registry, leases, Some("kube-node-lease"), lease)
                    .await?;
            match api.registry.create(leases, prepared).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
                Err(error) => Err(error),
            }
        }
        other => other.map(|_| ()),
    }
}
