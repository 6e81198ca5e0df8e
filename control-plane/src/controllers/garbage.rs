//! The garbage collector: dependents go when their owners go (background propagation),
//! an owner deleted in the foreground goes after its dependents, and an orphaning delete
//! leaves the dependents without the owner reference.
use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::{Controller, ObjectKey};
use crate::api::deletion::{self, DeleteOptions, FOREGROUND, ORPHAN};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::registry::Change as Write;
use crate::api::resources::{RESOURCES, Resource, by_kind};
use crate::api::status::ApiError;
use crate::api::watch::Change;
use crate::store::EventKind;

pub struct GarbageCollector;

/// Kinds that own other objects here.
const OWNER_KINDS: &[(&str, &str)] = &[
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "DaemonSet"),
    ("", "Service"),
    ("", "Node"),
];
const SWEEP: &str = "sweep";

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|reference| {
            reference
                .get("uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

fn group_of(object: &Value) -> &str {
    meta::str_field(object, "/apiVersion")
        .and_then(|version| version.split_once('/'))
        .map_or("", |(group, _)| group)
}

fn owner_kind(object: &Value) -> Option<&'static Resource> {
    let kind = meta::str_field(object, "/kind")?;
    let group = group_of(object);
    OWNER_KINDS
        .iter()
        .any(|(g, k)| *g == group && *k == kind)
        .then(|| by_kind(group, kind))
        .flatten()
}

/// The metadata garbage collection reads; decoding only it keeps a sweep over every pod
/// and event from holding them all as full objects.
#[derive(serde::Deserialize)]
struct Slim {
    metadata: SlimMetadata,
}

#[derive(serde::Deserialize)]
struct SlimMetadata {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, rename = "ownerReferences")]
    owner_references: Vec<Value>,
    #[serde(default, rename = "deletionTimestamp")]
    deletion_timestamp: Option<Value>,
}

/// Every object that has owners, in `namespace` (or everywhere), as its metadata only.
async fn dependents(
    api: &Api,
    namespace: Option<&str>,
) -> Result<Vec<(&'static Resource, Value)>, ApiError> {
    let mut found = Vec::new();
    for resource in RESOURCES
        .iter()
        .filter(|resource| resource.namespaced && resource.allows("list"))
    {
        for object in api.registry.list_raw(resource, namespace).await? {
            let Ok(slim) = serde_json::from_slice::<Slim>(&object.value) else {
                continue;
            };
            if slim.metadata.owner_references.is_empty() {
                continue;
            }
            found.push((
                resource,
                serde_json::json!({"metadata": {
                    "name": slim.metadata.name,
                    "namespace": slim.metadata.namespace,
                    "ownerReferences": slim.metadata.owner_references,
                    "deletionTimestamp": slim.metadata.deletion_timestamp,
                }}),
            ));
        }
    }
    Ok(found)
}

fn without_owner(mut object: Value, uid: &str) -> Value {
    if let Some(references) = object
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        references.retain(|reference| reference.get("uid").and_then(Value::as_str) != Some(uid));
    }
    object
}

async fn delete_quietly(
    api: &Api,
    resource: &'static Resource,
    object: &Value,
    propagation: &str,
) -> Result<(), ApiError> {
    let options = DeleteOptions {
        propagation: Some(propagation.into()),
        ..DeleteOptions::default()
    };
    match deletion::delete(
        &api.registry,
        resource,
        meta::namespace(object),
        meta::name(object),
        &options,
    )
    .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// Deletes (or, orphaning, releases) the dependents of `uid`; returns how many remain.
async fn handle_dependents(
    api: &Api,
    namespace: Option<&str>,
    uid: &str,
    orphan: bool,
    propagation: &str,
) -> Result<usize, ApiError> {
    let mut remaining = 0;
    for (resource, dependent) in dependents(api, namespace).await? {
        if !owner_uids(&dependent).iter().any(|owner| owner == uid) {
            continue;
        }
        remaining += 1;
        let other_owners = owner_uids(&dependent).len() > 1;
        if orphan || other_owners {
            let result = api
                .registry
                .read_modify_write(
                    resource,
                    meta::namespace(&dependent),
                    meta::name(&dependent),
                    |object| Ok(Write::Write(without_owner(object, uid))),
                )
                .await;
            match result {
                Ok(_) | Err(ApiError::NotFound { .. }) => remaining -= 1,
                Err(error) => return Err(error),
            }
        } else if !meta::is_deleting(&dependent) {
            delete_quietly(api, resource, &dependent, propagation).await?;
        }
    }
    Ok(remaining)
}

/// Removes `finalizer`; the object goes if it was the last.
async fn finish(
    api: &Api,
    resource: &'static Resource,
    object: &Value,
    finalizer: &str,
) -> Result<(), ApiError> {
    let result = api
        .registry
        .read_modify_write(
            resource,
            meta::namespace(object),
            meta::name(object),
            |mut current| {
                if let Some(list) = current
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|item| item != finalizer);
                }
                Ok(if deletion::finished(&current) {
                    Write::Delete
                } else {
                    Write::Write(current)
                })
            },
        )
        .await;
    match result {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

impl GarbageCollector {
    async fn sweep(&self, api: &Api) -> Result<(), ApiError> {
        let mut owners = HashSet::new();
        for (group, kind) in OWNER_KINDS {
            if let Some(resource) = by_kind(group, kind) {
                let (items, _) = api.registry.list(resource, None, None).await?;
                owners.extend(items.iter().map(|item| meta::uid(item).to_owned()));
            }
        }
        for (resource, dependent) in dependents(api, None).await? {
            let uids = owner_uids(&dependent);
            if !uids.iter().any(|uid| owners.contains(uid)) && !meta::is_deleting(&dependent) {
                delete_quietly(api, resource, &dependent, "Background").await?;
            }
        }
        Ok(())
    }
}

impl Controller for GarbageCollector {
    const NAME: &'static str = "garbage-collector";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        let Some(resource) = owner_kind(&change.object) else {
            return Vec::new();
        };
        let namespace = meta::namespace(&change.object);
        let gone = change.kind == EventKind::Delete;
        let finalizing = meta::is_deleting(&change.object)
            && meta::finalizers(&change.object)
                .iter()
                .any(|f| f == FOREGROUND || f == ORPHAN);
        if gone {
            vec![ObjectKey::new(
                namespace,
                &format!("gone/{}/{}", resource.plural, meta::uid(&change.object)),
            )]
        } else if finalizing {
            vec![ObjectKey::new(
                namespace,
                &format!("owner/{}/{}", resource.plural, meta::name(&change.object)),
            )]
        } else {
            Vec::new()
        }
    }

    async fn all_keys(&self, _api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        Ok(vec![ObjectKey::new(None, SWEEP)])
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        if key.name == SWEEP {
            self.sweep(api).await?;
            return Ok(None);
        }
        let mut parts = key.name.splitn(3, '/');
        let (Some(what), Some(plural), Some(id)) = (parts.next(), parts.next(), parts.next())
        else {
            return Ok(None);
        };
        let Some(resource) = RESOURCES.iter().find(|resource| resource.plural == plural) else {
            return Ok(None);
        };
        // Cluster-scoped owners (nodes) own objects in any namespace.
        let scope = if resource.namespaced {
            key.namespace.as_deref()
        } else {
            None
        };
        if what == "gone" {
            handle_dependents(api, scope, id, false, "Background").await?;
            return Ok(None);
        }
        let Some(owner) =
            super::template::fetch(api, resource, key.namespace.as_deref(), id).await?
        else {
            return Ok(None);
        };
        let finalizers = meta::finalizers(&owner);
        let uid = meta::uid(&owner).to_owned();
        if finalizers.iter().any(|f| f == ORPHAN) {
            handle_dependents(api, scope, &uid, true, "Background").await?;
            finish(api, resource, &owner, ORPHAN).await?;
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            if handle_dependents(api, scope, &uid, false, "Foreground").await? > 0 {
                return Ok(Some(Duration::from_millis(300)));
            }
            finish(api, resource, &owner, FOREGROUND).await?;
        }
        Ok(None)
    }
}
