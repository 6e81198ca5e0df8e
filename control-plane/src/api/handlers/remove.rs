//! delete and deletecollection.
use serde_json::json;

use super::{Api, Call, Reply};
use crate::api::deletion::{self, DeleteOptions, Deleted};
use crate::api::meta;
use crate::api::request::Target;
use crate::api::selectors::{FieldSelector, LabelSelector};
use crate::api::status::ApiError;

async fn delete_named(
    api: &Api,
    target: &Target,
    name: &str,
    options: &DeleteOptions,
) -> Result<serde_json::Value, ApiError> {
    let deleted = deletion::delete(
        &api.registry,
        target.resource,
        target.namespace.as_deref(),
        name,
        options,
    )
    .await?;
    Ok(match deleted {
        Deleted::Gone(object) => {
            if !options.dry_run {
                api.allocator.release_all(target.resource, &object).await;
            }
            object
        }
        Deleted::Marked(object) => object,
    })
}

pub async fn delete_one(api: &Api, target: &Target, call: &Call<'_>) -> Result<Reply, ApiError> {
    if target.subresource.is_some() {
        return Err(ApiError::MethodNotAllowed(
            "subresources cannot be deleted".into(),
        ));
    }
    let options = DeleteOptions::parse(call.body, call.query)?;
    let object = delete_named(api, target, target.name.as_deref().unwrap_or(""), &options).await?;
    Ok(Reply::Json(200, object))
}

pub async fn delete_collection(
    api: &Api,
    target: &Target,
    call: &Call<'_>,
) -> Result<Reply, ApiError> {
    let options = DeleteOptions::parse(call.body, call.query)?;
    let labels = LabelSelector::parse(call.query.get("labelSelector").unwrap_or(""))
        .map_err(|error| ApiError::BadRequest(format!("labelSelector: {error}")))?;
    let fields = FieldSelector::parse(call.query.get("fieldSelector").unwrap_or(""))
        .map_err(|error| ApiError::BadRequest(format!("fieldSelector: {error}")))?;
    let (items, revision) = api
        .registry
        .list(target.resource, target.namespace.as_deref(), None)
        .await?;
    let mut deleted = Vec::new();
    for object in items
        .iter()
        .filter(|object| labels.matches_object(object) && fields.matches(object))
    {
        let scoped = Target {
            resource: target.resource,
            namespace: meta::namespace(object).map(str::to_owned),
            name: None,
            subresource: None,
        };
        match delete_named(api, &scoped, meta::name(object), &options).await {
            Ok(object) => deleted.push(object),
            // Deleted meanwhile by someone else: that is what was asked for.
            Err(ApiError::NotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(Reply::Json(
        200,
        json!({
            "kind": format!("{}List", target.resource.kind),
            "apiVersion": target.resource.api_version(),
            "metadata": {"resourceVersion": revision.to_string()},
            "items": deleted,
        }),
    ))
}
