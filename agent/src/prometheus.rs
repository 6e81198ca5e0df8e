//! Prometheus text exposition of the agent's figures: datapath counters by reason, the
//! service load balancer's state (services programmed, sync duration, map usage) and the
//! policy engine's (policies, identities, entries, per-rule counters).
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::datapath::metrics;
use crate::policy::sync::{PolicyStats, PolicySync};
use crate::services::sync::{LbStats, ServiceSync};

/// One metric family: its HELP and TYPE lines, then a sample per (labels, value).
fn family(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

pub fn render(stats: &LbStats, counters: &metrics::Totals) -> String {
    let mut out = String::new();
    let one = |value: f64| [(String::new(), value)];
    let by_map = |services: f64, backends: f64| {
        [
            ("{map=\"services\"}".to_owned(), services),
            ("{map=\"backends\"}".to_owned(), backends),
        ]
    };
    let by_reason = |value: fn(&kaya_ebpf_common::metrics::Counter) -> u64| -> Vec<(String, f64)> {
        (counters.iter())
            .map(|(reason, counter)| (format!("{{reason=\"{reason}\"}}"), value(counter) as f64))
            .collect()
    };
    family(
        &mut out,
        "kaya_lb_services",
        "Services with at least one frontend programmed.",
        "gauge",
        &one(stats.services as f64),
    );
    family(
        &mut out,
        "kaya_lb_frontends",
        "Frontends programmed (VIP, node and external addresses).",
        "gauge",
        &one(stats.frontends as f64),
    );
    family(
        &mut out,
        "kaya_lb_backends",
        "Distinct backends programmed.",
        "gauge",
        &one(stats.backends as f64),
    );
    family(
        &mut out,
        "kaya_lb_sync_duration_seconds",
        "Duration of the last service sync.",
        "gauge",
        &one(stats.last_sync.as_secs_f64()),
    );
    family(
        &mut out,
        "kaya_lb_syncs_total",
        "Service syncs attempted.",
        "counter",
        &one(stats.syncs_total as f64),
    );
    family(
        &mut out,
        "kaya_lb_sync_errors_total",
        "Service syncs that failed.",
        "counter",
        &one(stats.sync_errors_total as f64),
    );
    family(
        &mut out,
        "kaya_lb_map_full_total",
        "Syncs that failed on a full map.",
        "counter",
        &one(stats.map_full_total as f64),
    );
    family(
        &mut out,
        "kaya_lb_conntrack_purged_total",
        "Conntrack entries removed with their backend.",
        "counter",
        &one(stats.ct_entries_purged_total as f64),
    );
    family(
        &mut out,
        "kaya_bpf_map_entries",
        "Entries in a datapath map.",
        "gauge",
        &by_map(stats.services_map_entries as f64, stats.backends as f64),
    );
    family(
        &mut out,
        "kaya_bpf_map_capacity",
        "Capacity of a datapath map.",
        "gauge",
        &by_map(
            f64::from(stats.services_map_max),
            f64::from(stats.backends_map_max),
        ),
    );
    family(
        &mut out,
        "kaya_datapath_packets_total",
        "Packets by datapath decision.",
        "counter",
        &by_reason(|c| c.packets),
    );
    family(
        &mut out,
        "kaya_datapath_bytes_total",
        "Bytes by datapath decision.",
        "counter",
        &by_reason(|c| c.bytes),
    );
    out
}

/// The policy families; `rules` are (rule name, admitted packets and bytes).
pub fn render_policy(
    stats: &PolicyStats,
    rules: &[(String, kaya_ebpf_common::metrics::Counter)],
) -> String {
    let mut out = String::new();
    let one = |value: f64| [(String::new(), value)];
    let gauges = [
        (
            "kaya_policy_policies",
            "NetworkPolicies known.",
            stats.policies,
        ),
        (
            "kaya_policy_identities",
            "Security identities of pods with an address.",
            stats.identities,
        ),
        (
            "kaya_policy_isolated_endpoints",
            "Local endpoints a policy isolates.",
            stats.isolated_endpoints,
        ),
        (
            "kaya_policy_entries",
            "Allow entries in the policy map.",
            stats.entries,
        ),
        (
            "kaya_policy_ipcache_entries",
            "Entries in the ipcache.",
            stats.ipcache_entries,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, help, "gauge", &one(value as f64));
    }
    family(
        &mut out,
        "kaya_policy_sync_duration_seconds",
        "Duration of the last policy sync.",
        "gauge",
        &one(stats.last_sync.as_secs_f64()),
    );
    family(
        &mut out,
        "kaya_policy_syncs_total",
        "Policy syncs attempted.",
        "counter",
        &one(stats.syncs_total as f64),
    );
    family(
        &mut out,
        "kaya_policy_sync_errors_total",
        "Policy syncs that failed.",
        "counter",
        &one(stats.sync_errors_total as f64),
    );
    let by_rule = |value: fn(&kaya_ebpf_common::metrics::Counter) -> u64| -> Vec<(String, f64)> {
        (rules.iter())
            .map(|(rule, counter)| (format!("{{rule=\"{rule}\"}}"), value(counter) as f64))
            .collect()
    };
    family(
        &mut out,
        "kaya_policy_rule_packets_total",
        "Packets a policy rule admitted.",
        "counter",
        &by_rule(|c| c.packets),
    );
    family(
        &mut out,
        "kaya_policy_rule_bytes_total",
        "Bytes a policy rule admitted.",
        "counter",
        &by_rule(|c| c.bytes),
    );
    out
}

/// Answers every HTTP request on `listener` with the current figures.
pub async fn serve(
    listener: TcpListener,
    sync: Arc<Mutex<ServiceSync>>,
    policy: Arc<Mutex<PolicySync>>,
    pin_dir: PathBuf,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let stats = sync.lock().map(|s| s.stats.clone()).unwrap_or_default();
        let (policy_stats, rules) = policy
            .lock()
            .map(|p| (p.stats.clone(), p.rule_counters()))
            .unwrap_or_default();
        let counters = metrics::read_pinned(&pin_dir).unwrap_or_default();
        tokio::spawn(async move {
            // The request itself does not matter: every path serves the metrics.
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = render(&stats, &counters) + &render_policy(&policy_stats, &rules);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
