//! get, list (selectors, limit/continue, past revisions) and watch.
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Api, Call, Reply};
use crate::api::meta;
use crate::api::request::{Presentation, Target};
use crate::api::resources::{Resource, Subresource};
use crate::api::selectors::{FieldSelector, LabelSelector};
use crate::api::status::ApiError;
use crate::api::tables;
use crate::api::watch::{self, WatchSpec};

fn selectors(call: &Call<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(call.query.get("labelSelector").unwrap_or(""))
        .map_err(|error| ApiError::BadRequest(format!("labelSelector: {error}")))?;
    let fields = FieldSelector::parse(call.query.get("fieldSelector").unwrap_or(""))
        .map_err(|error| ApiError::BadRequest(format!("fieldSelector: {error}")))?;
    Ok((labels, fields))
}

fn requested_revision(call: &Call<'_>) -> Result<Option<u64>, ApiError> {
    match call.query.get("resourceVersion") {
        None | Some("0") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::BadRequest(format!("resourceVersion {text:?} is not a valid revision"))
        }),
    }
}

/// The Scale view of a Deployment or ReplicaSet.
pub fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| value.as_str().map(|value| format!("{key}={value}")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let metadata = object.get("metadata").cloned().unwrap_or(json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace"),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
            "creationTimestamp": metadata.get("creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

fn present(resource: &Resource, call: &Call<'_>, object: Value) -> Value {
    match call.presentation {
        Presentation::Table(version) => {
            let version_metadata =
                json!({"resourceVersion": object.pointer("/metadata/resourceVersion")});
            tables::table(resource, &[object], version, version_metadata)
        }
        Presentation::Object => object,
    }
}

pub async fn get(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    let name = target.name.as_deref().unwrap_or("");
    let object = api
        .registry
        .get(target.resource, target.namespace.as_deref(), name)
        .await?;
    match target.subresource {
        Some(Subresource::Scale) => Ok(Reply::Json(200, scale_of(&object))),
        Some(Subresource::Log) => super::logs::pod_log(api, &object, call).await,
        Some(Subresource::Binding) => Err(ApiError::MethodNotAllowed(
            "bindings can only be created".into(),
        )),
        _ => Ok(Reply::Json(200, present(target.resource, call, object))),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    start: String,
}

fn decode_continue(token: &str) -> Result<Continue, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::BadRequest(format!("continue token {token:?} is not valid")))
}

fn encode_continue(rv: u64, start: &str) -> String {
    let bytes = serde_json::to_vec(&Continue {
        rv,
        start: start.to_owned(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sort_key(object: &Value) -> String {
    format!(
        "{}/{}",
        meta::namespace(object).unwrap_or(""),
        meta::name(object)
    )
}

pub async fn list(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(call)?;
    let resume = call
        .query
        .get("continue")
        .map(decode_continue)
        .transpose()?;
    let at = match &resume {
        Some(resume) => Some(resume.rv),
        None => requested_revision(call)?,
    };
    let (items, revision) = api
        .registry
        .list(target.resource, target.namespace.as_deref(), at)
        .await?;
    let mut selected: Vec<Value> = items
        .into_iter()
        .filter(|object| labels.matches_object(object) && fields.matches(object))
        .filter(|object| {
            resume
                .as_ref()
                .is_none_or(|resume| sort_key(object) >= resume.start)
        })
        .collect();
    let limit = call
        .query
        .number("limit")?
        .filter(|limit| *limit > 0)
        .map(|limit| limit as usize);
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(limit) = limit
        && selected.len() > limit
    {
        let rest = selected.split_off(limit);
        metadata["continue"] = json!(encode_continue(revision, &sort_key(&rest[0])));
        metadata["remainingItemCount"] = json!(rest.len());
    }
    let body = match call.presentation {
        Presentation::Table(version) => {
            tables::table(target.resource, &selected, version, metadata)
        }
        Presentation::Object => json!({
            "kind": format!("{}List", target.resource.kind),
            "apiVersion": target.resource.api_version(),
            "metadata": metadata,
            "items": selected,
        }),
    };
    Ok(Reply::Json(200, body))
}

pub fn watch(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    let (labels, mut fields) = selectors(call)?;
    let mut namespace = target.namespace.clone();
    if let Some(name) = &target.name {
        // A watch of one object is a watch of its collection, narrowed to its name.
        fields = FieldSelector::parse(&format!("metadata.name={name}"))
            .map_err(|error| ApiError::BadRequest(error.to_string()))?;
        namespace = target.namespace.clone();
    }
    let timeout = call
        .query
        .number("timeoutSeconds")?
        .filter(|seconds| *seconds > 0)
        .unwrap_or(1800);
    let spec = WatchSpec {
        resource: target.resource,
        namespace,
        labels,
        fields,
        since: requested_revision(call)?,
        bookmarks: call.query.flag("allowWatchBookmarks"),
        timeout: Duration::from_secs(timeout as u64),
    };
    let resource = target.resource;
    let encoder: watch::Encoder = match call.presentation {
        Presentation::Table(version) => Box::new(move |object: &Value| {
            let metadata = json!({"resourceVersion": object.pointer("/metadata/resourceVersion")});
            tables::table(resource, std::slice::from_ref(object), version, metadata)
        }),
        Presentation::Object => Box::new(Value::clone),
    };
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(watch::run(
        api.registry.hub().clone(),
        spec,
        encoder,
        sender,
    ));
    Ok(Reply::Stream(receiver))
}
