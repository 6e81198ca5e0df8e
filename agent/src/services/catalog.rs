//! The desired-state catalog: Service and EndpointSlice objects, validated on the way in
//! (errors name the field), stored in the parsed form planning needs.
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::frontend::Protocol;
use crate::objects::Checker;
pub use crate::objects::{InvalidObject, ObjectName};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// kube-apiserver's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_S: u32 = 10_800;
const MAX_AFFINITY_TIMEOUT_S: i32 = 86_400;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortDef {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    pub name: ObjectName,
    /// None: headless (no virtual IP).
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<PortDef>,
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    pub affinity_timeout_s: Option<u32>,
    pub internal_local: bool,
    pub external_local: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointDef {
    pub addresses: Vec<Ipv4Addr>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    pub node_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceDef {
    pub name: ObjectName,
    pub service: ObjectName,
    /// (port name, port, protocol): how the slice resolves each service port by name.
    pub ports: Vec<(String, u16, Protocol)>,
    pub endpoints: Vec<EndpointDef>,
}

/// Every service and slice the node knows, by name.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub services: BTreeMap<ObjectName, ServiceDef>,
    pub slices: BTreeMap<ObjectName, SliceDef>,
    /// Slice names by the service they belong to, so planning is linear in the catalog.
    slices_by_service: BTreeMap<ObjectName, std::collections::BTreeSet<ObjectName>>,
}

impl Catalog {
    pub fn upsert_service(&mut self, def: ServiceDef) {
        self.services.insert(def.name.clone(), def);
    }
    pub fn upsert_slice(&mut self, def: SliceDef) {
        self.remove_slice(&def.name.clone());
        (self
            .slices_by_service
            .entry(def.service.clone())
            .or_default())
        .insert(def.name.clone());
        self.slices.insert(def.name.clone(), def);
    }
    fn remove_slice(&mut self, name: &ObjectName) {
        if let Some(old) = self.slices.remove(name)
            && let Some(names) = self.slices_by_service.get_mut(&old.service)
        {
            names.remove(name);
            if names.is_empty() {
                self.slices_by_service.remove(&old.service);
            }
        }
    }
    /// Slices that belong to `service`.
    pub fn slices_of<'a>(&'a self, service: &'a ObjectName) -> impl Iterator<Item = &'a SliceDef> {
        (self.slices_by_service.get(service).into_iter().flatten())
            .filter_map(|name| self.slices.get(name))
    }
}

impl ServiceDef {
    pub fn from_k8s(service: &Service) -> Result<Self, InvalidObject> {
        let check = Checker::new("Service", &service.metadata);
        let name = check.name(&service.metadata)?;
        let Some(spec) = &service.spec else {
            return check.fail("spec", "required");
        };
        let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
        if !matches!(
            kind,
            "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
        ) {
            return check.fail("spec.type", format!("unsupported value {kind:?}"));
        }
        let cluster_ip = match spec.cluster_ip.as_deref() {
            _ if kind == "ExternalName" => None,
            Some("None") => None,
            Some(ip) if !ip.is_empty() => Some(check.ipv4("spec.clusterIP".into(), ip)?),
            _ => {
                return check.fail(
                    "spec.clusterIP",
                    "required: standalone mode has no address allocator",
                );
            }
        };
        let service_ports = spec.ports.as_deref().unwrap_or_default();
        let mut ports = Vec::with_capacity(service_ports.len());
        for (index, port) in service_ports.iter().enumerate() {
            ports.push(port_def(&check, kind, index, port, service_ports.len())?);
        }
        for (index, a) in ports.iter().enumerate() {
            if ports[..index].iter().any(|b| b.name == a.name) {
                return check.fail(
                    format!("spec.ports[{index}].name"),
                    format!("duplicate {:?}", a.name),
                );
            }
        }
        let external_ips = (spec.external_ips.iter().flatten().enumerate())
            .map(|(i, ip)| check.ipv4(format!("spec.externalIPs[{i}]"), ip))
            .collect::<Result<_, _>>()?;
        let mut load_balancer_ips = Vec::new();
        if kind == "LoadBalancer" {
            let ingress = (service.status.as_ref())
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref());
            for (i, entry) in ingress.into_iter().flatten().enumerate() {
                if let Some(ip) = &entry.ip {
                    load_balancer_ips
                        .push(check.ipv4(format!("status.loadBalancer.ingress[{i}].ip"), ip)?);
                }
            }
        }
        let affinity_timeout_s = match spec.session_affinity.as_deref() {
            None | Some("None") => None,
            Some("ClientIP") => {
                let timeout = (spec.session_affinity_config.as_ref())
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds);
                match timeout {
                    None => Some(DEFAULT_AFFINITY_TIMEOUT_S),
                    Some(t) if (1..=MAX_AFFINITY_TIMEOUT_S).contains(&t) => Some(t as u32),
                    Some(t) => {
                        return check.fail(
                            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                            format!("{t} is not within 1-{MAX_AFFINITY_TIMEOUT_S}"),
                        );
                    }
                }
            }
            Some(other) => {
                return check.fail(
                    "spec.sessionAffinity",
                    format!("{other:?} is not None or ClientIP"),
                );
            }
        };
        let policy = |field: &str, value: Option<&str>| match value {
            None | Some("Cluster") => Ok(false),
            Some("Local") => Ok(true),
            Some(other) => check.fail(
                field.to_owned(),
                format!("{other:?} is not Cluster or Local"),
            ),
        };
        Ok(ServiceDef {
            cluster_ip,
            ports,
            external_ips,
            load_balancer_ips,
            affinity_timeout_s,
            internal_local: policy(
                "spec.internalTrafficPolicy",
                spec.internal_traffic_policy.as_deref(),
            )?,
            external_local: policy(
                "spec.externalTrafficPolicy",
                spec.external_traffic_policy.as_deref(),
            )?,
            name,
        })
    }
}

fn port_def(
    check: &Checker,
    kind: &str,
    index: usize,
    port: &ServicePort,
    port_count: usize,
) -> Result<PortDef, InvalidObject> {
    let field = |leaf: &str| format!("spec.ports[{index}].{leaf}");
    let name = port.name.clone().unwrap_or_default();
    if port_count > 1 && name.is_empty() {
        return check.fail(
            field("name"),
            "required when a service has more than one port",
        );
    }
    let node_port = match port.node_port {
        Some(value) if matches!(kind, "NodePort" | "LoadBalancer") => {
            Some(check.port(field("nodePort"), value)?)
        }
        Some(_) => return check.fail(field("nodePort"), format!("not allowed for type {kind}")),
        None if kind == "NodePort" => {
            return check.fail(
                field("nodePort"),
                "required: standalone mode has no port allocator",
            );
        }
        None => None,
    };
    Ok(PortDef {
        name,
        port: check.port(field("port"), port.port)?,
        protocol: check.protocol(field("protocol"), port.protocol.as_deref())?,
        node_port,
    })
}

impl SliceDef {
    pub fn from_k8s(slice: &EndpointSlice) -> Result<Self, InvalidObject> {
        let check = Checker::new("EndpointSlice", &slice.metadata);
        let name = check.name(&slice.metadata)?;
        let Some(service) =
            (slice.metadata.labels.as_ref()).and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            return check.fail(format!("metadata.labels[{SERVICE_NAME_LABEL}]"), "required");
        };
        let service = ObjectName {
            namespace: name.namespace.clone(),
            name: service.clone(),
        };
        if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6" | "FQDN") {
            return check.fail(
                "addressType",
                format!("{:?} is not IPv4, IPv6 or FQDN", slice.address_type),
            );
        }
        let mut ports = Vec::new();
        for (index, port) in slice.ports.iter().flatten().enumerate() {
            let Some(number) = port.port else {
                return check.fail(format!("ports[{index}].port"), "required");
            };
            ports.push((
                port.name.clone().unwrap_or_default(),
                check.port(format!("ports[{index}].port"), number)?,
                check.protocol(format!("ports[{index}].protocol"), port.protocol.as_deref())?,
            ));
        }
        let mut endpoints = Vec::new();
        // IPv6 and FQDN slices are valid Kubernetes objects the IPv4 datapath has no use for.
        if slice.address_type == "IPv4" {
            for (index, endpoint) in slice.endpoints.iter().flatten().enumerate() {
                let addresses = (endpoint.addresses.iter().enumerate())
                    .map(|(j, ip)| check.ipv4(format!("endpoints[{index}].addresses[{j}]"), ip))
                    .collect::<Result<Vec<_>, _>>()?;
                let conditions = endpoint.conditions.clone().unwrap_or_default();
                // Per the API: ready unset means ready; serving unset means as ready.
                let ready = conditions.ready.unwrap_or(true);
                endpoints.push(EndpointDef {
                    addresses,
                    ready,
                    serving: conditions.serving.unwrap_or(ready),
                    terminating: conditions.terminating.unwrap_or(false),
                    node_name: endpoint.node_name.clone(),
                });
            }
        }
        Ok(SliceDef {
            name,
            service,
            ports,
            endpoints,
        })
    }
}
