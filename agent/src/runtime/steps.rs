//! What `kaya-runtime` does for each step the shim hands it (see shim::step): the parts of
//! running a pod that need libcontainer, CNI, mounts or cgroups.
use crate::runtime::cni::{self, Attachment};
use crate::runtime::container;
use crate::runtime::plan::{PodDir, PodPlan};
use crate::runtime::rootfs::Rootfs;
use crate::runtime::shim::probing::USER_AGENT;
use crate::runtime::shim::step::{StepOutput, StepRequest};
use crate::runtime::spec::runtime_spec;
use crate::runtime::{pod_cgroup, sandbox};
use serde_json::Value;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A container's stdout and stderr, received as fds 3 and 4 for the steps that start one.
pub type Outputs = Option<[OwnedFd; 2]>;

/// Performs `request`.
pub fn perform(request: StepRequest, outputs: Outputs) -> Result<StepOutput, String> {
    match request {
        StepRequest::Sandbox {
            pod_dir,
            cni_result,
        } => {
            let (dir, plan) = open_pod(pod_dir)?;
            let cni_result = sandbox_up(&plan, &dir, cni_result)?;
            Ok(StepOutput::Sandbox { cni_result })
        }
        StepRequest::StartContainer {
            pod_dir,
            container,
            id,
            pod_ip,
        } => {
            let (dir, plan) = open_pod(pod_dir)?;
            let bundle = prepare_bundle(&plan, &dir, &container, &id, &pod_ip)?;
            start(&dir.runtime_root(), &id, &bundle, outputs)
        }
        StepRequest::StartBundle {
            runtime_root,
            id,
            bundle,
        } => start(&runtime_root, &id, &bundle, outputs),
        StepRequest::Exec {
            runtime_root,
            id,
            command,
        } => {
            let [stdout, stderr] = outputs.ok_or("exec: no output descriptors")?;
            container::exec(&runtime_root, &id, &command, stdout, stderr)
                .map(|pid| StepOutput::Started { pid: pid.as_raw() })
                .map_err(|error| error_chain(&error))
        }
        StepRequest::HttpsGet {
            url,
            headers,
            timeout_ms,
        } => https_get(&url, &headers, Duration::from_millis(timeout_ms))
            .map(|status| StepOutput::HttpStatus { status }),
        StepRequest::TearDown {
            pod_dir,
            cni_result,
        } => {
            let (dir, plan) = open_pod(pod_dir)?;
            tear_down(&plan, &dir, cni_result.as_ref());
            Ok(StepOutput::Done)
        }
    }
}

/// Every error in a chain, outermost first: libcontainer's top-level messages alone are vague.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// GET over TLS without checking the certificate (pods serve their own, as kubelet
/// assumes); returns the status code.
fn https_get(url: &str, headers: &[(String, String)], timeout: Duration) -> Result<u16, String> {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(true)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build()
        .into();
    let mut request = agent.get(url).header("User-Agent", USER_AGENT);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = request
        .call()
        .map_err(|error| format!("Get {url:?}: {error}"))?;
    Ok(response.status().as_u16())
}

/// The pod directory and the plan the agent left in it.
fn open_pod(root: PathBuf) -> Result<(PodDir, PodPlan), String> {
    let dir = PodDir { root };
    let plan = read_plan(&dir)?;
    Ok((dir, plan))
}

fn read_plan(dir: &PodDir) -> Result<PodPlan, String> {
    let path = dir.plan();
    let bytes = std::fs::read(&path).map_err(|e| format!("reading plan {path:?}: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("reading plan {path:?}: {e}"))
}

fn start(
    runtime_root: &Path,
    id: &str,
    bundle: &Path,
    outputs: Outputs,
) -> Result<StepOutput, String> {
    let [stdout, stderr] = outputs.ok_or("start: no output descriptors")?;
    // A run that died with its shim may have left its state behind under the same id.
    let _ = container::delete(runtime_root, id);
    container::start(runtime_root, id, bundle, stdout, stderr)
        .map(|pid| StepOutput::Started { pid: pid.as_raw() })
        .map_err(|error| error_chain(&error))
}

/// The container's overlay rootfs and runtime spec; returns the bundle directory.
fn prepare_bundle(
    pod: &PodPlan,
    dir: &PodDir,
    container: &str,
    id: &str,
    pod_ip: &str,
) -> Result<PathBuf, String> {
    let plan = pod
        .init_containers
        .iter()
        .chain(&pod.containers)
        .find(|plan| plan.name == container)
        .ok_or_else(|| format!("the plan has no container {container:?}"))?;
    let bundle = dir.container(container);
    let rootfs = Rootfs::at(&bundle);
    rootfs.remove();
    rootfs
        .mount(&plan.layers)
        .map_err(|error| error.to_string())?;
    let mut plan = plan.clone();
    let pod_ip_env: Vec<String> = plan
        .pod_ip_env
        .iter()
        .map(|name| format!("{name}={pod_ip}"))
        .collect();
    plan.env.extend(pod_ip_env);
    let spec = runtime_spec(pod, &plan, dir, id, &rootfs.merged.display().to_string());
    let config = bundle.join("config.json");
    std::fs::write(&config, spec.to_string())
        .map_err(|error| format!("writing {config:?}: {error}"))?;
    Ok(bundle)
}

fn attachment<'a>(plan: &'a PodPlan, netns: &'a Path) -> Attachment<'a> {
    Attachment {
        container_id: &plan.uid,
        netns,
        namespace: &plan.namespace,
        pod_name: &plan.name,
        pod_uid: &plan.uid,
    }
}

/// Pod cgroup, namespaces, CNI ADD (once: the result is kept for DEL), /etc files.
fn sandbox_up(
    plan: &PodPlan,
    dir: &PodDir,
    cached: Option<Value>,
) -> Result<Option<Value>, String> {
    pod_cgroup::create(&plan.cgroup, &plan.pod_limits).map_err(|e| e.to_string())?;
    if !sandbox::exists(dir, plan.host_network) {
        sandbox::create(dir, &plan.hostname, plan.host_network).map_err(|e| e.to_string())?;
    }
    let mut cni_result = cached;
    if let Some(network) = &plan.network
        && cni_result.is_none()
    {
        let netns = dir.namespace("net");
        let result = cni::add(network, &attachment(plan, &netns)).map_err(|e| e.to_string())?;
        let _ = std::fs::write(dir.cni_result(), result.to_string());
        cni_result = Some(result);
    }
    let pod_ip = cni_result
        .as_ref()
        .map(cni::pod_ips)
        .unwrap_or_default()
        .into_iter()
        .next();
    sandbox::write_etc(dir, &plan.hostname, pod_ip.as_deref()).map_err(|e| e.to_string())?;
    Ok(cni_result)
}

/// CNI DEL, rootfs unmounts, namespaces, the pod cgroup.
fn tear_down(plan: &PodPlan, dir: &PodDir, cni_result: Option<&Value>) {
    if let (Some(network), Some(_)) = (&plan.network, cni_result) {
        let netns = dir.namespace("net");
        if let Err(error) = cni::del(network, &attachment(plan, &netns), cni_result) {
            eprintln!("kaya-runtime: {error}");
        }
    }
    for container in plan.init_containers.iter().chain(&plan.containers) {
        Rootfs::at(&dir.container(&container.name)).remove();
    }
    sandbox::remove(dir, plan.host_network);
    pod_cgroup::remove(&plan.cgroup);
    let _ = std::fs::remove_dir_all(dir.runtime_root());
    let _ = std::fs::remove_file(dir.cni_result());
}
