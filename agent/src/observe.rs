//! `kaya observe`: flow events as lines a person reads (pods, ports, protocol, verdict and
//! why), with the filters Hubble users expect. Pure formatting and matching; the CLI reads
//! the ring buffer.
use kaya_ebpf_common::policy::{
    CAUSE_NO_RULE, CAUSE_NOT_ISOLATED, CAUSE_RULE, DIRECTION_INGRESS, FlowEvent, VERDICT_DROPPED,
};
use kaya_ebpf_common::trace::{
    POINT_FROM_NETDEV, POINT_FROM_OVERLAY, POINT_FROM_POD, POINT_TO_POD,
};
use serde::Serialize;
use std::net::Ipv4Addr;

use crate::clock::rfc3339;
use crate::policy::names::FlowNames;

/// One flow event with its names resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Flow {
    /// Wall-clock time, RFC 3339 with milliseconds.
    pub time: String,
    pub source: Endpoint,
    pub destination: Endpoint,
    pub protocol: String,
    /// `FORWARDED` or `DROPPED`.
    pub verdict: &'static str,
    /// `ingress` or `egress`: whose policy decided.
    pub direction: &'static str,
    pub reason: String,
    /// The program that decided (`from-pod`, `from-overlay`...).
    pub observation_point: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub identity: u32,
}

impl Endpoint {
    fn describe(&self) -> String {
        match (&self.namespace, &self.pod) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}:{}", self.port),
            _ => format!("{}:{}", self.ip, self.port),
        }
    }
}

pub fn protocol_name(number: u8) -> String {
    match number {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        132 => "SCTP".into(),
        other => format!("proto-{other}"),
    }
}

fn point_name(point: u8) -> &'static str {
    match point {
        POINT_FROM_POD => "from-pod",
        POINT_FROM_OVERLAY => "from-overlay",
        POINT_FROM_NETDEV => "from-netdev",
        POINT_TO_POD => "to-pod",
        _ => "unknown",
    }
}

/// Resolves an event; `wall_ns_at(mono)` turns the kernel's monotonic stamp into wall time.
pub fn resolve(event: &FlowEvent, names: &FlowNames, wall_ns_at: impl Fn(u64) -> i128) -> Flow {
    let endpoint = |address: u32, port: u16, identity: u32| {
        let ip = Ipv4Addr::from(address.to_ne_bytes());
        let pod = names.pods.get(&ip);
        Endpoint {
            ip,
            port,
            namespace: pod.map(|p| p.namespace.clone()),
            pod: pod.map(|p| p.name.clone()),
            identity,
        }
    };
    let direction = if event.direction == DIRECTION_INGRESS {
        "ingress"
    } else {
        "egress"
    };
    let reason = match event.cause {
        CAUSE_NO_RULE => format!("policy denied: no {direction} rule allows it"),
        CAUSE_RULE => match names.rules.get(&event.rule_id) {
            Some(rule) => format!("allowed by {rule}"),
            None => format!("allowed by rule {}", event.rule_id),
        },
        CAUSE_NOT_ISOLATED => format!("no {direction} policy selects the pod"),
        other => format!("cause {other}"),
    };
    Flow {
        time: rfc3339(wall_ns_at(event.time_ns), 3),
        source: endpoint(event.saddr, event.sport, event.src_identity),
        destination: endpoint(event.daddr, event.dport, event.dst_identity),
        protocol: protocol_name(event.protocol),
        verdict: if event.verdict == VERDICT_DROPPED {
            "DROPPED"
        } else {
            "FORWARDED"
        },
        direction,
        reason,
        observation_point: point_name(event.point),
    }
}

impl Flow {
    /// One line, Hubble style.
    pub fn line(&self) -> String {
        format!(
            "{} {} -> {} {} {} {} ({}) at {}",
            self.time,
            self.source.describe(),
            self.destination.describe(),
            self.protocol,
            self.verdict,
            self.direction,
            self.reason,
            self.observation_point
        )
    }
}

/// Which flows to show; every set field must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Either end in this namespace.
    pub namespace: Option<String>,
    /// Either end is this pod (`namespace/name`).
    pub pod: Option<String>,
    pub from_pod: Option<String>,
    pub to_pod: Option<String>,
    /// `FORWARDED` or `DROPPED` (any case).
    pub verdict: Option<String>,
    /// `TCP`, `UDP`... (any case).
    pub protocol: Option<String>,
    /// Either port.
    pub port: Option<u16>,
}

fn is_pod(end: &Endpoint, wanted: &str) -> bool {
    match (&end.namespace, &end.pod) {
        (Some(ns), Some(pod)) => wanted.split_once('/') == Some((ns, pod)),
        _ => false,
    }
}

impl Filter {
    pub fn matches(&self, flow: &Flow) -> bool {
        let ends = [&flow.source, &flow.destination];
        self.namespace
            .as_ref()
            .is_none_or(|ns| ends.iter().any(|e| e.namespace.as_ref() == Some(ns)))
            && (self.pod.as_ref()).is_none_or(|p| ends.iter().any(|e| is_pod(e, p)))
            && (self.from_pod.as_ref()).is_none_or(|p| is_pod(&flow.source, p))
            && (self.to_pod.as_ref()).is_none_or(|p| is_pod(&flow.destination, p))
            && (self.verdict.as_ref()).is_none_or(|v| v.eq_ignore_ascii_case(flow.verdict))
            && (self.protocol.as_ref()).is_none_or(|p| p.eq_ignore_ascii_case(&flow.protocol))
            && self
                .port
                .is_none_or(|p| flow.source.port == p || flow.destination.port == p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::names::PodName;
    use kaya_ebpf_common::policy::{DIRECTION_EGRESS, VERDICT_FORWARDED};

    fn names() -> FlowNames {
        let mut names = FlowNames::default();
        names.pods.insert(
            Ipv4Addr::new(10, 244, 1, 2),
            PodName {
                namespace: "x".into(),
                name: "a".into(),
            },
        );
        names.rules.insert(3, "x/allow-web ingress[0]".into());
        names
    }

    fn event(verdict: u8, cause: u8) -> FlowEvent {
        FlowEvent {
            time_ns: 5_000_000_000,
            saddr: u32::from_ne_bytes([10, 244, 1, 2]),
            daddr: u32::from_ne_bytes([10, 244, 2, 9]),
            sport: 40000,
            dport: 80,
            rule_id: 3,
            protocol: 6,
            direction: DIRECTION_EGRESS,
            verdict,
            cause,
            point: POINT_FROM_POD,
            ..FlowEvent::default()
        }
    }

    #[test]
    fn events_read_as_hubble_style_lines() {
        // 2026-11-30T16:00:00Z is 1 796 054 400 s after the epoch.
        let wall = |mono: u64| 1_796_054_400_000_000_000i128 + i128::from(mono) - 5_000_000_000;
        let flow = resolve(&event(VERDICT_DROPPED, CAUSE_NO_RULE), &names(), wall);
        assert_eq!(
            flow.line(),
            "2026-11-30T16:00:00.000Z x/a:40000 -> 10.244.2.9:80 TCP DROPPED egress (policy denied: no egress rule allows it) at from-pod"
        );
        let allowed = resolve(&event(VERDICT_FORWARDED, CAUSE_RULE), &names(), wall);
        assert_eq!(allowed.reason, "allowed by x/allow-web ingress[0]");
    }

    #[test]
    fn filters_combine() {
        let flow = resolve(&event(VERDICT_DROPPED, CAUSE_NO_RULE), &names(), |_| 0);
        let pass = |filter: Filter| filter.matches(&flow);
        assert!(pass(Filter::default()));
        assert!(pass(Filter {
            namespace: Some("x".into()),
            ..Filter::default()
        }));
        assert!(!pass(Filter {
            namespace: Some("y".into()),
            ..Filter::default()
        }));
        assert!(pass(Filter {
            from_pod: Some("x/a".into()),
            verdict: Some("dropped".into()),
            ..Filter::default()
        }));
        assert!(!pass(Filter {
            to_pod: Some("x/a".into()),
            ..Filter::default()
        }));
        assert!(pass(Filter {
            port: Some(80),
            protocol: Some("tcp".into()),
            ..Filter::default()
        }));
        assert!(!pass(Filter {
            verdict: Some("FORWARDED".into()),
            ..Filter::default()
        }));
    }
}
