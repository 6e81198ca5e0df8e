//! The verbs: one request (already authenticated and routed) to one reply.
mod logs;
mod read;
mod remove;
mod write;

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use super::allocation::Allocator;
use super::authz;
use super::pki::Identity;
use super::registry::Registry;
use super::request::{Presentation, Query, Target};
use super::status::ApiError;

/// What the server sends back.
pub enum Reply {
    Json(u16, Value),
    /// A watch: newline-delimited JSON events as they happen.
    Stream(mpsc::Receiver<Vec<u8>>),
    /// Plain text as it comes (pod logs).
    TextStream(mpsc::Receiver<Vec<u8>>),
}

/// Everything a verb needs from the server.
pub struct Api {
    pub registry: Registry,
    pub allocator: Arc<Allocator>,
    /// Log requests to agents over their node API streams.
    pub logs: Arc<crate::node_api::logs::LogBroker>,
}

/// The parts of a request the verbs read.
pub struct Call<'a> {
    pub method: &'a str,
    pub query: &'a Query,
    pub presentation: Presentation,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub identity: &'a Identity,
}

pub async fn handle(api: &Api, target: Target, call: Call<'_>) -> Result<Reply, ApiError> {
    let watching = call.query.flag("watch");
    let verb = match (call.method, target.name.is_some()) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (method, _) => {
            return Err(ApiError::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    };
    authz::authorize(
        &api.registry,
        call.identity,
        verb,
        &target,
        call.query,
        call.body,
    )
    .await?;
    if target.subresource.is_none() && !target.resource.allows(verb) {
        return Err(ApiError::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource ({verb} {})",
            target.resource.plural
        )));
    }
    match verb {
        "watch" => read::watch(api, &target, &call),
        "get" => read::get(api, &target, &call).await,
        "list" => read::list(api, &target, &call).await,
        "create" => write::create(api, &target, &call).await,
        "update" => write::update(api, &target, &call).await,
        "patch" => write::patch(api, &target, &call).await,
        "delete" => remove::delete_one(api, &target, &call).await,
        _ => remove::delete_collection(api, &target, &call).await,
    }
}
