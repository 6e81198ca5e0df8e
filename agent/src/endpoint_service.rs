//! Handles endpoint API requests: registers pod endpoints in the maps, attaches from_pod to
//! their host veth, and re-adopts or forgets them when the agent restarts.
use ipnet::Ipv4Net;
use kaya_agent_api::{Attachment, EndpointSpec, Request, Response};
use kaya_ebpf_common::{endpoint::EndpointInfo, identity::IDENTITY_DEFAULT_POD};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::datapath::{
    Datapath, MapAccessError, PROG_FROM_POD, PROG_TO_POD,
    endpoints::EndpointMap,
    links::{self, Direction, LinkError},
};
use crate::netdev::{NetdevError, Netlink};
use crate::registry::{Registry, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {container_id}/{ifname}: invalid {field} {value:?}")]
    Invalid {
        container_id: String,
        ifname: String,
        field: &'static str,
        value: String,
    },
    #[error("endpoint ip {ip} is outside this node's pod cidr {pod_cidr}")]
    OutsidePodCidr { ip: Ipv4Addr, pod_cidr: Ipv4Net },
    #[error("host interface {0} does not exist")]
    NoSuchLink(String),
    #[error("endpoint {0}/{1} is not registered")]
    NotRegistered(String, String),
    #[error("endpoint {0}/{1} is registered but not programmed: {2}")]
    NotProgrammed(String, String, &'static str),
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    #[error(transparent)]
    Map(#[from] MapAccessError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Load(#[from] crate::datapath::LoadError),
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A validated endpoint spec.
struct Parsed {
    ip: Ipv4Addr,
    pod_mac: [u8; 6],
}

fn parse(spec: &EndpointSpec, pod_cidr: Ipv4Net) -> Result<Parsed, EndpointError> {
    let invalid = |field, value: &str| EndpointError::Invalid {
        container_id: spec.attachment.container_id.clone(),
        ifname: spec.attachment.ifname.clone(),
        field,
        value: value.to_owned(),
    };
    let ip: Ipv4Addr = spec.ip.parse().map_err(|_| invalid("ip", &spec.ip))?;
    let pod_mac = parse_mac(&spec.pod_mac).ok_or_else(|| invalid("pod_mac", &spec.pod_mac))?;
    if spec.host_ifname.is_empty() || spec.host_ifname.len() > 15 {
        return Err(invalid("host_ifname", &spec.host_ifname));
    }
    if !pod_cidr.contains(&ip) {
        return Err(EndpointError::OutsidePodCidr { ip, pod_cidr });
    }
    Ok(Parsed { ip, pod_mac })
}

pub struct EndpointService {
    pub node_name: String,
    pub pod_cidr: Ipv4Net,
    pub datapath: Datapath,
    pub endpoints: EndpointMap,
    pub registry: Registry,
    pub netlink: Netlink,
}

impl EndpointService {
    pub async fn handle(&mut self, request: Request) -> Response {
        let result = match request {
            Request::AddEndpoint { endpoint } => self.add(endpoint).await.map(|()| Response::Ok),
            Request::DelEndpoint { attachment } => self.del(&attachment).map(|()| Response::Ok),
            Request::CheckEndpoint { attachment } => {
                self.check(&attachment).await.map(|()| Response::Ok)
            }
            Request::Gc { valid } => self.gc(&valid).map(|()| Response::Ok),
            Request::Status => Ok(Response::Status {
                ready: true,
                node_name: self.node_name.clone(),
            }),
            Request::ListEndpoints => Ok(Response::Endpoints {
                endpoints: self.registry.all().map(|r| r.spec.clone()).collect(),
            }),
            // Answered by the pods API before the request reaches this service.
            Request::ListPods
            | Request::NodeStatus
            | Request::PodLogs { .. }
            | Request::PodExec { .. } => Ok(Response::Error {
                message: "this agent runs no pods (pods.staticPodPath is not set)".into(),
            }),
        };
        result.unwrap_or_else(|err| Response::Error {
            message: err.to_string(),
        })
    }

    pub async fn add(&mut self, spec: EndpointSpec) -> Result<(), EndpointError> {
        let started = std::time::Instant::now();
        let parsed = parse(&spec, self.pod_cidr)?;
        let link = self
            .netlink
            .link(&spec.host_ifname)
            .await?
            .ok_or_else(|| EndpointError::NoSuchLink(spec.host_ifname.clone()))?;
        let ifname = spec.host_ifname.clone();
        let endpoint_id = self.registry.insert(spec, link.index)?;
        // The map entry goes in before the program: from_pod drops sources it does not know.
        self.endpoints.upsert(
            parsed.ip,
            EndpointInfo {
                ifindex: link.index,
                identity: IDENTITY_DEFAULT_POD,
                pod_mac: parsed.pod_mac,
                host_mac: link.mac,
                endpoint_id,
            },
        )?;
        let attach_started = std::time::Instant::now();
        // to_pod first: once from_pod runs, the pod's traffic flows, and traffic routed back
        // into it must already meet its ingress policy.
        let program = self.datapath.program(PROG_TO_POD)?;
        links::attach_filter(program, PROG_TO_POD, &ifname, Direction::Egress)?;
        let program = self.datapath.program(PROG_FROM_POD)?;
        let how = links::attach_filter(program, PROG_FROM_POD, &ifname, Direction::Ingress)?;
        tracing::info!(
            endpoint_id,
            ip = %parsed.ip,
            ifname,
            ?how,
            attach_us = attach_started.elapsed().as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "endpoint programmed"
        );
        Ok(())
    }

    pub fn del(&mut self, attachment: &Attachment) -> Result<(), EndpointError> {
        let Some(gone) = self.registry.remove(attachment)? else {
            return Ok(());
        };
        self.forget(&gone.spec, gone.ifindex)?;
        tracing::info!(
            container_id = attachment.container_id,
            ifname = attachment.ifname,
            "endpoint removed"
        );
        Ok(())
    }

    /// Removes the map entry (unless the IP now belongs to another interface) and the link.
    fn forget(&mut self, spec: &EndpointSpec, ifindex: u32) -> Result<(), EndpointError> {
        if let Ok(ip) = spec.ip.parse::<Ipv4Addr>()
            && self
                .endpoints
                .get(ip)
                .is_some_and(|info| info.ifindex == ifindex)
        {
            self.endpoints.remove(ip)?;
        }
        links::detach_filter(PROG_FROM_POD, &spec.host_ifname, Direction::Ingress);
        links::detach_filter(PROG_TO_POD, &spec.host_ifname, Direction::Egress);
        Ok(())
    }

    pub async fn check(&self, attachment: &Attachment) -> Result<(), EndpointError> {
        let not_registered = || {
            EndpointError::NotRegistered(attachment.container_id.clone(), attachment.ifname.clone())
        };
        let registered = self.registry.get(attachment).ok_or_else(not_registered)?;
        let not_programmed = |what| {
            EndpointError::NotProgrammed(
                attachment.container_id.clone(),
                attachment.ifname.clone(),
                what,
            )
        };
        let ip: Ipv4Addr = registered
            .spec
            .ip
            .parse()
            .map_err(|_| not_programmed("bad ip"))?;
        match self.endpoints.get(ip) {
            Some(info) if info.ifindex == registered.ifindex => {}
            _ => return Err(not_programmed("no endpoint map entry")),
        }
        if !self
            .netlink
            .has_bpf_filter(registered.ifindex, true)
            .await?
        {
            return Err(not_programmed("from_pod is not attached"));
        }
        if !self
            .netlink
            .has_bpf_filter(registered.ifindex, false)
            .await?
        {
            return Err(not_programmed("to_pod is not attached"));
        }
        Ok(())
    }

    pub fn gc(&mut self, valid: &[Attachment]) -> Result<(), EndpointError> {
        let valid: BTreeSet<&Attachment> = valid.iter().collect();
        let stale: Vec<Attachment> = self
            .registry
            .all()
            .map(|r| r.spec.attachment.clone())
            .filter(|a| !valid.contains(a))
            .collect();
        for attachment in stale {
            self.del(&attachment)?;
        }
        Ok(())
    }

    /// After a restart: endpoints whose veth still exists get the new program in place of the
    /// old filter; the others (pods deleted while the agent was down) are forgotten, and map
    /// entries nobody registered are removed.
    pub async fn readopt(&mut self) -> Result<(), EndpointError> {
        let known: Vec<_> = self.registry.all().cloned().collect();
        let mut live_ifindexes = BTreeSet::new();
        for registered in known {
            let link = self.netlink.link(&registered.spec.host_ifname).await?;
            match link {
                Some(link) => {
                    if link.index != registered.ifindex {
                        self.forget(&registered.spec, registered.ifindex)?;
                    }
                    live_ifindexes.insert(link.index);
                    self.add(registered.spec).await?;
                }
                None => {
                    tracing::info!(
                        host_ifname = registered.spec.host_ifname,
                        "pod interface gone while agent was down"
                    );
                    self.registry.remove(&registered.spec.attachment)?;
                    self.forget(&registered.spec, registered.ifindex)?;
                }
            }
        }
        for (ip, info) in self.endpoints.entries() {
            if !live_ifindexes.contains(&info.ifindex) {
                self.endpoints.remove(ip)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_macs_strictly() {
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some([2, 0x42, 0xac, 0x11, 0, 2])
        );
        assert_eq!(parse_mac("02:42:ac:11:00"), None);
        assert_eq!(parse_mac("02:42:ac:11:00:02:03"), None);
        assert_eq!(parse_mac("2:42:ac:11:00:02"), None);
        assert_eq!(parse_mac("zz:42:ac:11:00:02"), None);
    }

    #[test]
    fn rejects_specs_outside_the_pod_cidr_or_malformed() {
        let mut spec = EndpointSpec {
            attachment: Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into(),
            },
            host_ifname: "kyn1deadbeef".into(),
            ip: "10.244.9.9".into(),
            pod_mac: "02:00:00:00:00:01".into(),
            netns: "/var/run/netns/p".into(),
        };
        let cidr: Ipv4Net = "10.244.1.0/24".parse().unwrap();
        assert!(matches!(
            parse(&spec, cidr),
            Err(EndpointError::OutsidePodCidr { .. })
        ));
        spec.ip = "10.244.1.300".into();
        let err = parse(&spec, cidr).err().unwrap();
        assert!(err.to_string().contains("invalid ip"), "{err}");
        spec.ip = "10.244.1.3".into();
        assert!(parse(&spec, cidr).is_ok());
    }
}
