//! Simulated clusters: N nodes, each a network namespace with an uplink veth to a bridge in
//! a test-owned underlay namespace, each running its own kaya-agent with its own instance
//! prefix; pods are network namespaces plumbed by the real kaya-cni through the conflist the
//! agent wrote. Everything is removed on drop, on failure and on panic; `sweep` removes what
//! dead test processes left behind.
use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use kaya_agent_api::{Request, Response};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binaries::workspace_binary;
use crate::cni_invoke::{Invocation, invoke};
use crate::netns::{self, TestNetns, enter_on_exec};
use crate::underlay;

/// Parent of every test cluster's state; one directory per cluster, named by netns::unique_tag.
pub const STATE_ROOT: &str = "/run/kaya-test";
const BPFFS: &str = "/sys/fs/bpf";
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Every agent serves Prometheus metrics on this port of its node's loopback.
pub const METRICS_PORT: u16 = 9962;

pub struct ClusterNode {
    pub name: String,
    pub instance: String,
    pub ip: Ipv4Addr,
    pub pod_cidr: Ipv4Net,
    pub netns: TestNetns,
    config_path: PathBuf,
    log_path: PathBuf,
    agent: Option<Child>,
}

impl ClusterNode {
    pub fn state_dir(&self, state_root: &Path) -> PathBuf {
        state_root.join(&self.instance)
    }
    /// bpffs directory of this node's pinned maps.
    pub fn bpf_dir(&self) -> PathBuf {
        Path::new(BPFFS).join("kaya").join(&self.instance)
    }
    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

pub struct Pod {
    pub name: String,
    pub node: usize,
    pub ip: Ipv4Addr,
    pub container_id: String,
    pub netns: TestNetns,
}

pub struct Cluster {
    pub tag: String,
    pub state_root: PathBuf,
    /// cgroup v2 directory of this cluster; each node's socket LB attaches to a child.
    pub cgroup: PathBuf,
    pub nodes: Vec<ClusterNode>,
    pub pods: Vec<Pod>,
    pub underlay: TestNetns,
}

impl Cluster {
    /// Builds the underlay and `count` nodes (at most 9) and starts an agent on each.
    pub fn new(count: usize) -> anyhow::Result<Cluster> {
        assert!((1..=9).contains(&count), "clusters have 1 to 9 nodes");
        sweep();
        let tag = netns::unique_tag();
        let state_root = Path::new(STATE_ROOT).join(&tag);
        std::fs::create_dir_all(&state_root)?;
        let underlay = underlay::create(&format!("{tag}-ul"))?;
        let cgroup = kaya_agent::datapath::sock_lb::default_cgroup_root()
            .join(format!("{CGROUP_PREFIX}{tag}"));
        std::fs::create_dir_all(&cgroup)
            .with_context(|| format!("creating cgroup {}", cgroup.display()))?;
        let mut cluster = Cluster {
            tag: tag.clone(),
            state_root,
            cgroup,
            nodes: Vec::new(),
            pods: Vec::new(),
            underlay,
        };
        let prefix = instance_prefix();
        for index in 0..count {
            let node = cluster.make_node(index, &prefix)?;
            cluster.nodes.push(node);
        }
        for index in 0..count {
            cluster.write_config(index)?;
            cluster.start_agent(index)?;
        }
        Ok(cluster)
    }

    fn make_node(&self, index: usize, prefix: &str) -> anyhow::Result<ClusterNode> {
        let name = format!("node-{}", index + 1);
        let ip = Ipv4Addr::new(192, 168, 50, index as u8 + 1);
        let netns = underlay::plug_node(
            &self.underlay,
            &format!("{}-n{}", self.tag, index + 1),
            &format!("n{}", index + 1),
            ip,
        )?;
        let instance = format!("{prefix}{}", index + 1);
        let state_dir = self.state_root.join(&instance);
        std::fs::create_dir_all(state_dir.join("manifests"))?;
        std::fs::create_dir_all(state_dir.join("static-pods"))?;
        std::fs::create_dir_all(self.cgroup.join(&instance))?;
        Ok(ClusterNode {
            name,
            instance,
            ip,
            pod_cidr: format!("10.244.{}.0/24", index + 1).parse()?,
            netns,
            config_path: state_dir.join("agent.yaml"),
            log_path: state_dir.join("agent.log"),
            agent: None,
        })
    }

    fn write_config(&self, index: usize) -> anyhow::Result<()> {
        self.write_config_with(index, true)
    }

    fn write_config_with(&self, index: usize, socket_lb: bool) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let mut yaml = format!(
            "instance: {}\nnodeName: {}\nnodeIP: {}\npodCIDR: {}\nclusterCIDR: {CLUSTER_CIDR}\nstateRoot: {}\ntrace: false\nmetricsAddress: 127.0.0.1:{METRICS_PORT}\n\
             services:\n  manifests: {}\n  pollMs: 50\n  cgroupRoot: {}\n  socketLB: {socket_lb}\n\
             pods:\n  staticPodPath: {}\n  imageRoot: {}\n  logRoot: {}\n  pollMs: 50\npeers:\n",
            node.instance,
            node.name,
            node.ip,
            node.pod_cidr,
            self.state_root.display(),
            self.manifests_dir(index).display(),
            self.cgroup.join(&node.instance).display(),
            self.static_pods_dir(index).display(),
            node.state_dir(&self.state_root).join("images").display(),
            node.state_dir(&self.state_root).join("logs").display(),
        );
        for (other_index, other) in self.nodes.iter().enumerate() {
            if other_index != index {
                yaml += &format!(
                    "  - name: {}\n    nodeIP: {}\n    podCIDR: {}\n",
                    other.name, other.ip, other.pod_cidr
                );
            }
        }
        std::fs::write(&node.config_path, yaml)?;
        Ok(())
    }

    /// Node `index`'s service manifest directory.
    pub fn manifests_dir(&self, index: usize) -> PathBuf {
        self.nodes[index]
            .state_dir(&self.state_root)
            .join("manifests")
    }

    /// Writes (replaces) manifest `file` on every node, as the control plane would send
    /// the same Services and EndpointSlices to all of them. Written atomically.
    pub fn apply_manifest(&self, file: &str, yaml: &str) -> anyhow::Result<()> {
        for index in 0..self.nodes.len() {
            let dir = self.manifests_dir(index);
            let temp = dir.join(format!(".{file}.tmp"));
            std::fs::write(&temp, yaml)?;
            std::fs::rename(&temp, dir.join(file))?;
        }
        Ok(())
    }

    /// Waits until every node's service map has `frontend` (VIP:port/proto) with exactly
    /// `backends` backends.
    pub fn wait_frontend(
        &self,
        frontend: &kaya_agent::services::FrontendAddr,
        backends: u16,
    ) -> anyhow::Result<()> {
        (0..self.nodes.len()).try_for_each(|index| self.wait_frontend_on(index, frontend, backends))
    }

    /// Waits until node `index`'s service map has `frontend` with exactly `backends` backends.
    pub fn wait_frontend_on(
        &self,
        index: usize,
        frontend: &kaya_agent::services::FrontendAddr,
        backends: u16,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let node = &self.nodes[index];
        loop {
            let maps = kaya_agent::datapath::lb::LbMaps::open_pinned(&node.bpf_dir())?;
            if maps
                .head(frontend)
                .is_some_and(|head| head.count == backends)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never programmed {frontend} with {backends} backends:\n{}",
                    node.name,
                    node.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs kaya-probe inside pod `pod` (its netns and its node's cgroup) and returns the
    /// line it printed, whether it succeeded or not.
    pub fn probe(&self, pod: usize, args: &[&str]) -> anyhow::Result<String> {
        let output = self.spawn_probe(pod, args)?.wait_with_output()?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Starts kaya-probe inside pod `pod` with its stdout piped.
    pub fn spawn_probe(&self, pod: usize, args: &[&str]) -> anyhow::Result<Child> {
        let pod = &self.pods[pod];
        let cgroup = self.cgroup.join(&self.nodes[pod.node].instance);
        crate::probe::probe_command(&pod.netns.path(), Some(&cgroup), args)?
            .spawn()
            .context("running kaya-probe")
    }

    /// Starts `kaya observe --follow` for node `index` with `filters`; every line it prints
    /// arrives on the receiver with the time it arrived. Kill the child when done.
    pub fn observe(
        &self,
        index: usize,
        filters: &[&str],
    ) -> anyhow::Result<(Child, std::sync::mpsc::Receiver<(Instant, String)>)> {
        use std::io::BufRead;
        let mut child = Command::new(workspace_binary("kaya"))
            .args([
                "observe",
                "--follow",
                "--instance",
                &self.nodes[index].instance,
            ])
            .arg("--state-root")
            .arg(&self.state_root)
            .args(filters)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting kaya observe")?;
        let stdout = child.stdout.take().context("kaya observe stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send((Instant::now(), line)).is_err() {
                    return;
                }
            }
        });
        Ok((child, rx))
    }

    pub fn socket_path(&self, index: usize) -> PathBuf {
        self.nodes[index]
            .state_dir(&self.state_root)
            .join(kaya_agent_api::SOCKET_NAME)
    }

    /// Starts node `index`'s agent inside its namespace and waits until it answers.
    pub fn start_agent(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log_path)?;
        let mut command = Command::new(workspace_binary("kaya-agent"));
        command
            .args(["run", "--config"])
            .arg(&node.config_path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        enter_on_exec(&mut command, &node.netns.path())?;
        let child = command.spawn().context("spawning kaya-agent")?;
        self.nodes[index].agent = Some(child);
        self.wait_ready(index)
    }

    fn wait_ready(&mut self, index: usize) -> anyhow::Result<()> {
        let socket = self.socket_path(index);
        let deadline = Instant::now() + AGENT_READY_TIMEOUT;
        loop {
            if let Ok(Response::Status { ready: true, .. }) =
                kaya_agent_api::call(&socket, &Request::Status, Duration::from_secs(1))
            {
                return Ok(());
            }
            let node = &mut self.nodes[index];
            if let Some(status) = node
                .agent
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "agent of {} exited with {status}:\n{}",
                    node.name,
                    node.agent_log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "agent of {} not ready in time:\n{}",
                    node.name,
                    node.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of node `index`'s agent process, while it runs.
    pub fn agent_pid(&self, index: usize) -> Option<u32> {
        self.nodes[index].agent.as_ref().map(|child| child.id())
    }

    /// Restarts node `index`'s agent with socket load balancing on or off.
    pub fn restart_agent(&mut self, index: usize, socket_lb: bool) -> anyhow::Result<()> {
        self.kill_agent(index)?;
        self.write_config_with(index, socket_lb)?;
        self.start_agent(index)
    }

    /// Kills node `index`'s agent with SIGKILL (no chance to clean up) and waits for it.
    pub fn kill_agent(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[index].agent.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Creates a pod namespace on node `index` and plumbs it with kaya-cni ADD.
    pub fn add_pod(&mut self, index: usize, name: &str) -> anyhow::Result<&Pod> {
        let netns = TestNetns::create(&format!("{}-pod-{name}", self.tag))?;
        let container_id = format!("{}-{name}", self.tag);
        let result = self.cni(index, "ADD", &container_id, &netns.path())?;
        let address = result["ips"][0]["address"]
            .as_str()
            .context("cni result has no ips[0].address")?;
        let ip: Ipv4Net = address
            .parse()
            .with_context(|| format!("cni address {address}"))?;
        self.pods.push(Pod {
            name: name.to_owned(),
            node: index,
            ip: ip.addr(),
            container_id,
            netns,
        });
        Ok(self.pods.last().expect("just pushed"))
    }

    /// The agent-written conflist of node `index`.
    pub fn conflist(&self, index: usize) -> anyhow::Result<serde_json::Value> {
        let path = self.nodes[index]
            .state_dir(&self.state_root)
            .join("net.d")
            .join("10-kaya.conflist");
        Ok(serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?)
    }

    /// The kaya-cni entry of node `index`'s conflist with the network's name and version: what
    /// a runtime puts on the plugin's stdin.
    pub fn plugin_conf(&self, index: usize) -> anyhow::Result<serde_json::Value> {
        let conflist = self.conflist(index)?;
        let mut plugin = conflist["plugins"][0].clone();
        plugin["name"] = conflist["name"].clone();
        plugin["cniVersion"] = conflist["cniVersion"].clone();
        Ok(plugin)
    }

    /// Runs kaya-cni with `command` and `conf` in node `index`'s namespace.
    pub fn cni_with(
        &self,
        index: usize,
        command: &str,
        container_id: &str,
        netns: &Path,
        conf: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let cni = workspace_binary("kaya-cni");
        let call = Invocation {
            plugin: &cni,
            cni_path: cni.parent().expect("binary dir"),
            command,
            container_id,
            pod_netns: netns,
            ifname: "eth0",
        };
        invoke(&self.nodes[index].netns.path(), &call, conf)
    }

    /// Runs kaya-cni with `command` in node `index`'s namespace, the way a runtime would.
    pub fn cni(
        &self,
        index: usize,
        command: &str,
        container_id: &str,
        netns: &Path,
    ) -> anyhow::Result<serde_json::Value> {
        self.cni_with(
            index,
            command,
            container_id,
            netns,
            &self.plugin_conf(index)?,
        )
        .with_context(|| format!("on {}", self.nodes[index].name))
    }

    /// Node `index`'s Prometheus metrics page, fetched inside its namespace.
    pub fn scrape_metrics(&self, index: usize) -> anyhow::Result<String> {
        crate::netns::in_netns(
            &self.nodes[index].netns.path(),
            || -> anyhow::Result<String> {
                use std::io::{Read, Write};
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", METRICS_PORT))?;
                stream.set_read_timeout(Some(Duration::from_secs(3)))?;
                stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n")?;
                let mut response = String::new();
                stream.read_to_string(&mut response)?;
                Ok(response)
            },
        )?
    }

    /// Datapath counters of node `index`, by reason.
    pub fn counters(&self, index: usize) -> anyhow::Result<kaya_agent::datapath::metrics::Totals> {
        Ok(kaya_agent::datapath::metrics::read_pinned(
            &self.nodes[index].bpf_dir(),
        )?)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for pod in std::mem::take(&mut self.pods) {
            let _ = self.cni(pod.node, "DEL", &pod.container_id, &pod.netns.path());
        }
        for index in 0..self.nodes.len() {
            // The agent goes first: it would restart a pod's shim that exits while its
            // manifest is still there.
            let _ = self.kill_agent(index);
            self.stop_pods(index);
            let node = &self.nodes[index];
            let mut purge = Command::new(workspace_binary("kaya-agent"));
            purge
                .args(["purge", "--instance", &node.instance, "--state-root"])
                .arg(&self.state_root)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if enter_on_exec(&mut purge, &node.netns.path()).is_ok() {
                let _ = purge.status();
            }
            let _ = kaya_agent::datapath::loader::unpin_all(&node.bpf_dir());
        }
        let _ = std::fs::remove_dir_all(&self.state_root);
        remove_cgroup(&self.cgroup);
    }
}

/// Lazily unmounts whatever is still mounted below `dir` (sandbox namespaces, container
/// root filesystems, volumes of pods that outlived their test), deepest first.
fn unmount_under(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|path| path.starts_with(dir))
        .collect();
    mounts.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    for path in mounts {
        let _ = nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Prefix of the cgroups test clusters create under the cgroup2 root.
const CGROUP_PREFIX: &str = "kaya-test-";

/// Removes a cluster cgroup and its node children (each must be empty of processes).
fn remove_cgroup(path: &Path) {
    if let Ok(children) = std::fs::read_dir(path) {
        for child in children.filter_map(Result::ok) {
            if child.path().is_dir() {
                let _ = std::fs::remove_dir(child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(path);
}

/// Three random base-36 characters; instance names are this plus the node number.
fn instance_prefix() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    loop {
        let prefix: String = (0..3)
            .map(|_| ALPHABET[rng.gen_range(0..26)] as char)
            .collect();
        if !Path::new(BPFFS)
            .join("kaya")
            .join(format!("{prefix}1"))
            .exists()
        {
            return prefix;
        }
    }
}

/// Removes what test processes that no longer exist left behind: namespaces, state
/// directories and the pinned maps and links of their agent instances.
pub fn sweep() {
    netns::sweep();
    let Ok(clusters) = std::fs::read_dir(STATE_ROOT) else {
        return;
    };
    for cluster in clusters.filter_map(Result::ok) {
        let name = cluster.file_name().to_string_lossy().into_owned();
        let pid = name.split('x').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            continue;
        }
        if let Ok(instances) = std::fs::read_dir(cluster.path()) {
            for instance in instances.filter_map(Result::ok) {
                let pins = Path::new(BPFFS).join("kaya").join(instance.file_name());
                let _ = kaya_agent::datapath::loader::unpin_all(&pins);
                // Pods of a test that died keep running in their shims; stop them.
                crate::cluster_pods::stop_shims(&instance.path().join("pods"));
            }
        }
        unmount_under(&cluster.path());
        let _ = std::fs::remove_dir_all(cluster.path());
        remove_cgroup(
            &kaya_agent::datapath::sock_lb::default_cgroup_root()
                .join(format!("{CGROUP_PREFIX}{name}")),
        );
    }
}
