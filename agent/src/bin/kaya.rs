//! kaya: the operator CLI: inspects a node's live datapath (`kaya bpf ...`) and streams its
//! policy flow events (`kaya observe`).
use anyhow::Context;
use clap::{Parser, Subcommand};
use kaya_agent::datapath::{
    ct::CtMap, endpoints::EndpointMap, flows::FlowEvents, ipcache::IpcacheMap, lb::LbMaps, metrics,
    policy::PolicyMaps, tunnels::TunnelMap,
};
use kaya_agent::images::{oci_layout, store::ImageStore};
use kaya_agent::{inspect, instance::Instance};
use kaya_agent_api::{Request, Response, call};
use std::path::PathBuf;
use std::time::Duration;

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
    /// This node's pods and their status (from the agent's local API).
    Pods {
        #[command(flatten)]
        agent: AgentArgs,
        /// Print the Pod objects as JSON instead of a table.
        #[arg(long, short = 'o', value_parser = ["json", "wide"])]
        output: Option<String>,
    },
    /// This node as a Kubernetes Node object (JSON).
    Node {
        #[command(flatten)]
        agent: AgentArgs,
    },
    /// A container's log.
    Logs {
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        target: ContainerArgs,
        #[arg(long)]
        tail: Option<usize>,
        /// Only lines at or after this RFC 3339 time.
        #[arg(long)]
        since_time: Option<String>,
        /// The previous run of the container.
        #[arg(long, short = 'p')]
        previous: bool,
        #[arg(long)]
        timestamps: bool,
        /// Keep printing new lines.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Run a command in a container (non-interactive) and print its output.
    Exec {
        #[command(flatten)]
        agent: AgentArgs,
        #[command(flatten)]
        target: ContainerArgs,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Import an OCI image layout tarball into the node's image store.
    ImportImage {
        tarball: PathBuf,
        /// Name for images whose index entry has only a tag (or nothing).
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "/var/lib/kaya/images")]
        image_root: PathBuf,
    },
}

/// Which container: a pod in a namespace, and a container name when it has several.
#[derive(clap::Args)]
struct ContainerArgs {
    /// The pod (in --namespace).
    pod: String,
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    #[arg(long, short = 'c')]
    container: Option<String>,
}

#[derive(clap::Args)]
struct AgentArgs {
    #[arg(long, default_value = "kaya")]
    instance: String,
    #[arg(long, default_value = "/run/kaya")]
    state_root: PathBuf,
}

impl AgentArgs {
    fn call(&self, request: &Request) -> anyhow::Result<Response> {
        let socket = Instance::new(&self.instance, &self.state_root, &PathBuf::new()).socket_path();
        match call(&socket, request, Duration::from_secs(70))? {
            Response::Error { message } => anyhow::bail!("{message}"),
            response => Ok(response),
        }
    }
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
        Command::Pods { agent, output } => return pods(&agent, output.as_deref()),
        Command::Node { agent } => {
            let Response::Node { node } = agent.call(&Request::NodeStatus)? else {
                anyhow::bail!("unexpected answer from the agent");
            };
            println!("{}", serde_json::to_string_pretty(&node)?);
            return Ok(());
        }
        Command::Logs {
            agent,
            target:
                ContainerArgs {
                    pod,
                    namespace,
                    container,
                },
            tail,
            since_time,
            previous,
            timestamps,
            follow,
        } => {
            // Following asks for the whole log each round, so the tail is cut here.
            let request = Request::PodLogs {
                namespace,
                name: pod,
                container,
                tail: if follow { None } else { tail },
                since_time,
                previous,
                timestamps,
            };
            return logs(&agent, request, follow.then_some(tail));
        }
        Command::Exec {
            agent,
            target:
                ContainerArgs {
                    pod,
                    namespace,
                    container,
                },
            command,
        } => {
            let request = Request::PodExec {
                namespace,
                name: pod,
                container,
                command,
            };
            let Response::Exec {
                exit_code,
                stdout,
                stderr,
            } = agent.call(&request)?
            else {
                anyhow::bail!("unexpected answer from the agent");
            };
            print!("{stdout}");
            eprint!("{stderr}");
            std::process::exit(exit_code);
        }
        Command::ImportImage {
            tarball,
            name,
            image_root,
        } => {
            let store = ImageStore::open(&image_root)?;
            for record in oci_layout::import(&store, &tarball, name.as_deref())? {
                println!("{} {}", record.name, record.manifest);
            }
            return Ok(());
        }
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

fn pods(agent: &AgentArgs, output: Option<&str>) -> anyhow::Result<()> {
    let Response::Pods { pods } = agent.call(&Request::ListPods)? else {
        anyhow::bail!("unexpected answer from the agent");
    };
    match output {
        Some("json") => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": pods})
            )?
        ),
        _ => print!("{}", inspect::pods::table(&pods)),
    }
    Ok(())
}

/// Prints the log; when following (`Some(tail)`), keeps asking and prints the new lines.
fn logs(agent: &AgentArgs, request: Request, follow: Option<Option<usize>>) -> anyhow::Result<()> {
    let fetch = || -> anyhow::Result<Vec<String>> {
        match agent.call(&request)? {
            Response::Logs { lines } => Ok(lines),
            _ => anyhow::bail!("unexpected answer from the agent"),
        }
    };
    let lines = fetch()?;
    let Some(tail) = follow else {
        lines.iter().for_each(|line| println!("{line}"));
        return Ok(());
    };
    let start = tail.map_or(0, |tail| lines.len().saturating_sub(tail));
    lines[start..].iter().for_each(|line| println!("{line}"));
    let mut printed = lines.len();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let lines = fetch()?;
        lines
            .iter()
            .skip(printed)
            .for_each(|line| println!("{line}"));
        printed = printed.max(lines.len());
    }
}
