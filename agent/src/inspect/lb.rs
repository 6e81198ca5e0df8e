//! `kaya bpf lb list` and `kaya bpf ct list`: the service table and the service conntrack
//! table as the datapath sees them.
use kaya_ebpf_common::{
    ct::{CT_FLAG_SNAT, CT_FORWARD, CT_POLICY, CtEntry, CtKey},
    lb::{
        SVC_FLAG_AFFINITY, SVC_FLAG_DROP_WITHOUT_LOCAL, SVC_FLAG_EXTERNAL,
        SVC_FLAG_PRESERVE_SOURCE, ServiceKey,
    },
};
use std::fmt::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::datapath::lb::{LbTable, table::backend_addr};
use crate::services::Protocol;

fn ip(be: u32) -> Ipv4Addr {
    Ipv4Addr::from(be.to_ne_bytes())
}

fn proto(number: u8) -> String {
    Protocol::from_number(number).map_or_else(|| number.to_string(), |p| p.to_string())
}

fn frontend(key: &ServiceKey) -> String {
    format!(
        "{}:{}/{}",
        ip(key.address),
        u16::from_be(key.port),
        proto(key.protocol)
    )
}

pub fn services(table: &LbTable) -> String {
    let mut heads: Vec<_> = table.slots.iter().filter(|(k, _)| k.slot == 0).collect();
    heads.sort_by_key(|(k, _)| (u32::from_be(k.address), u16::from_be(k.port), k.protocol));
    let mut out = format!(
        "{:<24} {:>6} {:<22} {}\n",
        "FRONTEND", "REVNAT", "FLAGS", "BACKENDS"
    );
    for (key, head) in heads {
        let mut flags = Vec::new();
        if head.flags & SVC_FLAG_EXTERNAL != 0 {
            flags.push("external".to_owned());
        }
        if head.flags & SVC_FLAG_PRESERVE_SOURCE != 0 {
            flags.push("local".to_owned());
        }
        if head.flags & SVC_FLAG_DROP_WITHOUT_LOCAL != 0 {
            flags.push("drop-without-local".to_owned());
        }
        if head.flags & SVC_FLAG_AFFINITY != 0 {
            flags.push(format!("affinity={}s", head.affinity_timeout_s));
        }
        let flags = if flags.is_empty() {
            "-".to_owned()
        } else {
            flags.join(",")
        };
        let mut backends = Vec::new();
        for slot in 1..=head.count {
            let slot_key = ServiceKey { slot, ..*key };
            let text = match table.slots.get(&slot_key) {
                Some(value) => match table.backends.get(&value.backend_id).and_then(backend_addr) {
                    Some(addr) => format!("{addr} (id {})", value.backend_id),
                    None => format!("missing backend {}", value.backend_id),
                },
                None => format!("missing slot {slot}"),
            };
            backends.push(text);
        }
        if backends.is_empty() {
            backends.push("(no endpoints: new connections refused)".into());
        }
        for (index, backend) in backends.iter().enumerate() {
            let (f, r, fl) = if index == 0 {
                (frontend(key), head.rev_nat_id.to_string(), flags.clone())
            } else {
                (String::new(), String::new(), String::new())
            };
            let _ = writeln!(out, "{f:<24} {r:>6} {fl:<22} {backend}");
        }
    }
    out
}

/// `now` is CLOCK_MONOTONIC, the clock bpf_ktime_get_ns reads.
pub fn conntrack(mut entries: Vec<(CtKey, CtEntry)>, now: Duration) -> String {
    entries.sort_by_key(|(k, _)| {
        (
            k.protocol,
            u32::from_be(k.saddr),
            u16::from_be(k.sport),
            k.direction,
        )
    });
    let mut out = format!(
        "{:<5} {:<22} {:<22} {:<8} {:<34} {:>7} {:>8}\n",
        "PROTO", "SOURCE", "DESTINATION", "DIR", "REWRITE", "BACKEND", "IDLE"
    );
    for (key, entry) in entries {
        let endpoint = |addr: u32, port: u16| format!("{}:{}", ip(addr), u16::from_be(port));
        let mut rewrite = Vec::new();
        if entry.nat_saddr != 0 {
            let port = if entry.nat_sport != 0 {
                entry.nat_sport
            } else {
                key.sport
            };
            rewrite.push(format!("src={}", endpoint(entry.nat_saddr, port)));
        }
        if entry.nat_daddr != 0 {
            let port = if entry.nat_dport != 0 {
                entry.nat_dport
            } else {
                key.dport
            };
            rewrite.push(format!("dst={}", endpoint(entry.nat_daddr, port)));
        }
        if entry.flags & CT_FLAG_SNAT != 0 {
            rewrite.push("snat".into());
        }
        let idle = now.saturating_sub(Duration::from_nanos(entry.last_seen_ns));
        let _ = writeln!(
            out,
            "{:<5} {:<22} {:<22} {:<8} {:<34} {:>7} {:>7.1}s",
            proto(key.protocol),
            endpoint(key.saddr, key.sport),
            endpoint(key.daddr, key.dport),
            match key.direction {
                CT_FORWARD => "forward",
                CT_POLICY => "policy",
                _ => "reply",
            },
            rewrite.join(" "),
            entry.backend_id,
            idle.as_secs_f64(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::lb::LbStore;
    use crate::services::{BackendAddr, Frontend, FrontendAddr, FrontendKind};

    struct Null;
    impl LbStore for Null {
        fn put_backend(
            &mut self,
            _: u32,
            _: kaya_ebpf_common::lb::Backend,
        ) -> Result<(), crate::datapath::lb::TableError> {
            Ok(())
        }
        fn delete_backend(&mut self, _: u32) -> Result<(), crate::datapath::lb::TableError> {
            Ok(())
        }
        fn put_slot(
            &mut self,
            _: ServiceKey,
            _: kaya_ebpf_common::lb::ServiceValue,
        ) -> Result<(), crate::datapath::lb::TableError> {
            Ok(())
        }
        fn delete_slot(&mut self, _: ServiceKey) -> Result<(), crate::datapath::lb::TableError> {
            Ok(())
        }
    }

    #[test]
    fn services_list_frontends_with_their_backends() {
        let mut table = LbTable::default();
        let addr = |last, port| FrontendAddr {
            address: Ipv4Addr::new(10, 96, 0, last),
            port,
            protocol: Protocol::Tcp,
        };
        let frontends = [
            Frontend {
                addr: addr(10, 80),
                kind: FrontendKind::ClusterIp,
                service: "default/web:".into(),
                backends: vec![BackendAddr {
                    address: Ipv4Addr::new(10, 244, 1, 5),
                    port: 8080,
                    protocol: Protocol::Tcp,
                }],
                affinity_timeout_s: Some(30),
                preserve_source: false,
                drop_without_local: false,
            },
            Frontend {
                addr: addr(11, 80),
                kind: FrontendKind::ClusterIp,
                service: "default/empty:".into(),
                backends: vec![],
                affinity_timeout_s: None,
                preserve_source: false,
                drop_without_local: false,
            },
        ];
        table.sync(&frontends, &mut Null).unwrap();
        let text = services(&table);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with("10.96.0.10:80/TCP"), "{text}");
        assert!(
            lines[1].contains("affinity=30s") && lines[1].contains("10.244.1.5:8080/TCP (id 1)"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("10.96.0.11:80/TCP") && lines[2].contains("refused"),
            "{text}"
        );
    }
}
