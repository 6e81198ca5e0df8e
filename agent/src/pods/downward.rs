//! The downward API: a pod's own fields (name, namespace, uid, labels, node, IPs) as values
//! for env variables and downwardAPI volume files.
use k8s_openapi::api::core::v1::Pod;

/// Facts about the pod that are not in its spec.
pub struct PodFacts<'a> {
    pub uid: &'a str,
    pub node_name: &'a str,
    pub host_ip: &'a str,
}

/// A field's value, or `Deferred` for the pod IP (known only once the sandbox exists).
#[derive(Debug, PartialEq, Eq)]
pub enum FieldValue {
    Now(String),
    PodIp,
}

pub fn field(pod: &Pod, facts: &PodFacts<'_>, path: &str) -> Result<FieldValue, String> {
    let meta = &pod.metadata;
    let indexed = |prefix: &str, map: Option<&std::collections::BTreeMap<String, String>>| {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => facts.uid.to_string(),
        "spec.nodeName" => facts.node_name.to_string(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => return Ok(FieldValue::PodIp),
        "metadata.labels" | "metadata.annotations" => {
            let map = if path == "metadata.labels" {
                &meta.labels
            } else {
                &meta.annotations
            };
            map.iter()
                .flatten()
                .map(|(k, v)| format!("{k}={v:?}\n"))
                .collect()
        }
        _ => {
            if let Some(value) = indexed("metadata.labels['", meta.labels.as_ref()) {
                value
            } else if let Some(value) = indexed("metadata.annotations['", meta.annotations.as_ref())
            {
                value
            } else {
                return Err(format!("unsupported fieldPath {path:?}"));
            }
        }
    };
    Ok(FieldValue::Now(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pod_fields() {
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: web, namespace: shop, labels: {app: web, tier: front}}\nspec: {containers: []}",
        )
        .unwrap();
        let facts = PodFacts {
            uid: "u-1",
            node_name: "node-a",
            host_ip: "10.0.0.1",
        };
        let now = |path| match field(&pod, &facts, path).unwrap() {
            FieldValue::Now(value) => value,
            FieldValue::PodIp => panic!("deferred"),
        };
        assert_eq!(now("metadata.name"), "web");
        assert_eq!(now("metadata.namespace"), "shop");
        assert_eq!(now("spec.nodeName"), "node-a");
        assert_eq!(now("metadata.labels['tier']"), "front");
        assert_eq!(now("metadata.labels"), "app=\"web\"\ntier=\"front\"\n");
        assert_eq!(
            field(&pod, &facts, "status.podIP").unwrap(),
            FieldValue::PodIp
        );
        assert!(
            field(&pod, &facts, "spec.bogus")
                .unwrap_err()
                .contains("spec.bogus")
        );
    }
}
