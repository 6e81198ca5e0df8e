//! One container of a pod inside the shim: starting a run (rootfs, spec, libcontainer),
//! copying its output into the CRI log, reaping it, and deciding on restarts with backoff.
use super::capture::{self, Drained, exit_code};
use super::probing::{Prober, Target, perform};
use super::step::{self, StepOutput, StepRequest};
use crate::clock::{epoch_nanos, rfc3339};
use crate::pods::cri_log::{LogWriter, Stream};
use crate::pods::probe::{Kind, Verdict, gated_by_startup};
use crate::pods::restart::{Backoff, Next, RestartPolicy};
use crate::runtime::container;
use crate::runtime::plan::{ContainerPlan, PodDir, PodPlan};
use crate::runtime::spec::container_cgroup;
use crate::runtime::status::{ContainerState, ContainerStatus};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const LOG_MAX_BYTES: u64 = 10 << 20;
const LOG_MAX_FILES: usize = 5;

/// What a slot needs to know about its pod.
pub struct PodContext<'a> {
    pub plan: &'a PodPlan,
    pub dir: &'a PodDir,
    pub pod_ip: &'a str,
    /// The kaya-runtime binary that performs the heavy steps.
    pub runtime: &'a Path,
}

pub struct Run {
    pub id: String,
    pub pid: Pid,
    pub pidfd: OwnedFd,
    pub outputs: [Option<OwnedFd>; 2],
    log: Option<LogWriter>,
    started: Instant,
    started_at: String,
    cgroup: String,
    probers: Vec<Prober>,
    /// SIGTERM was sent; SIGKILL follows at this instant.
    pub kill_deadline: Option<Instant>,
    /// Why the shim is killing it (a failed liveness probe), for the terminated state.
    kill_message: Option<String>,
}

impl Run {
    /// A startup probe has yet to pass; it gates liveness and readiness.
    fn starting(&self) -> bool {
        gated_by_startup(
            self.probers
                .iter()
                .find(|p| p.kind == Kind::Startup)
                .map(|p| &p.state),
        )
    }
}

pub struct Slot {
    pub plan: ContainerPlan,
    pub init: bool,
    pub status: ContainerStatus,
    backoff: Backoff,
    pub run: Option<Run>,
    /// When the container next starts; `None`: not scheduled.
    pub next_start: Option<Instant>,
    /// Finished for good: an init container that succeeded, or one that will not restart.
    pub done: bool,
}

/// Signals the container as containerd does: SIGKILL reaches every process in its cgroup,
/// other signals its init only.
fn signal_container(run: &Run, signal: Signal) {
    let _ = nix::sys::signal::kill(run.pid, signal);
    if signal == Signal::SIGKILL {
        for pid in container::cgroup_pids(&run.cgroup) {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        }
    }
}

fn now_text() -> String {
    rfc3339(epoch_nanos(SystemTime::now()), 0)
}

impl Slot {
    pub fn new(plan: &ContainerPlan, init: bool, now: Instant) -> Slot {
        Slot {
            status: ContainerStatus::new(&plan.name, &plan.image, &plan.image_id),
            plan: plan.clone(),
            init,
            backoff: Backoff::default(),
            run: None,
            next_start: Some(now),
            done: false,
        }
    }

    /// Ran to completion with exit code 0 and will not run again.
    pub fn succeeded(&self) -> bool {
        self.done
            && matches!(
                self.status.state,
                ContainerState::Terminated { exit_code: 0, .. }
            )
    }

    fn policy(&self, pod: &PodPlan) -> RestartPolicy {
        // Init containers are retried until they succeed unless the pod never restarts.
        match (self.init, pod.restart_policy) {
            (true, RestartPolicy::Never) => RestartPolicy::Never,
            (true, _) => RestartPolicy::OnFailure,
            (false, policy) => policy,
        }
    }

    pub fn start(&mut self, pod: &PodContext<'_>, now: Instant) {
        self.next_start = None;
        let uid_prefix: String = pod
            .plan
            .uid
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let id = format!(
            "{uid_prefix}-{}-{}",
            self.plan.name, self.status.restart_count
        );
        match self.create(pod, &id) {
            Ok(run) => {
                self.status.container_id = Some(format!("kaya://{id}"));
                self.status.state = ContainerState::Running {
                    started_at: run.started_at.clone(),
                };
                self.status.started = !run.probers.iter().any(|p| p.kind == Kind::Startup);
                self.status.ready =
                    !self.init && !run.probers.iter().any(|p| p.kind == Kind::Readiness);
                self.run = Some(run);
                if let Some(hook) = self.plan.lifecycle.post_start.clone() {
                    let target = Target {
                        runtime_root: &pod.dir.runtime_root(),
                        container_id: &id,
                        pod_ip: pod.pod_ip,
                        runtime: pod.runtime,
                    };
                    if let Err(message) = perform(
                        &hook,
                        &target,
                        Duration::from_secs(pod.plan.termination_grace_secs.max(1)),
                    ) {
                        self.kill(
                            pod,
                            Some(format!("PostStartHookError: {message}")),
                            Duration::ZERO,
                        );
                    }
                }
            }
            Err(message) => {
                let at = now_text();
                self.status.container_id = Some(format!("kaya://{id}"));
                self.status.last_state = Some(ContainerState::Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "StartError".into(),
                    message: message.clone(),
                    started_at: at.clone(),
                    finished_at: at,
                });
                self.status.state = ContainerState::Waiting {
                    reason: "RunContainerError".into(),
                    message,
                };
                self.schedule(pod.plan, 128, now, now);
            }
        }
    }

    fn create(&self, pod: &PodContext<'_>, id: &str) -> Result<Run, String> {
        let [(stdout, stdout_write), (stderr, stderr_write)] =
            container::output_pipes().map_err(|error| format!("container {id}: pipe2: {error}"))?;
        let log_dir = pod.plan.log_dir.join(&self.plan.name);
        std::fs::create_dir_all(&log_dir)
            .map_err(|error| format!("creating {log_dir:?}: {error}"))?;
        let log_path = log_dir.join(format!("{}.log", self.status.restart_count));
        let log = LogWriter::open(&log_path, LOG_MAX_BYTES, LOG_MAX_FILES)
            .map_err(|error| error.to_string())?;
        let request = StepRequest::StartContainer {
            pod_dir: pod.dir.root.clone(),
            container: self.plan.name.clone(),
            id: id.to_string(),
            pod_ip: pod.pod_ip.to_string(),
        };
        let StepOutput::Started { pid } =
            step::run(pod.runtime, &request, Some([stdout_write, stderr_write]))?
        else {
            return Err(format!("container {id}: the start step returned no pid"));
        };
        let pid = Pid::from_raw(pid);
        let pidfd = container::pidfd_open(pid)
            .map_err(|error| format!("container {id}: pidfd_open: {error}"))?;
        let now = Instant::now();
        let probes = &self.plan.probes;
        let probers = [
            (Kind::Startup, &probes.startup),
            (Kind::Liveness, &probes.liveness),
            (Kind::Readiness, &probes.readiness),
        ]
        .into_iter()
        .filter_map(|(kind, plan)| plan.as_ref().map(|plan| Prober::new(kind, plan, now)))
        .collect();
        Ok(Run {
            id: id.to_string(),
            pid,
            pidfd,
            outputs: [Some(stdout), Some(stderr)],
            log: Some(log),
            started: now,
            started_at: now_text(),
            cgroup: container_cgroup(pod.plan, id),
            probers,
            kill_deadline: None,
            kill_message: None,
        })
    }

    /// Copies what the container wrote into its log.
    pub fn pump_logs(&mut self) {
        let Some(run) = &mut self.run else { return };
        for (index, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
            if let Some(fd) = &run.outputs[index] {
                let mut bytes = Vec::new();
                let state = capture::drain(fd, &mut bytes);
                if let Some(log) = &mut run.log
                    && !bytes.is_empty()
                {
                    let _ = log.write(stream, &bytes, SystemTime::now());
                }
                if matches!(state, Drained::Closed) {
                    run.outputs[index] = None;
                }
            }
        }
    }

    /// Asks the container to stop: preStop, SIGTERM, SIGKILL after `grace`.
    pub fn kill(&mut self, pod: &PodContext<'_>, message: Option<String>, grace: Duration) {
        let Some(run) = &mut self.run else { return };
        if run.kill_deadline.is_some() {
            return;
        }
        if let Some(hook) = &self.plan.lifecycle.pre_stop {
            let target = Target {
                runtime_root: &pod.dir.runtime_root(),
                container_id: &run.id,
                pod_ip: pod.pod_ip,
                runtime: pod.runtime,
            };
            let _ = perform(hook, &target, grace);
        }
        run.kill_message = message;
        let signal = if grace.is_zero() {
            Signal::SIGKILL
        } else {
            Signal::SIGTERM
        };
        signal_container(run, signal);
        run.kill_deadline = Some(Instant::now() + grace);
    }

    /// SIGKILL once the grace period is over.
    pub fn enforce_deadline(&mut self, now: Instant) {
        if let Some(run) = &mut self.run
            && run.kill_deadline.is_some_and(|deadline| now >= deadline)
        {
            signal_container(run, Signal::SIGKILL);
            run.kill_deadline = Some(now + Duration::from_secs(3600));
        }
    }

    /// Reaps the exited run, records how it ended and schedules what comes next.
    pub fn reap(&mut self, pod: &PodContext<'_>, stopping: bool) {
        self.pump_logs();
        let Some(mut run) = self.run.take() else {
            return;
        };
        let code = exit_code(waitpid(run.pid, Some(WaitPidFlag::__WALL)));
        let now = Instant::now();
        if let Some(log) = &mut run.log {
            let _ = log.finish(SystemTime::now());
        }
        let oom = container::oom_kills(&run.cgroup) > 0;
        container::remove_cgroup(&run.cgroup);
        container::forget(&pod.dir.runtime_root(), &run.id);
        let reason = if oom {
            "OOMKilled"
        } else if code == 0 {
            "Completed"
        } else {
            "Error"
        };
        self.status.state = ContainerState::Terminated {
            exit_code: code,
            signal: (code > 128).then_some(code - 128),
            reason: reason.into(),
            message: run.kill_message.unwrap_or_default(),
            started_at: run.started_at,
            finished_at: now_text(),
        };
        self.status.ready = false;
        self.status.started = false;
        if stopping {
            self.done = true;
        } else {
            self.schedule(pod.plan, code, run.started, now);
        }
    }

    fn schedule(&mut self, pod: &PodPlan, code: i32, started: Instant, exited: Instant) {
        if self.init && code == 0 {
            self.done = true;
            return;
        }
        match self
            .backoff
            .on_exit(self.policy(pod), code, started, exited)
        {
            Next::Stay => self.done = true,
            Next::RestartAt(at) => {
                self.next_start = Some(at);
                self.status.restart_count = self.backoff.restart_count;
                // A run that exited becomes lastState (a start error has set its own).
                if matches!(self.status.state, ContainerState::Terminated { .. }) {
                    self.status.last_state = Some(self.status.state.clone());
                }
                if at > exited {
                    let mut message = format!(
                        "back-off {}s restarting failed container={} pod={}_{}",
                        (at - exited).as_secs(),
                        self.plan.name,
                        pod.name,
                        pod.namespace
                    );
                    // A start error: keep its message visible next to the back-off.
                    if let ContainerState::Waiting { message: cause, .. } = &self.status.state {
                        message = format!("{message}: {cause}");
                    }
                    self.status.state = ContainerState::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message,
                    };
                }
            }
        }
    }

    /// Runs due probes; a failed liveness or startup probe kills the container.
    pub fn probe(&mut self, pod: &PodContext<'_>, now: Instant) {
        let Some(run) = &mut self.run else { return };
        if run.kill_deadline.is_some() {
            return;
        }
        let target = Target {
            runtime_root: &pod.dir.runtime_root(),
            container_id: &run.id,
            pod_ip: pod.pod_ip,
            runtime: pod.runtime,
        };
        let starting = run.starting();
        let mut kill_message = None;
        for prober in run
            .probers
            .iter_mut()
            .filter(|p| p.next <= now && (!starting || p.kind == Kind::Startup))
        {
            match (prober.kind, prober.run(&target, now)) {
                (Kind::Startup, Verdict::Succeeded) => self.status.started = true,
                (Kind::Readiness, Verdict::Succeeded) => self.status.ready = true,
                (Kind::Readiness, Verdict::Failed) => self.status.ready = false,
                (Kind::Liveness, Verdict::Failed) => {
                    kill_message =
                        Some("Container failed liveness probe, will be restarted".to_string())
                }
                (Kind::Startup, Verdict::Failed) => {
                    kill_message =
                        Some("Container failed startup probe, will be restarted".to_string())
                }
                _ => {}
            }
        }
        // A startup probe that passed is done for this run.
        run.probers
            .retain(|p| p.kind != Kind::Startup || !p.state.healthy);
        if kill_message.is_some() {
            let grace = Duration::from_secs(pod.plan.termination_grace_secs);
            self.kill(pod, kill_message, grace);
        }
    }

    /// The earliest instant a probe of this slot is due. While a startup probe has not
    /// passed, only it counts: the others are held back, however overdue.
    pub fn next_probe(&self) -> Option<Instant> {
        let run = self.run.as_ref()?;
        let starting = run.starting();
        run.probers
            .iter()
            .filter(|p| !starting || p.kind == Kind::Startup)
            .map(|p| p.next)
            .min()
    }
}
