//! Collects the output and exit status of a short-lived process in a container (exec
//! probes, hooks, `kaya exec`) within a deadline, killing it when the deadline passes.
use super::step::{self, StepOutput, StepRequest};
use crate::runtime::container;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Output kept per stream; more is dropped (exec is for short answers).
const MAX_OUTPUT: usize = 1 << 20;

pub struct Captured {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub timed_out: bool,
}

pub fn exec(
    runtime: &Path,
    runtime_root: &Path,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<Captured, String> {
    let [(stdout, stdout_write), (stderr, stderr_write)] = container::output_pipes()
        .map_err(|error| format!("exec in {container_id}: pipe2: {error}"))?;
    let request = StepRequest::Exec {
        runtime_root: runtime_root.to_path_buf(),
        id: container_id.to_string(),
        command: command.to_vec(),
    };
    let StepOutput::Started { pid } =
        step::run(runtime, &request, Some([stdout_write, stderr_write]))?
    else {
        return Err(format!("exec in {container_id}: the step returned no pid"));
    };
    // The step has exited, so the process is the shim's own child now (its subreaper).
    let pid = Pid::from_raw(pid);
    let deadline = Instant::now() + timeout;
    let mut outputs = [Some(stdout), Some(stderr)];
    let mut buffers = [Vec::new(), Vec::new()];
    let mut timed_out = false;
    while outputs.iter().any(Option::is_some) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            let _ = kill(pid, Signal::SIGKILL);
            break;
        }
        read_ready(&mut outputs, &mut buffers, left);
    }
    let status = waitpid(pid, Some(WaitPidFlag::__WALL));
    Ok(Captured {
        exit_code: exit_code(status),
        stdout: buffers[0].clone(),
        stderr: buffers[1].clone(),
        timed_out,
    })
}

/// Waits up to `wait` for output and appends what is there; a closed stream becomes `None`.
fn read_ready(outputs: &mut [Option<OwnedFd>; 2], buffers: &mut [Vec<u8>; 2], wait: Duration) {
    let mut fds: Vec<PollFd> = outputs
        .iter()
        .flatten()
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    let timeout =
        PollTimeout::try_from(wait.min(Duration::from_millis(100))).unwrap_or(PollTimeout::MAX);
    if poll(&mut fds, timeout).unwrap_or(0) == 0 {
        return;
    }
    drop(fds);
    for (slot, buffer) in outputs.iter_mut().zip(buffers.iter_mut()) {
        if let Some(fd) = slot {
            match drain(fd, buffer) {
                Drained::Closed => *slot = None,
                Drained::Open => {}
            }
        }
    }
}

pub enum Drained {
    Open,
    Closed,
}

/// Reads everything available from a non-blocking descriptor.
pub fn drain(fd: &OwnedFd, into: &mut Vec<u8>) -> Drained {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut chunk) {
            Ok(0) => return Drained::Closed,
            Ok(read) => {
                if into.len() < MAX_OUTPUT {
                    into.extend_from_slice(&chunk[..read]);
                }
            }
            Err(nix::Error::EINTR) => continue,
            Err(nix::Error::EAGAIN) => return Drained::Open,
            Err(_) => return Drained::Closed,
        }
    }
}

/// Kubernetes' exit codes: the process's own, or 128 + the signal that killed it.
pub fn exit_code(status: nix::Result<WaitStatus>) -> i32 {
    match status {
        Ok(WaitStatus::Exited(_, code)) => code,
        Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
        _ => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::Pid;

    #[test]
    fn exit_codes_follow_kubernetes() {
        assert_eq!(exit_code(Ok(WaitStatus::Exited(Pid::from_raw(1), 3))), 3);
        assert_eq!(
            exit_code(Ok(WaitStatus::Signaled(
                Pid::from_raw(1),
                Signal::SIGKILL,
                false
            ))),
            137
        );
        assert_eq!(exit_code(Err(nix::Error::ECHILD)), 255);
    }
}
