//! kaya-runtime: performs one heavy step for a pod's shim and exits (see
//! runtime::shim::step): the JSON request is the only argument, the JSON result goes to
//! stdout, and steps that start a process receive its stdout and stderr as fds 3 and 4.
use kaya_agent::runtime::shim::step::StepRequest;
use kaya_agent::runtime::steps::{self, Outputs};
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

fn main() {
    let Some(argument) = std::env::args().nth(1) else {
        eprintln!("usage: kaya-runtime <step request as JSON>");
        std::process::exit(2);
    };
    let result = match serde_json::from_str::<StepRequest>(&argument) {
        Err(error) => Err(format!("bad step request: {error}")),
        Ok(request) => {
            log_to_pod(&request);
            let outputs: Outputs = match &request {
                StepRequest::StartContainer { .. }
                | StepRequest::StartBundle { .. }
                | StepRequest::Exec { .. } => {
                    // SAFETY: the shim hands these two descriptors to every such step and
                    // nothing else in this process owns them.
                    Some(unsafe { [OwnedFd::from_raw_fd(3), OwnedFd::from_raw_fd(4)] })
                }
                _ => None,
            };
            steps::perform(request, outputs)
        }
    };
    let encoded = serde_json::to_vec(&result).unwrap_or_default();
    let _ = std::io::stdout().write_all(&encoded);
}

/// libcontainer reports its failures through tracing. They go to the pod's shim.log by
/// its own descriptor, not fd 2: a container's init logs after its stderr became the
/// container's, and those lines must not end up in the container log.
fn log_to_pod(request: &StepRequest) {
    let log = match request {
        StepRequest::Sandbox { pod_dir, .. }
        | StepRequest::StartContainer { pod_dir, .. }
        | StepRequest::TearDown { pod_dir, .. } => pod_dir.join("shim.log"),
        // The runtime root sits in the pod directory, next to shim.log.
        StepRequest::StartBundle { runtime_root, .. } | StepRequest::Exec { runtime_root, .. } => {
            runtime_root.with_file_name("shim.log")
        }
        StepRequest::HttpsGet { .. } => return,
    };
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    else {
        return;
    };
    // A plain level, not an EnvFilter: its regex engine would cost megabytes.
    let level = std::env::var("KAYA_SHIM_LOG")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing::Level::WARN);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .init();
}
