//! kaya-control-plane: one process serving the Kubernetes API over SQLite or etcd.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ipnet::Ipv4Net;
use std::time::Duration;

use kaya_control_plane::control_plane::{Config, ControlPlane, StoreSpec};
use kaya_control_plane::controllers::nodes::Settings;

#[derive(Parser)]
#[command(version, about = "Kaya's lean Kubernetes-compatible control plane")]
struct Arguments {
    #[command(subcommand)]
    command: Option<Command>,
    /// Where state lives: sqlite:PATH (default: sqlite:<data-dir>/state.db) or etcd:URL[,URL...]
    #[arg(long)]
    store: Option<StoreSpec>,
    /// Credentials (CA, serving certificate, tokens) and the admin kubeconfig.
    #[arg(long, default_value = "/var/lib/kaya/control-plane")]
    data_dir: PathBuf,
    #[arg(long, default_value = "0.0.0.0:6443")]
    listen: SocketAddr,
    /// The node API (gRPC) that agents connect to.
    #[arg(long, default_value = "0.0.0.0:6444")]
    node_api_listen: SocketAddr,
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: Ipv4Net,
    /// Pod addresses; each node gets a block of it (`--node-cidr-mask-size`).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: Ipv4Net,
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Seconds a node's lease may go unrenewed before it is NotReady.
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// Seconds of store history kept for watches to resume from.
    #[arg(long, default_value_t = 300)]
    compaction_interval: u64,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Prints node NAME's token for the node API (issued on first request).
    NodeToken { name: String },
}

/// glibc gives each thread that allocates its own arena (up to 8 per core) and keeps freed
/// memory in them: with tokio's worker and blocking threads that multiplies RSS. Two arenas
/// suffice for a process whose hot path is one store.
fn limit_malloc_arenas() {
    // SAFETY: mallopt only adjusts allocator settings; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Bursts (lists of thousands of objects, a few thousand watch events in flight) leave
/// glibc's heaps with free pages it keeps; handing them back every few seconds keeps RSS
/// at what is live.
async fn return_freed_memory() {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        // SAFETY: malloc_trim only returns free memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
    if let Some(Command::NodeToken { name }) = &arguments.command {
        let token = kaya_control_plane::api::pki::issue_node_token(&arguments.data_dir, name)
            .context("issuing the node token")?;
        println!("{token}");
        return Ok(());
    }
    let store = arguments
        .store
        .unwrap_or_else(|| StoreSpec::Sqlite(arguments.data_dir.join("state.db")));
    let config = Config {
        store,
        data_dir: arguments.data_dir,
        listen: arguments.listen,
        node_api_listen: arguments.node_api_listen,
        advertise_address: arguments.advertise_address,
        service_cidr: arguments.service_cidr,
        nodes: Settings {
            cluster_cidr: arguments.cluster_cidr,
            node_cidr_prefix: arguments.node_cidr_mask_size,
            monitor_grace: Duration::from_secs(arguments.node_monitor_grace_period),
        },
        compaction_interval: Duration::from_secs(arguments.compaction_interval.max(1)),
    };
    limit_malloc_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Store calls run on blocking threads; SQLite serialises them anyway, and each thread
        // costs a stack and (with glibc) possibly an arena.
        .max_blocking_threads(32)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        tokio::spawn(return_freed_memory());
        let control_plane = ControlPlane::start(config)
            .await
            .context("starting the control plane")?;
        // Tests and scripts wait for this line to learn the address and kubeconfig.
        println!(
            "listening on {} kubeconfig {} node-api {}",
            control_plane.address,
            control_plane.kubeconfig.display(),
            control_plane.node_api_address
        );
        control_plane.serve().await.context("serving")
    })
}
