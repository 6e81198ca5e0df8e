//! pods/log: which container, the kubelet's query options, and the agent's answer streamed
//! back as plain text (the agent is reached over its node API log stream).
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::{Api, Call, Reply};
use crate::api::meta;
use crate::api::status::ApiError;
use crate::node_api::proto::LogRequest;

/// The container a log request is for: the one named, or the pod's only one.
pub fn container_of(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = meta::name(pod);
    let containers: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|key| {
            pod.pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|container| container.get("name").and_then(Value::as_str))
        .collect();
    match requested {
        Some(container) if containers.contains(&container) => Ok(container.to_owned()),
        Some(container) => Err(ApiError::BadRequest(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => match pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([only]) => Ok(only
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()),
            _ => Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            ))),
        },
    }
}

pub async fn pod_log(api: &Api, pod: &Value, call: &Call<'_>) -> Result<Reply, ApiError> {
    let name = meta::name(pod);
    let node = meta::str_field(pod, "/spec/nodeName")
        .filter(|node| !node.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let container = container_of(pod, call.query.get("container"))?;
    let request = LogRequest {
        id: 0,
        namespace: meta::namespace(pod).unwrap_or("").to_owned(),
        pod: name.to_owned(),
        container,
        follow: call.query.flag("follow"),
        tail_lines: call.query.number("tailLines")?.unwrap_or(-1),
        previous: call.query.flag("previous"),
        timestamps: call.query.flag("timestamps"),
        since_seconds: call.query.number("sinceSeconds")?.unwrap_or(0),
        cancel: false,
    };
    let mut stream = api.logs.request(node, request).await?;
    // The first answer decides the status: an error (no such container, no previous
    // instance) is a 400 as from the kubelet; anything else streams.
    let first = tokio::time::timeout(Duration::from_secs(30), stream.chunks.recv())
        .await
        .map_err(|_| {
            ApiError::ServiceUnavailable(format!("node \"{node}\" did not answer the log request"))
        })?
        .ok_or_else(|| {
            ApiError::ServiceUnavailable(format!("node \"{node}\" dropped the log request"))
        })?;
    if !first.error.is_empty() {
        return Err(ApiError::BadRequest(first.error));
    }
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut chunk = Some(first);
        while let Some(current) = chunk {
            if !current.data.is_empty() && sender.send(current.data).await.is_err() {
                return;
            }
            if current.done || !current.error.is_empty() {
                return;
            }
            chunk = stream.chunks.recv().await;
        }
    });
    Ok(Reply::TextStream(receiver))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_named_or_the_only_one() {
        let single = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}]}});
        assert_eq!(container_of(&single, None).unwrap(), "a");
        let two = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "init"}]}});
        assert!(
            matches!(container_of(&two, None), Err(ApiError::BadRequest(message)) if message.ends_with("choose one of: [a b init]"))
        );
        assert_eq!(container_of(&two, Some("init")).unwrap(), "init");
        assert!(
            matches!(container_of(&two, Some("c")), Err(ApiError::BadRequest(message)) if message == "container c is not valid for pod web")
        );
    }
}
