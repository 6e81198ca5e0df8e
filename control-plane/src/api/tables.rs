//! meta.k8s.io Table responses: the columns `kubectl get` prints for each served resource
//! (priority 1 columns only with `-o wide`), computed on the server as the API does.
use serde_json::{Value, json};

use super::meta;
use super::resources::Resource;

type Cell = fn(&Value) -> Value;

struct Column {
    name: &'static str,
    kind: &'static str,
    priority: u8,
    cell: Cell,
}

const fn column(name: &'static str, kind: &'static str, priority: u8, cell: Cell) -> Column {
    Column {
        name,
        kind,
        priority,
        cell,
    }
}

fn text(object: &Value, pointer: &str) -> String {
    match object.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn or_none(text: String) -> Value {
    Value::String(if text.is_empty() {
        "<none>".into()
    } else {
        text
    })
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn list<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// kubectl's short human durations: 45s, 3m12s, 5h, 3d4h, 2y.
pub fn human_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60).replace("m0s", "m"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60).replace("h0m", "h"),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600).replace("d0h", "d"),
        s if s < 2 * 365 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

fn since(object: &Value, pointer: &str) -> Value {
    match object
        .pointer(pointer)
        .and_then(Value::as_str)
        .and_then(meta::parse_time)
    {
        Some(time) => json!(human_duration(meta::now_seconds() - time)),
        None => json!("<unknown>"),
    }
}

fn name(object: &Value) -> Value {
    json!(meta::name(object))
}

fn age(object: &Value) -> Value {
    since(object, "/metadata/creationTimestamp")
}

fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let source = selector.get("matchLabels").unwrap_or(selector);
    let mut parts: Vec<String> = source
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| value.as_str().map(|value| format!("{key}={value}")))
        .collect();
    for expression in list(selector, "/matchExpressions") {
        let values: Vec<&str> = list(expression, "/values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let key = text(expression, "/key");
        parts.push(match text(expression, "/operator").as_str() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key,
        });
    }
    parts.join(",")
}

fn template_containers(object: &Value) -> Value {
    let names: Vec<String> = list(object, "/spec/template/spec/containers")
        .iter()
        .map(|c| text(c, "/name"))
        .collect();
    json!(names.join(","))
}

fn template_images(object: &Value) -> Value {
    let images: Vec<String> = list(object, "/spec/template/spec/containers")
        .iter()
        .map(|c| text(c, "/image"))
        .collect();
    json!(images.join(","))
}

fn workload_selector(object: &Value) -> Value {
    or_none(selector_text(object.pointer("/spec/selector")))
}

fn pod_ready(pod: &Value) -> Value {
    let statuses = list(pod, "/status/containerStatuses");
    let ready = statuses
        .iter()
        .filter(|status| status["ready"] == true)
        .count();
    json!(format!("{ready}/{}", list(pod, "/spec/containers").len()))
}

fn pod_status(pod: &Value) -> Value {
    if meta::is_deleting(pod) {
        return json!("Terminating");
    }
    let mut reason = text(pod, "/status/reason");
    if reason.is_empty() {
        reason = text(pod, "/status/phase");
    }
    for status in list(pod, "/status/containerStatuses") {
        let waiting = text(status, "/state/waiting/reason");
        let terminated = text(status, "/state/terminated/reason");
        if !waiting.is_empty() {
            reason = waiting;
        } else if !terminated.is_empty() {
            reason = terminated;
        }
    }
    json!(reason)
}

fn pod_restarts(pod: &Value) -> Value {
    json!(
        list(pod, "/status/containerStatuses")
            .iter()
            .map(|status| int(status, "/restartCount"))
            .sum::<i64>()
    )
}

fn service_ports(service: &Value) -> Value {
    let ports: Vec<String> = list(service, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = text(port, "/protocol");
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{}:{node_port}/{protocol}", int(port, "/port")),
                None => format!("{}/{protocol}", int(port, "/port")),
            }
        })
        .collect();
    or_none(ports.join(","))
}

fn service_external(service: &Value) -> Value {
    let mut addresses: Vec<String> = list(service, "/spec/externalIPs")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    addresses.extend(
        list(service, "/status/loadBalancer/ingress")
            .iter()
            .map(|ingress| text(ingress, "/ip")),
    );
    match (addresses.is_empty(), text(service, "/spec/type").as_str()) {
        (true, "LoadBalancer") => json!("<pending>"),
        (true, "ExternalName") => json!(text(service, "/spec/externalName")),
        _ => or_none(addresses.join(",")),
    }
}

fn endpoints_text(addresses: Vec<String>) -> Value {
    if addresses.len() > 3 {
        return json!(format!(
            "{} + {} more...",
            addresses[..3].join(","),
            addresses.len() - 3
        ));
    }
    or_none(addresses.join(","))
}

fn endpoints_addresses(endpoints: &Value) -> Value {
    let mut addresses = Vec::new();
    for subset in list(endpoints, "/subsets") {
        for address in list(subset, "/addresses") {
            for port in list(subset, "/ports") {
                addresses.push(format!("{}:{}", text(address, "/ip"), int(port, "/port")));
            }
        }
    }
    endpoints_text(addresses)
}

fn node_condition(node: &Value) -> Value {
    let ready = list(node, "/status/conditions")
        .iter()
        .find(|condition| condition["type"] == "Ready");
    let mut status = match ready.map(|condition| text(condition, "/status")) {
        Some(status) if status == "True" => "Ready".to_owned(),
        Some(status) if status == "False" || status == "Unknown" => "NotReady".to_owned(),
        _ => "Unknown".to_owned(),
    };
    if node.pointer("/spec/unschedulable") == Some(&json!(true)) {
        status.push_str(",SchedulingDisabled");
    }
    json!(status)
}

fn node_roles(node: &Value) -> Value {
    let roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    or_none(roles.join(","))
}

fn node_address(node: &Value, kind: &str) -> Value {
    let address = list(node, "/status/addresses")
        .iter()
        .find(|address| address["type"] == kind)
        .map(|address| text(address, "/address"));
    or_none(address.unwrap_or_default())
}

fn data_count(object: &Value) -> Value {
    let count = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_object)
            .map_or(0, |map| map.len())
    };
    json!(count("data") + count("binaryData"))
}

fn event_object(event: &Value) -> Value {
    json!(format!(
        "{}/{}",
        text(event, "/involvedObject/kind").to_lowercase(),
        text(event, "/involvedObject/name")
    ))
}

fn event_last_seen(event: &Value) -> Value {
    for pointer in [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ] {
        if event.pointer(pointer).is_some_and(|value| !value.is_null()) {
            return since(event, pointer);
        }
    }
    json!("<unknown>")
}

fn slice_ports(slice: &Value) -> Value {
    let ports: Vec<String> = list(slice, "/ports")
        .iter()
        .map(|port| int(port, "/port").to_string())
        .collect();
    if ports.is_empty() {
        json!("<unset>")
    } else {
        json!(ports.join(","))
    }
}

fn slice_endpoints(slice: &Value) -> Value {
    let addresses = list(slice, "/endpoints")
        .iter()
        .flat_map(|endpoint| list(endpoint, "/addresses"))
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    endpoints_text(addresses)
}

fn columns(resource: &Resource) -> Vec<Column> {
    let name_first = resource.kind != "Event";
    let rest = match resource.kind {
        "Pod" => vec![
            column("Ready", "string", 0, pod_ready),
            column("Status", "string", 0, pod_status),
            column("Restarts", "integer", 0, pod_restarts),
            column("Age", "string", 0, age),
            column("IP", "string", 1, |pod| or_none(text(pod, "/status/podIP"))),
            column("Node", "string", 1, |pod| {
                or_none(text(pod, "/spec/nodeName"))
            }),
            column("Nominated Node", "string", 1, |pod| {
                or_none(text(pod, "/status/nominatedNodeName"))
            }),
            column("Readiness Gates", "string", 1, |_| json!("<none>")),
        ],
        "Namespace" => vec![
            column("Status", "string", 0, |ns| json!(text(ns, "/status/phase"))),
            column("Age", "string", 0, age),
        ],
        "Service" => vec![
            column("Type", "string", 0, |svc| json!(text(svc, "/spec/type"))),
            column("Cluster-IP", "string", 0, |svc| {
                or_none(text(svc, "/spec/clusterIP"))
            }),
            column("External-IP", "string", 0, service_external),
            column("Port(s)", "string", 0, service_ports),
            column("Age", "string", 0, age),
            column("Selector", "string", 1, |svc| {
                or_none(selector_text(svc.pointer("/spec/selector")))
            }),
        ],
        "Endpoints" => vec![
            column("Endpoints", "string", 0, endpoints_addresses),
            column("Age", "string", 0, age),
        ],
        "EndpointSlice" => vec![
            column("AddressType", "string", 0, |slice| {
                json!(text(slice, "/addressType"))
            }),
            column("Ports", "string", 0, slice_ports),
            column("Endpoints", "string", 0, slice_endpoints),
            column("Age", "string", 0, age),
        ],
        "Node" => vec![
            column("Status", "string", 0, node_condition),
            column("Roles", "string", 0, node_roles),
            column("Age", "string", 0, age),
            column("Version", "string", 0, |node| {
                json!(text(node, "/status/nodeInfo/kubeletVersion"))
            }),
            column("Internal-IP", "string", 1, |node| {
                node_address(node, "InternalIP")
            }),
            column("External-IP", "string", 1, |node| {
                node_address(node, "ExternalIP")
            }),
            column("OS-Image", "string", 1, |node| {
                json!(text(node, "/status/nodeInfo/osImage"))
            }),
            column("Kernel-Version", "string", 1, |node| {
                json!(text(node, "/status/nodeInfo/kernelVersion"))
            }),
            column("Container-Runtime", "string", 1, |node| {
                json!(text(node, "/status/nodeInfo/containerRuntimeVersion"))
            }),
        ],
        "ConfigMap" => vec![
            column("Data", "integer", 0, data_count),
            column("Age", "string", 0, age),
        ],
        "Secret" => vec![
            column("Type", "string", 0, |secret| json!(text(secret, "/type"))),
            column("Data", "integer", 0, data_count),
            column("Age", "string", 0, age),
        ],
        "Event" => vec![
            column("Last Seen", "string", 0, event_last_seen),
            column("Type", "string", 0, |event| json!(text(event, "/type"))),
            column("Reason", "string", 0, |event| json!(text(event, "/reason"))),
            column("Object", "string", 0, event_object),
            column("Message", "string", 0, |event| {
                json!(text(event, "/message"))
            }),
            column("Name", "string", 1, name),
            column("Count", "integer", 1, |event| {
                json!(int(event, "/count").max(1))
            }),
        ],
        "Lease" => vec![
            column("Holder", "string", 0, |lease| {
                json!(text(lease, "/spec/holderIdentity"))
            }),
            column("Age", "string", 0, age),
        ],
        "Deployment" => vec![
            column("Ready", "string", 0, |d| {
                json!(format!(
                    "{}/{}",
                    int(d, "/status/readyReplicas"),
                    int(d, "/spec/replicas")
                ))
            }),
            column("Up-to-date", "integer", 0, |d| {
                json!(int(d, "/status/updatedReplicas"))
            }),
            column("Available", "integer", 0, |d| {
                json!(int(d, "/status/availableReplicas"))
            }),
            column("Age", "string", 0, age),
            column("Containers", "string", 1, template_containers),
            column("Images", "string", 1, template_images),
            column("Selector", "string", 1, workload_selector),
        ],
        "ReplicaSet" => vec![
            column("Desired", "integer", 0, |rs| {
                json!(int(rs, "/spec/replicas"))
            }),
            column("Current", "integer", 0, |rs| {
                json!(int(rs, "/status/replicas"))
            }),
            column("Ready", "integer", 0, |rs| {
                json!(int(rs, "/status/readyReplicas"))
            }),
            column("Age", "string", 0, age),
            column("Containers", "string", 1, template_containers),
            column("Images", "string", 1, template_images),
            column("Selector", "string", 1, workload_selector),
        ],
        "DaemonSet" => vec![
            column("Desired", "integer", 0, |ds| {
                json!(int(ds, "/status/desiredNumberScheduled"))
            }),
            column("Current", "integer", 0, |ds| {
                json!(int(ds, "/status/currentNumberScheduled"))
            }),
            column("Ready", "integer", 0, |ds| {
                json!(int(ds, "/status/numberReady"))
            }),
            column("Up-to-date", "integer", 0, |ds| {
                json!(int(ds, "/status/updatedNumberScheduled"))
            }),
            column("Available", "integer", 0, |ds| {
                json!(int(ds, "/status/numberAvailable"))
            }),
            column("Node Selector", "string", 0, |ds| {
                or_none(selector_text(
                    ds.pointer("/spec/template/spec/nodeSelector"),
                ))
            }),
            column("Age", "string", 0, age),
            column("Containers", "string", 1, template_containers),
            column("Images", "string", 1, template_images),
            column("Selector", "string", 1, workload_selector),
        ],
        "NetworkPolicy" => vec![
            column("Pod-Selector", "string", 0, |policy| {
                or_none(selector_text(policy.pointer("/spec/podSelector")))
            }),
            column("Age", "string", 0, age),
        ],
        _ => vec![column("Age", "string", 0, age)],
    };
    let mut columns = if name_first {
        vec![column("Name", "string", 0, name)]
    } else {
        Vec::new()
    };
    columns.extend(rest);
    columns
}

fn partial_metadata(object: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": object.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A Table of `objects`; `version` is the meta.k8s.io version the client asked for.
pub fn table(resource: &Resource, objects: &[Value], version: &str, list_metadata: Value) -> Value {
    let columns = columns(resource);
    let definitions: Vec<Value> = columns
        .iter()
        .map(|column| {
            let format = if column.name == "Name" { "name" } else { "" };
            json!({"name": column.name, "type": column.kind, "format": format, "description": "", "priority": column.priority})
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            json!({
                "cells": columns.iter().map(|column| (column.cell)(object)).collect::<Vec<_>>(),
                "object": partial_metadata(object, version),
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(185), "3m5s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
        assert_eq!(human_duration(86400 * 800), "2y");
    }

    #[test]
    fn pod_rows_show_readiness_status_and_restarts() {
        let pods = resources::find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "web-1", "creationTimestamp": meta::now()},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 1, "state": {"running": {}}},
                {"ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let table = table(pods, &[pod], "v1", json!({"resourceVersion": "5"}));
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[0], "web-1");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], 3);
        assert_eq!(cells[5], "10.1.0.5");
        assert_eq!(table["columnDefinitions"][5]["priority"], 1);
        assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "web-1");
    }

    #[test]
    fn services_show_node_ports_and_selectors() {
        let services = resources::find("", "v1", "services").unwrap();
        let service = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "selector": {"app": "web"}, "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let table = table(services, &[service], "v1", json!({}));
        let cells = &table["rows"][0]["cells"];
        assert_eq!(cells[2], "10.96.0.10");
        assert_eq!(cells[3], "<none>");
        assert_eq!(cells[4], "80:30080/TCP");
        assert_eq!(cells[6], "app=web");
    }
}
