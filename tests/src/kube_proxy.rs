//! kube-proxy's rules, generated the way kube-proxy structures them, for side-by-side
//! baselines: iptables mode (nat KUBE-SERVICES → KUBE-SVC-* → KUBE-SEP-* with
//! `statistic --mode random` probabilities, DNAT, KUBE-MARK-MASQ / KUBE-POSTROUTING) loaded
//! with iptables-restore, and nftables mode (table `ip kube-proxy` with the `service-ips`
//! verdict map and `numgen random mod N` endpoint maps) loaded with `nft -f`.
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::enter_on_exec;

#[derive(Clone, Debug)]
pub struct RenderedService {
    /// `namespace/name:port`, as kube-proxy names a service port.
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    /// "tcp" or "udp".
    pub protocol: &'static str,
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// kube-proxy hashes a service port (or endpoint) name into a fixed-length chain suffix.
fn chain_hash(parts: &[&str]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut hasher);
    format!("{:016X}", hasher.finish())
}

pub fn iptables_restore_input(services: &[RenderedService], cluster_cidr: &str) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    for chain in [
        "KUBE-SERVICES",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
        "KUBE-NODEPORTS",
    ] {
        let _ = writeln!(chains, ":{chain} - [0:0]");
    }
    rules += "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n";
    rules += "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n";
    rules += "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n";
    rules += "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n";
    rules += "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n";
    rules += "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n";
    rules += "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n";
    for service in services {
        let (name, proto, vip, port) = (&service.name, service.protocol, service.vip, service.port);
        let svc_chain = format!("KUBE-SVC-{}", chain_hash(&[name, proto]));
        let _ = writeln!(chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {vip}/32 -p {proto} -m comment --comment \"{name} cluster IP\" -m {proto} --dport {port} -j {svc_chain}"
        );
        let _ = writeln!(
            rules,
            "-A {svc_chain} ! -s {cluster_cidr} -d {vip}/32 -p {proto} -m comment --comment \"{name} cluster IP\" -m {proto} --dport {port} -j KUBE-MARK-MASQ"
        );
        let count = service.endpoints.len();
        for (index, (ip, target)) in service.endpoints.iter().enumerate() {
            let endpoint = format!("{ip}:{target}");
            let sep_chain = format!("KUBE-SEP-{}", chain_hash(&[name, proto, &endpoint]));
            let _ = writeln!(chains, ":{sep_chain} - [0:0]");
            // Each rule takes 1/(remaining) of what reaches it; the last takes the rest.
            let statistic = if index + 1 < count {
                format!(
                    " -m statistic --mode random --probability {:.10}",
                    1.0 / (count - index) as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                rules,
                "-A {svc_chain} -m comment --comment \"{name} -> {endpoint}\"{statistic} -j {sep_chain}"
            );
            let _ = writeln!(
                rules,
                "-A {sep_chain} -s {ip}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ"
            );
            let _ = writeln!(
                rules,
                "-A {sep_chain} -p {proto} -m comment --comment \"{name}\" -m {proto} -j DNAT --to-destination {endpoint}"
            );
        }
    }
    rules += "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{chains}{rules}COMMIT\n"
    )
}

pub fn nft_input(services: &[RenderedService], cluster_cidr: &str) -> String {
    let mut out = String::from("table ip kube-proxy {\n");
    out += "  chain mark-for-masquerade { meta mark set meta mark or 0x4000; }\n";
    out += "  chain masquerading {\n    meta mark & 0x4000 == 0 return\n    meta mark set meta mark xor 0x4000\n    masquerade fully-random\n  }\n";
    out += "  chain nat-prerouting { type nat hook prerouting priority dstnat; policy accept; jump services; }\n";
    out += "  chain nat-output { type nat hook output priority -100; policy accept; jump services; }\n";
    out += "  chain nat-postrouting { type nat hook postrouting priority srcnat; policy accept; jump masquerading; }\n";
    let mut elements = Vec::new();
    for service in services {
        let (name, proto, vip, port) = (&service.name, service.protocol, service.vip, service.port);
        let label = name.replace(['/', ':'], "_");
        let svc_chain = format!(
            "service-{}-{label}_{proto}",
            &chain_hash(&[name, proto])[..8]
        );
        elements.push(format!("{vip} . {proto} . {port} : goto {svc_chain}"));
        let mut endpoint_chains = Vec::new();
        for (ip, target) in &service.endpoints {
            let endpoint = format!("{ip}:{target}");
            let chain = format!(
                "endpoint-{}-{label}_{proto}__{ip}_{target}",
                &chain_hash(&[name, proto, &endpoint])[..8]
            );
            let _ = writeln!(
                out,
                "  chain {chain} {{\n    ip saddr {ip} jump mark-for-masquerade\n    meta l4proto {proto} dnat to {endpoint}\n  }}"
            );
            endpoint_chains.push(chain);
        }
        let vmap: Vec<String> = (endpoint_chains.iter().enumerate())
            .map(|(i, chain)| format!("{i} : goto {chain}"))
            .collect();
        let _ = writeln!(
            out,
            "  chain {svc_chain} {{\n    ip daddr {vip} {proto} dport {port} ip saddr != {cluster_cidr} jump mark-for-masquerade\n    numgen random mod {} vmap {{ {} }}\n  }}",
            endpoint_chains.len(),
            vmap.join(", ")
        );
    }
    out += "  map service-ips {\n    type ipv4_addr . inet_proto . inet_service : verdict\n";
    if !elements.is_empty() {
        let _ = writeln!(out, "    elements = {{ {} }}", elements.join(",\n      "));
    }
    out += "  }\n";
    out += "  chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }\n}\n";
    out
}

/// Runs `program args` inside `netns` with `input` on stdin; returns the wall time it took.
pub(crate) fn load(
    netns: &Path,
    program: &str,
    args: &[&str],
    input: &str,
) -> anyhow::Result<Duration> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    enter_on_exec(&mut command, netns)?;
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("spawning {program}"))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let output = child.wait_with_output()?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(elapsed)
}

/// Loads an iptables-restore input into `netns`'s nat table (replacing it).
pub fn apply_iptables(netns: &Path, input: &str) -> anyhow::Result<Duration> {
    load(netns, "iptables-restore", &["-w"], input)
}

/// Loads (replacing) the `ip kube-proxy` table into `netns`.
pub fn apply_nft(netns: &Path, input: &str) -> anyhow::Result<Duration> {
    let _ = remove_nft(netns);
    load(netns, "nft", &["-f", "-"], input)
}

pub fn remove_nft(netns: &Path) -> anyhow::Result<Duration> {
    load(netns, "nft", &["delete", "table", "ip", "kube-proxy"], "")
}

/// `n` services with `endpoints` distinct endpoints each, numbered so every address is
/// unique: VIPs in 10.96.0.0/12, endpoints in 10.128.0.0/9.
pub fn synthetic(n: usize, endpoints: usize) -> Vec<RenderedService> {
    (0..n)
        .map(|i| {
            let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i as u32 + 1);
            RenderedService {
                name: format!("bench/svc-{i}:http"),
                vip,
                port: 80,
                protocol: "tcp",
                endpoints: (0..endpoints)
                    .map(|j| {
                        let k = (i * endpoints + j) as u32;
                        (
                            Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + k + 1),
                            8080,
                        )
                    })
                    .collect(),
            }
        })
        .collect()
}
