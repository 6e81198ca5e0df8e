//! Security identities: every distinct set of pod labels (within a namespace) gets a
//! cluster-wide numeric identity, kept in the store so every control plane and agent agrees;
//! the dataplane tags traffic with it and enforces policy by it.
use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Controller, ObjectKey};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::status::ApiError;
use crate::api::watch::Change;
use crate::store::{Store, StoreError};

pub const IDENTITY_PREFIX: &str = "/registry/kaya.io/identities/";
const INDEX_PREFIX: &str = "/registry/kaya.io/identityindex/";
/// Below this are reserved identities (host, world, ...), as in Cilium.
pub const FIRST_IDENTITY: u64 = 256;
/// Labels that differ between revisions of one workload and say nothing about security.
const IGNORED_LABELS: &[&str] = &["pod-template-hash", "controller-revision-hash"];

pub struct IdentityController;

/// The labels that define a pod's identity, sorted.
pub fn identity_labels(pod: &Value) -> BTreeMap<String, String> {
    pod.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(key, _)| !IGNORED_LABELS.contains(&key.as_str()))
        .filter_map(|(key, value)| value.as_str().map(|value| (key.clone(), value.to_owned())))
        .collect()
}

/// A stable key for (namespace, labels): FNV-1a 64 of their canonical JSON.
pub fn label_set_key(namespace: &str, labels: &BTreeMap<String, String>) -> String {
    let text = serde_json::to_string(&(namespace, labels)).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn blocking_error(error: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("identity allocation: {error}"))
}

/// The identity for a label set, allocated on first use.
pub fn ensure_identity(
    store: &dyn Store,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<u64, ApiError> {
    let index_key = format!("{INDEX_PREFIX}{}", label_set_key(namespace, labels));
    if let Ok(existing) = store.get(&index_key) {
        let value: Value = serde_json::from_slice(&existing.value).map_err(blocking_error)?;
        return value["id"]
            .as_u64()
            .ok_or_else(|| blocking_error("index entry without id"));
    }
    let listing = store.list(IDENTITY_PREFIX, None).map_err(blocking_error)?;
    let mut id = listing
        .items
        .iter()
        .filter_map(|object| {
            object
                .key
                .strip_prefix(IDENTITY_PREFIX)?
                .parse::<u64>()
                .ok()
        })
        .max()
        .map_or(FIRST_IDENTITY, |max| max + 1);
    let labels_map: Map<String, Value> =
        labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    loop {
        let identity =
            json!({"kind": "Identity", "id": id, "namespace": namespace, "labels": labels_map});
        match store.create(
            &format!("{IDENTITY_PREFIX}{id}"),
            identity.to_string().as_bytes(),
        ) {
            Ok(_) => break,
            Err(StoreError::AlreadyExists { .. }) => id += 1,
            Err(error) => return Err(blocking_error(error)),
        }
    }
    match store.create(
        &index_key,
        json!({"kind": "IdentityIndex", "id": id})
            .to_string()
            .as_bytes(),
    ) {
        Ok(_) => Ok(id),
        // Another allocator won the race for this label set: use its identity, drop ours.
        Err(StoreError::AlreadyExists { .. }) => {
            let _ = store.delete(&format!("{IDENTITY_PREFIX}{id}"), None);
            let existing = store.get(&index_key).map_err(blocking_error)?;
            let value: Value = serde_json::from_slice(&existing.value).map_err(blocking_error)?;
            value["id"]
                .as_u64()
                .ok_or_else(|| blocking_error("index entry without id"))
        }
        Err(error) => Err(blocking_error(error)),
    }
}

impl Controller for IdentityController {
    const NAME: &'static str = "identity";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        if change.object.get("kind") != Some(&json!("Pod"))
            || change.kind == crate::store::EventKind::Delete
        {
            return Vec::new();
        }
        let labels = serde_json::to_string(&identity_labels(&change.object)).unwrap_or_default();
        vec![ObjectKey::new(meta::namespace(&change.object), &labels)]
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        let (pods, _) = api
            .registry
            .list(super::template::resource("", "pods")?, None, None)
            .await?;
        Ok(pods
            .iter()
            .map(|pod| {
                ObjectKey::new(
                    meta::namespace(pod),
                    &serde_json::to_string(&identity_labels(pod)).unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        let labels: BTreeMap<String, String> =
            serde_json::from_str(&key.name).map_err(blocking_error)?;
        let namespace = key.namespace.clone().unwrap_or_default();
        let store = api.registry.store().clone();
        tokio::task::spawn_blocking(move || ensure_identity(store.as_ref(), &namespace, &labels))
            .await
            .map_err(blocking_error)??;
        api.registry.hub().wake();
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[test]
    fn one_label_set_one_identity_across_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let pod = |hash: &str, app: &str| json!({"metadata": {"labels": {"app": app, "pod-template-hash": hash}}});
        let web1 = ensure_identity(&store, "demo", &identity_labels(&pod("a", "web"))).unwrap();
        let web2 = ensure_identity(&store, "demo", &identity_labels(&pod("b", "web"))).unwrap();
        let db = ensure_identity(&store, "demo", &identity_labels(&pod("a", "db"))).unwrap();
        let other_namespace =
            ensure_identity(&store, "prod", &identity_labels(&pod("a", "web"))).unwrap();
        assert_eq!(web1, FIRST_IDENTITY);
        assert_eq!(web1, web2);
        assert_ne!(web1, db);
        assert_ne!(web1, other_namespace);
    }
}
