//! What happens to an object between the request body and the store: kind and namespace
//! checks, schema and semantic validation, defaults, server-owned metadata, the split
//! between spec and status, and the namespace lifecycle (no new objects in a namespace that
//! does not exist or is being deleted).
use serde_json::{Value, json};

use super::defaults;
use super::meta;
use super::registry::Registry;
use super::resources::{self, Resource, Subresource};
use super::schema;
use super::status::{ApiError, FieldCause};
use super::validation;

/// `Deployment.apps` — how errors name a kind.
pub fn qualified_kind(resource: &Resource) -> String {
    if resource.group.is_empty() {
        resource.kind.to_owned()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    }
}

/// Decodes a request body (JSON, or YAML as kubectl can send) into an object.
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    let media = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let value: Value = match media {
        "application/yaml" => serde_yaml::from_slice(body).map_err(|error| {
            ApiError::BadRequest(format!("the request body is not valid YAML: {error}"))
        })?,
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|error| {
            ApiError::BadRequest(format!("the request body is not valid JSON: {error}"))
        })?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
            )));
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

/// The body's apiVersion/kind must be the endpoint's (or absent: then they are filled in).
fn check_kind(
    resource: &Resource,
    object: &mut Value,
    expected_kind: &str,
    expected_version: &str,
) -> Result<(), ApiError> {
    let kind = meta::str_field(object, "/kind").unwrap_or("");
    let version = meta::str_field(object, "/apiVersion").unwrap_or("");
    if !kind.is_empty() && kind != expected_kind {
        return Err(ApiError::BadRequest(format!(
            "the object's kind {kind:?} does not match the endpoint's kind {expected_kind:?} ({})",
            resource.plural
        )));
    }
    if !version.is_empty() && version != expected_version {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({version}) does not match the expected API version ({expected_version})"
        )));
    }
    object["kind"] = json!(expected_kind);
    object["apiVersion"] = json!(expected_version);
    Ok(())
}

fn check_namespace(
    resource: &Resource,
    object: &mut Value,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    if !object.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    let metadata = meta::metadata_mut(object);
    if !resource.namespaced {
        metadata.remove("namespace");
        return Ok(());
    }
    let given = metadata
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    match namespace {
        Some(namespace) if given.is_empty() || given == namespace => {
            metadata.insert("namespace".into(), json!(namespace));
            Ok(())
        }
        Some(_) => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        None => Err(ApiError::BadRequest(format!(
            "{} must be created in a namespace",
            resource.plural
        ))),
    }
}

/// Schema (unknown fields, types) then semantic checks; all problems in one 422.
pub fn validate(resource: &Resource, object: &Value) -> Result<(), ApiError> {
    let definitions = schema::build::served();
    let mut causes: Vec<FieldCause> = Vec::new();
    if let Some(definition) =
        definitions.kind_definition(resource.group, resource.version, resource.kind)
    {
        causes.extend(
            schema::validate::check(definitions, definition, object)
                .into_iter()
                .map(|error| FieldCause::new(error.path.clone(), error.kind.to_string())),
        );
    }
    if causes.is_empty() {
        causes = validation::validate(resource.kind, object);
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &qualified_kind(resource),
            meta::name(object),
            causes,
        ))
    }
}

/// Objects may only be created in a namespace that exists and is not being deleted.
pub async fn check_namespace_open(registry: &Registry, namespace: &str) -> Result<(), ApiError> {
    let namespaces = resources::require("", "namespaces")?;
    let current = registry
        .get(namespaces, None, namespace)
        .await
        .map_err(|error| match error {
            ApiError::NotFound { .. } => ApiError::not_found("namespaces", namespace),
            other => other,
        })?;
    if meta::is_deleting(&current) {
        return Err(ApiError::Forbidden(format!(
            "unable to create new content in namespace {namespace} because it is being terminated"
        )));
    }
    Ok(())
}

fn tracks_generation(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "ReplicaSet" | "DaemonSet" | "NetworkPolicy" | "Service"
    )
}

/// A create request's body made ready for the store (not yet written).
pub async fn prepare_create(
    registry: &Registry,
    resource: &'static Resource,
    namespace: Option<&str>,
    mut object: Value,
) -> Result<Value, ApiError> {
    check_kind(
        resource,
        &mut object,
        resource.kind,
        &resource.api_version(),
    )?;
    check_namespace(resource, &mut object, namespace)?;
    let metadata = meta::metadata_mut(&mut object);
    if metadata
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && let Some(prefix) = metadata
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|prefix| !prefix.is_empty())
    {
        let name = format!("{prefix}{}", meta::random_suffix());
        metadata.insert("name".into(), json!(name));
    }
    for owned in [
        "resourceVersion",
        "uid",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        metadata.remove(owned);
    }
    defaults::apply(resource.kind, &mut object);
    validate(resource, &object)?;
    let metadata = meta::metadata_mut(&mut object);
    metadata.insert("uid".into(), json!(meta::new_uid()));
    metadata.insert("creationTimestamp".into(), json!(meta::now()));
    if tracks_generation(resource.kind) {
        metadata.insert("generation".into(), json!(1));
    }
    match resource.kind {
        "Pod" => {
            let qos = pod_qos_class(&object);
            object["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" => object["status"] = json!({}),
        "Namespace" => object["status"] = json!({"phase": "Active"}),
        _ => {}
    }
    if resource.namespaced
        && let Some(namespace) = meta::namespace(&object)
    {
        check_namespace_open(registry, namespace).await?;
    }
    Ok(object)
}

/// Guaranteed, Burstable or BestEffort, from the containers' requests and limits.
pub fn pod_qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|key| {
            pod.pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .collect();
    let section = |container: &Value, name: &str| {
        container
            .pointer(&format!("/resources/{name}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let any = containers
        .iter()
        .any(|c| !section(c, "requests").is_empty() || !section(c, "limits").is_empty());
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|container| {
        let limits = section(container, "limits");
        let requests = section(container, "requests");
        ["cpu", "memory"].iter().all(|resource| {
            limits.get(*resource).is_some_and(|limit| {
                requests
                    .get(*resource)
                    .is_none_or(|request| request == limit)
            })
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Fields the server owns, carried from the stored object into every update.
const SERVER_OWNED: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "namespace",
    "name",
];

/// An update (PUT, or a patched object) made ready for the store, given what is stored.
pub fn prepare_update(
    resource: &'static Resource,
    subresource: Option<Subresource>,
    current: &Value,
    mut object: Value,
) -> Result<Value, ApiError> {
    let (kind, version) = match subresource {
        Some(Subresource::Scale) => ("Scale", "autoscaling/v1".to_owned()),
        _ => (resource.kind, resource.api_version()),
    };
    check_kind(resource, &mut object, kind, &version)?;
    let name = meta::name(current).to_owned();
    let given = meta::name(&object);
    if !given.is_empty() && given != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(given), Some(stored)) = (meta::namespace(&object), meta::namespace(current))
        && given != stored
    {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    if !object.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    let mut merged = match subresource {
        // A status write changes status (and metadata), never the spec.
        Some(Subresource::Status) => {
            let mut merged = current.clone();
            merged["status"] = object.get("status").cloned().unwrap_or(Value::Null);
            merged["metadata"] = object["metadata"].clone();
            merged
        }
        Some(Subresource::Finalize) => {
            let mut merged = current.clone();
            merged["spec"]["finalizers"] = object
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            merged
        }
        _ => {
            let mut merged = object;
            if resource.has(Subresource::Status) {
                match current.get("status") {
                    Some(status) => merged["status"] = status.clone(),
                    None => {
                        if let Some(map) = merged.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            merged
        }
    };
    let stored_metadata = meta::metadata(current).cloned().unwrap_or_default();
    let metadata = meta::metadata_mut(&mut merged);
    for key in SERVER_OWNED {
        match stored_metadata.get(*key) {
            Some(value) => metadata.insert((*key).to_owned(), value.clone()),
            None => metadata.remove(*key),
        };
    }
    metadata.remove("managedFields");
    defaults::apply(resource.kind, &mut merged);
    validate(resource, &merged)?;
    check_immutable(resource, current, &merged)?;
    if tracks_generation(resource.kind) && current.get("spec") != merged.get("spec") {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta::metadata_mut(&mut merged).insert("generation".into(), json!(generation));
    }
    Ok(merged)
}

fn immutable(resource: &Resource, object: &Value, field: &str) -> ApiError {
    ApiError::invalid(
        &qualified_kind(resource),
        meta::name(object),
        vec![FieldCause::new(field, "Invalid value: field is immutable")],
    )
}

fn check_immutable(resource: &Resource, current: &Value, updated: &Value) -> Result<(), ApiError> {
    match resource.kind {
        "Deployment" | "ReplicaSet" | "DaemonSet"
            if current.pointer("/spec/selector") != updated.pointer("/spec/selector") =>
        {
            Err(immutable(resource, updated, "spec.selector"))
        }
        "Service" => {
            let ip = |object: &Value| meta::str_field(object, "/spec/clusterIP").map(str::to_owned);
            match (ip(current), ip(updated)) {
                (Some(before), Some(after)) if before != after && !before.is_empty() => {
                    Err(immutable(resource, updated, "spec.clusterIP"))
                }
                _ => Ok(()),
            }
        }
        "Pod" => {
            // Only images, tolerations and the active deadline may change on a pod.
            let strip = |object: &Value| {
                let mut spec = object.get("spec").cloned().unwrap_or(Value::Null);
                for key in ["containers", "initContainers"] {
                    if let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) {
                        for container in list.iter_mut().filter_map(Value::as_object_mut) {
                            container.remove("image");
                        }
                    }
                }
                if let Some(spec) = spec.as_object_mut() {
                    spec.remove("tolerations");
                    spec.remove("activeDeadlineSeconds");
                }
                spec
            };
            let node =
                |object: &Value| meta::str_field(object, "/spec/nodeName").map(str::to_owned);
            if strip(current) != strip(updated) && node(current) == node(updated) {
                return Err(ApiError::invalid(
                    "Pod",
                    meta::name(updated),
                    vec![FieldCause::new(
                        "spec",
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)",
                    )],
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let pod = |resources: Value| json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": resources}]}});
        assert_eq!(pod_qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(
            pod_qos_class(&pod(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
    }

    #[test]
    fn bodies_must_be_json_or_yaml_objects() {
        assert!(
            matches!(decode_body(b"{", None), Err(ApiError::BadRequest(message)) if message.contains("not valid JSON"))
        );
        assert!(matches!(
            decode_body(b"[1]", None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(
            matches!(decode_body(b"a: [", Some("application/yaml")), Err(ApiError::BadRequest(message)) if message.contains("YAML"))
        );
        assert!(matches!(
            decode_body(b"{}", Some("text/plain")),
            Err(ApiError::UnsupportedMediaType(_))
        ));
        assert_eq!(
            decode_body(b"kind: Pod", Some("application/yaml")).unwrap()["kind"],
            "Pod"
        );
    }

    #[test]
    fn updates_keep_server_owned_fields_and_status() {
        let deployments = resources::find("apps", "v1", "deployments").unwrap();
        let current = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
            "status": {"replicas": 1}});
        let mut update = current.clone();
        update["metadata"]["uid"] = json!("forged");
        update["spec"]["replicas"] = json!(3);
        update["status"] = json!({"replicas": 99});
        let merged = prepare_update(deployments, None, &current, update).unwrap();
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert_eq!(merged["metadata"]["generation"], 2);
        assert_eq!(merged["status"]["replicas"], 1);
        let mut selector = current.clone();
        selector["spec"]["selector"]["matchLabels"]["app"] = json!("db");
        selector["spec"]["template"]["metadata"]["labels"]["app"] = json!("db");
        assert!(matches!(
            prepare_update(deployments, None, &current, selector),
            Err(ApiError::Invalid { .. })
        ));
        let mut renamed = current.clone();
        renamed["metadata"]["name"] = json!("other");
        assert!(matches!(
            prepare_update(deployments, None, &current, renamed),
            Err(ApiError::BadRequest(_))
        ));
    }
}
