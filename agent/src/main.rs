//! kaya-agent binary: parses flags or a config file and runs the node agent.
use anyhow::Context;
use clap::{Parser, Subcommand};
use kaya_agent::{
    config::{AgentConfig, Peer},
    instance::Instance,
    node::{self, Node},
};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kaya-agent",
    version,
    about = "kaya node agent and eBPF dataplane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (standalone mode: node and peers from a config file or flags).
    Run(RunArgs),
    /// Remove everything an instance created (detaches its programs).
    Purge {
        #[arg(long)]
        instance: String,
        #[arg(long, default_value = "/run/kaya")]
        state_root: PathBuf,
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// YAML config file; when given, the other flags are ignored.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = "kaya")]
    instance: String,
    #[arg(long)]
    node_name: Option<String>,
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    #[arg(long)]
    pod_cidr: Option<ipnet::Ipv4Net>,
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// A peer node as NAME=NODE_IP=POD_CIDR; repeat for each.
    #[arg(long = "peer")]
    peers: Vec<String>,
    #[arg(long, default_value_t = 1500)]
    underlay_mtu: u32,
    #[arg(long, default_value = "/run/kaya")]
    state_root: PathBuf,
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// Emit a trace event per forwarding decision (logged at debug level).
    #[arg(long)]
    trace: bool,
}

fn parse_peer(text: &str) -> anyhow::Result<Peer> {
    let parts: Vec<&str> = text.split('=').collect();
    let [name, ip, cidr] = parts[..] else {
        anyhow::bail!("peer {text:?} must be NAME=NODE_IP=POD_CIDR");
    };
    Ok(Peer {
        name: name.to_owned(),
        node_ip: ip
            .parse()
            .with_context(|| format!("peer {name}: node ip {ip:?}"))?,
        pod_cidr: cidr
            .parse()
            .with_context(|| format!("peer {name}: pod cidr {cidr:?}"))?,
    })
}

fn config_from(args: RunArgs) -> anyhow::Result<AgentConfig> {
    if let Some(path) = args.config {
        return Ok(AgentConfig::from_file(&path)?);
    }
    let config = AgentConfig {
        instance: args.instance,
        node_name: args
            .node_name
            .context("--node-name is required without --config")?,
        node_ip: args
            .node_ip
            .context("--node-ip is required without --config")?,
        pod_cidr: args
            .pod_cidr
            .context("--pod-cidr is required without --config")?,
        cluster_cidr: args.cluster_cidr,
        peers: args
            .peers
            .iter()
            .map(|p| parse_peer(p))
            .collect::<anyhow::Result<_>>()?,
        underlay_mtu: args.underlay_mtu,
        state_root: args.state_root,
        bpffs: args.bpffs,
        trace: args.trace,
        services: Default::default(),
        metrics_address: None,
        pods: Default::default(),
    };
    config.validate()?;
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    // aya-log records arrive through the `log` crate.
    let _ = tracing_log::LogTracer::init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => {
                let config = config_from(args)?;
                let node = Node::start(config).await.context("starting the node")?;
                node.serve().await
            }
            Command::Purge {
                instance,
                state_root,
                bpffs,
            } => node::purge(&Instance::new(&instance, &state_root, &bpffs)).await,
        }
    })
}
