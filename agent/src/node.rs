//! Brings a node up in standalone mode: sysctls, overlay device and routes, the datapath
//! (adopting pinned maps and links), masquerading, the CNI config, then the endpoint API.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::Mutex;

use crate::config::AgentConfig;
use crate::datapath::{
    self, Datapath, PROG_FROM_NETDEV, PROG_FROM_OVERLAY, PROG_TO_OVERLAY,
    endpoints::EndpointMap,
    links::{self, Direction},
    settings::{self, SettingsMap},
    tunnels::TunnelMap,
};
use crate::datapath::{ipcache::IpcacheMap, policy::PolicyMaps};
use crate::dir_watch::DirectoryWatch;
use crate::endpoint_service::EndpointService;
use crate::feed::Feed;
use crate::instance::Instance;
use crate::manifests::ManifestDir;
use crate::netdev::{self, Netlink};
use crate::pods::manager::{ManagerConfig, PodManager, SharedPods};
use crate::pods_api::PodsApi;
use crate::policy::{compile::NodeContext, names::NAMES_FILE, sync::PolicySync};
use crate::runtime::plan::NetworkPlan;
use crate::services::{NodeView, sync::ServiceSync};
use crate::{cni_conf, endpoint_api, masquerade, prometheus, registry::Registry, sysctl};
use kaya_ebpf_common::tunnel::VXLAN_PORT;

pub struct Node {
    pub config: AgentConfig,
    pub instance: Instance,
    pub service: Arc<Mutex<EndpointService>>,
    pub services: Arc<std::sync::Mutex<ServiceSync>>,
    pub policy: Arc<std::sync::Mutex<PolicySync>>,
    /// The kubelet's pod table, when this node runs pods.
    pub pods: Option<Arc<PodsApi>>,
}

impl Node {
    pub async fn start(config: AgentConfig) -> anyhow::Result<Node> {
        let instance = Instance::new(&config.instance, &config.state_root, &config.bpffs);
        std::fs::create_dir_all(instance.state_dir())?;
        let netlink = Netlink::connect()?;
        let overlay_name = instance.overlay_device();

        let overlay = netlink
            .ensure_overlay(&overlay_name, config.pod_mtu(), VXLAN_PORT)
            .await?;
        for (key, value) in sysctl::node_settings(&overlay_name) {
            sysctl::write(Path::new("/proc/sys"), &key, value)?;
        }
        netlink
            .ensure_address(overlay.index, config.gateway())
            .await?;
        let wanted: BTreeSet<_> = config.peers.iter().map(|p| p.pod_cidr).collect();
        let present = netlink.owned_routes(overlay.index).await?;
        let (add, remove) = netdev::route_changes(&present, &wanted);
        for cidr in add {
            netlink
                .replace_route(cidr, overlay.index, config.gateway())
                .await?;
        }
        for cidr in remove {
            netlink.delete_route(cidr, overlay.index).await?;
        }

        datapath::loader::ensure_bpffs(&config.bpffs)?;
        let mut datapath = Datapath::load_sized(instance.bpf_dir(), &config.services.map_sizes)?;
        spawn_ebpf_logger(&mut datapath);
        // NodePorts are served on the interface holding the node IP.
        let uplink = netlink.interface_with_address(config.node_ip).await?;
        if uplink.is_none() {
            tracing::warn!(node_ip = %config.node_ip, "no interface holds the node IP: NodePorts are not served from outside");
        }
        SettingsMap::open(&mut datapath)?.write(settings::render(
            overlay.index,
            uplink.unwrap_or(0),
            config.node_ip,
            config.gateway(),
            config.trace,
        ))?;
        let tunnels: BTreeMap<_, _> = config
            .peers
            .iter()
            .map(|p| (p.pod_cidr, p.node_ip))
            .collect();
        TunnelMap::open(&mut datapath)?.sync(&tunnels)?;
        let links_dir = instance.links_dir();
        for (program, direction) in [
            (PROG_FROM_OVERLAY, Direction::Ingress),
            (PROG_TO_OVERLAY, Direction::Egress),
        ] {
            let pin = links::pin_path(&links_dir, program, direction, overlay.index);
            let how = links::attach_pinned(
                datapath.program(program)?,
                program,
                &overlay_name,
                direction,
                &pin,
            )?;
            tracing::info!(
                program,
                device = overlay_name,
                ?how,
                "overlay program attached"
            );
        }
        if let Some(uplink) = uplink {
            let name = netlink
                .link_name(uplink)
                .await?
                .unwrap_or_else(|| format!("ifindex {uplink}"));
            let pin = links::pin_path(&links_dir, PROG_FROM_NETDEV, Direction::Ingress, uplink);
            let how = links::attach_pinned(
                datapath.program(PROG_FROM_NETDEV)?,
                PROG_FROM_NETDEV,
                &name,
                Direction::Ingress,
                &pin,
            )?;
            tracing::info!(
                program = PROG_FROM_NETDEV,
                device = name,
                ?how,
                "uplink program attached"
            );
        }
        if config.trace {
            datapath::trace::spawn_logger(&mut datapath)?;
        }

        let ruleset = masquerade::render(
            &instance.nft_table(),
            config.pod_cidr,
            config.cluster_cidr,
            &overlay_name,
        );
        masquerade::apply(&instance.nft_table(), &ruleset)?;
        let conflist = cni_conf::write(
            &instance.cni_conf_dir(),
            &cni_conf::render(&config, &instance),
        )?;
        tracing::info!(path = %conflist.display(), "cni config written");

        let services = start_services(&config, &instance, &mut datapath)?;
        let policy = start_feed(&config, &instance, &mut datapath, services.clone())?;

        let endpoints = EndpointMap::open(&mut datapath)?;
        let mut service = EndpointService {
            node_name: config.node_name.clone(),
            pod_cidr: config.pod_cidr,
            datapath,
            endpoints,
            registry: Registry::open(&instance.registry_path())?,
            netlink,
        };
        service.readopt().await?;
        let pods = start_pods(&config, &instance)?;
        Ok(Node {
            config,
            instance,
            service: Arc::new(Mutex::new(service)),
            services,
            policy,
            pods,
        })
    }

    /// Serves the endpoint API until SIGINT/SIGTERM. Programs and maps stay pinned on exit:
    /// pods keep their connectivity while the agent is away.
    pub async fn serve(self) -> anyhow::Result<()> {
        let listener = endpoint_api::bind(&self.instance.socket_path())?;
        tracing::info!(
            node = self.config.node_name,
            socket = %self.instance.socket_path().display(),
            "agent ready"
        );
        let server = tokio::spawn(endpoint_api::serve(
            listener,
            self.service.clone(),
            self.pods.clone(),
        ));
        if let Some(address) = self.config.metrics_address {
            let metrics = tokio::net::TcpListener::bind(address).await?;
            tracing::info!(%address, "serving prometheus metrics");
            tokio::spawn(prometheus::serve(
                metrics,
                self.services.clone(),
                self.policy.clone(),
                self.instance.bpf_dir().to_owned(),
            ));
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        server.abort();
        tracing::info!("agent stopping; datapath stays attached");
        Ok(())
    }
}

/// Adopts the service maps, programs the manifests found now, attaches (or detaches) the
/// socket LB, and leaves a thread following the manifest directory.
fn start_services(
    config: &AgentConfig,
    instance: &Instance,
    datapath: &mut Datapath,
) -> anyhow::Result<Arc<std::sync::Mutex<ServiceSync>>> {
    let node = NodeView {
        name: config.node_name.clone(),
        addresses: vec![config.node_ip],
    };
    let sync = ServiceSync::new(
        datapath::lb::LbMaps::open(datapath)?,
        datapath::ct::CtMap::open(datapath)?,
        node,
    )?;
    let sync = Arc::new(std::sync::Mutex::new(sync));
    let links_dir = instance.links_dir();
    if config.services.socket_lb {
        let cgroup = (config.services.cgroup_root.clone())
            .unwrap_or_else(datapath::sock_lb::default_cgroup_root);
        datapath::sock_lb::attach(datapath, &cgroup, &links_dir)?;
        tracing::info!(cgroup = %cgroup.display(), "socket load balancing attached");
    } else if datapath::sock_lb::detach(&links_dir)? {
        tracing::info!("socket load balancing detached (socketLB: false)");
    }
    Ok(sync)
}

/// Adopts the policy maps and runs the manifest feed: one round now, so services and
/// policies are in place before the agent reports ready, then a thread following changes.
fn start_feed(
    config: &AgentConfig,
    instance: &Instance,
    datapath: &mut Datapath,
    services: Arc<std::sync::Mutex<ServiceSync>>,
) -> anyhow::Result<Arc<std::sync::Mutex<PolicySync>>> {
    let policy = PolicySync::new(
        IpcacheMap::open(datapath)?,
        PolicyMaps::open(datapath)?,
        instance.state_dir().join(NAMES_FILE),
    );
    let policy = Arc::new(std::sync::Mutex::new(policy));
    let node = NodeContext {
        endpoints: Default::default(),
        host_addresses: vec![config.node_ip, config.gateway()],
        peers: config
            .peers
            .iter()
            .map(|p| (p.node_ip, p.pod_cidr))
            .collect(),
    };
    let mut feed = Feed::new(
        ManifestDir::new(&config.services.manifests),
        services,
        policy.clone(),
        EndpointMap::open_pinned(instance.bpf_dir())?,
        node,
    );
    feed.round();
    feed.spawn(std::time::Duration::from_millis(config.services.poll_ms));
    Ok(policy)
}

/// Starts the kubelet loop in its own thread when a static pod directory is configured.
fn start_pods(config: &AgentConfig, instance: &Instance) -> anyhow::Result<Option<Arc<PodsApi>>> {
    let Some(static_pod_path) = config.pods.static_pod_path.clone() else {
        return Ok(None);
    };
    let own_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let shim_binary =
        (config.pods.shim_binary.clone()).unwrap_or_else(|| own_dir.join("kaya-shim"));
    let mut plugin_dirs = vec![own_dir];
    plugin_dirs.extend(config.pods.cni_bin_dirs.iter().cloned());
    let manager_config = ManagerConfig {
        node_name: config.node_name.clone(),
        node_ip: config.node_ip.to_string(),
        static_pod_path,
        state_dir: instance.state_dir().to_path_buf(),
        log_root: config.pods.log_root.clone(),
        image_root: config.pods.image_root.clone(),
        shim_binary,
        network: Some(NetworkPlan {
            conflist: cni_conf::render(config, instance),
            plugin_dirs,
            interface: "eth0".into(),
        }),
        registry_auth: config.pods.registry_auth.clone(),
    };
    let shared = SharedPods::default();
    let mut manager = PodManager::new(manager_config, shared.clone())?;
    manager.tick();
    let period = std::time::Duration::from_millis(config.pods.poll_ms);
    let watch = config
        .pods
        .static_pod_path
        .as_deref()
        .and_then(DirectoryWatch::new);
    std::thread::Builder::new()
        .name("kaya-pods".into())
        .spawn(move || {
            loop {
                match &watch {
                    Some(watch) => watch.wait(period),
                    None => std::thread::sleep(period),
                }
                manager.tick();
            }
        })?;
    tracing::info!(path = %config.pods.static_pod_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(), "running static pods");
    Ok(Some(Arc::new(PodsApi {
        pods: shared,
        node_name: config.node_name.clone(),
        node_ip: config.node_ip.to_string(),
        image_root: config.pods.image_root.clone(),
    })))
}

/// Forwards aya-log records from the programs into tracing (via the `log` bridge).
fn spawn_ebpf_logger(datapath: &mut Datapath) {
    let Some(logger) = datapath.logger() else {
        tracing::warn!("eBPF object has no aya-log buffer; program logs are off");
        return;
    };
    // SAFETY: the logger owns its ring buffer fd, open until the AsyncFd drops the logger.
    let mut fd = match unsafe { tokio::io::unix::AsyncFd::register(logger) } {
        Ok(fd) => fd,
        Err(err) => {
            tracing::warn!(%err, "cannot poll the aya-log buffer; program logs are off");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

/// Removes everything an instance created: pinned links and maps (detaching the programs),
/// the overlay device, the nft table and the state directory.
pub async fn purge(instance: &Instance) -> anyhow::Result<()> {
    datapath::loader::unpin_all(instance.bpf_dir())?;
    let netlink = Netlink::connect()?;
    netlink.delete_link(&instance.overlay_device()).await?;
    if let Err(err) = masquerade::remove(&instance.nft_table()) {
        tracing::warn!(%err, "removing nft table");
    }
    match std::fs::remove_dir_all(instance.state_dir()) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
        _ => {}
    }
    Ok(())
}
