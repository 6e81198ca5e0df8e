//! create (incl. pod bindings), update and patch, on objects and their status, scale and
//! finalize subresources.
use serde_json::{Value, json};

use super::read::scale_of;
use super::{Api, Call, Reply};
use crate::api::admission::{self, decode_body};
use crate::api::deletion;
use crate::api::meta;
use crate::api::patch::{self, PatchType};
use crate::api::registry::Change;
use crate::api::request::Target;
use crate::api::resources::{self, Subresource};
use crate::api::schema;
use crate::api::status::{self, ApiError};

fn dry_run(call: &Call<'_>) -> bool {
    call.query.get("dryRun").is_some()
}

pub async fn create(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    match (target.subresource, target.resource.kind) {
        (Some(Subresource::Binding), _) => {
            return bind(api, target, call, target.name.as_deref()).await;
        }
        (_, "Binding") => return bind(api, target, call, None).await,
        (Some(_), _) | (None, _) if target.name.is_some() => {
            return Err(ApiError::MethodNotAllowed(format!(
                "create is done on the collection (POST to {}), not on an object",
                target.resource.plural
            )));
        }
        _ => {}
    }
    let body = decode_body(call.body, call.content_type)?;
    let mut object = admission::prepare_create(
        &api.registry,
        target.resource,
        target.namespace.as_deref(),
        body,
    )
    .await?;
    if dry_run(call) {
        return Ok(Reply::Json(201, object));
    }
    let claims = api
        .allocator
        .claim(target.resource, &mut object, None)
        .await?;
    match api.registry.create(target.resource, object).await {
        Ok(created) => Ok(Reply::Json(201, created)),
        Err(error) => {
            api.allocator.release(claims).await;
            Err(error)
        }
    }
}

/// pods/binding: assigns an unbound pod to a node (what the scheduler posts).
async fn bind(
    api: &Api,
    target: &Target,
    call: &Call<'_>,
    pod_name: Option<&str>,
) -> Result<Reply, ApiError> {
    let binding = decode_body(call.body, call.content_type)?;
    let name = pod_name.unwrap_or_else(|| meta::name(&binding)).to_owned();
    let node = meta::str_field(&binding, "/target/name")
        .unwrap_or("")
        .to_owned();
    if node.is_empty() {
        return Err(ApiError::invalid(
            "Binding",
            &name,
            vec![status::FieldCause::new("target.name", "Required value")],
        ));
    }
    let pods = resources::require("", "pods")?;
    api.registry
        .read_modify_write(pods, target.namespace.as_deref(), &name, |mut pod| {
            if meta::is_deleting(&pod) {
                return Err(ApiError::ConflictWith { resource: "pods".into(), name: name.clone(), message: "pod is being deleted, cannot be assigned to a host".into() });
            }
            match meta::str_field(&pod, "/spec/nodeName") {
                Some(bound) if !bound.is_empty() => Err(ApiError::ConflictWith {
                    resource: "pods".into(),
                    name: name.clone(),
                    message: format!("pod {name} is already assigned to node \"{bound}\""),
                }),
                _ => {
                    pod["spec"]["nodeName"] = json!(node);
                    let conditions = pod["status"].as_object_mut().map(|status| status.entry("conditions").or_insert_with(|| json!([])));
                    if let Some(Value::Array(conditions)) = conditions {
                        conditions.retain(|condition| condition["type"] != "PodScheduled");
                        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()}));
                    }
                    Ok(Change::Write(pod))
                }
            }
        })
        .await?;
    Ok(Reply::Json(
        201,
        status::success(json!({"name": name, "kind": "pods"})),
    ))
}

/// An update is a delete when it removed the last finalizer of an object being deleted.
fn after_update(object: Value) -> Change {
    if deletion::finished(&object) {
        Change::Delete
    } else {
        Change::Write(object)
    }
}

/// The stored object updated from `desired` (a full object, or a Scale for the scale
/// subresource), after admission.
fn updated(target: &Target, current: &Value, desired: Value) -> Result<Value, ApiError> {
    if target.subresource == Some(Subresource::Scale) {
        let replicas = desired
            .pointer("/spec/replicas")
            .cloned()
            .unwrap_or(json!(0));
        if replicas.as_i64().is_none_or(|count| count < 0) {
            return Err(ApiError::invalid(
                "Scale.autoscaling",
                meta::name(current),
                vec![status::FieldCause::new(
                    "spec.replicas",
                    format!("Invalid value: {replicas}: must be greater than or equal to 0"),
                )],
            ));
        }
        let mut object = current.clone();
        object["spec"]["replicas"] = replicas;
        return admission::prepare_update(target.resource, None, current, object);
    }
    admission::prepare_update(target.resource, target.subresource, current, desired)
}

fn view(target: &Target, object: &Value) -> Value {
    if target.subresource == Some(Subresource::Scale) {
        scale_of(object)
    } else {
        object.clone()
    }
}

pub async fn update(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    let desired = decode_body(call.body, call.content_type)?;
    let name = target.name.as_deref().unwrap_or("");
    let expected = meta::resource_version(&desired);
    let current = api
        .registry
        .get(target.resource, target.namespace.as_deref(), name)
        .await?;
    if expected.is_some_and(|expected| Some(expected) != meta::resource_version(&current)) {
        return Err(ApiError::Conflict {
            resource: target.resource.plural.into(),
            name: name.into(),
        });
    }
    let object = updated(target, &current, desired)?;
    if dry_run(call) {
        return Ok(Reply::Json(200, view(target, &object)));
    }
    let written = write_back(api, target, &current, object).await?;
    Ok(Reply::Json(200, view(target, &written)))
}

/// Stores an updated object guarded by the revision it was made from (or deletes it, when
/// the update removed its last finalizer), claiming and releasing service allocations.
async fn write_back(
    api: &Api,
    target: &Target,
    current: &Value,
    mut object: Value,
) -> Result<Value, ApiError> {
    let claims = api
        .allocator
        .claim(target.resource, &mut object, Some(current))
        .await?;
    let revision = meta::resource_version(current);
    let name = meta::name(current);
    let result = match after_update(object) {
        Change::Delete => {
            api.registry
                .delete(target.resource, target.namespace.as_deref(), name, revision)
                .await
        }
        Change::Write(object) => api.registry.update(target.resource, object, revision).await,
        Change::Keep => Ok(current.clone()),
    };
    match result {
        Ok(written) => {
            api.allocator
                .release_replaced(target.resource, current, &written)
                .await;
            Ok(written)
        }
        Err(error) => {
            api.allocator.release(claims).await;
            Err(error)
        }
    }
}

pub async fn patch(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    let patch_type = PatchType::from_content_type(call.content_type.unwrap_or(""))
        .map_err(|error| ApiError::UnsupportedMediaType(error.to_string()))?;
    let patch_body: Value = serde_json::from_slice(call.body)
        .map_err(|error| ApiError::BadRequest(format!("the patch is not valid JSON: {error}")))?;
    let name = target.name.as_deref().unwrap_or("");
    let definitions = schema::build::served();
    let (group, version, kind) = match target.subresource {
        Some(Subresource::Scale) => ("autoscaling", "v1", "Scale"),
        _ => (
            target.resource.group,
            target.resource.version,
            target.resource.kind,
        ),
    };
    let definition = definitions
        .kind_definition(group, version, kind)
        .ok_or_else(|| ApiError::Internal(format!("no schema for {kind}")))?
        .to_owned();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let current = api
            .registry
            .get(target.resource, target.namespace.as_deref(), name)
            .await?;
        let original = view(target, &current);
        let patched = patch::apply(patch_type, &original, &patch_body, definitions, &definition)
            .map_err(|error| {
                if error.is_unsupported_media_type() {
                    ApiError::UnsupportedMediaType(error.to_string())
                } else {
                    ApiError::BadRequest(format!("the patch could not be applied: {error}"))
                }
            })?;
        let object = updated(target, &current, patched)?;
        if dry_run(call) {
            return Ok(Reply::Json(200, view(target, &object)));
        }
        match write_back(api, target, &current, object).await {
            Ok(written) => return Ok(Reply::Json(200, view(target, &written))),
            Err(error) => {
                // A patch applies to whatever is current: a concurrent write means try again.
                if matches!(error, ApiError::Conflict { .. }) && attempts < 16 {
                    continue;
                }
                return Err(error);
            }
        }
    }
}
