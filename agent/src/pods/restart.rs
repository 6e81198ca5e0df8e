//! When a container may run again: restartPolicy (Always, OnFailure, Never) and kubelet's
//! CrashLoopBackOff — the first crash restarts at once, then 10 s doubling to 300 s,
//! forgotten after 10 minutes of running.
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting starts its backoff afresh.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// The API spelling; absent means Always.
    pub fn parse(value: Option<&str>) -> Option<RestartPolicy> {
        match value.unwrap_or("Always") {
            "Always" => Some(RestartPolicy::Always),
            "OnFailure" => Some(RestartPolicy::OnFailure),
            "Never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }

    /// Whether a container that exited with `exit_code` runs again.
    pub fn restarts(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

/// What the supervisor does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Start again at this instant (reason CrashLoopBackOff while waiting).
    RestartAt(Instant),
    /// Stay terminated.
    Stay,
}

/// One container's restart history.
#[derive(Clone, Debug, Default)]
pub struct Backoff {
    /// The delay the next restart waits; `None`: the next restart is immediate.
    delay: Option<Duration>,
    pub restart_count: u32,
}

impl Backoff {
    /// The container started at `started` and exited at `exited` with `exit_code`.
    pub fn on_exit(
        &mut self,
        policy: RestartPolicy,
        exit_code: i32,
        started: Instant,
        exited: Instant,
    ) -> Next {
        if !policy.restarts(exit_code) {
            return Next::Stay;
        }
        if exited.saturating_duration_since(started) >= BACKOFF_RESET {
            self.delay = None;
        }
        // As kubelet: the first crash restarts at once, each later one waits, doubling.
        let wait = self.delay.unwrap_or(Duration::ZERO);
        self.delay = Some(match self.delay {
            None => INITIAL_BACKOFF,
            Some(previous) => (previous * 2).min(MAX_BACKOFF),
        });
        self.restart_count += 1;
        Next::RestartAt(exited + wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_which_exits_restart() {
        assert!(RestartPolicy::Always.restarts(0) && RestartPolicy::Always.restarts(1));
        assert!(!RestartPolicy::OnFailure.restarts(0) && RestartPolicy::OnFailure.restarts(137));
        assert!(!RestartPolicy::Never.restarts(1));
        assert_eq!(RestartPolicy::parse(None), Some(RestartPolicy::Always));
        assert_eq!(RestartPolicy::parse(Some("Sometimes")), None);
    }

    #[test]
    fn crash_loops_back_off_doubling_to_five_minutes_and_reset_after_ten_of_running() {
        let mut backoff = Backoff::default();
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..8 {
            let started = now;
            now += Duration::from_secs(1);
            match backoff.on_exit(RestartPolicy::Always, 1, started, now) {
                Next::RestartAt(at) => {
                    delays.push((at - now).as_secs());
                    now = at;
                }
                Next::Stay => panic!("Always restarts"),
            }
        }
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff.restart_count, 8);
        let started = now;
        now += BACKOFF_RESET;
        assert_eq!(
            backoff.on_exit(RestartPolicy::Always, 1, started, now),
            Next::RestartAt(now),
            "ten minutes of running forgets the backoff"
        );
        let started = now;
        now += Duration::from_secs(1);
        assert_eq!(
            backoff.on_exit(RestartPolicy::OnFailure, 2, started, now),
            Next::RestartAt(now + INITIAL_BACKOFF)
        );
        assert_eq!(
            backoff.on_exit(RestartPolicy::Never, 1, now, now),
            Next::Stay
        );
        assert_eq!(
            backoff.restart_count, 10,
            "a container that stays is not restarted"
        );
    }
}
