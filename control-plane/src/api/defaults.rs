//! Defaulting: the fields the Kubernetes API fills in when a client leaves them out, so
//! objects read back (and the controllers acting on them) look as they do on any cluster.
use serde_json::{Map, Value, json};

fn fill(object: &mut Map<String, Value>, key: &str, value: Value) {
    if object.get(key).is_none_or(Value::is_null) {
        object.insert(key.to_owned(), value);
    }
}

/// The map at `key`, created if missing or not a map.
fn child<'a>(object: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !object.get(key).is_some_and(Value::is_object) {
        object.insert(key.to_owned(), Value::Object(Map::new()));
    }
    match object.get_mut(key) {
        Some(Value::Object(map)) => map,
        _ => unreachable!("just made a map"),
    }
}

fn each_object<'a>(
    object: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    object
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Always for `:latest` or untagged images (they may move), IfNotPresent otherwise.
pub fn image_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        _ if image.contains('@') => "IfNotPresent",
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn probe(probe: &mut Map<String, Value>) {
    fill(probe, "timeoutSeconds", json!(1));
    fill(probe, "periodSeconds", json!(10));
    fill(probe, "successThreshold", json!(1));
    fill(probe, "failureThreshold", json!(3));
    if let Some(Value::Object(get)) = probe.get_mut("httpGet") {
        fill(get, "path", json!("/"));
        fill(get, "scheme", json!("HTTP"));
    }
}

fn container(container: &mut Map<String, Value>) {
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    fill(
        container,
        "imagePullPolicy",
        json!(image_pull_policy(&image)),
    );
    fill(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    fill(container, "terminationMessagePolicy", json!("File"));
    fill(container, "resources", json!({}));
    for port in each_object(container, "ports") {
        fill(port, "protocol", json!("TCP"));
    }
    for env in each_object(container, "env") {
        if let Some(Value::Object(from)) = env.get_mut("valueFrom")
            && let Some(Value::Object(field)) = from.get_mut("fieldRef")
        {
            fill(field, "apiVersion", json!("v1"));
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(settings)) = container.get_mut(key) {
            probe(settings);
        }
    }
}

/// Defaults of a PodSpec (a pod's or a template's).
pub fn pod_spec(spec: &mut Map<String, Value>) {
    fill(spec, "restartPolicy", json!("Always"));
    fill(spec, "terminationGracePeriodSeconds", json!(30));
    fill(spec, "dnsPolicy", json!("ClusterFirst"));
    fill(spec, "securityContext", json!({}));
    fill(spec, "schedulerName", json!("default-scheduler"));
    fill(spec, "enableServiceLinks", json!(true));
    for key in ["containers", "initContainers"] {
        for settings in each_object(spec, key) {
            container(settings);
        }
    }
}

fn template(spec: &mut Map<String, Value>) {
    let template = child(spec, "template");
    child(template, "metadata");
    pod_spec(child(template, "spec"));
}

fn pod(object: &mut Map<String, Value>) {
    pod_spec(child(object, "spec"));
    // DefaultTolerationSeconds: pods ride out a short node outage before eviction.
    let spec = child(object, "spec");
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    if let Value::Array(list) = tolerations {
        for taint in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            if !list.iter().any(|toleration| toleration["key"] == taint) {
                list.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
    }
}

fn service(object: &mut Map<String, Value>) {
    let spec = child(object, "spec");
    fill(spec, "type", json!("ClusterIP"));
    fill(spec, "sessionAffinity", json!("None"));
    for port in each_object(spec, "ports") {
        fill(port, "protocol", json!("TCP"));
        let number = port.get("port").cloned().unwrap_or(Value::Null);
        fill(port, "targetPort", number);
    }
    if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
        fill(spec, "ipFamilies", json!(["IPv4"]));
        fill(spec, "ipFamilyPolicy", json!("SingleStack"));
    }
    if matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    ) {
        fill(spec, "externalTrafficPolicy", json!("Cluster"));
    }
}

fn deployment(object: &mut Map<String, Value>) {
    let spec = child(object, "spec");
    fill(spec, "replicas", json!(1));
    fill(spec, "revisionHistoryLimit", json!(10));
    fill(spec, "progressDeadlineSeconds", json!(600));
    let strategy = child(spec, "strategy");
    fill(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let rolling = child(strategy, "rollingUpdate");
        fill(rolling, "maxSurge", json!("25%"));
        fill(rolling, "maxUnavailable", json!("25%"));
    }
    template(spec);
}

fn daemon_set(object: &mut Map<String, Value>) {
    let spec = child(object, "spec");
    fill(spec, "revisionHistoryLimit", json!(10));
    let strategy = child(spec, "updateStrategy");
    fill(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        fill(child(strategy, "rollingUpdate"), "maxUnavailable", json!(1));
    }
    template(spec);
}

fn network_policy(object: &mut Map<String, Value>) {
    let spec = child(object, "spec");
    if spec.get("policyTypes").is_none_or(Value::is_null) {
        let mut types = vec![json!("Ingress")];
        if spec.contains_key("egress") {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
    for direction in ["ingress", "egress"] {
        for rule in each_object(spec, direction) {
            for port in each_object(rule, "ports") {
                fill(port, "protocol", json!("TCP"));
            }
        }
    }
}

/// A Secret's `stringData` is write-only: it is stored base64-encoded in `data`.
fn merge_string_data(secret: &mut Map<String, Value>) {
    use base64::Engine;
    let Some(Value::Object(plain)) = secret.remove("stringData") else {
        return;
    };
    let data = child(secret, "data");
    for (key, value) in plain {
        if let Some(text) = value.as_str() {
            data.insert(
                key,
                json!(base64::engine::general_purpose::STANDARD.encode(text)),
            );
        }
    }
}

/// Fills in the defaults of a `kind` object (group-qualified kinds are unique here).
pub fn apply(kind: &str, object: &mut Value) {
    let Some(object) = object.as_object_mut() else {
        return;
    };
    match kind {
        "Pod" => pod(object),
        "Service" => service(object),
        "Deployment" => deployment(object),
        "ReplicaSet" => {
            fill(child(object, "spec"), "replicas", json!(1));
            template(child(object, "spec"));
        }
        "DaemonSet" => daemon_set(object),
        "NetworkPolicy" => network_policy(object),
        "Secret" => {
            fill(object, "type", json!("Opaque"));
            merge_string_data(object);
        }
        "EndpointSlice" => {
            for port in each_object(object, "ports") {
                fill(port, "protocol", json!("TCP"));
            }
        }
        "Namespace" => {
            fill(child(object, "spec"), "finalizers", json!(["kubernetes"]));
            fill(child(object, "status"), "phase", json!("Active"));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_the_usual_defaults() {
        let mut deployment = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "busybox:1.36"}
        ]}}}});
        apply("Deployment", &mut deployment);
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(
            deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        let containers = &deployment["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["imagePullPolicy"], "Always");
        assert_eq!(containers[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(containers[0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["restartPolicy"],
            "Always"
        );
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut service = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "protocol": "UDP"}]}});
        apply("Service", &mut service);
        assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
        assert_eq!(service["spec"]["ports"][0]["protocol"], "UDP");
        assert_eq!(service["spec"]["externalTrafficPolicy"], "Cluster");
        let mut policy = json!({"spec": {"podSelector": {}, "egress": [{}]}});
        apply("NetworkPolicy", &mut policy);
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    }

    #[test]
    fn secret_string_data_is_stored_encoded() {
        let mut secret = json!({"data": {"a": "eA=="}, "stringData": {"password": "hunter2"}});
        apply("Secret", &mut secret);
        assert_eq!(
            secret,
            json!({"type": "Opaque", "data": {"a": "eA==", "password": "aHVudGVyMg=="}})
        );
    }

    #[test]
    fn pods_tolerate_short_node_outages() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x@sha256:00"}]}});
        apply("Pod", &mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(
            pod["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(image_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(image_pull_policy("localhost:5000/app:1"), "IfNotPresent");
    }
}
