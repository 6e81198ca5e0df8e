//! What every cluster starts with: the default, kube-system, kube-public and kube-node-lease
//! namespaces and the `kubernetes` service in front of the API server.
use serde_json::{Value, json};

use super::admission;
use super::handlers::Api;
use super::resources;
use super::status::ApiError;

async fn ensure(
    api: &Api,
    plural: &str,
    namespace: Option<&str>,
    object: Value,
) -> Result<(), ApiError> {
    let resource = resources::require("", plural)?;
    let name = object["metadata"]["name"].as_str().unwrap_or("").to_owned();
    match api.registry.get(resource, namespace, &name).await {
        Ok(_) => return Ok(()),
        Err(ApiError::NotFound { .. }) => {}
        Err(error) => return Err(error),
    }
    let mut prepared =
        admission::prepare_create(&api.registry, resource, namespace, object).await?;
    let claims = api.allocator.claim(resource, &mut prepared, None).await?;
    match api.registry.create(resource, prepared).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(error) => {
            api.allocator.release(claims).await;
            Err(error)
        }
    }
}

/// Creates what is missing; `advertise` is the API server's address and port as pods reach it.
pub async fn run(api: &Api, advertise: (&str, u16)) -> Result<(), ApiError> {
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(api, "namespaces", None, json!({"metadata": {"name": name}})).await?;
    }
    let first_ip = api.allocator.first_ip().to_string();
    ensure(api, "services", Some("default"), json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": first_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertise.1}]},
    }))
    .await?;
    ensure(api, "endpoints", Some("default"), json!({
        "metadata": {"name": "kubernetes"},
        "subsets": [{"addresses": [{"ip": advertise.0}], "ports": [{"name": "https", "port": advertise.1, "protocol": "TCP"}]}],
    }))
    .await
}
