//! What workload controllers share: owner references, pods made from templates, template
//! hashes, and the pod states (active, ready, available) replica counts are made of.
use serde_json::{Map, Value, json};

use crate::api::admission;
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::resources::Resource;
use crate::api::status::ApiError;

pub use crate::api::resources::require as resource;

pub fn owner_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": meta::name(owner),
        "uid": meta::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The uid of the object's controller (the owner reference with `controller: true`).
pub fn controller_uid(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|reference| reference.get("controller") == Some(&json!(true)))
        .and_then(|reference| reference.get("uid"))
        .and_then(Value::as_str)
}

/// The controller's name, if it is of `kind`.
pub fn controller_name<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|reference| {
            reference.get("controller") == Some(&json!(true))
                && reference.get("kind").and_then(Value::as_str) == Some(kind)
        })
        .and_then(|reference| reference.get("name"))
        .and_then(Value::as_str)
}

/// Counts toward replicas: not being deleted, not finished.
pub fn pod_active(pod: &Value) -> bool {
    !meta::is_deleting(pod)
        && !matches!(
            meta::str_field(pod, "/status/phase"),
            Some("Succeeded" | "Failed")
        )
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|condition| condition.get("type") == Some(&json!("Ready")))
}

pub fn pod_ready(pod: &Value) -> bool {
    pod_active(pod)
        && ready_condition(pod)
            .is_some_and(|condition| condition.get("status") == Some(&json!("True")))
}

/// Ready for at least `min_ready_seconds`.
pub fn pod_available(pod: &Value, min_ready_seconds: i64) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_condition(pod)
        .and_then(|condition| condition.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(meta::parse_time)
        .is_some_and(|since| meta::now_seconds() - since >= min_ready_seconds)
}

/// A short, stable hash of a pod template (the `pod-template-hash` label's value).
pub fn template_hash(template: &Value) -> String {
    // FNV-1a over the canonical JSON (serde_json maps are sorted).
    let text = serde_json::to_string(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut value = hash;
    let mut encoded = String::new();
    while encoded.len() < 10 {
        encoded.push(ALPHABET[(value % ALPHABET.len() as u32) as usize] as char);
        value = value / ALPHABET.len() as u32 + hash.rotate_left(encoded.len() as u32 * 3);
    }
    encoded
}

/// The template as the workload's own hash covers it: without the hash label itself.
pub fn template_without_label(template: &Value, label: &str) -> Value {
    let mut template = template.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(label);
    }
    template
}

/// Creates a pod from `template` owned by `owner`, named `<prefix><random>`.
pub async fn create_pod(
    api: &Api,
    namespace: &str,
    template: &Value,
    prefix: &str,
    owner_ref: Value,
    node: Option<&str>,
) -> Result<Value, ApiError> {
    let pods = resource("", "pods")?;
    let mut metadata = Map::new();
    metadata.insert("generateName".into(), json!(prefix));
    metadata.insert("namespace".into(), json!(namespace));
    for key in ["labels", "annotations"] {
        if let Some(value) = template
            .pointer(&format!("/metadata/{key}"))
            .filter(|value| !value.is_null())
        {
            metadata.insert(key.into(), value.clone());
        }
    }
    metadata.insert("ownerReferences".into(), json!([owner_ref]));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    let prepared = admission::prepare_create(&api.registry, pods, Some(namespace), pod).await?;
    api.registry.create(pods, prepared).await
}

/// The object, or None if it is gone (a key in a queue may outlive its object).
pub async fn fetch(
    api: &Api,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    match api.registry.get(resource, namespace, name).await {
        Ok(object) => Ok(Some(object)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The object if it exists and is not being deleted (what a workload controller acts on;
/// a deleted one is the garbage collector's).
pub async fn fetch_live(
    api: &Api,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    Ok(fetch(api, resource, namespace, name)
        .await?
        .filter(|object| !meta::is_deleting(object)))
}

/// The keys a change concerns for a workload of `kind`: the workload itself, or the one
/// that controls a changed `dependent` (its pods, its ReplicaSets).
pub fn own_or_owner_key(
    change: &crate::api::watch::Change,
    kind: &str,
    dependent: &str,
) -> Vec<super::ObjectKey> {
    let object = &change.object;
    match object.get("kind").and_then(Value::as_str) {
        Some(found) if found == kind => vec![super::ObjectKey::of(object)],
        Some(found) if found == dependent => controller_name(object, kind)
            .map(|name| super::ObjectKey::new(meta::namespace(object), name))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// Every object of a resource, as queue keys.
pub async fn keys_of(
    api: &Api,
    group: &str,
    plural: &str,
) -> Result<Vec<super::ObjectKey>, ApiError> {
    let (items, _) = api
        .registry
        .list(resource(group, plural)?, None, None)
        .await?;
    Ok(items.iter().map(super::ObjectKey::of).collect())
}

/// Deletes with default options; true if this call deleted (or marked) it, false if it
/// was already gone.
pub async fn delete_if_present(
    api: &Api,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<bool, ApiError> {
    match crate::api::deletion::delete(
        &api.registry,
        resource,
        namespace,
        name,
        &crate::api::deletion::DeleteOptions::default(),
    )
    .await
    {
        Ok(_) => Ok(true),
        Err(ApiError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Sets `status` on the object if it differs (a status write, guarded by revision).
pub async fn write_status(
    api: &Api,
    resource: &'static Resource,
    object: &Value,
    status: Value,
) -> Result<(), ApiError> {
    if object.get("status") == Some(&status) {
        return Ok(());
    }
    let mut updated = object.clone();
    updated["status"] = status;
    api.registry
        .update(resource, updated, meta::resource_version(object))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_hashes_are_stable_and_differ_by_content() {
        let a = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let b = json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
        assert!(meta::dns_label_problem(&template_hash(&a)).is_none());
    }

    #[test]
    fn readiness_and_availability_follow_conditions() {
        let pod = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]},
                         "metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "uid": "u", "controller": true}]}});
        assert!(pod_ready(&pod) && pod_available(&pod, 30));
        assert_eq!(controller_uid(&pod), Some("u"));
        assert_eq!(controller_name(&pod, "ReplicaSet"), Some("web-1"));
        assert_eq!(controller_name(&pod, "DaemonSet"), None);
        let mut deleting = pod.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        assert!(!pod_active(&deleting) && !pod_ready(&deleting));
    }
}
