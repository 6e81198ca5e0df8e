//! The shim's heavy steps (libcontainer, CNI, mounts, cgroups) run in a short-lived
//! `kaya-runtime` process, as conmon leaves them to runc: the long-lived shim never links
//! that code, so a running pod costs little memory. One JSON request in argv, one JSON
//! result on stdout; a container's stdout and stderr pipes are handed over as fds 3 and 4.
//!
//! Processes a step starts (a container's init, an exec'd process) are its children; when
//! the step exits they pass to the shim, which is their subreaper.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The binary that performs steps, found next to the shim.
pub const RUNTIME_BINARY: &str = "kaya-runtime";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StepRequest {
    /// Pod cgroup, sandbox namespaces, CNI ADD (unless `cni_result` is cached), /etc files.
    Sandbox {
        pod_dir: PathBuf,
        cni_result: Option<Value>,
    },
    /// Mounts the container's rootfs, writes its runtime spec and starts it (fds 3, 4).
    StartContainer {
        pod_dir: PathBuf,
        container: String,
        id: String,
        pod_ip: String,
    },
    /// Creates and starts the container of an existing bundle (fds 3, 4).
    StartBundle {
        runtime_root: PathBuf,
        id: String,
        bundle: PathBuf,
    },
    /// Starts a command in a running container (fds 3, 4).
    Exec {
        runtime_root: PathBuf,
        id: String,
        command: Vec<String>,
    },
    /// An HTTPS probe or hook (the certificate is not checked, as kubelet does not).
    HttpsGet {
        url: String,
        headers: Vec<(String, String)>,
        timeout_ms: u64,
    },
    /// CNI DEL, rootfs unmounts, namespaces, pod cgroup.
    TearDown {
        pod_dir: PathBuf,
        cni_result: Option<Value>,
    },
}

/// What a step hands back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StepOutput {
    Done,
    Sandbox { cni_result: Option<Value> },
    Started { pid: i32 },
    HttpStatus { status: u16 },
}

/// Makes the calling process the reaper of every process its steps leave behind.
pub fn become_subreaper() -> std::io::Result<()> {
    set_subreaper(true)
}

/// Whether orphans of this process's descendants come to it rather than to init.
pub fn set_subreaper(on: bool) -> std::io::Result<()> {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes one integer argument and changes only this process.
    let result = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, u64::from(on), 0, 0, 0) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The runtime binary next to the running executable.
pub fn runtime_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(RUNTIME_BINARY)))
        .unwrap_or_else(|| PathBuf::from(RUNTIME_BINARY))
}

/// Runs one step in `runtime` and waits for it; `outputs` become its fds 3 and 4.
pub fn run(
    runtime: &Path,
    request: &StepRequest,
    outputs: Option<[OwnedFd; 2]>,
) -> Result<StepOutput, String> {
    let what = request.name();
    let encoded = serde_json::to_string(request).map_err(|e| format!("{what}: {e}"))?;
    let mut command = Command::new(runtime);
    command
        .arg(encoded)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some([stdout, stderr]) = &outputs {
        let (stdout, stderr) = (stdout.as_raw_fd(), stderr.as_raw_fd());
        // SAFETY: between fork and exec the child only duplicates descriptors (dup2 is
        // async-signal-safe); dup2 also clears close-on-exec on the copies.
        unsafe {
            command.pre_exec(move || {
                for (from, to) in [(stdout, 3), (stderr, 4)] {
                    if libc::dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let output = command
        .output()
        .map_err(|e| format!("{what}: running {}: {e}", runtime.display()))?;
    drop(outputs);
    match serde_json::from_slice::<Result<StepOutput, String>>(&output.stdout) {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{what}: {} ended without a result ({}): {}",
            runtime.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

impl StepRequest {
    /// Names the step in messages.
    pub fn name(&self) -> &'static str {
        match self {
            StepRequest::Sandbox { .. } => "creating the pod sandbox",
            StepRequest::StartContainer { .. } | StepRequest::StartBundle { .. } => {
                "starting the container"
            }
            StepRequest::Exec { .. } => "exec",
            StepRequest::HttpsGet { .. } => "https probe",
            StepRequest::TearDown { .. } => "tearing the pod down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn teardown() -> StepRequest {
        StepRequest::TearDown {
            pod_dir: PathBuf::from("/nonexistent/pod"),
            cni_result: None,
        }
    }

    #[test]
    fn a_missing_runtime_is_named() {
        let error = run(Path::new("/nonexistent/kaya-runtime"), &teardown(), None).unwrap_err();
        assert!(
            error.starts_with("tearing the pod down: running /nonexistent/kaya-runtime:"),
            "{error}"
        );
    }

    #[test]
    fn a_runtime_that_answers_nothing_is_reported_with_its_exit_status() {
        let error = run(Path::new("/bin/false"), &teardown(), None).unwrap_err();
        assert!(
            error.starts_with(
                "tearing the pod down: /bin/false ended without a result (exit status: 1)"
            ),
            "{error}"
        );
    }

    #[test]
    fn requests_survive_the_trip_through_json() {
        let request = StepRequest::Exec {
            runtime_root: PathBuf::from("/run/pod/runtime"),
            id: "abc-app-0".into(),
            command: vec!["sh".into(), "-c".into(), "echo 'a b'".into()],
        };
        let encoded = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<StepRequest>(&encoded).unwrap(),
            request
        );
        let result: Result<StepOutput, String> = Ok(StepOutput::Started { pid: 42 });
        let encoded = serde_json::to_vec(&result).unwrap();
        assert_eq!(
            serde_json::from_slice::<Result<StepOutput, String>>(&encoded).unwrap(),
            result
        );
    }
}
