//! Semantic validation of the served kinds, beyond the schema: names, labels, required
//! values, ranges and cross-field rules, reported per field as the API does.
use serde_json::{Map, Value};

use super::meta;
use super::quantity;
use super::selectors::LabelSelector;
use super::status::FieldCause;

type Causes = Vec<FieldCause>;

fn required(causes: &mut Causes, path: &str) {
    causes.push(FieldCause::new(path, "Required value"));
}

fn invalid(causes: &mut Causes, path: &str, value: &Value, why: &str) {
    causes.push(FieldCause::new(
        path,
        format!("Invalid value: {value}: {why}"),
    ));
}

fn unsupported(causes: &mut Causes, path: &str, value: &Value, allowed: &[&str]) {
    let allowed: Vec<String> = allowed.iter().map(|value| format!("\"{value}\"")).collect();
    causes.push(FieldCause::new(
        path,
        format!(
            "Unsupported value: {value}: supported values: {}",
            allowed.join(", ")
        ),
    ));
}

fn label_value_problem(value: &str) -> Option<&'static str> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edges = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if value.len() > 63 {
        Some("must be no more than 63 characters")
    } else if !value.chars().all(ok_char)
        || !edges(value.chars().next())
        || !edges(value.chars().last())
    {
        Some(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        )
    } else {
        None
    }
}

fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(problem) = prefix.and_then(meta::dns_subdomain_problem) {
        return Some(format!("prefix part {problem}"));
    }
    if name.is_empty() {
        return Some("name part must be non-empty".into());
    }
    label_value_problem(name).map(|problem| format!("name part {problem}"))
}

pub fn labels(causes: &mut Causes, path: &str, labels: Option<&Value>) {
    let Some(Value::Object(labels)) = labels else {
        return;
    };
    for (key, value) in labels {
        if let Some(problem) = label_key_problem(key) {
            invalid(causes, path, &Value::String(key.clone()), &problem);
        }
        match value.as_str() {
            Some(text) => {
                if let Some(problem) = label_value_problem(text) {
                    invalid(causes, &format!("{path}.{key}"), value, problem);
                }
            }
            None => invalid(causes, &format!("{path}.{key}"), value, "must be a string"),
        }
    }
}

/// Names, generateName, labels and annotations of any object.
pub fn metadata(causes: &mut Causes, kind: &str, object: &Value) {
    let dns_label = matches!(kind, "Namespace" | "Service");
    let name = meta::name(object);
    let generate = meta::str_field(object, "/metadata/generateName").unwrap_or("");
    if name.is_empty() && generate.is_empty() {
        causes.push(FieldCause::new(
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else if !name.is_empty() {
        let problem = if dns_label {
            meta::dns_label_problem(name)
        } else {
            meta::dns_subdomain_problem(name)
        };
        if let Some(problem) = problem {
            invalid(
                causes,
                "metadata.name",
                &Value::String(name.to_owned()),
                &problem,
            );
        }
    }
    labels(
        causes,
        "metadata.labels",
        object.pointer("/metadata/labels"),
    );
    if let Some(Value::Object(annotations)) = object.pointer("/metadata/annotations") {
        let size: usize = annotations
            .iter()
            .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
            .sum();
        if size > 256 * 1024 {
            causes.push(FieldCause::new(
                "metadata.annotations",
                "Too long: must have at most 262144 bytes",
            ));
        }
    }
}

fn port_number(causes: &mut Causes, path: &str, value: Option<&Value>, needed: bool) {
    match value {
        None | Some(Value::Null) if needed => required(causes, path),
        None | Some(Value::Null) => {}
        Some(value) => {
            if !value
                .as_i64()
                .is_some_and(|port| (1..=65535).contains(&port))
            {
                invalid(
                    causes,
                    path,
                    value,
                    "must be between 1 and 65535, inclusive",
                );
            }
        }
    }
}

fn container(
    causes: &mut Causes,
    path: &str,
    container: &Map<String, Value>,
    names: &mut Vec<String>,
) {
    match container.get("name").and_then(Value::as_str) {
        None | Some("") => required(causes, &format!("{path}.name")),
        Some(name) => {
            if let Some(problem) = meta::dns_label_problem(name) {
                invalid(
                    causes,
                    &format!("{path}.name"),
                    &Value::String(name.into()),
                    &problem,
                );
            } else if names.iter().any(|seen| seen == name) {
                causes.push(FieldCause::new(
                    format!("{path}.name"),
                    format!("Duplicate value: \"{name}\""),
                ));
            }
            names.push(name.to_owned());
        }
    }
    if container
        .get("image")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        required(causes, &format!("{path}.image"));
    }
    for (index, port) in container
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        port_number(
            causes,
            &format!("{path}.ports[{index}].containerPort"),
            port.get("containerPort"),
            true,
        );
    }
    for section in ["limits", "requests"] {
        let Some(Value::Object(amounts)) = container
            .get("resources")
            .and_then(|resources| resources.get(section))
        else {
            continue;
        };
        for (resource, amount) in amounts {
            let field = format!("{path}.resources.{section}.{resource}");
            match quantity::from_json(amount).map(|text| quantity::units(&text)) {
                Some(Ok(units)) if units >= 0 => {}
                Some(Ok(_)) => {
                    invalid(causes, &field, amount, "must be greater than or equal to 0")
                }
                Some(Err(error)) => invalid(causes, &field, amount, &error.to_string()),
                None => invalid(causes, &field, amount, "must be a quantity"),
            }
        }
    }
}

pub fn pod_spec(causes: &mut Causes, path: &str, spec: Option<&Value>) {
    let Some(Value::Object(spec)) = spec else {
        required(causes, path);
        return;
    };
    let mut names = Vec::new();
    match spec.get("containers").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            for (index, item) in list.iter().enumerate() {
                if let Some(item) = item.as_object() {
                    container(
                        causes,
                        &format!("{path}.containers[{index}]"),
                        item,
                        &mut names,
                    );
                }
            }
        }
        _ => required(causes, &format!("{path}.containers")),
    }
    for (index, item) in spec
        .get("initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(item) = item.as_object() {
            container(
                causes,
                &format!("{path}.initContainers[{index}]"),
                item,
                &mut names,
            );
        }
    }
    if let Some(policy) = spec.get("restartPolicy")
        && !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never"))
    {
        unsupported(
            causes,
            &format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
}

/// A workload's selector must be non-empty and select its own template.
fn workload(causes: &mut Causes, spec: Option<&Value>, replicas: bool) {
    let Some(spec) = spec else {
        required(causes, "spec");
        return;
    };
    if replicas
        && let Some(count) = spec.get("replicas")
        && count.as_i64().is_none_or(|count| count < 0)
    {
        invalid(
            causes,
            "spec.replicas",
            count,
            "must be greater than or equal to 0",
        );
    }
    let template_labels = spec.pointer("/template/metadata/labels");
    labels(causes, "spec.template.metadata.labels", template_labels);
    match spec.get("selector") {
        None | Some(Value::Null) => required(causes, "spec.selector"),
        Some(selector) => match LabelSelector::from_object(selector) {
            Err(error) => invalid(causes, "spec.selector", selector, &error.to_string()),
            Ok(parsed) if parsed.is_empty() => invalid(
                causes,
                "spec.selector",
                selector,
                "empty selector is invalid for deployment",
            ),
            Ok(parsed) => {
                if !parsed.matches(template_labels.and_then(Value::as_object)) {
                    invalid(
                        causes,
                        "spec.template.metadata.labels",
                        template_labels.unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    );
                }
            }
        },
    }
    let template_spec = spec.pointer("/template/spec");
    pod_spec(causes, "spec.template.spec", template_spec);
    if let Some(policy) = template_spec.and_then(|spec| spec.get("restartPolicy"))
        && policy.as_str() != Some("Always")
    {
        unsupported(
            causes,
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        );
    }
}

fn service(causes: &mut Causes, spec: Option<&Value>) {
    let Some(spec) = spec else {
        required(causes, "spec");
        return;
    };
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        unsupported(
            causes,
            "spec.type",
            &spec["type"],
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if ports.is_empty() && kind != "ExternalName" && !headless {
        required(causes, "spec.ports");
    }
    let mut names = Vec::new();
    for (index, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{index}]");
        port_number(causes, &format!("{path}.port"), port.get("port"), true);
        let name = port.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            required(causes, &format!("{path}.name"));
        } else if names.contains(&name) {
            causes.push(FieldCause::new(
                format!("{path}.name"),
                format!("Duplicate value: \"{name}\""),
            ));
        }
        names.push(name);
        if let Some(node_port) = port.get("nodePort").filter(|value| !value.is_null())
            && !node_port
                .as_i64()
                .is_some_and(|port| (30000..=32767).contains(&port))
        {
            invalid(
                causes,
                &format!("{path}.nodePort"),
                node_port,
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            );
        }
        if let Some(protocol) = port.get("protocol")
            && !matches!(protocol.as_str(), Some("TCP" | "UDP" | "SCTP"))
        {
            unsupported(
                causes,
                &format!("{path}.protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            );
        }
    }
}

fn config_keys(causes: &mut Causes, object: &Value, sections: &[&str]) {
    for section in sections {
        for key in object
            .get(*section)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(key, _)| key)
        {
            let valid = !key.is_empty()
                && key.len() <= 253
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                invalid(
                    causes,
                    &format!("{section}[{key}]"),
                    &Value::String(key.clone()),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                );
            }
        }
    }
}

/// Every problem with a `kind` object, as causes for a 422.
pub fn validate(kind: &str, object: &Value) -> Causes {
    let mut causes = Vec::new();
    metadata(&mut causes, kind, object);
    let spec = object.get("spec");
    match kind {
        "Pod" => pod_spec(&mut causes, "spec", spec),
        "Deployment" | "ReplicaSet" => workload(&mut causes, spec, true),
        "DaemonSet" => workload(&mut causes, spec, false),
        "Service" => service(&mut causes, spec),
        "ConfigMap" => config_keys(&mut causes, object, &["data", "binaryData"]),
        "Secret" => config_keys(&mut causes, object, &["data", "stringData"]),
        "NetworkPolicy" if spec.and_then(|spec| spec.get("podSelector")).is_none() => {
            required(&mut causes, "spec.podSelector");
        }
        _ => {}
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(causes: &Causes) -> Vec<&str> {
        causes.iter().map(|cause| cause.field.as_str()).collect()
    }

    #[test]
    fn deployments_name_each_broken_field() {
        let deployment = json!({
            "metadata": {"name": "Web", "labels": {"app": "-x"}},
            "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "web"}, {"name": "web", "image": "x", "ports": [{"containerPort": 70000}]}]}}}
        });
        let causes = validate("Deployment", &deployment);
        let named = fields(&causes);
        for expected in [
            "metadata.name",
            "metadata.labels.app",
            "spec.replicas",
            "spec.template.metadata.labels",
            "spec.template.spec.containers[0].image",
            "spec.template.spec.containers[1].name",
            "spec.template.spec.containers[1].ports[0].containerPort",
        ] {
            assert!(
                named.contains(&expected),
                "{expected} missing from {named:?}"
            );
        }
    }

    #[test]
    fn a_valid_object_has_no_causes() {
        let deployment = json!({
            "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
        });
        assert_eq!(validate("Deployment", &deployment), vec![]);
        let service = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
        assert_eq!(validate("Service", &service), vec![]);
    }

    #[test]
    fn services_need_named_ports_in_range() {
        let service = json!({"metadata": {"name": "a.b"}, "spec": {"type": "Weird", "ports": [{"port": 80}, {"port": 0, "nodePort": 80}]}});
        let causes = validate("Service", &service);
        let named = fields(&causes);
        for expected in [
            "metadata.name",
            "spec.type",
            "spec.ports[0].name",
            "spec.ports[1].port",
            "spec.ports[1].nodePort",
        ] {
            assert!(
                named.contains(&expected),
                "{expected} missing from {named:?}"
            );
        }
        let missing = validate(
            "ConfigMap",
            &json!({"metadata": {}, "data": {"bad key": "x"}}),
        );
        assert_eq!(fields(&missing), vec!["metadata.name", "data[bad key]"]);
    }
}
