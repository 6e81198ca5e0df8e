//! The pods and namespaces policies select: labels, addresses and named container ports,
//! read from Pod and Namespace objects.
use k8s_openapi::api::core::v1::{Namespace, Pod};
use std::net::Ipv4Addr;

use super::selector::Labels;
use crate::objects::{Checker, InvalidObject, ObjectName};
use crate::services::Protocol;

/// The label the API server puts on every namespace, so selectors can name namespaces.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceDef {
    pub name: String,
    pub labels: Labels,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodDef {
    pub name: ObjectName,
    pub labels: Labels,
    /// status.podIP; `None` until the pod has one (it is then nobody's peer yet).
    pub ip: Option<Ipv4Addr>,
    pub node: Option<String>,
    pub ports: Vec<NamedPort>,
}

impl NamespaceDef {
    pub fn from_k8s(namespace: &Namespace) -> Result<Self, InvalidObject> {
        let check = Checker::new("Namespace", &namespace.metadata);
        let Some(name) = namespace.metadata.name.clone().filter(|n| !n.is_empty()) else {
            return check.fail("metadata.name", "required");
        };
        Ok(NamespaceDef {
            labels: labels_of_namespace(
                &name,
                namespace.metadata.labels.clone().unwrap_or_default(),
            ),
            name,
        })
    }

    /// A namespace known only from its pods.
    pub fn implicit(name: &str) -> Self {
        NamespaceDef {
            name: name.to_owned(),
            labels: labels_of_namespace(name, Labels::new()),
        }
    }
}

fn labels_of_namespace(name: &str, mut labels: Labels) -> Labels {
    labels.insert(NAMESPACE_NAME_LABEL.into(), name.into());
    labels
}

impl PodDef {
    /// The pod, or `None` for pods policy does not apply to (host network, finished).
    pub fn from_k8s(pod: &Pod) -> Result<Option<Self>, InvalidObject> {
        let check = Checker::new("Pod", &pod.metadata);
        let name = check.name(&pod.metadata)?;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        if spec.and_then(|s| s.host_network) == Some(true)
            || matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        {
            return Ok(None);
        }
        let ip = match status.and_then(|s| s.pod_ip.as_deref()) {
            None | Some("") => None,
            Some(ip) => Some(check.ipv4("status.podIP".into(), ip)?),
        };
        let mut ports = Vec::new();
        for (c, container) in spec
            .map(|s| &s.containers[..])
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            for (p, port) in container.ports.iter().flatten().enumerate() {
                let field = format!("spec.containers[{c}].ports[{p}]");
                let number = check.port(format!("{field}.containerPort"), port.container_port)?;
                let protocol =
                    check.protocol(format!("{field}.protocol"), port.protocol.as_deref())?;
                if let Some(port_name) = port.name.clone().filter(|n| !n.is_empty()) {
                    ports.push(NamedPort {
                        name: port_name,
                        port: number,
                        protocol,
                    });
                }
            }
        }
        Ok(Some(PodDef {
            name,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ip,
            node: spec.and_then(|s| s.node_name.clone()),
            ports,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_give_labels_address_and_named_ports() {
        let pod: Pod = serde_yaml::from_str(
            "metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  nodeName: node-1
  containers: [{name: c, ports: [{name: serve-80-udp, containerPort: 80, protocol: UDP}, {containerPort: 81}]}]
status: {podIP: 10.244.1.5}",
        )
        .unwrap();
        let def = PodDef::from_k8s(&pod).unwrap().unwrap();
        assert_eq!(def.ip, Some(Ipv4Addr::new(10, 244, 1, 5)));
        assert_eq!(def.labels["pod"], "a");
        assert_eq!(
            def.ports,
            vec![NamedPort {
                name: "serve-80-udp".into(),
                port: 80,
                protocol: Protocol::Udp
            }]
        );
        let host: Pod =
            serde_yaml::from_str("metadata: {name: h}\nspec: {hostNetwork: true, containers: []}")
                .unwrap();
        assert_eq!(PodDef::from_k8s(&host).unwrap(), None);
        let bad: Pod = serde_yaml::from_str(
            "metadata: {name: b, namespace: x}\nspec: {containers: []}\nstatus: {podIP: nope}",
        )
        .unwrap();
        let err = PodDef::from_k8s(&bad).unwrap_err().to_string();
        assert!(
            err.contains("Pod x/b") && err.contains("status.podIP"),
            "{err}"
        );
    }

    #[test]
    fn namespaces_carry_their_name_label() {
        let ns: Namespace = serde_yaml::from_str("metadata: {name: x, labels: {ns: x}}").unwrap();
        let def = NamespaceDef::from_k8s(&ns).unwrap();
        assert_eq!(def.labels["ns"], "x");
        assert_eq!(def.labels[NAMESPACE_NAME_LABEL], "x");
        assert_eq!(
            NamespaceDef::implicit("y").labels[NAMESPACE_NAME_LABEL],
            "y"
        );
    }
}
