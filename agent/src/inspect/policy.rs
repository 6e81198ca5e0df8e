//! `kaya bpf ipcache list` and `kaya bpf policy list`: the identities the datapath knows by
//! address, and each endpoint's isolation and allow entries, with names from the agent.
use ipnet::Ipv4Net;
use kaya_ebpf_common::policy::{
    DIRECTION_INGRESS, IDENTITY_ANY, ISOLATED_EGRESS, ISOLATED_INGRESS, IpcacheEntry,
    POLICY_PREFIX_ANY, POLICY_PREFIX_FULL, POLICY_PREFIX_PROTOCOL, PolicyKey,
};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::observe::protocol_name;
use crate::policy::names::FlowNames;

fn identity_name(identity: u32, names: &FlowNames) -> String {
    match identity {
        IDENTITY_ANY => "any".into(),
        1 => "host".into(),
        2 => "world".into(),
        6 => "remote-node".into(),
        id if id >= kaya_ebpf_common::policy::FIRST_CIDR_IDENTITY => format!("cidr:{id}"),
        id => match names.identities.get(&id) {
            Some(labels) => format!("{id} ({labels})"),
            None => id.to_string(),
        },
    }
}

pub fn ipcache(entries: &BTreeMap<Ipv4Net, IpcacheEntry>, names: &FlowNames) -> String {
    let mut out = format!(
        "{:<20} {:<40} {:>10} {:<16}\n",
        "PREFIX", "IDENTITY", "CIDR ID", "TUNNEL"
    );
    for (prefix, entry) in entries {
        let tunnel = match entry.tunnel_ip {
            0 => "-".to_string(),
            ip => Ipv4Addr::from(ip.to_ne_bytes()).to_string(),
        };
        let _ = writeln!(
            out,
            "{:<20} {:<40} {:>10} {:<16}",
            prefix.to_string(),
            identity_name(entry.identity, names),
            entry.cidr_identity,
            tunnel
        );
    }
    out
}

/// The port part of an entry: every protocol, every port of one, or a port prefix.
fn ports(prefix: u32, key: &PolicyKey) -> String {
    let protocol = protocol_name(key.protocol);
    match prefix {
        POLICY_PREFIX_ANY => "any".into(),
        POLICY_PREFIX_PROTOCOL => format!("{protocol}/any"),
        POLICY_PREFIX_FULL => format!("{protocol}/{}", u16::from_be(key.dport)),
        bits => {
            let first = u16::from_be(key.dport);
            let span = 1u32 << (POLICY_PREFIX_FULL - bits);
            format!("{protocol}/{first}-{}", u32::from(first) + span - 1)
        }
    }
}

pub fn entries(
    entries: &BTreeMap<(u32, PolicyKey), u32>,
    isolation: &BTreeMap<u32, u32>,
    names: &FlowNames,
) -> String {
    let endpoint = |id: u32| match names.endpoints.get(&id) {
        Some(ip) => match names.pods.get(ip) {
            Some(pod) => format!("{id} ({}/{})", pod.namespace, pod.name),
            None => format!("{id} ({ip})"),
        },
        None => id.to_string(),
    };
    let mut out = String::from("ISOLATED\n");
    for (id, flags) in isolation {
        let mut directions = Vec::new();
        if flags & ISOLATED_INGRESS != 0 {
            directions.push("ingress");
        }
        if flags & ISOLATED_EGRESS != 0 {
            directions.push("egress");
        }
        let _ = writeln!(
            out,
            "  endpoint {:<28} {}",
            endpoint(*id),
            directions.join(",")
        );
    }
    let _ = writeln!(
        out,
        "{:<30} {:<8} {:<36} {:<16} RULE",
        "ENDPOINT", "DIR", "PEER", "PORTS"
    );
    for ((prefix, key), rule) in entries {
        let direction = if key.direction == DIRECTION_INGRESS {
            "ingress"
        } else {
            "egress"
        };
        let rule = names
            .rules
            .get(rule)
            .cloned()
            .unwrap_or_else(|| rule.to_string());
        let _ = writeln!(
            out,
            "{:<30} {:<8} {:<36} {:<16} {rule}",
            endpoint(key.endpoint_id),
            direction,
            identity_name(key.identity, names),
            ports(*prefix, key)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaya_ebpf_common::policy::DIRECTION_EGRESS;

    #[test]
    fn entries_read_with_names_and_port_ranges() {
        let mut names = FlowNames::default();
        names.rules.insert(4, "x/p egress[0]".into());
        let key = |identity, protocol, dport: u16| PolicyKey {
            endpoint_id: 7,
            identity,
            direction: DIRECTION_EGRESS,
            protocol,
            dport: dport.to_be(),
        };
        let table: BTreeMap<_, _> = [
            ((POLICY_PREFIX_ANY, key(0, 0, 0)), 4),
            ((POLICY_PREFIX_PROTOCOL + 14, key(2, 6, 8000)), 4),
            ((POLICY_PREFIX_FULL, key(300, 17, 53)), 9),
        ]
        .into();
        let text = entries(&table, &[(7, ISOLATED_EGRESS)].into(), &names);
        assert!(
            text.contains("endpoint 7") && text.contains("egress"),
            "{text}"
        );
        assert!(
            text.contains("any") && text.contains("x/p egress[0]"),
            "{text}"
        );
        assert!(
            text.contains("TCP/8000-8003") && text.contains("world"),
            "{text}"
        );
        assert!(
            text.contains("UDP/53") && text.lines().last().unwrap().ends_with(" 9"),
            "{text}"
        );
    }
}
