//! kaya: the operator CLI. For now it inspects a node's live datapath (`kaya bpf ...`).
use anyhow::Context;
use clap::{Parser, Subcommand};
use kaya_agent::datapath::{
    ct::CtMap, endpoints::EndpointMap, lb::LbMaps, metrics, tunnels::TunnelMap,
};
use kaya_agent::{inspect, instance::Instance};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "kaya", version, about = "kaya operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the eBPF maps of a node's agent instance.
    Bpf {
        #[command(subcommand)]
        what: BpfCommand,
        /// Agent instance whose maps to read.
        #[arg(long, global = true, default_value = "kaya")]
        instance: String,
        #[arg(long, global = true, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
    },
}

#[derive(Subcommand)]
enum BpfCommand {
    /// Local pod endpoints (KY_ENDPOINTS).
    Endpoints,
    /// Remote pod CIDRs and their nodes (KY_TUNNELS).
    Tunnels,
    /// Forwarding decision counters (KY_METRICS).
    Metrics,
    /// Service frontends and their backends (KY_LB_SERVICES, KY_LB_BACKENDS).
    Lb {
        #[command(subcommand)]
        what: ListCommand,
    },
    /// Service conntrack entries (KY_CT).
    Ct {
        #[command(subcommand)]
        what: ListCommand,
    },
}

#[derive(Subcommand)]
enum ListCommand {
    List,
}

fn main() -> anyhow::Result<()> {
    let Command::Bpf {
        what,
        instance,
        bpffs,
    } = Cli::parse().command;
    let pins = Instance::new(&instance, &PathBuf::new(), &bpffs)
        .bpf_dir()
        .to_owned();
    let context = || {
        format!(
            "reading the maps of instance {instance} at {}",
            pins.display()
        )
    };
    let text = match what {
        BpfCommand::Endpoints => inspect::endpoints(
            EndpointMap::open_pinned(&pins)
                .with_context(context)?
                .entries(),
        ),
        BpfCommand::Tunnels => inspect::tunnels(
            TunnelMap::open_pinned(&pins)
                .with_context(context)?
                .entries(),
        ),
        BpfCommand::Metrics => {
            inspect::metrics(&metrics::read_pinned(&pins).with_context(context)?)
        }
        BpfCommand::Lb {
            what: ListCommand::List,
        } => inspect::lb::services(
            &LbMaps::open_pinned(&pins)
                .with_context(context)?
                .read_table()
                .with_context(context)?,
        ),
        BpfCommand::Ct {
            what: ListCommand::List,
        } => {
            let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)?;
            inspect::lb::conntrack(
                CtMap::open_pinned(&pins).with_context(context)?.entries(),
                std::time::Duration::from(now),
            )
        }
    };
    print!("{text}");
    Ok(())
}
