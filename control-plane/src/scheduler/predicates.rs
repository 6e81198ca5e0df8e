//! Scheduling filters on plain objects: node selectors and node affinity, taints against
//! tolerations, resource requests against what a node has left, and pod anti-affinity.
use serde_json::{Map, Value};

use crate::api::quantity;
use crate::api::selectors::LabelSelector;

fn labels(node: &Value) -> Option<&Map<String, Value>> {
    node.pointer("/metadata/labels").and_then(Value::as_object)
}

fn expression_matches(expression: &Value, node: &Value, field: bool) -> bool {
    let key = expression["key"].as_str().unwrap_or("");
    let actual = if field {
        (key == "metadata.name")
            .then(|| node.pointer("/metadata/name").and_then(Value::as_str))
            .flatten()
    } else {
        labels(node)
            .and_then(|labels| labels.get(key))
            .and_then(Value::as_str)
    };
    let values: Vec<&str> = expression["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |text: &str| text.parse::<i64>().ok();
    match expression["operator"].as_str().unwrap_or("") {
        "In" => actual.is_some_and(|actual| values.contains(&actual)),
        "NotIn" => !actual.is_some_and(|actual| values.contains(&actual)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" => actual
            .and_then(number)
            .zip(values.first().copied().and_then(number))
            .is_some_and(|(a, b)| a > b),
        "Lt" => actual
            .and_then(number)
            .zip(values.first().copied().and_then(number))
            .is_some_and(|(a, b)| a < b),
        _ => false,
    }
}

/// A NodeSelectorTerm: its expressions and fields all hold.
pub fn term_matches(term: &Value, node: &Value) -> bool {
    let expressions = term["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| expression_matches(e, node, false));
    let fields = term["matchFields"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| expression_matches(e, node, true));
    let empty = term["matchExpressions"]
        .as_array()
        .is_none_or(Vec::is_empty)
        && term["matchFields"].as_array().is_none_or(Vec::is_empty);
    expressions && fields && !empty
}

/// `spec.nodeSelector` and required node affinity of a pod (or pod template).
pub fn node_selector_matches(pod: &Value, node: &Value) -> bool {
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(key, value)| labels(node).and_then(|labels| labels.get(key)) == Some(value));
    let required = pod.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms").and_then(Value::as_array);
    let affinity_ok =
        required.is_none_or(|terms| terms.iter().any(|term| term_matches(term, node)));
    selector_ok && affinity_ok
}

/// The sum of preferred node affinity weights this node earns.
pub fn preferred_affinity_score(pod: &Value, node: &Value) -> i64 {
    pod.pointer("/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|preference| term_matches(&preference["preference"], node))
        .map(|preference| preference["weight"].as_i64().unwrap_or(0))
        .sum()
}

fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let operator = toleration["operator"].as_str().unwrap_or("Equal");
    let key_ok = match toleration["key"].as_str() {
        None | Some("") => operator == "Exists",
        Some(key) => Some(key) == taint["key"].as_str(),
    };
    let value_ok = operator == "Exists"
        || toleration["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
    let effect_ok = toleration["effect"]
        .as_str()
        .is_none_or(|effect| effect.is_empty() || Some(effect) == taint["effect"].as_str());
    key_ok && value_ok && effect_ok
}

/// The first taint with one of `effects` that no toleration covers.
pub fn untolerated_taint<'a>(
    node: &'a Value,
    tolerations: &[Value],
    effects: &[&str],
) -> Option<&'a Value> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)?
        .iter()
        .filter(|taint| {
            taint["effect"]
                .as_str()
                .is_some_and(|effect| effects.contains(&effect))
        })
        .find(|taint| {
            !tolerations
                .iter()
                .any(|toleration| tolerates(toleration, taint))
        })
}

/// A pod's requests: millicores, bytes (the larger of the app containers' sum and any init
/// container's, as the kubelet admits them).
pub fn pod_requests(pod: &Value) -> (i64, i64) {
    let request = |container: &Value, resource: &str, millis: bool| {
        container
            .pointer(&format!("/resources/requests/{resource}"))
            .and_then(quantity::from_json)
            .and_then(|text| {
                if millis {
                    quantity::millis(&text).ok()
                } else {
                    quantity::units(&text).ok()
                }
            })
            .unwrap_or(0)
    };
    let list = |key: &str| {
        pod.pointer(&format!("/spec/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let apps = list("containers");
    let inits = list("initContainers");
    let cpu = apps
        .iter()
        .map(|c| request(c, "cpu", true))
        .sum::<i64>()
        .max(
            inits
                .iter()
                .map(|c| request(c, "cpu", true))
                .max()
                .unwrap_or(0),
        );
    let memory = apps
        .iter()
        .map(|c| request(c, "memory", false))
        .sum::<i64>()
        .max(
            inits
                .iter()
                .map(|c| request(c, "memory", false))
                .max()
                .unwrap_or(0),
        );
    (cpu, memory)
}

/// What the node offers: millicores, bytes, pods.
pub fn allocatable(node: &Value) -> (i64, i64, i64) {
    let get = |resource: &str, millis: bool, default: i64| {
        node.pointer(&format!("/status/allocatable/{resource}"))
            .or_else(|| node.pointer(&format!("/status/capacity/{resource}")))
            .and_then(quantity::from_json)
            .and_then(|text| {
                if millis {
                    quantity::millis(&text).ok()
                } else {
                    quantity::units(&text).ok()
                }
            })
            .unwrap_or(default)
    };
    (
        get("cpu", true, 0),
        get("memory", false, 0),
        get("pods", false, 110),
    )
}

/// Whether any of `others` (pods on a node) matches one of the pod's required
/// anti-affinity terms on the hostname topology.
pub fn anti_affinity_violated(
    pod: &Value,
    pod_namespace: &str,
    others: &[(String, Map<String, Value>)],
) -> bool {
    let terms = pod
        .pointer("/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array);
    terms
        .into_iter()
        .flatten()
        .filter(|term| term["topologyKey"] == "kubernetes.io/hostname")
        .any(|term| {
            let Ok(selector) = LabelSelector::from_object(&term["labelSelector"]) else {
                return false;
            };
            let namespaces: Vec<&str> = term["namespaces"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            others.iter().any(|(namespace, labels)| {
                let in_scope = if namespaces.is_empty() {
                    namespace == pod_namespace
                } else {
                    namespaces.contains(&namespace.as_str())
                };
                in_scope && selector.matches(Some(labels))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({"metadata": {"name": "n1", "labels": {"zone": "a", "disk": "ssd", "cores": "8"}},
               "spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]},
               "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})
    }

    #[test]
    fn selectors_and_required_affinity_filter_nodes() {
        assert!(node_selector_matches(
            &json!({"spec": {"nodeSelector": {"zone": "a"}}}),
            &node()
        ));
        assert!(!node_selector_matches(
            &json!({"spec": {"nodeSelector": {"zone": "b"}}}),
            &node()
        ));
        let affinity = |expressions: Value| json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}}}}});
        assert!(node_selector_matches(
            &affinity(json!([{"key": "cores", "operator": "Gt", "values": ["4"]}])),
            &node()
        ));
        assert!(!node_selector_matches(
            &affinity(json!([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])),
            &node()
        ));
        let fields = json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}});
        assert!(node_selector_matches(&fields, &node()));
        let preferred = json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 7, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}}});
        assert_eq!(preferred_affinity_score(&preferred, &node()), 5);
    }

    #[test]
    fn taints_need_matching_tolerations() {
        assert!(untolerated_taint(&node(), &[], &["NoSchedule"]).is_some());
        assert!(
            untolerated_taint(
                &node(),
                &[json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})],
                &["NoSchedule"]
            )
            .is_none()
        );
        assert!(
            untolerated_taint(
                &node(),
                &[json!({"key": "dedicated", "value": "web"})],
                &["NoSchedule"]
            )
            .is_some()
        );
        assert!(
            untolerated_taint(&node(), &[json!({"operator": "Exists"})], &["NoSchedule"]).is_none()
        );
        assert!(untolerated_taint(&node(), &[], &["NoExecute"]).is_none());
    }

    #[test]
    fn requests_sum_containers_and_cover_init_containers() {
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}, {"resources": {"requests": {"cpu": 1}}}],
                                  "initContainers": [{"resources": {"requests": {"memory": "1Gi"}}}]}});
        assert_eq!(pod_requests(&pod), (1250, 1 << 30));
        assert_eq!(allocatable(&node()), (4000, 8 << 30, 110));
    }

    #[test]
    fn anti_affinity_on_hostname_keeps_replicas_apart() {
        let pod = json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}}}});
        let web = (
            "d".to_owned(),
            json!({"app": "web"}).as_object().unwrap().clone(),
        );
        let db = (
            "d".to_owned(),
            json!({"app": "db"}).as_object().unwrap().clone(),
        );
        let elsewhere = (
            "other".to_owned(),
            json!({"app": "web"}).as_object().unwrap().clone(),
        );
        assert!(anti_affinity_violated(&pod, "d", &[db.clone(), web]));
        assert!(!anti_affinity_violated(&pod, "d", &[db, elsewhere]));
    }
}
