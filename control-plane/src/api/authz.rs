//! Authorization: the admin may do anything; a node (an agent's token) sees and changes only
//! what its node needs, as Kubernetes' Node authorizer and NodeRestriction admission allow.
use serde_json::Value;

use super::meta;
use super::pki::Identity;
use super::registry::Registry;
use super::request::{Query, Target};
use super::resources;
use super::selectors::FieldSelector;
use super::status::ApiError;

fn forbidden(node: &str, verb: &str, target: &Target) -> ApiError {
    let scope = match &target.namespace {
        Some(namespace) => format!(" in the namespace \"{namespace}\""),
        None => String::new(),
    };
    ApiError::Forbidden(format!(
        "{}{} is forbidden: User \"system:node:{node}\" cannot {verb} resource \"{}\"{scope}",
        target.resource.plural,
        target
            .name
            .as_deref()
            .map(|name| format!(" \"{name}\""))
            .unwrap_or_default(),
        target.resource.plural,
    ))
}

/// Names of the configmaps and secrets a pod mounts or reads env from.
fn references(pod: &Value, kind: &str) -> Vec<String> {
    let (volume_key, name_key, env_key) = match kind {
        "secrets" => ("secret", "secretName", "secretKeyRef"),
        _ => ("configMap", "name", "configMapKeyRef"),
    };
    let mut names = Vec::new();
    let volumes = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for volume in volumes {
        names.extend(
            volume
                .get(volume_key)
                .and_then(|source| source.get(name_key))
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        for source in volume
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            names.extend(
                source
                    .get(volume_key)
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            );
        }
    }
    let from_key = if kind == "secrets" {
        "secretRef"
    } else {
        "configMapRef"
    };
    for key in ["containers", "initContainers"] {
        for container in pod
            .pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for env in container
                .get("env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                names.extend(
                    env.pointer(&format!("/valueFrom/{env_key}/name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            }
            for from in container
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                names.extend(
                    from.pointer(&format!("/{from_key}/name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                );
            }
        }
    }
    names
}

async fn pod_on_node(registry: &Registry, target: &Target, node: &str) -> Result<bool, ApiError> {
    let pods = resources::require("", "pods")?;
    let pod = registry
        .get(
            pods,
            target.namespace.as_deref(),
            target.name.as_deref().unwrap_or(""),
        )
        .await?;
    Ok(meta::str_field(&pod, "/spec/nodeName") == Some(node))
}

async fn referenced_by_node_pod(
    registry: &Registry,
    target: &Target,
    node: &str,
) -> Result<bool, ApiError> {
    let pods = resources::require("", "pods")?;
    let (items, _) = registry
        .list(pods, target.namespace.as_deref(), None)
        .await?;
    let name = target.name.as_deref().unwrap_or("");
    Ok(items
        .iter()
        .filter(|pod| meta::str_field(pod, "/spec/nodeName") == Some(node))
        .any(|pod| {
            references(pod, target.resource.plural)
                .iter()
                .any(|referenced| referenced == name)
        }))
}

pub async fn authorize(
    registry: &Registry,
    identity: &Identity,
    verb: &str,
    target: &Target,
    query: &Query,
    body: &[u8],
) -> Result<(), ApiError> {
    let Identity::Node(node) = identity else {
        return Ok(());
    };
    let reading = matches!(verb, "get" | "list" | "watch");
    let own_name = target.name.as_deref() == Some(node.as_str());
    let allowed = match target.resource.plural {
        "services" | "endpoints" | "endpointslices" | "namespaces" | "networkpolicies" => reading,
        "nodes" => {
            reading
                || (matches!(verb, "update" | "patch") && own_name)
                || (verb == "create" && {
                    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                    meta::name(&body) == node
                })
        }
        "leases" => {
            target.namespace.as_deref() == Some("kube-node-lease") && (own_name || verb == "create")
        }
        "events" => verb == "create",
        "pods" => match verb {
            "list" | "watch" => FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))
                .ok()
                .and_then(|selector| {
                    selector
                        .pinned("spec.nodeName")
                        .map(|pinned| pinned == node)
                })
                .unwrap_or(false),
            "get" | "delete" => pod_on_node(registry, target, node).await?,
            "update" | "patch" => {
                target.subresource == Some(resources::Subresource::Status)
                    && pod_on_node(registry, target, node).await?
            }
            _ => false,
        },
        "configmaps" | "secrets" => {
            verb == "get" && referenced_by_node_pod(registry, target, node).await?
        }
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(forbidden(node, verb, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_reference_configmaps_and_secrets_by_volume_and_env() {
        let pod = json!({"spec": {
            "volumes": [{"name": "a", "configMap": {"name": "cm1"}}, {"name": "b", "secret": {"secretName": "s1"}},
                        {"name": "c", "projected": {"sources": [{"secret": {"name": "s2"}}]}}],
            "containers": [{"name": "x", "env": [{"name": "E", "valueFrom": {"configMapKeyRef": {"name": "cm2", "key": "k"}}}],
                            "envFrom": [{"secretRef": {"name": "s3"}}]}]}});
        assert_eq!(references(&pod, "configmaps"), vec!["cm1", "cm2"]);
        assert_eq!(references(&pod, "secrets"), vec!["s1", "s2", "s3"]);
    }
}
