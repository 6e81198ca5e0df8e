//! `kaya-bench pods`: one container's create+start+exit+delete through Kaya's libcontainer
//! path against `runc run` and `crun run` on the same bundle; pod start latency through the
//! agent (manifest written → Ready) with and without networking; agent and shim memory.
use crate::bench::{BenchReport, median, percentile};
use crate::binaries::workspace_binary;
use crate::cluster::Cluster;
use crate::cluster_pods::pod_ready;
use crate::oci_image::{LayerCompression, TestImage, busybox_layer};
use crate::registry::{NamespacedRegistry, TestRegistry};
use anyhow::{Context, bail};
use kaya_agent::runtime::container;
use kaya_agent::runtime::shim::step::{self, StepOutput, StepRequest};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const REGISTRY_PORT: u16 = 5000;

struct Plan {
    lifecycle_rounds: usize,
    pods: usize,
}

/// A bundle all three runtimes run: the busybox rootfs and `runc spec`'s default config
/// running `true`.
fn bundle(dir: &Path) -> anyhow::Result<()> {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    kaya_agent::images::unpack::unpack(&busybox_layer()?[..], &rootfs)?;
    let status = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(dir)
        .status()
        .context("runc spec")?;
    if !status.success() {
        bail!("runc spec failed: {status}");
    }
    let path = dir.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["true"]);
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    Ok(())
}

fn set_cgroup_path(bundle: &Path, id: &str) -> anyhow::Result<()> {
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["linux"]["cgroupsPath"] = format!("/kaya-bench/{id}").into();
    std::fs::write(&path, serde_json::to_vec(&spec)?)?;
    Ok(())
}

fn run_external(runtime: &str, bundle: &Path, id: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = Command::new(runtime)
        .args(["run", "--bundle"])
        .arg(bundle)
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("{runtime} run"))?;
    let took = started.elapsed();
    if !status.success() {
        bail!("{runtime} run {id}: {status}");
    }
    Ok(took)
}

struct ReapingGuard;

impl Drop for ReapingGuard {
    fn drop(&mut self) {
        let _ = step::set_subreaper(false);
    }
}

/// Kaya's path, as the shim takes it: a kaya-runtime step starts the container through
/// libcontainer; the shim (here the benchmark) reaps it as the step's subreaper, removes
/// its cgroup and forgets its state.
fn run_kaya(runtime: &Path, root: &Path, bundle: &Path, id: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let [(stdout, stdout_write), (stderr, stderr_write)] = container::output_pipes()?;
    let request = StepRequest::StartBundle {
        runtime_root: root.to_path_buf(),
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
    };
    let output = step::run(runtime, &request, Some([stdout_write, stderr_write]))
        .map_err(anyhow::Error::msg)?;
    let StepOutput::Started { pid } = output else {
        bail!("kaya container {id}: the start step returned {output:?}");
    };
    let status = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL))?;
    drop((stdout, stderr));
    container::remove_cgroup(&format!("/kaya-bench/{id}"));
    container::forget(root, id);
    let took = started.elapsed();
    if !matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)) {
        bail!("kaya container {id}: {status:?}");
    }
    Ok(took)
}

/// crun refuses hybrid hosts whose cgroup2 hierarchy still offers a controller (here
/// hugetlb, which no v1 hierarchy has). While the comparison runs, such controllers get a
/// v1 hierarchy of their own — for all three runtimes alike — and are handed back after.
struct HybridControllers {
    mounts: Vec<std::path::PathBuf>,
}

impl HybridControllers {
    fn move_to_v1() -> anyhow::Result<HybridControllers> {
        let mut fix = HybridControllers { mounts: Vec::new() };
        let Ok(controllers) = std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
        else {
            return Ok(fix);
        };
        for controller in controllers.split_whitespace() {
            let path = Path::new("/sys/fs/cgroup").join(controller);
            if path.exists() {
                continue;
            }
            std::fs::create_dir(&path)?;
            nix::mount::mount(
                Some("cgroup"),
                &path,
                Some("cgroup"),
                nix::mount::MsFlags::empty(),
                Some(controller),
            )
            .with_context(|| format!("mounting a v1 {controller} hierarchy"))?;
            fix.mounts.push(path);
        }
        Ok(fix)
    }
}

impl Drop for HybridControllers {
    fn drop(&mut self) {
        for path in &self.mounts {
            let controller = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            remove_child_cgroups(path);
            let _ = nix::mount::umount(path);
            // The kernel hands the controller back to cgroup2 once the old hierarchy is gone;
            // when that lingers, mounting it again, emptying it and unmounting lets it go.
            for attempt in 1..=50 {
                let controllers =
                    std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
                        .unwrap_or_default();
                if controllers
                    .split_whitespace()
                    .any(|name| name == controller)
                {
                    break;
                }
                if attempt % 10 == 0
                    && nix::mount::mount(
                        Some("cgroup"),
                        path,
                        Some("cgroup"),
                        nix::mount::MsFlags::empty(),
                        Some(controller.as_str()),
                    )
                    .is_ok()
                {
                    remove_child_cgroups(path);
                    let _ = nix::mount::umount(path);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = std::fs::remove_dir(path);
        }
    }
}

/// Removes every cgroup below `dir`, deepest first.
fn remove_child_cgroups(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            remove_child_cgroups(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Interleaved rounds, so the three share whatever else the machine is doing.
fn lifecycle(report: &mut BenchReport, plan: &Plan) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("kaya-bench-bundle-")
        .tempdir()?;
    bundle(dir.path())?;
    let kaya_root = dir.path().join("kaya-state");
    std::fs::create_dir_all(&kaya_root)?;
    let _controllers = HybridControllers::move_to_v1()?;
    // Kaya's containers are handed to their starter when the step exits, as in the shim;
    // the rest of the benchmark leaves orphans to init again.
    step::become_subreaper()?;
    let _reaping = ReapingGuard;
    let runtime = workspace_binary(step::RUNTIME_BINARY);
    let mut times: [Vec<f64>; 3] = Default::default();
    let tag = std::process::id();
    for round in 0..plan.lifecycle_rounds + 1 {
        let ids = [
            format!("kb{tag}k{round}"),
            format!("kb{tag}r{round}"),
            format!("kb{tag}c{round}"),
        ];
        let mut runs = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            // Every runtime puts its container in the same place: /kaya-bench/<id>.
            set_cgroup_path(dir.path(), id)?;
            runs.push(match index {
                0 => run_kaya(&runtime, &kaya_root, dir.path(), id)?,
                1 => run_external("runc", dir.path(), id)?,
                _ => run_external("crun", dir.path(), id)?,
            });
        }
        // The first round warms caches (binaries, rootfs pages) for all three.
        if round > 0 {
            for (series, took) in times.iter_mut().zip(runs) {
                series.push(took.as_secs_f64() * 1000.0);
            }
        }
    }
    // The runtimes leave the parent they created.
    container::remove_cgroup("/kaya-bench");
    for (implementation, series) in ["kaya", "runc", "crun"].into_iter().zip(times.iter_mut()) {
        report.push(
            "container_lifecycle_ms",
            implementation,
            median(series),
            "ms",
            false,
        );
    }
    Ok(())
}

fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS")?;
    Ok(kb / 1024.0)
}

/// The sum of `fields` in /proc/<pid>/smaps_rollup, in MB.
fn rollup_mb(pid: u32, fields: &[&str]) -> anyhow::Result<f64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    let kb: f64 = rollup
        .lines()
        .filter_map(|line| {
            let field = fields.iter().find(|field| line.starts_with(*field))?;
            line[field.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .sum();
    Ok(kb / 1024.0)
}

fn pod_yaml(name: &str, host_network: bool) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  hostNetwork: {host_network}\n  terminationGracePeriodSeconds: 0\n  containers: [{{name: app, image: '127.0.0.1:{REGISTRY_PORT}/kaya/busybox:v1', command: [sleep, '3600']}}]\n"
    )
}

/// Writes one pod's manifest and waits for it to be Ready; returns the time that took.
fn start_pod(cluster: &Cluster, name: &str, host_network: bool) -> anyhow::Result<f64> {
    let started = Instant::now();
    cluster.write_static_pod(0, &format!("{name}.yaml"), &pod_yaml(name, host_network))?;
    loop {
        let pods = cluster.list_pods(0)?;
        if pods
            .iter()
            .any(|pod| pod["metadata"]["name"] == name && pod_ready(pod))
        {
            return Ok(started.elapsed().as_secs_f64() * 1000.0);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "pod {name} not Ready within 60 s:\n{}",
                cluster.nodes[0].agent_log()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn pod_start(report: &mut BenchReport, plan: &Plan) -> anyhow::Result<()> {
    let registry = TestRegistry::start(None)?;
    TestImage::busybox(LayerCompression::Gzip)?.push(
        &registry.address,
        "kaya/busybox",
        "v1",
        None,
    )?;
    let cluster = Cluster::new(1)?;
    let _in_node = NamespacedRegistry::start(
        &registry.storage,
        &cluster.nodes[0].netns.path(),
        REGISTRY_PORT,
    )?;
    let agent = cluster.agent_pid(0).context("agent pid")?;
    // The image is pulled once, by a warm-up pod; the figures are for an image present.
    start_pod(&cluster, "warmup", true)?;
    cluster.remove_static_pod(0, "warmup.yaml")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cluster.pod_dirs(0).is_empty() {
        if Instant::now() > deadline {
            bail!("warm-up pod not removed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    report.push_scaled("agent_rss_mb", 0, "kaya", rss_mb(agent)?, "MB", false);
    let mut networked = Vec::new();
    let mut host = Vec::new();
    for index in 0..plan.pods {
        networked.push(start_pod(&cluster, &format!("net-{index}"), false)?);
        host.push(start_pod(&cluster, &format!("host-{index}"), true)?);
    }
    for (case, series) in [
        ("pod_start", &mut networked),
        ("pod_start_nonet", &mut host),
    ] {
        series.sort_by(f64::total_cmp);
        report.push(
            &format!("{case}_p50_ms"),
            "kaya",
            percentile(series, 0.50),
            "ms",
            false,
        );
        report.push(
            &format!("{case}_p99_ms"),
            "kaya",
            percentile(series, 0.99),
            "ms",
            false,
        );
    }
    let running = cluster.pod_dirs(0).len();
    report.push_scaled(
        "agent_rss_mb",
        running as u64,
        "kaya",
        rss_mb(agent)?,
        "MB",
        false,
    );
    let shim_pids: Vec<u32> = cluster
        .pod_dirs(0)
        .iter()
        .filter_map(|dir| {
            std::fs::read_to_string(dir.pid())
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .collect();
    let mut rss: Vec<f64> = shim_pids
        .iter()
        .filter_map(|pid| rss_mb(*pid).ok())
        .collect();
    report.push_scaled(
        "shim_rss_mb",
        running as u64,
        "kaya",
        median(&mut rss),
        "MB",
        false,
    );
    // RSS counts the shim binary's shared pages in full for every shim; PSS splits them
    // among the shims, and the private part is what one more pod really adds.
    let mut pss: Vec<f64> = shim_pids
        .iter()
        .filter_map(|pid| rollup_mb(*pid, &["Pss:"]).ok())
        .collect();
    report.push_scaled(
        "shim_pss_mb",
        running as u64,
        "kaya",
        median(&mut pss),
        "MB",
        false,
    );
    let mut private: Vec<f64> = shim_pids
        .iter()
        .filter_map(|pid| rollup_mb(*pid, &["Private_Clean:", "Private_Dirty:"]).ok())
        .collect();
    report.push_scaled(
        "shim_private_mb",
        running as u64,
        "kaya",
        median(&mut private),
        "MB",
        false,
    );
    Ok(())
}

pub fn run(quick: bool) -> anyhow::Result<BenchReport> {
    let plan = if quick {
        Plan {
            lifecycle_rounds: 5,
            pods: 10,
        }
    } else {
        Plan {
            lifecycle_rounds: 30,
            pods: 50,
        }
    };
    let mut report = BenchReport::new("pods");
    // First: libcontainer forks, which needs this process single-threaded.
    lifecycle(&mut report, &plan)?;
    pod_start(&mut report, &plan)?;
    Ok(report)
}
