//! Prometheus text exposition of the agent's figures: datapath counters by reason and the
//! service load balancer's state (services programmed, sync duration, map usage).
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::datapath::metrics;
use crate::services::sync::{LbStats, ServiceSync};

pub fn render(stats: &LbStats, counters: &metrics::Totals) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        "kaya_lb_services",
        "Services with at least one frontend programmed.",
        "gauge",
        stats.services as f64,
    );
    gauge(
        "kaya_lb_frontends",
        "Frontends programmed (VIP, node and external addresses).",
        "gauge",
        stats.frontends as f64,
    );
    gauge(
        "kaya_lb_backends",
        "Distinct backends programmed.",
        "gauge",
        stats.backends as f64,
    );
    gauge(
        "kaya_lb_sync_duration_seconds",
        "Duration of the last service sync.",
        "gauge",
        stats.last_sync.as_secs_f64(),
    );
    gauge(
        "kaya_lb_syncs_total",
        "Service syncs attempted.",
        "counter",
        stats.syncs_total as f64,
    );
    gauge(
        "kaya_lb_sync_errors_total",
        "Service syncs that failed.",
        "counter",
        stats.sync_errors_total as f64,
    );
    gauge(
        "kaya_lb_map_full_total",
        "Syncs that failed on a full map.",
        "counter",
        stats.map_full_total as f64,
    );
    gauge(
        "kaya_lb_conntrack_purged_total",
        "Conntrack entries removed with their backend.",
        "counter",
        stats.ct_entries_purged_total as f64,
    );
    let _ = writeln!(
        out,
        "# HELP kaya_bpf_map_entries Entries in a datapath map.\n# TYPE kaya_bpf_map_entries gauge"
    );
    let _ = writeln!(
        out,
        "kaya_bpf_map_entries{{map=\"services\"}} {}",
        stats.services_map_entries
    );
    let _ = writeln!(
        out,
        "kaya_bpf_map_entries{{map=\"backends\"}} {}",
        stats.backends
    );
    let _ = writeln!(
        out,
        "# HELP kaya_bpf_map_capacity Capacity of a datapath map.\n# TYPE kaya_bpf_map_capacity gauge"
    );
    let _ = writeln!(
        out,
        "kaya_bpf_map_capacity{{map=\"services\"}} {}",
        stats.services_map_max
    );
    let _ = writeln!(
        out,
        "kaya_bpf_map_capacity{{map=\"backends\"}} {}",
        stats.backends_map_max
    );
    let _ = writeln!(
        out,
        "# HELP kaya_datapath_packets_total Packets by datapath decision.\n# TYPE kaya_datapath_packets_total counter"
    );
    for (reason, counter) in counters {
        let _ = writeln!(
            out,
            "kaya_datapath_packets_total{{reason=\"{reason}\"}} {}",
            counter.packets
        );
    }
    let _ = writeln!(
        out,
        "# HELP kaya_datapath_bytes_total Bytes by datapath decision.\n# TYPE kaya_datapath_bytes_total counter"
    );
    for (reason, counter) in counters {
        let _ = writeln!(
            out,
            "kaya_datapath_bytes_total{{reason=\"{reason}\"}} {}",
            counter.bytes
        );
    }
    out
}

/// Answers every HTTP request on `listener` with the current figures.
pub async fn serve(listener: TcpListener, sync: Arc<Mutex<ServiceSync>>, pin_dir: PathBuf) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let stats = sync.lock().map(|s| s.stats.clone()).unwrap_or_default();
        let counters = metrics::read_pinned(&pin_dir).unwrap_or_default();
        tokio::spawn(async move {
            // The request itself does not matter: every path serves the metrics.
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = render(&stats, &counters);
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
