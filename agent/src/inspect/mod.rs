//! Human-readable views of the live datapath maps, for the `kaya` CLI (`kaya bpf ...`), in
//! the spirit of `cilium bpf ... list`. Read-only: the agent stays the only writer.
use ipnet::Ipv4Net;
use kaya_ebpf_common::endpoint::EndpointInfo;
use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::datapath::metrics::Totals;

pub mod lb;
pub mod pods;
pub mod policy;

fn mac(bytes: &[u8; 6]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn endpoints(mut entries: Vec<(Ipv4Addr, EndpointInfo)>) -> String {
    entries.sort_by_key(|(ip, _)| *ip);
    let mut out = format!(
        "{:<16} {:>6} {:>8} {:>9} {:<17} {:<17}\n",
        "IP", "ID", "IFINDEX", "IDENTITY", "POD MAC", "GATEWAY MAC"
    );
    for (ip, info) in entries {
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>8} {:>9} {:<17} {:<17}",
            ip.to_string(),
            info.endpoint_id,
            info.ifindex,
            info.identity,
            mac(&info.pod_mac),
            mac(&info.host_mac)
        );
    }
    out
}

pub fn tunnels(mut entries: Vec<(Ipv4Net, Ipv4Addr)>) -> String {
    entries.sort();
    let mut out = format!("{:<20} {:<16}\n", "POD CIDR", "NODE IP");
    for (cidr, node) in entries {
        let _ = writeln!(out, "{:<20} {:<16}", cidr.to_string(), node.to_string());
    }
    out
}

pub fn metrics(totals: &Totals) -> String {
    let mut out = format!("{:<22} {:>12} {:>14}\n", "REASON", "PACKETS", "BYTES");
    for (reason, counter) in totals {
        let _ = writeln!(
            out,
            "{reason:<22} {:>12} {:>14}",
            counter.packets, counter.bytes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaya_ebpf_common::metrics::Counter;

    #[test]
    fn endpoints_are_sorted_with_readable_macs() {
        let info = |id| EndpointInfo {
            ifindex: 7,
            identity: 256,
            pod_mac: [2, 0, 0, 0, 0, 1],
            host_mac: [2, 0, 0, 0, 0, 0xfe],
            endpoint_id: id,
        };
        let text = endpoints(vec![
            (Ipv4Addr::new(10, 244, 1, 9), info(2)),
            (Ipv4Addr::new(10, 244, 1, 3), info(1)),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("IP"));
        assert!(lines[1].starts_with("10.244.1.3"), "{text}");
        assert!(lines[1].contains("02:00:00:00:00:01") && lines[1].contains("02:00:00:00:00:fe"));
    }

    #[test]
    fn tunnels_and_metrics_render_rows() {
        let text = tunnels(vec![(
            "10.244.2.0/24".parse().unwrap(),
            Ipv4Addr::new(192, 168, 50, 2),
        )]);
        assert!(text.contains("10.244.2.0/24") && text.contains("192.168.50.2"));
        let mut totals = Totals::new();
        totals.insert(
            "local_delivery",
            Counter {
                packets: 5,
                bytes: 500,
            },
        );
        let text = metrics(&totals);
        assert!(text.lines().nth(1).unwrap().contains("local_delivery"));
        assert!(text.contains("500"));
    }
}
