//! Namespace lifecycle: a namespace being deleted is emptied of every namespaced object,
//! then its `kubernetes` finalizer is removed and it goes.
use std::time::Duration;

use serde_json::{Value, json};

use super::{Controller, ObjectKey};
use crate::api::deletion::{self, DeleteOptions};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::resources::RESOURCES;
use crate::api::status::ApiError;
use crate::api::watch::Change;

pub struct NamespaceController;

impl Controller for NamespaceController {
    const NAME: &'static str = "namespace";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        let is_namespace = change.object.get("kind") == Some(&json!("Namespace"));
        if is_namespace && meta::is_deleting(&change.object) {
            return vec![ObjectKey::new(None, meta::name(&change.object))];
        }
        Vec::new()
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        let namespaces = super::template::resource("", "namespaces")?;
        let (items, _) = api.registry.list(namespaces, None, None).await?;
        Ok(items
            .iter()
            .filter(|ns| meta::is_deleting(ns))
            .map(ObjectKey::of)
            .collect())
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        let namespaces = super::template::resource("", "namespaces")?;
        let Some(namespace) = super::template::fetch(api, namespaces, None, &key.name).await?
        else {
            return Ok(None);
        };
        if !meta::is_deleting(&namespace) {
            return Ok(None);
        }
        let mut remaining = 0;
        for resource in RESOURCES
            .iter()
            .filter(|resource| resource.namespaced && resource.allows("list"))
        {
            let (items, _) = api.registry.list(resource, Some(&key.name), None).await?;
            remaining += items.len();
            for object in items.iter().filter(|object| !meta::is_deleting(object)) {
                super::template::delete_if_present(
                    api,
                    resource,
                    Some(&key.name),
                    meta::name(object),
                )
                .await?;
            }
        }
        if remaining > 0 {
            // Pods stopping on their nodes and objects with finalizers take a while.
            return Ok(Some(Duration::from_millis(500)));
        }
        let finalized = api
            .registry
            .read_modify_write(namespaces, None, &key.name, |mut namespace| {
                namespace["spec"]["finalizers"] = Value::Array(Vec::new());
                Ok(crate::api::registry::Change::Write(namespace))
            })
            .await;
        match finalized {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
        match deletion::delete(
            &api.registry,
            namespaces,
            None,
            &key.name,
            &DeleteOptions::default(),
        )
        .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}
