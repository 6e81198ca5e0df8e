//! The per-pod shim: a small single-threaded process (libcontainer forks, which is unsafe
//! in the multi-threaded agent) that holds the pod's sandbox, runs its containers in order,
//! supervises and restarts them, writes their logs and reports status. It outlives agent
//! restarts; the agent finds it again through its pid file and socket.
pub mod capture;
pub mod probing;
pub mod slot;
pub mod step;

use crate::clock::{epoch_nanos, rfc3339};
use crate::runtime::cni;
use crate::runtime::plan::{PodDir, PodPlan};
use crate::runtime::protocol::{ShimRequest, ShimResponse};
use crate::runtime::status::{ContainerState, PodRuntimeStatus};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde_json::Value;
use slot::{PodContext, Slot};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};
use step::{StepOutput, StepRequest};

/// How often a sandbox that failed to come up is tried again.
const SANDBOX_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("reading plan {path:?}: {message}")]
    Plan { path: String, message: String },
    #[error("prctl(PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(std::io::Error),
    #[error("shim socket {path:?}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
}

pub struct Shim {
    dir: PodDir,
    plan: PodPlan,
    slots: Vec<Slot>,
    status: PodRuntimeStatus,
    cni_result: Option<Value>,
    sandbox_ready: bool,
    next_sandbox_try: Instant,
    listener: UnixListener,
    /// The kaya-runtime binary that performs the heavy steps.
    runtime: PathBuf,
    stopping: bool,
    pod_ip: String,
}

impl Shim {
    pub fn open(dir: PodDir) -> Result<Shim, ShimError> {
        step::become_subreaper().map_err(ShimError::Subreaper)?;
        let plan_path = dir.plan();
        let plan_error = |message: String| ShimError::Plan {
            path: plan_path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(&plan_path).map_err(|e| plan_error(e.to_string()))?;
        let plan: PodPlan =
            serde_json::from_slice(&bytes).map_err(|e| plan_error(e.to_string()))?;
        let socket = dir.socket();
        let _ = std::fs::remove_file(&socket);
        let socket_error = |source| ShimError::Socket {
            path: socket.display().to_string(),
            source,
        };
        let listener = UnixListener::bind(&socket).map_err(socket_error)?;
        listener.set_nonblocking(true).map_err(socket_error)?;
        let now = Instant::now();
        let slots: Vec<Slot> = plan
            .init_containers
            .iter()
            .map(|c| Slot::new(c, true, now))
            .chain(plan.containers.iter().map(|c| Slot::new(c, false, now)))
            .collect();
        let status = PodRuntimeStatus {
            start_time: Some(rfc3339(epoch_nanos(SystemTime::now()), 0)),
            shim_pid: std::process::id(),
            ..PodRuntimeStatus::default()
        };
        let cni_result = std::fs::read(dir.cni_result())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Ok(Shim {
            dir,
            plan,
            slots,
            status,
            cni_result,
            sandbox_ready: false,
            next_sandbox_try: now,
            listener,
            runtime: step::runtime_binary(),
            stopping: false,
            pod_ip: String::new(),
        })
    }

    /// Runs the pod until it is stopped and torn down.
    pub fn run(mut self) {
        loop {
            let now = Instant::now();
            if !self.sandbox_ready && !self.stopping && now >= self.next_sandbox_try {
                self.bring_up_sandbox();
            }
            if self.sandbox_ready && !self.stopping {
                self.start_due(now);
            }
            self.probe(now);
            self.enforce_deadlines(now);
            // Report what just changed before sleeping: a started container is news now.
            self.publish();
            self.wait(now);
            self.accept();
            if self.stopping && self.slots.iter().all(|slot| slot.run.is_none()) {
                self.tear_down();
                return;
            }
            self.publish();
        }
    }

    fn bring_up_sandbox(&mut self) {
        match self.sandbox() {
            Ok(()) => {
                self.sandbox_ready = true;
                self.status.sandbox_error = None;
            }
            Err(message) => {
                self.next_sandbox_try = Instant::now() + SANDBOX_RETRY;
                for slot in &mut self.slots {
                    slot.status.state = ContainerState::Waiting {
                        reason: "ContainerCreating".into(),
                        message: format!("failed to create pod sandbox: {message}"),
                    };
                }
                self.status.sandbox_error = Some(message);
            }
        }
    }

    fn sandbox(&mut self) -> Result<(), String> {
        let request = StepRequest::Sandbox {
            pod_dir: self.dir.root.clone(),
            cni_result: self.cni_result.clone(),
        };
        match step::run(&self.runtime, &request, None)? {
            StepOutput::Sandbox { cni_result } => self.cni_result = cni_result,
            other => return Err(format!("the sandbox step returned {other:?}")),
        }
        let ips = self
            .cni_result
            .as_ref()
            .map(cni::pod_ips)
            .unwrap_or_default();
        self.pod_ip = if self.plan.host_network {
            "127.0.0.1".to_string()
        } else {
            ips.first().cloned().unwrap_or_default()
        };
        self.status.pod_ips = ips;
        Ok(())
    }

    /// Init containers one at a time, in order; app containers once all init ones succeeded.
    fn start_due(&mut self, now: Instant) {
        let pod = PodContext {
            plan: &self.plan,
            dir: &self.dir,
            pod_ip: &self.pod_ip,
            runtime: &self.runtime,
        };
        if let Some(init) = self
            .slots
            .iter()
            .position(|slot| slot.init && !slot.succeeded())
        {
            if self.slots[init].done {
                // An init container failed for good: nothing else of this pod will run.
                for slot in &mut self.slots {
                    slot.next_start = None;
                }
                return;
            }
            let init = &mut self.slots[init];
            if init.run.is_none() && init.next_start.is_some_and(|at| at <= now) {
                init.start(&pod, now);
            }
            return;
        }
        self.status.initialized = true;
        for slot in self.slots.iter_mut().filter(|slot| !slot.init) {
            if slot.run.is_none() && slot.next_start.is_some_and(|at| at <= now) {
                slot.start(&pod, now);
            }
        }
    }

    fn probe(&mut self, now: Instant) {
        let pod = PodContext {
            plan: &self.plan,
            dir: &self.dir,
            pod_ip: &self.pod_ip,
            runtime: &self.runtime,
        };
        for slot in &mut self.slots {
            slot.probe(&pod, now);
        }
    }

    fn enforce_deadlines(&mut self, now: Instant) {
        for slot in &mut self.slots {
            slot.enforce_deadline(now);
        }
    }

    /// Sleeps until output, an exit, a request, or the next timer.
    fn wait(&mut self, now: Instant) {
        let mut deadline = now + Duration::from_secs(1);
        for slot in &self.slots {
            for at in [
                slot.next_start,
                slot.next_probe(),
                slot.run.as_ref().and_then(|run| run.kill_deadline),
            ]
            .into_iter()
            .flatten()
            {
                deadline = deadline.min(at);
            }
        }
        if !self.sandbox_ready {
            deadline = deadline.min(self.next_sandbox_try);
        }
        let timeout = deadline.saturating_duration_since(now);
        // Which slot each descriptor belongs to, and whether it is the exit notification.
        let mut owners = Vec::new();
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        for (index, slot) in self.slots.iter().enumerate() {
            if let Some(run) = &slot.run {
                fds.push(PollFd::new(run.pidfd.as_fd(), PollFlags::POLLIN));
                owners.push((index, true));
                for output in run.outputs.iter().flatten() {
                    fds.push(PollFd::new(output.as_fd(), PollFlags::POLLIN));
                    owners.push((index, false));
                }
            }
        }
        let poll_timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, poll_timeout).unwrap_or(0) == 0 {
            return;
        }
        let ready: Vec<(usize, bool)> = fds[1..]
            .iter()
            .zip(&owners)
            .filter(|(fd, _)| fd.revents().is_some_and(|events| !events.is_empty()))
            .map(|(_, owner)| *owner)
            .collect();
        drop(fds);
        let pod = PodContext {
            plan: &self.plan,
            dir: &self.dir,
            pod_ip: &self.pod_ip,
            runtime: &self.runtime,
        };
        for (index, exited) in ready {
            let slot = &mut self.slots[index];
            if exited {
                slot.reap(&pod, self.stopping);
            } else {
                slot.pump_logs();
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = self.serve(stream);
        }
    }

    fn serve(&mut self, stream: UnixStream) -> std::io::Result<()> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let response = match serde_json::from_str::<ShimRequest>(&line) {
            Err(error) => ShimResponse::Error {
                message: format!("bad request: {error}"),
            },
            Ok(ShimRequest::Stop { grace_secs }) => {
                self.stop(grace_secs);
                ShimResponse::Ok
            }
            Ok(ShimRequest::Exec {
                container,
                command,
                timeout_ms,
            }) => self.exec(&container, &command, timeout_ms),
        };
        let mut answer = serde_json::to_vec(&response).unwrap_or_default();
        answer.push(b'\n');
        (&stream).write_all(&answer)
    }

    fn stop(&mut self, grace_secs: Option<u64>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.status.terminating = true;
        let grace = Duration::from_secs(grace_secs.unwrap_or(self.plan.termination_grace_secs));
        let pod = PodContext {
            plan: &self.plan,
            dir: &self.dir,
            pod_ip: &self.pod_ip,
            runtime: &self.runtime,
        };
        for slot in &mut self.slots {
            slot.next_start = None;
            slot.kill(&pod, None, grace);
        }
        self.publish();
    }

    fn exec(&mut self, container: &str, command: &[String], timeout_ms: u64) -> ShimResponse {
        let Some(run) = self
            .slots
            .iter()
            .find(|slot| slot.plan.name == container)
            .and_then(|slot| slot.run.as_ref())
        else {
            return ShimResponse::Error {
                message: format!("container {container:?} is not running"),
            };
        };
        match capture::exec(
            &self.runtime,
            &self.dir.runtime_root(),
            &run.id,
            command,
            Duration::from_millis(timeout_ms),
        ) {
            Ok(captured) => ShimResponse::Exec {
                exit_code: if captured.timed_out {
                    124
                } else {
                    captured.exit_code
                },
                stdout: String::from_utf8_lossy(&captured.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&captured.stderr).into_owned(),
            },
            Err(message) => ShimResponse::Error { message },
        }
    }

    fn tear_down(&mut self) {
        let request = StepRequest::TearDown {
            pod_dir: self.dir.root.clone(),
            cni_result: self.cni_result.clone(),
        };
        if let Err(message) = step::run(&self.runtime, &request, None) {
            eprintln!("kaya-shim: {message}");
        }
        self.status.finished = true;
        self.publish();
        let _ = std::fs::remove_file(self.dir.socket());
        let _ = std::fs::remove_file(self.dir.pid());
    }

    fn publish(&mut self) {
        let restarts = !self.stopping
            && self
                .slots
                .iter()
                .any(|slot| slot.next_start.is_some() || slot.run.is_some());
        let (init, app): (Vec<&Slot>, Vec<&Slot>) = self.slots.iter().partition(|slot| slot.init);
        let mut status = self.status.clone();
        status.init_containers = init.iter().map(|slot| slot.status.clone()).collect();
        status.containers = app.iter().map(|slot| slot.status.clone()).collect();
        status.phase = status.compute_phase(restarts);
        if status != self.status {
            self.status = status;
            let _ = self.status.write(&self.dir.status());
        }
    }
}
