//! Measurements for side-by-side benchmarks (TCP throughput with iperf3, request/response
//! latency with an in-process ping-pong) and the result file format of ../shared/BENCH.md.
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{TestNetns, in_netns, spawn_in_netns};

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub case: String,
    pub scale: u64,
    #[serde(rename = "impl")]
    pub implementation: String,
    pub value: f64,
    pub unit: String,
    pub higher_is_better: bool,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub suite: String,
    pub kernel: String,
    pub cpus: usize,
    pub results: Vec<BenchResult>,
}

impl BenchReport {
    pub fn new(suite: &str) -> Self {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        BenchReport {
            suite: suite.to_owned(),
            kernel,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            results: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        case: &str,
        implementation: &str,
        value: f64,
        unit: &str,
        higher_is_better: bool,
    ) {
        self.push_scaled(case, 0, implementation, value, unit, higher_is_better);
    }

    /// A figure measured at a size (services, rules, pods...).
    pub fn push_scaled(
        &mut self,
        case: &str,
        scale: u64,
        implementation: &str,
        value: f64,
        unit: &str,
        higher_is_better: bool,
    ) {
        self.results.push(BenchResult {
            case: case.to_owned(),
            scale,
            implementation: implementation.to_owned(),
            value,
            unit: unit.to_owned(),
            higher_is_better,
        });
    }

    /// Writes `<dir>/<suite>.json`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", self.suite));
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }

    /// The human-readable table: one row per case, one column per implementation.
    pub fn table(&self) -> String {
        let mut cases: Vec<(&str, u64)> = Vec::new();
        let mut impls: Vec<&str> = Vec::new();
        for r in &self.results {
            if !cases.contains(&(r.case.as_str(), r.scale)) {
                cases.push((&r.case, r.scale));
            }
            if !impls.contains(&r.implementation.as_str()) {
                impls.push(&r.implementation);
            }
        }
        let mut out = format!("{:<24}", "case");
        for i in &impls {
            out += &format!("{i:>22}");
        }
        out.push('\n');
        for (case, scale) in cases {
            let label = if scale == 0 {
                case.to_owned()
            } else {
                format!("{case}@{scale}")
            };
            out += &format!("{label:<24}");
            for i in &impls {
                let cell = self
                    .results
                    .iter()
                    .find(|r| r.case == case && r.scale == scale && r.implementation == *i)
                    .map_or("-".to_owned(), |r| format!("{:.2}", r.value));
                out += &format!("{cell:>22}");
            }
            out.push('\n');
        }
        out
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// TCP throughput from `client` to `server_ip` (inside `server`) with iperf3, in Gbit/s.
pub fn iperf_gbps(
    client: &TestNetns,
    server: &TestNetns,
    server_ip: Ipv4Addr,
    seconds: u32,
) -> anyhow::Result<f64> {
    iperf_gbps_via(client, None, server, (server_ip, IPERF_PORT), seconds)
}

/// The port iperf3 servers listen on.
pub const IPERF_PORT: u16 = 5301;

/// iperf3 from `client` (inside `cgroup` when given, so socket hooks apply) to `target`,
/// which reaches the iperf3 server in `server` directly or through a service.
pub fn iperf_gbps_via(
    client: &TestNetns,
    cgroup: Option<&Path>,
    server: &TestNetns,
    target: (Ipv4Addr, u16),
    seconds: u32,
) -> anyhow::Result<f64> {
    let mut daemon = Command::new("ip")
        .args([
            "netns",
            "exec",
            server.name(),
            "iperf3",
            "-s",
            "-1",
            "-p",
            "5301",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 server")?;
    std::thread::sleep(Duration::from_millis(300));
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", client.name(), "iperf3", "-J", "-p"])
        .arg(target.1.to_string())
        .arg("-t")
        .arg(seconds.to_string())
        .arg("-c")
        .arg(target.0.to_string());
    if let Some(cgroup) = cgroup {
        crate::netns::join_cgroup_on_exec(&mut command, cgroup)?;
    }
    let output = command.output().context("running iperf3 client")?;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("iperf3 output: {}", String::from_utf8_lossy(&output.stderr)))?;
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 reported no throughput: {}", report["error"]))?;
    Ok(bps / 1e9)
}

/// One-byte TCP ping-pong over one connection: (p50, p99) round-trip time in microseconds.
pub fn rr_latency_us(
    client: &Path,
    server: &Path,
    server_ip: Ipv4Addr,
    iterations: usize,
) -> anyhow::Result<(f64, f64)> {
    const PORT: u16 = 7300;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_thread = spawn_in_netns(server, move || -> std::io::Result<()> {
        let listener = TcpListener::bind(("0.0.0.0", PORT))?;
        ready_tx.send(()).ok();
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while stream.read_exact(&mut byte).is_ok() {
            stream.write_all(&byte)?;
        }
        Ok(())
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(3))
        .context("rr server did not start")?;
    let samples = in_netns(client, move || -> anyhow::Result<Vec<f64>> {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddr::from((server_ip, PORT)),
            Duration::from_secs(3),
        )?;
        stream.set_nodelay(true)?;
        let mut byte = [7u8; 1];
        let mut samples = Vec::with_capacity(iterations);
        // Warm-up: caches, conntrack, neighbour entries.
        for _ in 0..100 {
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
        }
        for _ in 0..iterations {
            let start = Instant::now();
            stream.write_all(&byte)?;
            stream.read_exact(&mut byte)?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        Ok(samples)
    })??;
    let _ = server_thread.join();
    if samples.is_empty() {
        bail!("no samples");
    }
    let mut sorted = samples;
    sorted.sort_by(f64::total_cmp);
    Ok((percentile(&sorted, 0.50), percentile(&sorted, 0.99)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_median() {
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn table_has_a_column_per_implementation() {
        let mut report = BenchReport::new("net");
        report.push("cross_node_tcp_gbps", "kaya", 10.0, "Gbit/s", true);
        report.push("cross_node_tcp_gbps", "flannel-vxlan", 8.0, "Gbit/s", true);
        let table = report.table();
        assert!(table.lines().next().unwrap().contains("flannel-vxlan"));
        assert!(table.contains("10.00") && table.contains("8.00"), "{table}");
    }
}
