//! Events: what controllers and the scheduler did, as core/v1 Events on the object they
//! concern (what `kubectl describe` lists). Recording never blocks or fails the caller, and
//! events older than an hour are swept, as the API server's TTL does.
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::admission;
use crate::api::deletion::{self, DeleteOptions};
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::resources;

pub const TTL: Duration = Duration::from_secs(3600);

fn event(involved: &Value, normal: bool, reason: &str, message: &str, component: &str) -> Value {
    let now = meta::now();
    let namespace = meta::namespace(involved).unwrap_or("default");
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{}", meta::name(involved), meta::random_suffix()), "namespace": namespace},
        "involvedObject": {
            "kind": involved["kind"], "apiVersion": involved["apiVersion"], "namespace": meta::namespace(involved),
            "name": meta::name(involved), "uid": meta::uid(involved),
            "resourceVersion": involved.pointer("/metadata/resourceVersion"),
        },
        "reason": reason, "message": message, "type": if normal { "Normal" } else { "Warning" },
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    })
}

/// Records an event; a failure is logged, never returned (events are best effort).
pub async fn record(
    api: &Api,
    involved: &Value,
    normal: bool,
    reason: &str,
    message: String,
    component: &str,
) {
    let object = event(involved, normal, reason, &message, component);
    let Some(events) = resources::find("", "v1", "events") else {
        return;
    };
    let namespace = meta::namespace(&object).map(str::to_owned);
    let result = match admission::prepare_create(
        &api.registry,
        events,
        namespace.as_deref(),
        object,
    )
    .await
    {
        Ok(prepared) => api.registry.create(events, prepared).await.map(|_| ()),
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        tracing::debug!(%error, reason, "recording an event");
    }
}

/// Records an event without waiting for it.
pub fn record_detached(
    api: &Arc<Api>,
    involved: &Value,
    normal: bool,
    reason: &'static str,
    message: String,
    component: &'static str,
) {
    let api = api.clone();
    let involved = involved.clone();
    tokio::spawn(async move { record(&api, &involved, normal, reason, message, component).await });
}

/// Deletes events older than the TTL, every few minutes.
pub async fn sweep(api: Arc<Api>) {
    loop {
        tokio::time::sleep(Duration::from_secs(300)).await;
        let Some(events) = resources::find("", "v1", "events") else {
            return;
        };
        let Ok((items, _)) = api.registry.list(events, None, None).await else {
            continue;
        };
        let cutoff = meta::now_seconds() - TTL.as_secs() as i64;
        for item in items {
            let stamp = meta::str_field(&item, "/lastTimestamp")
                .or_else(|| meta::str_field(&item, "/metadata/creationTimestamp"));
            if stamp
                .and_then(meta::parse_time)
                .is_some_and(|time| time < cutoff)
            {
                let _ = deletion::delete(
                    &api.registry,
                    events,
                    meta::namespace(&item),
                    meta::name(&item),
                    &DeleteOptions::default(),
                )
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_object_they_concern() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": "7"}});
        let event = event(
            &pod,
            false,
            "FailedScheduling",
            "0/1 nodes are available.",
            "default-scheduler",
        );
        assert_eq!(event["metadata"]["namespace"], "shop");
        assert!(
            event["metadata"]["name"]
                .as_str()
                .is_some_and(|name| name.starts_with("web-1."))
        );
        assert_eq!(event["involvedObject"]["uid"], "u1");
        assert_eq!(event["type"], "Warning");
    }
}
