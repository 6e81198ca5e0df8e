//! Service ClusterIPs (from the service CIDR) and NodePorts (30000–32767): each one handed
//! out is a key created in the store, so two services never get the same one — not even
//! from two control planes sharing etcd — and deleting the key releases it.
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::{Value, json};

use super::meta;
use super::resources::Resource;
use super::status::{ApiError, FieldCause};
use crate::store::{Store, StoreError};

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
pub const NODE_PORTS: std::ops::RangeInclusive<u32> = 30000..=32767;

pub struct Allocator {
    store: Arc<dyn Store>,
    service_cidr: Ipv4Net,
}

/// Keys this request created, released again if the request fails.
#[derive(Debug, Default)]
pub struct Claims(Vec<String>);

fn invalid(service: &Value, field: String, message: String) -> ApiError {
    ApiError::invalid(
        "Service",
        meta::name(service),
        vec![FieldCause::new(field, message)],
    )
}

fn cluster_ip(service: &Value) -> Option<String> {
    meta::str_field(service, "/spec/clusterIP")
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .map(str::to_owned)
}

fn node_ports(service: &Value) -> Vec<u32> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|port| port.get("nodePort").and_then(Value::as_u64))
        .map(|port| port as u32)
        .collect()
}

impl Allocator {
    pub fn new(store: Arc<dyn Store>, service_cidr: Ipv4Net) -> Allocator {
        Allocator {
            store,
            service_cidr,
        }
    }

    /// The address of the `kubernetes` service: the range's first usable one.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.service_cidr.network()) + 1)
    }

    async fn try_claim(&self, key: String, owner: &str) -> Result<bool, ApiError> {
        let store = self.store.clone();
        let owner = owner.as_bytes().to_vec();
        let result = tokio::task::spawn_blocking(move || store.create(&key, &owner))
            .await
            .map_err(|error| ApiError::Internal(format!("allocation: {error}")))?;
        match result {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(error) => Err(ApiError::Internal(format!("allocation: {error}"))),
        }
    }

    async fn used(&self, prefix: &'static str) -> Result<HashSet<String>, ApiError> {
        let store = self.store.clone();
        let listing = tokio::task::spawn_blocking(move || store.list(prefix, None))
            .await
            .map_err(|error| ApiError::Internal(format!("allocation: {error}")))?
            .map_err(|error| ApiError::Internal(format!("allocation: {error}")))?;
        Ok(listing
            .items
            .into_iter()
            .filter_map(|object| object.key.strip_prefix(prefix).map(str::to_owned))
            .collect())
    }

    /// Claims the first free value of `count` candidates (`candidate(i)`), starting at a
    /// random one so concurrent creates rarely race for the same.
    async fn claim_any(
        &self,
        prefix: &'static str,
        count: u32,
        candidate: impl Fn(u32) -> String,
        owner: &str,
    ) -> Result<Option<String>, ApiError> {
        let used = self.used(prefix).await?;
        let start = rand::random::<u32>() % count.max(1);
        for offset in 0..count {
            let value = candidate((start + offset) % count);
            if !used.contains(&value) && self.try_claim(format!("{prefix}{value}"), owner).await? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The service range's addresses, without the network address, the kubernetes
    /// service's first address and broadcast: (first, count).
    fn ip_range(&self) -> (u32, u32) {
        let network = u32::from(self.service_cidr.network());
        let broadcast = u32::from(self.service_cidr.broadcast());
        (network + 2, broadcast.saturating_sub(network + 2))
    }

    /// Claims what a service needs (given what it had), filling in its clusterIP and
    /// nodePorts; anything else passes through.
    pub async fn claim(
        &self,
        resource: &Resource,
        service: &mut Value,
        current: Option<&Value>,
    ) -> Result<Claims, ApiError> {
        let mut claims = Claims::default();
        if resource.kind != "Service" {
            return Ok(claims);
        }
        let result = self.claim_service(service, current, &mut claims).await;
        if let Err(error) = result {
            self.release(claims).await;
            return Err(error);
        }
        Ok(claims)
    }

    async fn claim_service(
        &self,
        service: &mut Value,
        current: Option<&Value>,
        claims: &mut Claims,
    ) -> Result<(), ApiError> {
        let owner = format!(
            "{}/{}",
            meta::namespace(service).unwrap_or(""),
            meta::name(service)
        );
        let kind = meta::str_field(service, "/spec/type")
            .unwrap_or("ClusterIP")
            .to_owned();
        let had_ip = current.and_then(cluster_ip);
        let wants_ip =
            kind != "ExternalName" && meta::str_field(service, "/spec/clusterIP") != Some("None");
        match (cluster_ip(service), had_ip) {
            (Some(ip), Some(had)) if ip == had => {}
            (None, Some(had)) if wants_ip => service["spec"]["clusterIP"] = json!(had),
            (Some(ip), _) => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    invalid(
                        service,
                        "spec.clusterIP".into(),
                        format!("Invalid value: \"{ip}\": must be a valid IP address"),
                    )
                })?;
                if !self.service_cidr.contains(&parsed) {
                    return Err(invalid(
                        service,
                        "spec.clusterIP".into(),
                        format!(
                            "Invalid value: \"{ip}\": provided IP is not in the valid range. The range of valid IPs is {}",
                            self.service_cidr
                        ),
                    ));
                }
                let key = format!("{IP_PREFIX}{ip}");
                if !self.try_claim(key.clone(), &owner).await? {
                    return Err(invalid(
                        service,
                        "spec.clusterIP".into(),
                        format!("Invalid value: \"{ip}\": provided IP is already allocated"),
                    ));
                }
                claims.0.push(key);
            }
            (None, _) if wants_ip => {
                let (first, count) = self.ip_range();
                let ip = self
                    .claim_any(
                        IP_PREFIX,
                        count,
                        |index| Ipv4Addr::from(first + index).to_string(),
                        &owner,
                    )
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(format!(
                            "failed to allocate a serviceIP: range {} is full",
                            self.service_cidr
                        ))
                    })?;
                claims.0.push(format!("{IP_PREFIX}{ip}"));
                service["spec"]["clusterIP"] = json!(ip);
            }
            (None, _) => {}
        }
        if let Some(ip) = cluster_ip(service) {
            service["spec"]["clusterIPs"] = json!([ip]);
        }
        let had_ports = current.map(node_ports).unwrap_or_default();
        let uses_node_ports = matches!(kind.as_str(), "NodePort" | "LoadBalancer");
        let count = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        for index in 0..count {
            let port = &mut service["spec"]["ports"][index];
            let requested = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .map(|port| port as u32);
            if !uses_node_ports {
                if requested.is_some() {
                    return Err(invalid(
                        service,
                        format!("spec.ports[{index}].nodePort"),
                        format!("Forbidden: may not be used when `type` is '{kind}'"),
                    ));
                }
                continue;
            }
            match requested {
                Some(number) if had_ports.contains(&number) => {}
                Some(number) => {
                    let key = format!("{PORT_PREFIX}{number}");
                    if !self.try_claim(key.clone(), &owner).await? {
                        return Err(invalid(
                            service,
                            format!("spec.ports[{index}].nodePort"),
                            format!("Invalid value: {number}: provided port is already allocated"),
                        ));
                    }
                    claims.0.push(key);
                }
                None => {
                    let first = *NODE_PORTS.start();
                    let count = NODE_PORTS.end() - first + 1;
                    let number = self
                        .claim_any(
                            PORT_PREFIX,
                            count,
                            |index| (first + index).to_string(),
                            &owner,
                        )
                        .await?
                        .ok_or_else(|| {
                            ApiError::Internal(
                                "failed to allocate a nodePort: range 30000-32767 is full".into(),
                            )
                        })?;
                    claims.0.push(format!("{PORT_PREFIX}{number}"));
                    service["spec"]["ports"][index]["nodePort"] =
                        json!(number.parse::<u32>().unwrap_or(0));
                }
            }
        }
        Ok(())
    }

    pub async fn release(&self, claims: Claims) {
        for key in claims.0 {
            let store = self.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.delete(&key, None)).await;
        }
    }

    fn keys(service: &Value) -> Vec<String> {
        let mut keys: Vec<String> = node_ports(service)
            .into_iter()
            .map(|port| format!("{PORT_PREFIX}{port}"))
            .collect();
        keys.extend(cluster_ip(service).map(|ip| format!("{IP_PREFIX}{ip}")));
        keys
    }

    /// After an update: what the old version held and the new one does not is free again.
    pub async fn release_replaced(&self, resource: &Resource, old: &Value, new: &Value) {
        if resource.kind != "Service" {
            return;
        }
        let kept = Allocator::keys(new);
        let freed = Allocator::keys(old)
            .into_iter()
            .filter(|key| !kept.contains(key))
            .collect();
        self.release(Claims(freed)).await;
    }

    pub async fn release_all(&self, resource: &Resource, object: &Value) {
        if resource.kind == "Service" {
            self.release(Claims(Allocator::keys(object))).await;
        }
    }
}
