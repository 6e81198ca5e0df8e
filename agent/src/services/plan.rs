//! Turns the catalog into this node's frontends, choosing endpoints the way kube-proxy does:
//! ready ones, or serving-and-terminating ones when none is ready; traffic policies Local
//! restrict a frontend to this node's endpoints.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::catalog::{Catalog, PortDef, ServiceDef};
use super::frontend::{BackendAddr, Frontend, FrontendAddr, FrontendKind};

/// What planning needs to know about the node it plans for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// Addresses NodePorts listen on.
    pub addresses: Vec<Ipv4Addr>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One per frontend address, ordered by it.
    pub frontends: Vec<Frontend>,
    /// Frontends claimed by more than one service: the first service by name keeps it.
    pub conflicts: Vec<String>,
}

#[derive(Clone, Copy)]
struct Candidate {
    backend: BackendAddr,
    ready: bool,
    serving_terminating: bool,
    local: bool,
}

pub fn plan(catalog: &Catalog, node: &NodeView) -> Plan {
    let mut frontends: BTreeMap<FrontendAddr, Frontend> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for service in catalog.services.values() {
        for port in &service.ports {
            let candidates = candidates(catalog, service, port, &node.name);
            let cluster = usable(&candidates, |_| true);
            let local = usable(&candidates, |c| c.local);
            let label = format!("{}:{}", service.name, port.name);
            let mut add = |address: Ipv4Addr, frontend_port: u16, kind: FrontendKind| {
                let addr = FrontendAddr {
                    address,
                    port: frontend_port,
                    protocol: port.protocol,
                };
                let policy_local = if kind.is_external() {
                    service.external_local
                } else {
                    service.internal_local
                };
                let preserve_source = kind.is_external() && service.external_local;
                let frontend = Frontend {
                    addr,
                    kind,
                    service: label.clone(),
                    backends: if policy_local {
                        local.clone()
                    } else {
                        cluster.clone()
                    },
                    affinity_timeout_s: service.affinity_timeout_s,
                    preserve_source,
                    drop_without_local: preserve_source && local.is_empty() && !cluster.is_empty(),
                };
                match frontends.get(&addr) {
                    Some(existing) => conflicts.push(format!(
                        "{addr} is claimed by {} and {label}; {} keeps it",
                        existing.service, existing.service
                    )),
                    None => {
                        frontends.insert(addr, frontend);
                    }
                }
            };
            if let Some(ip) = service.cluster_ip {
                add(ip, port.port, FrontendKind::ClusterIp);
            }
            if let Some(node_port) = port.node_port {
                for address in &node.addresses {
                    add(*address, node_port, FrontendKind::NodePort);
                }
            }
            for ip in &service.external_ips {
                add(*ip, port.port, FrontendKind::ExternalIp);
            }
            for ip in &service.load_balancer_ips {
                add(*ip, port.port, FrontendKind::LoadBalancer);
            }
        }
    }
    Plan {
        frontends: frontends.into_values().collect(),
        conflicts,
    }
}

/// Endpoints of `service` for `port`: the port is resolved by name in each slice, so a
/// named `targetPort` gives each pod its own number.
fn candidates(
    catalog: &Catalog,
    service: &ServiceDef,
    port: &PortDef,
    node_name: &str,
) -> Vec<Candidate> {
    let mut by_address: BTreeMap<Ipv4Addr, Candidate> = BTreeMap::new();
    for slice in catalog.slices_of(&service.name) {
        let Some(&(_, target, protocol)) = (slice.ports.iter())
            .find(|(name, _, protocol)| *name == port.name && *protocol == port.protocol)
        else {
            continue;
        };
        for endpoint in &slice.endpoints {
            for address in &endpoint.addresses {
                let candidate = Candidate {
                    backend: BackendAddr {
                        address: *address,
                        port: target,
                        protocol,
                    },
                    ready: endpoint.ready,
                    serving_terminating: endpoint.serving && endpoint.terminating,
                    local: endpoint.node_name.as_deref() == Some(node_name),
                };
                // The same pod in two slices (during a slice handover): the ready copy wins.
                match by_address.get(address) {
                    Some(existing) if existing.ready || !candidate.ready => {}
                    _ => {
                        by_address.insert(*address, candidate);
                    }
                }
            }
        }
    }
    by_address.into_values().collect()
}

fn usable(candidates: &[Candidate], filter: impl Fn(&Candidate) -> bool) -> Vec<BackendAddr> {
    let pick = |want: &dyn Fn(&Candidate) -> bool| -> Vec<BackendAddr> {
        let mut backends: Vec<_> = (candidates.iter())
            .filter(|c| filter(c) && want(c))
            .map(|c| c.backend)
            .collect();
        backends.sort();
        backends.dedup();
        backends
    };
    let ready = pick(&|c| c.ready);
    if ready.is_empty() {
        pick(&|c| c.serving_terminating)
    } else {
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::catalog::{ServiceDef, SliceDef};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    fn catalog(yaml_services: &[&str], yaml_slices: &[&str]) -> Catalog {
        let mut catalog = Catalog::default();
        for text in yaml_services {
            let service: Service = serde_yaml::from_str(text).unwrap();
            catalog.upsert_service(ServiceDef::from_k8s(&service).unwrap());
        }
        for text in yaml_slices {
            let slice: EndpointSlice = serde_yaml::from_str(text).unwrap();
            catalog.upsert_slice(SliceDef::from_k8s(&slice).unwrap());
        }
        catalog
    }

    fn node() -> NodeView {
        NodeView {
            name: "node-1".into(),
            addresses: vec![Ipv4Addr::new(192, 168, 50, 1)],
        }
    }

    const WEB: &str = "
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  externalIPs: [198.51.100.7]
  ports:
    - {name: http, port: 80, targetPort: web, nodePort: 30080}
    - {name: dns, port: 53, protocol: UDP, targetPort: 5353, nodePort: 30053}
";
    const WEB_SLICE: &str = "
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
  - {name: http, port: 8080}
  - {name: dns, port: 5353, protocol: UDP}
endpoints:
  - {addresses: [10.244.1.5], nodeName: node-1}
  - {addresses: [10.244.2.5], nodeName: node-2}
  - {addresses: [10.244.2.6], nodeName: node-2, conditions: {ready: false}}
";

    fn backends(frontend: &Frontend) -> Vec<String> {
        frontend.backends.iter().map(|b| b.to_string()).collect()
    }

    #[test]
    fn every_port_gets_cluster_ip_node_port_and_external_ip_frontends() {
        let plan = plan(&catalog(&[WEB], &[WEB_SLICE]), &node());
        let addrs: Vec<String> = plan.frontends.iter().map(|f| f.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "10.96.0.10:53/UDP",
                "10.96.0.10:80/TCP",
                "192.168.50.1:30053/UDP",
                "192.168.50.1:30080/TCP",
                "198.51.100.7:53/UDP",
                "198.51.100.7:80/TCP",
            ]
        );
        // targetPort "web" resolves through the slice's port named like the service port.
        assert_eq!(
            backends(&plan.frontends[1]),
            ["10.244.1.5:8080/TCP", "10.244.2.5:8080/TCP"]
        );
        assert_eq!(
            backends(&plan.frontends[0]),
            ["10.244.1.5:5353/UDP", "10.244.2.5:5353/UDP"]
        );
        assert!(plan.conflicts.is_empty());
    }

    #[test]
    fn terminating_endpoints_are_used_only_without_ready_ones() {
        let slice = WEB_SLICE.replace(
            "endpoints:",
            "endpoints:\n  - {addresses: [10.244.3.9], conditions: {ready: false, serving: true, terminating: true}}",
        );
        let plan1 = plan(&catalog(&[WEB], &[&slice]), &node());
        assert!(!backends(&plan1.frontends[1]).contains(&"10.244.3.9:8080/TCP".to_string()));
        let only_terminating = "
metadata:
  name: web-abc
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
  - {addresses: [10.244.3.9], conditions: {ready: false, serving: true, terminating: true}}
  - {addresses: [10.244.3.8], conditions: {ready: false, serving: false, terminating: true}}
";
        let plan2 = plan(&catalog(&[WEB], &[only_terminating]), &node());
        let http = plan2.frontends.iter().find(|f| f.addr.port == 80).unwrap();
        assert_eq!(backends(http), ["10.244.3.9:8080/TCP"]);
    }

    #[test]
    fn traffic_policies_local_keep_only_this_nodes_endpoints() {
        let service = WEB.replace(
            "  type: NodePort",
            "  type: NodePort\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local",
        );
        let plan = plan(&catalog(&[&service], &[WEB_SLICE]), &node());
        for frontend in &plan.frontends {
            assert_eq!(frontend.backends.len(), 1, "{}", frontend.addr);
            assert_eq!(frontend.preserve_source, frontend.kind.is_external());
        }
        let other = NodeView {
            name: "node-3".into(),
            ..node()
        };
        let plan = super::plan(&catalog(&[&service], &[WEB_SLICE]), &other);
        assert!(plan.frontends.iter().all(|f| f.backends.is_empty()));
        // Outside clients of this node are dropped (the service has endpoints elsewhere).
        for frontend in &plan.frontends {
            assert_eq!(frontend.drop_without_local, frontend.kind.is_external());
        }
    }

    #[test]
    fn headless_services_have_no_frontends_and_affinity_defaults_apply() {
        let headless = "
metadata: {name: db}
spec: {clusterIP: None, ports: [{port: 5432}]}
";
        let sticky = "
metadata: {name: sticky}
spec: {clusterIP: 10.96.0.20, sessionAffinity: ClientIP, ports: [{port: 80}]}
";
        let plan = plan(&catalog(&[headless, sticky], &[]), &node());
        assert_eq!(plan.frontends.len(), 1);
        assert_eq!(plan.frontends[0].affinity_timeout_s, Some(10_800));
        assert!(plan.frontends[0].backends.is_empty());
    }

    #[test]
    fn a_frontend_claimed_twice_is_kept_by_the_first_service() {
        let a = "metadata: {name: a}\nspec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}";
        let b = "metadata: {name: b}\nspec: {clusterIP: 10.96.0.30, ports: [{port: 80}]}";
        let plan = plan(&catalog(&[a, b], &[]), &node());
        assert_eq!(plan.frontends.len(), 1);
        assert_eq!(plan.frontends[0].service, "default/a:");
        assert_eq!(plan.conflicts.len(), 1);
    }
}
