//! Probe bookkeeping with Kubernetes' semantics: defaults (period 10 s, timeout 1 s,
//! success 1, failure 3), thresholds of consecutive results, and the startup probe gating
//! liveness and readiness until it succeeds.
use k8s_openapi::api::core::v1::Probe;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ProbeError {
    pub field: String,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeTiming {
    /// Reads a probe's timing with the API defaults; liveness and startup probes must have
    /// a success threshold of 1, as the API server enforces.
    pub fn from_k8s(probe: &Probe, kind: Kind, field: &str) -> Result<Self, ProbeError> {
        let fail = |name: &str, message: String| ProbeError {
            field: format!("{field}.{name}"),
            message,
        };
        let positive = |name: &str, value: Option<i32>, default: i32| -> Result<u32, ProbeError> {
            let value = value.unwrap_or(default);
            u32::try_from(value)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| fail(name, format!("{value} must be at least 1")))
        };
        let initial = probe.initial_delay_seconds.unwrap_or(0);
        let initial = u64::try_from(initial)
            .map_err(|_| fail("initialDelaySeconds", format!("{initial} is negative")))?;
        let success_threshold = positive("successThreshold", probe.success_threshold, 1)?;
        if kind != Kind::Readiness && success_threshold != 1 {
            return Err(fail(
                "successThreshold",
                format!("must be 1 for liveness and startup probes, not {success_threshold}"),
            ));
        }
        Ok(ProbeTiming {
            initial_delay: Duration::from_secs(initial),
            period: Duration::from_secs(
                positive("periodSeconds", probe.period_seconds, 10)?.into(),
            ),
            timeout: Duration::from_secs(
                positive("timeoutSeconds", probe.timeout_seconds, 1)?.into(),
            ),
            success_threshold,
            failure_threshold: positive("failureThreshold", probe.failure_threshold, 3)?,
        })
    }
}

/// What a run of results means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough consecutive results to change the state.
    Unchanged,
    Succeeded,
    /// Liveness/startup: restart the container; readiness: not ready.
    Failed,
}

/// Consecutive results of one probe; its state starts as failed for readiness (not ready
/// until proven) and as succeeded otherwise (alive until proven dead).
#[derive(Clone, Debug)]
pub struct ProbeState {
    timing: ProbeTiming,
    successes: u32,
    failures: u32,
    pub healthy: bool,
}

impl ProbeState {
    pub fn new(timing: ProbeTiming, kind: Kind) -> Self {
        ProbeState {
            timing,
            successes: 0,
            failures: 0,
            healthy: kind != Kind::Readiness && kind != Kind::Startup,
        }
    }

    /// Records one result; returns the verdict when it changes the state.
    pub fn record(&mut self, success: bool) -> Verdict {
        if success {
            (self.successes, self.failures) = (self.successes + 1, 0);
            if !self.healthy && self.successes >= self.timing.success_threshold {
                self.healthy = true;
                return Verdict::Succeeded;
            }
        } else {
            (self.successes, self.failures) = (0, self.failures + 1);
            if self.healthy && self.failures >= self.timing.failure_threshold {
                self.healthy = false;
                return Verdict::Failed;
            }
            if !self.healthy && self.failures == self.timing.failure_threshold {
                // A startup probe that never succeeded fails once, at its threshold.
                return Verdict::Failed;
            }
        }
        Verdict::Unchanged
    }
}

/// Whether liveness and readiness probes may run: only once the startup probe (if any)
/// has succeeded.
pub fn gated_by_startup(startup: Option<&ProbeState>) -> bool {
    startup.is_some_and(|s| !s.healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(yaml: &str, kind: Kind) -> Result<ProbeTiming, ProbeError> {
        ProbeTiming::from_k8s(
            &serde_yaml::from_str(yaml).unwrap(),
            kind,
            "spec.containers[0].livenessProbe",
        )
    }

    #[test]
    fn defaults_and_validation_follow_the_api() {
        let t = timing("{}", Kind::Liveness).unwrap();
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(
            (t.timeout, t.success_threshold, t.failure_threshold),
            (Duration::from_secs(1), 1, 3)
        );
        let err = timing("{successThreshold: 2}", Kind::Liveness).unwrap_err();
        assert!(
            err.field.ends_with("livenessProbe.successThreshold"),
            "{err}"
        );
        assert!(timing("{successThreshold: 2}", Kind::Readiness).is_ok());
        let err = timing("{periodSeconds: 0}", Kind::Readiness).unwrap_err();
        assert!(
            err.to_string().contains("periodSeconds") && err.to_string().contains("at least 1")
        );
        assert!(timing("{initialDelaySeconds: -1}", Kind::Startup).is_err());
    }

    #[test]
    fn liveness_fails_after_the_threshold_of_consecutive_failures() {
        let mut live = ProbeState::new(
            timing("{failureThreshold: 3}", Kind::Liveness).unwrap(),
            Kind::Liveness,
        );
        assert_eq!(live.record(false), Verdict::Unchanged);
        assert_eq!(live.record(false), Verdict::Unchanged);
        assert_eq!(
            live.record(true),
            Verdict::Unchanged,
            "a success resets the count"
        );
        assert_eq!(live.record(false), Verdict::Unchanged);
        assert_eq!(live.record(false), Verdict::Unchanged);
        assert_eq!(live.record(false), Verdict::Failed);
    }

    #[test]
    fn readiness_starts_unready_and_flips_both_ways() {
        let mut ready = ProbeState::new(
            timing(
                "{successThreshold: 2, failureThreshold: 1}",
                Kind::Readiness,
            )
            .unwrap(),
            Kind::Readiness,
        );
        assert!(!ready.healthy);
        assert_eq!(ready.record(true), Verdict::Unchanged);
        assert_eq!(ready.record(true), Verdict::Succeeded);
        assert_eq!(ready.record(false), Verdict::Failed);
        assert!(!ready.healthy);
    }

    #[test]
    fn startup_gates_the_others_until_it_succeeds_or_fails_at_its_threshold() {
        let mut startup = ProbeState::new(
            timing("{failureThreshold: 2}", Kind::Startup).unwrap(),
            Kind::Startup,
        );
        assert!(gated_by_startup(Some(&startup)));
        assert!(!gated_by_startup(None));
        assert_eq!(startup.record(false), Verdict::Unchanged);
        assert_eq!(startup.record(true), Verdict::Succeeded);
        assert!(!gated_by_startup(Some(&startup)));
        let mut never = ProbeState::new(
            timing("{failureThreshold: 2}", Kind::Startup).unwrap(),
            Kind::Startup,
        );
        assert_eq!(never.record(false), Verdict::Unchanged);
        assert_eq!(never.record(false), Verdict::Failed);
        assert_eq!(never.record(false), Verdict::Unchanged, "reported once");
    }
}
