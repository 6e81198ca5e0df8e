//! kaya: the operator CLI: inspects a node's live datapath (`kaya bpf ...`) and streams its
//! policy flow events (`kaya observe`).
use anyhow::Context;
use clap::{Parser, Subcommand};
use kaya_agent::datapath::{
    ct::CtMap, endpoints::EndpointMap, flows::FlowEvents, ipcache::IpcacheMap, lb::LbMaps, metrics,
    policy::PolicyMaps, tunnels::TunnelMap,
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
    /// Stream policy flow events (drops, and the first packet of each admitted flow) of a
    /// node's agent, with pod names; filters combine.
    Observe(ObserveArgs),
}

#[derive(clap::Args)]
struct ObserveArgs {
    #[arg(long, default_value = "kaya")]
    instance: String,
    #[arg(long, default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
    /// The agent's state root (pod names come from there).
    #[arg(long, default_value = "/run/kaya")]
    state_root: PathBuf,
    /// Keep streaming new events (otherwise print what is waiting and exit).
    #[arg(long, short)]
    follow: bool,
    /// Either end in this namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Either end is this pod (NAMESPACE/NAME).
    #[arg(long)]
    pod: Option<String>,
    #[arg(long)]
    from_pod: Option<String>,
    #[arg(long)]
    to_pod: Option<String>,
    /// FORWARDED or DROPPED.
    #[arg(long)]
    verdict: Option<String>,
    /// TCP, UDP, SCTP or ICMP.
    #[arg(long)]
    protocol: Option<String>,
    /// Either port.
    #[arg(long)]
    port: Option<u16>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
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
    /// Service and policy conntrack entries (KY_CT).
    Ct {
        #[command(subcommand)]
        what: ListCommand,
    },
    /// Address → security identity (KY_IPCACHE).
    Ipcache {
        #[command(subcommand)]
        what: ListCommand,
        /// The agent's state root (names come from there).
        #[arg(long, default_value = "/run/kaya")]
        state_root: PathBuf,
    },
    /// Isolated endpoints and their allow entries (KY_POLICY, KY_POLICY_ENDPOINTS).
    Policy {
        #[command(subcommand)]
        what: ListCommand,
        #[arg(long, default_value = "/run/kaya")]
        state_root: PathBuf,
    },
}

#[derive(Subcommand)]
enum ListCommand {
    List,
}

fn main() -> anyhow::Result<()> {
    let (what, instance, bpffs) = match Cli::parse().command {
        Command::Bpf {
            what,
            instance,
            bpffs,
        } => (what, instance, bpffs),
        Command::Observe(args) => return observe(args),
    };
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
        BpfCommand::Ipcache {
            what: ListCommand::List,
            state_root,
        } => inspect::policy::ipcache(
            &IpcacheMap::open_pinned(&pins)
                .with_context(context)?
                .entries(),
            &flow_names(&instance, &state_root, &bpffs),
        ),
        BpfCommand::Policy {
            what: ListCommand::List,
            state_root,
        } => {
            let maps = PolicyMaps::open_pinned(&pins).with_context(context)?;
            inspect::policy::entries(
                &maps.entries(),
                &maps.isolation(),
                &flow_names(&instance, &state_root, &bpffs),
            )
        }
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

/// The names the agent of `instance` recorded (empty when it has not synced yet).
fn flow_names(
    instance: &str,
    state_root: &std::path::Path,
    bpffs: &std::path::Path,
) -> kaya_agent::policy::names::FlowNames {
    let instance = Instance::new(instance, state_root, bpffs);
    let path = instance
        .state_dir()
        .join(kaya_agent::policy::names::NAMES_FILE);
    kaya_agent::policy::names::FlowNames::load(&path).unwrap_or_default()
}

/// Nanoseconds since the epoch at a CLOCK_MONOTONIC instant (the events' clock).
fn wall_clock_of(mono_ns: u64) -> i128 {
    let now = |clock| {
        nix::time::clock_gettime(clock)
            .map(|t| i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec()))
            .unwrap_or_default()
    };
    let (real, mono) = (
        now(nix::time::ClockId::CLOCK_REALTIME),
        now(nix::time::ClockId::CLOCK_MONOTONIC),
    );
    real - (mono - i128::from(mono_ns))
}

fn observe(args: ObserveArgs) -> anyhow::Result<()> {
    use kaya_agent::observe::{Filter, resolve};
    use kaya_agent::policy::names::{FlowNames, NAMES_FILE};
    use std::io::Write;
    let instance = Instance::new(&args.instance, &args.state_root, &args.bpffs);
    let mut events = FlowEvents::open_pinned(instance.bpf_dir()).with_context(|| {
        format!(
            "opening the flow events of instance {} at {}",
            args.instance,
            instance.bpf_dir().display()
        )
    })?;
    let names_path = instance.state_dir().join(NAMES_FILE);
    let filter = Filter {
        namespace: args.namespace,
        pod: args.pod,
        from_pod: args.from_pod,
        to_pod: args.to_pod,
        verdict: args.verdict,
        protocol: args.protocol,
        port: args.port,
    };
    let mut stdout = std::io::stdout().lock();
    loop {
        let batch = events.drain();
        if !batch.is_empty() {
            // Reread each time: pods come and go while we follow.
            let names = FlowNames::load(&names_path).unwrap_or_default();
            for event in &batch {
                let flow = resolve(event, &names, wall_clock_of);
                if !filter.matches(&flow) {
                    continue;
                }
                let line = if args.json {
                    serde_json::to_string(&flow)?
                } else {
                    flow.line()
                };
                if writeln!(stdout, "{line}")
                    .and_then(|()| stdout.flush())
                    .is_err()
                {
                    return Ok(()); // the reader went away
                }
            }
        }
        if !args.follow {
            return Ok(());
        }
        events.wait(std::time::Duration::from_millis(200));
    }
}
