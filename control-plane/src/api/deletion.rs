//! Deletes as the API performs them: preconditions, finalizers (an object with finalizers is
//! only marked, and goes when the last one is removed), propagation policies for the garbage
//! collector, pod grace periods (a pod on a node is marked and its agent finishes it) and
//! namespaces (marked Terminating; the namespace controller empties them).
use serde_json::{Value, json};

use super::meta;
use super::registry::{Change, Registry};
use super::resources::Resource;
use super::status::ApiError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    /// Orphan, Background or Foreground.
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_version: Option<u64>,
    pub dry_run: bool,
}

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

impl DeleteOptions {
    /// From a DeleteOptions body (may be empty) and query parameters (which win).
    pub fn parse(body: &[u8], query: &super::request::Query) -> Result<DeleteOptions, ApiError> {
        let mut options = DeleteOptions::default();
        if !body.iter().all(u8::is_ascii_whitespace) {
            let value: Value = serde_json::from_slice(body).map_err(|error| {
                ApiError::BadRequest(format!("the DeleteOptions body is not valid JSON: {error}"))
            })?;
            options.grace_period = value.get("gracePeriodSeconds").and_then(Value::as_i64);
            options.propagation = value
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if value.get("orphanDependents") == Some(&json!(true)) {
                options.propagation = Some("Orphan".into());
            }
            options.precondition_uid =
                meta::str_field(&value, "/preconditions/uid").map(str::to_owned);
            options.precondition_version =
                meta::str_field(&value, "/preconditions/resourceVersion")
                    .and_then(|text| text.parse().ok());
            options.dry_run = value
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|list| !list.is_empty());
        }
        if let Some(grace) = query.number("gracePeriodSeconds")? {
            options.grace_period = Some(grace);
        }
        if let Some(policy) = query.get("propagationPolicy") {
            options.propagation = Some(policy.to_owned());
        }
        if query.get("dryRun").is_some() {
            options.dry_run = true;
        }
        if let Some(policy) = &options.propagation
            && !matches!(policy.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(ApiError::BadRequest(format!(
                "propagationPolicy {policy:?} is not one of Orphan, Background, Foreground"
            )));
        }
        if options.grace_period.is_some_and(|grace| grace < 0) {
            return Err(ApiError::BadRequest(
                "gracePeriodSeconds must be 0 or greater".into(),
            ));
        }
        Ok(options)
    }
}

/// What a delete did: the object is gone, or marked and still there.
pub enum Deleted {
    Gone(Value),
    Marked(Value),
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let metadata = meta::metadata_mut(object);
    let list = metadata.entry("finalizers").or_insert_with(|| json!([]));
    if let Value::Array(list) = list
        && !list.iter().any(|item| item == finalizer)
    {
        list.push(json!(finalizer));
    }
}

/// How long a pod on a node gets to stop; None when it can go at once.
fn pod_grace(pod: &Value, requested: Option<i64>) -> Option<i64> {
    let scheduled = meta::str_field(pod, "/spec/nodeName").is_some_and(|node| !node.is_empty());
    let finished = matches!(
        meta::str_field(pod, "/status/phase"),
        Some("Succeeded" | "Failed")
    );
    let grace = requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30);
    (scheduled && !finished && grace > 0).then_some(grace)
}

fn timestamp_in(seconds: i64) -> String {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub async fn delete(
    registry: &Registry,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    options: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let mut gone = None;
    let result = registry
        .read_modify_write(resource, namespace, name, |mut object| {
            if let Some(uid) = &options.precondition_uid
                && uid != meta::uid(&object)
            {
                return Err(ApiError::ConflictWith {
                    resource: resource.plural.into(),
                    name: name.into(),
                    message: format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta::uid(&object)),
                });
            }
            if let Some(version) = options.precondition_version
                && Some(version) != meta::resource_version(&object)
            {
                return Err(ApiError::ConflictWith {
                    resource: resource.plural.into(),
                    name: name.into(),
                    message: format!("Precondition failed: ResourceVersion in precondition: {version}, ResourceVersion in object meta: {}", meta::resource_version(&object).unwrap_or(0)),
                });
            }
            match options.propagation.as_deref() {
                Some("Foreground") => add_finalizer(&mut object, FOREGROUND),
                Some("Orphan") => add_finalizer(&mut object, ORPHAN),
                _ => {}
            }
            let namespace_done = meta::is_deleting(&object)
                && meta::finalizers(&object).is_empty()
                && object.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if resource.kind == "Namespace" && !namespace_done {
                mark_terminating(&mut object);
                return Ok(if options.dry_run { Change::Keep } else { Change::Write(object) });
            }
            let pod_grace = if resource.kind == "Pod" { pod_grace(&object, options.grace_period) } else { None };
            let keep = !meta::finalizers(&object).is_empty() || pod_grace.is_some();
            if keep {
                if !meta::is_deleting(&object) || pod_grace.is_some() {
                    let grace = pod_grace.unwrap_or(0);
                    let metadata = meta::metadata_mut(&mut object);
                    let shortened = metadata.get("deletionGracePeriodSeconds").and_then(Value::as_i64).is_none_or(|current| grace < current);
                    if !metadata.contains_key("deletionTimestamp") || shortened {
                        metadata.insert("deletionTimestamp".into(), json!(timestamp_in(grace)));
                        metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
                    }
                }
                return Ok(if options.dry_run { Change::Keep } else { Change::Write(object) });
            }
            gone = Some(object.clone());
            Ok(if options.dry_run { Change::Keep } else { Change::Delete })
        })
        .await?;
    Ok(match gone {
        Some(object) if options.dry_run => Deleted::Gone(object),
        Some(_) => Deleted::Gone(result),
        None => Deleted::Marked(result),
    })
}

/// A namespace being deleted: marked, phase Terminating, emptied by its controller.
fn mark_terminating(namespace: &mut Value) {
    if !meta::is_deleting(namespace) {
        let metadata = meta::metadata_mut(namespace);
        metadata.insert("deletionTimestamp".into(), json!(meta::now()));
        metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    namespace["status"] = json!({"phase": "Terminating"});
}

/// After an update: a marked object whose last finalizer went is deleted now.
pub fn finished(object: &Value) -> bool {
    meta::is_deleting(object)
        && meta::finalizers(object).is_empty()
        && object.get("kind") != Some(&json!("Pod"))
        && object.get("kind") != Some(&json!("Namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::Query;

    #[test]
    fn options_come_from_body_and_query() {
        let body = br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground","gracePeriodSeconds":5,"preconditions":{"uid":"u1"}}"#;
        let options =
            DeleteOptions::parse(body, &Query::parse(Some("gracePeriodSeconds=0"))).unwrap();
        assert_eq!(options.propagation.as_deref(), Some("Foreground"));
        assert_eq!(options.grace_period, Some(0));
        assert_eq!(options.precondition_uid.as_deref(), Some("u1"));
        assert!(DeleteOptions::parse(b"", &Query::parse(Some("propagationPolicy=Later"))).is_err());
        assert!(DeleteOptions::parse(b"{", &Query::default()).is_err());
    }

    #[test]
    fn only_running_pods_on_a_node_get_a_grace_period() {
        let pod = json!({"spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(pod_grace(&pod, None), Some(10));
        assert_eq!(pod_grace(&pod, Some(0)), None);
        assert_eq!(pod_grace(&json!({"spec": {}}), None), None);
        assert_eq!(
            pod_grace(
                &json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}}),
                None
            ),
            None
        );
    }
}
