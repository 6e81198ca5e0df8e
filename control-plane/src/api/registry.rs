//! Objects in the store: keys from the resource table, JSON values whose resourceVersion is
//! the store revision, and a read-modify-write loop that retries on conflicts. The HTTP
//! handlers and the in-process controllers both go through here.
use std::sync::Arc;

use serde_json::Value;

use super::meta;
use super::resources::Resource;
use super::status::{ApiError, from_store};
use super::watch::WatchHub;
use crate::store::{Object, Store, StoreError};

#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    hub: Arc<WatchHub>,
}

/// Runs a (synchronous) store call off the async workers.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<Result<T, StoreError>, ApiError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|error| ApiError::Internal(format!("store call failed: {error}")))
}

/// The stored bytes as an API object: the resourceVersion is the revision that wrote it.
pub fn decode(object: &Object) -> Result<Value, ApiError> {
    let mut value: Value = serde_json::from_slice(&object.value).map_err(|error| {
        ApiError::Internal(format!("stored object {} is not JSON: {error}", object.key))
    })?;
    meta::set_resource_version(&mut value, object.mod_revision);
    Ok(value)
}

fn encode(object: &Value) -> Result<Vec<u8>, ApiError> {
    // resourceVersion is derived from the store on every read, so it is never stored.
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&object).map_err(|error| ApiError::Internal(format!("encoding: {error}")))
}

/// What an update closure decides.
pub enum Change {
    Write(Value),
    Delete,
    Keep,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, hub: Arc<WatchHub>) -> Registry {
        Registry { store, hub }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.hub
    }

    pub async fn get(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = resource.key(namespace, name);
        let store = self.store.clone();
        let object = blocking(move || store.get(&key))
            .await?
            .map_err(|error| from_store(error, resource.plural, name))?;
        decode(&object)
    }

    async fn listing(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        at: Option<u64>,
    ) -> Result<crate::store::Listing, ApiError> {
        let prefix = resource.scope_prefix(namespace);
        let store = self.store.clone();
        blocking(move || store.list(&prefix, at))
            .await?
            .map_err(|error| from_store(error, resource.plural, ""))
    }

    /// The objects of a resource (in one namespace or all), at a revision or now.
    pub async fn list(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        at: Option<u64>,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let listing = self.listing(resource, namespace, at).await?;
        let items = listing
            .items
            .iter()
            .map(decode)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, listing.revision))
    }

    /// The stored objects as they are (JSON bytes), for readers that need only a few fields
    /// of many objects.
    pub async fn list_raw(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
    ) -> Result<Vec<Object>, ApiError> {
        Ok(self.listing(resource, namespace, None).await?.items)
    }

    pub async fn create(
        &self,
        resource: &'static Resource,
        object: Value,
    ) -> Result<Value, ApiError> {
        self.put(resource, object, |store, key, bytes| {
            store.create(key, bytes)
        })
        .await
    }

    /// Writes `object` over the stored one; with `expected`, only if it is still at that
    /// revision (409 otherwise).
    pub async fn update(
        &self,
        resource: &'static Resource,
        object: Value,
        expected: Option<u64>,
    ) -> Result<Value, ApiError> {
        self.put(resource, object, move |store, key, bytes| {
            store.update(key, bytes, expected)
        })
        .await
    }

    /// Stores `object` under its key with `write`, and returns it at the revision written.
    async fn put(
        &self,
        resource: &'static Resource,
        mut object: Value,
        write: impl FnOnce(&dyn Store, &str, &[u8]) -> Result<Object, StoreError> + Send + 'static,
    ) -> Result<Value, ApiError> {
        let name = meta::name(&object).to_owned();
        let key = resource.key(meta::namespace(&object), &name);
        let bytes = encode(&object)?;
        let store = self.store.clone();
        let stored = blocking(move || write(store.as_ref(), &key, &bytes))
            .await?
            .map_err(|error| from_store(error, resource.plural, &name))?;
        self.hub.wake();
        meta::set_resource_version(&mut object, stored.mod_revision);
        Ok(object)
    }

    pub async fn delete(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        expected: Option<u64>,
    ) -> Result<Value, ApiError> {
        let key = resource.key(namespace, name);
        let store = self.store.clone();
        let deleted = blocking(move || store.delete(&key, expected))
            .await?
            .map_err(|error| from_store(error, resource.plural, name))?;
        self.hub.wake();
        decode(&deleted)
    }

    /// Reads the object, lets `change` decide, and writes the result guarded by the revision
    /// it read; a concurrent write makes it read and decide again (apiserver's
    /// GuaranteedUpdate). Returns the object as written (or as read, for `Keep`).
    pub async fn read_modify_write(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        name: &str,
        mut change: impl FnMut(Value) -> Result<Change, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self.get(resource, namespace, name).await?;
            let revision = meta::resource_version(&current);
            let outcome = match change(current.clone())? {
                Change::Keep => return Ok(current),
                Change::Write(object) => self.update(resource, object, revision).await,
                Change::Delete => self.delete(resource, namespace, name, revision).await,
            };
            match outcome {
                Err(ApiError::Conflict { .. }) if attempts < 16 => continue,
                other => return other,
            }
        }
    }
}
