//! Service endpoints: for every service with a selector, one EndpointSlice (and the
//! legacy Endpoints object) listing the selected pods that have an IP, with ready,
//! serving and terminating conditions and target ports resolved by name.
use std::time::Duration;

use serde_json::{Value, json};

use super::template::{self, pod_ready};
use super::{Controller, ObjectKey};
use crate::api::admission;
use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::selectors::LabelSelector;
use crate::api::status::ApiError;
use crate::api::watch::Change;

pub struct EndpointsController;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGER: &str = "endpointslice-controller.k8s.io";
const ALL_IN_NAMESPACE: &str = "*";

/// The pod port a service port's targetPort names (a number, or a container port's name).
fn target_port(service_port: &Value, pod: Option<&Value>) -> Option<i64> {
    match service_port.get("targetPort") {
        Some(Value::Number(number)) => number.as_i64(),
        Some(Value::String(name)) => match name.parse() {
            Ok(number) => Some(number),
            Err(_) => pod?
                .pointer("/spec/containers")
                .and_then(Value::as_array)?
                .iter()
                .flat_map(|container| {
                    container
                        .get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|port| port.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|port| port.get("containerPort"))
                .and_then(Value::as_i64),
        },
        _ => service_port.get("port").and_then(Value::as_i64),
    }
}

/// The endpoint slice body and the legacy subsets for `service` over `pods`.
pub fn endpoints_for(service: &Value, pods: &[Value]) -> (Value, Value, Value) {
    let selected: Vec<&Value> = pods
        .iter()
        .filter(|pod| meta::str_field(pod, "/status/podIP").is_some_and(|ip| !ip.is_empty()))
        .filter(|pod| {
            !matches!(
                meta::str_field(pod, "/status/phase"),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    let first = selected.first().copied();
    let service_ports: Vec<&Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let ports: Vec<Value> = service_ports
        .iter()
        .map(|port| json!({"name": port.get("name").cloned().unwrap_or(json!("")), "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP")), "port": target_port(port, first)}))
        .collect();
    let endpoints: Vec<Value> = selected
        .iter()
        .map(|pod| {
            let terminating = meta::is_deleting(pod);
            json!({
                "addresses": [meta::str_field(pod, "/status/podIP")],
                "conditions": {"ready": pod_ready(pod), "serving": pod_ready_ignoring_deletion(pod), "terminating": terminating},
                "nodeName": pod.pointer("/spec/nodeName"),
                "targetRef": {"kind": "Pod", "namespace": meta::namespace(pod), "name": meta::name(pod), "uid": meta::uid(pod)},
            })
        })
        .collect();
    let address = |pod: &&Value| json!({"ip": meta::str_field(pod, "/status/podIP"), "nodeName": pod.pointer("/spec/nodeName"), "targetRef": {"kind": "Pod", "namespace": meta::namespace(pod), "name": meta::name(pod), "uid": meta::uid(pod)}});
    let ready: Vec<Value> = selected
        .iter()
        .filter(|pod| pod_ready(pod))
        .map(address)
        .collect();
    let not_ready: Vec<Value> = selected
        .iter()
        .filter(|pod| !pod_ready(pod))
        .map(address)
        .collect();
    let subsets = if selected.is_empty() {
        json!([])
    } else {
        let mut subset = json!({"ports": ports.iter().map(|port| json!({"name": port["name"], "protocol": port["protocol"], "port": port["port"]})).collect::<Vec<_>>()});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        json!([subset])
    };
    (json!(endpoints), json!(ports), subsets)
}

/// Readiness as reported, even while the pod is being deleted (EndpointSlice `serving`).
fn pod_ready_ignoring_deletion(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
}

impl EndpointsController {
    async fn sync_service(
        &self,
        api: &Api,
        service: &Value,
        pods: &[Value],
        slices: &[Value],
    ) -> Result<(), ApiError> {
        let Some(selector) = service
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        else {
            return Ok(());
        };
        let selector = LabelSelector::from_object(&json!({"matchLabels": selector}))
            .map_err(|error| ApiError::BadRequest(error.to_string()))?;
        let chosen: Vec<Value> = pods
            .iter()
            .filter(|pod| selector.matches_object(pod))
            .cloned()
            .collect();
        let (endpoints, ports, subsets) = endpoints_for(service, &chosen);
        let namespace = meta::namespace(service).unwrap_or("default");
        let name = meta::name(service);
        let owner = template::owner_reference(service, "v1", "Service");
        let slice_resource = template::resource("discovery.k8s.io", "endpointslices")?;
        let existing = slices.iter().find(|slice| {
            meta::str_field(
                slice,
                &format!("/metadata/labels/{}", SERVICE_NAME_LABEL.replace('/', "~1")),
            ) == Some(name)
        });
        match existing {
            Some(slice) if slice["endpoints"] == endpoints && slice["ports"] == ports => {}
            Some(slice) => {
                let mut updated = slice.clone();
                updated["endpoints"] = endpoints;
                updated["ports"] = ports;
                api.registry
                    .update(slice_resource, updated, meta::resource_version(slice))
                    .await?;
            }
            None => {
                let slice = json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{name}-"), "namespace": namespace,
                                 "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGER}, "ownerReferences": [owner.clone()]},
                    "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
                });
                let prepared = admission::prepare_create(
                    &api.registry,
                    slice_resource,
                    Some(namespace),
                    slice,
                )
                .await?;
                api.registry.create(slice_resource, prepared).await?;
            }
        }
        let endpoints_resource = template::resource("", "endpoints")?;
        match api
            .registry
            .get(endpoints_resource, Some(namespace), name)
            .await
        {
            Ok(current) if current.get("subsets") == Some(&subsets) => Ok(()),
            Ok(current) => {
                let mut updated = current.clone();
                updated["subsets"] = subsets;
                api.registry
                    .update(
                        endpoints_resource,
                        updated,
                        meta::resource_version(&current),
                    )
                    .await
                    .map(|_| ())
            }
            Err(ApiError::NotFound { .. }) => {
                let object = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner]}, "subsets": subsets});
                let prepared = admission::prepare_create(
                    &api.registry,
                    endpoints_resource,
                    Some(namespace),
                    object,
                )
                .await?;
                api.registry
                    .create(endpoints_resource, prepared)
                    .await
                    .map(|_| ())
            }
            Err(error) => Err(error),
        }
    }
}

impl Controller for EndpointsController {
    const NAME: &'static str = "endpointslice";

    fn keys_for(&self, change: &Change) -> Vec<ObjectKey> {
        match change.object.get("kind").and_then(Value::as_str) {
            Some("Service" | "Pod") => vec![ObjectKey::new(
                meta::namespace(&change.object),
                ALL_IN_NAMESPACE,
            )],
            _ => Vec::new(),
        }
    }

    async fn all_keys(&self, api: &Api) -> Result<Vec<ObjectKey>, ApiError> {
        let (items, _) = api
            .registry
            .list(template::resource("", "namespaces")?, None, None)
            .await?;
        Ok(items
            .iter()
            .map(|namespace| ObjectKey::new(Some(meta::name(namespace)), ALL_IN_NAMESPACE))
            .collect())
    }

    async fn reconcile(&self, api: &Api, key: &ObjectKey) -> Result<Option<Duration>, ApiError> {
        let Some(namespace) = key.namespace.as_deref() else {
            return Ok(None);
        };
        let (services, _) = api
            .registry
            .list(template::resource("", "services")?, Some(namespace), None)
            .await?;
        if services
            .iter()
            .all(|service| service.pointer("/spec/selector").is_none_or(Value::is_null))
        {
            return Ok(None);
        }
        let (pods, _) = api
            .registry
            .list(template::resource("", "pods")?, Some(namespace), None)
            .await?;
        let (slices, _) = api
            .registry
            .list(
                template::resource("discovery.k8s.io", "endpointslices")?,
                Some(namespace),
                None,
            )
            .await?;
        for service in services
            .iter()
            .filter(|service| !meta::is_deleting(service))
        {
            match self.sync_service(api, service, &pods, &slices).await {
                Ok(()) | Err(ApiError::NotFound { .. }) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(ApiError::Forbidden(_)) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_list_pods_with_ips_and_resolve_named_ports() {
        let service = json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}]}});
        let pod = |name: &str, ip: &str, ready: &str| {
            json!({"metadata": {"name": name, "namespace": "d", "uid": name},
            "spec": {"nodeName": "n1", "containers": [{"ports": [{"name": "web", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": ready}]}})
        };
        let pods = vec![
            pod("a", "10.0.0.1", "True"),
            pod("b", "10.0.0.2", "False"),
            pod("c", "", "True"),
        ];
        let (endpoints, ports, subsets) = endpoints_for(&service, &pods);
        assert_eq!(ports[0]["port"], 8080);
        assert_eq!(endpoints.as_array().unwrap().len(), 2);
        assert_eq!(endpoints[0]["conditions"]["ready"], true);
        assert_eq!(endpoints[1]["conditions"]["ready"], false);
        assert_eq!(subsets[0]["addresses"][0]["ip"], "10.0.0.1");
        assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "10.0.0.2");
    }
}
