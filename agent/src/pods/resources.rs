//! Container and pod resources as Kubernetes defines them: requests default to limits, the
//! pod's QoS class, and the cgroup values kubelet derives (cgroup v1 cpu.shares and CFS
//! quota, v2 cpu.weight and cpu.max, memory limit) for containers and the pod cgroup.
use k8s_openapi::api::core::v1::{Container, ResourceRequirements};

use super::quantity::{self, QuantityError};

/// The CFS period kubelet uses (100 ms), and its floor on quotas.
pub const CFS_PERIOD_US: u64 = 100_000;
const MIN_QUOTA_US: u64 = 1_000;
/// cpu.shares bounds (kernel) and the value for "no request".
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {source}")]
pub struct ResourceError {
    pub field: String,
    pub source: QuantityError,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// As the API spells it in `status.qosClass`.
    pub fn name(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// One container's CPU (millicores) and memory (bytes); a request absent but a limit set
/// defaults to the limit, as the API server does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerResources {
    pub cpu_request: Option<u64>,
    pub cpu_limit: Option<u64>,
    pub memory_request: Option<u64>,
    pub memory_limit: Option<u64>,
}

impl ContainerResources {
    /// Reads `container.resources`; `field` names the container in errors
    /// (`spec.containers[0]`).
    pub fn from_container(container: &Container, field: &str) -> Result<Self, ResourceError> {
        let empty = ResourceRequirements::default();
        let resources = container.resources.as_ref().unwrap_or(&empty);
        let read = |kind: &str, name: &str, parse: fn(&str) -> Result<u64, QuantityError>| {
            let list = if kind == "limits" {
                resources.limits.as_ref()
            } else {
                resources.requests.as_ref()
            };
            (list.and_then(|l| l.get(name)))
                .map(|q| {
                    parse(&q.0).map_err(|source| ResourceError {
                        field: format!("{field}.resources.{kind}.{name}"),
                        source,
                    })
                })
                .transpose()
        };
        let cpu_limit = read("limits", "cpu", quantity::millicores)?;
        let memory_limit = read("limits", "memory", quantity::bytes)?;
        Ok(ContainerResources {
            cpu_request: read("requests", "cpu", quantity::millicores)?.or(cpu_limit),
            cpu_limit,
            memory_request: read("requests", "memory", quantity::bytes)?.or(memory_limit),
            memory_limit,
        })
    }

    fn is_empty(&self) -> bool {
        *self == ContainerResources::default()
    }

    fn is_guaranteed(&self) -> bool {
        self.cpu_limit.is_some()
            && self.memory_limit.is_some()
            && self.cpu_request == self.cpu_limit
            && self.memory_request == self.memory_limit
    }
}

/// The pod's QoS class from all its containers (init containers included).
pub fn qos_class(containers: &[ContainerResources]) -> QosClass {
    if containers.iter().all(ContainerResources::is_empty) {
        QosClass::BestEffort
    } else if containers.iter().all(ContainerResources::is_guaranteed) {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// CPU and memory settings for one cgroup, independent of the cgroup version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CgroupLimits {
    /// cgroup v1 cpu.shares.
    pub cpu_shares: u64,
    /// CFS quota per `CFS_PERIOD_US`; `None`: unlimited.
    pub cpu_quota_us: Option<u64>,
    /// memory limit in bytes; `None`: unlimited.
    pub memory_limit: Option<u64>,
}

impl CgroupLimits {
    /// cgroup v2 cpu.weight for these shares (the conversion runc and kubelet use).
    pub fn cpu_weight(&self) -> u64 {
        1 + ((self.cpu_shares - MIN_SHARES) * 9_999) / (MAX_SHARES - MIN_SHARES)
    }

    /// cgroup v2 cpu.max.
    pub fn cpu_max(&self) -> String {
        match self.cpu_quota_us {
            Some(quota) => format!("{quota} {CFS_PERIOD_US}"),
            None => format!("max {CFS_PERIOD_US}"),
        }
    }
}

fn shares(millicores: Option<u64>) -> u64 {
    (millicores.unwrap_or(0) * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

fn quota(millicores: Option<u64>) -> Option<u64> {
    millicores.map(|m| (m * CFS_PERIOD_US / 1000).max(MIN_QUOTA_US))
}

/// A container's cgroup: shares from its CPU request, quota and memory from its limits.
pub fn container_limits(resources: &ContainerResources) -> CgroupLimits {
    CgroupLimits {
        cpu_shares: shares(resources.cpu_request),
        cpu_quota_us: quota(resources.cpu_limit),
        memory_limit: resources.memory_limit,
    }
}

/// The pod cgroup over its app containers: shares from the summed requests; a quota and a
/// memory limit only when every container has one (otherwise one unlimited container makes
/// the pod unlimited).
pub fn pod_limits(containers: &[ContainerResources]) -> CgroupLimits {
    let sum = |value: fn(&ContainerResources) -> Option<u64>| -> Option<u64> {
        containers.iter().map(value).sum()
    };
    let requested: u64 = containers.iter().filter_map(|c| c.cpu_request).sum();
    CgroupLimits {
        cpu_shares: shares(Some(requested)),
        cpu_quota_us: quota(sum(|c| c.cpu_limit)),
        memory_limit: sum(|c| c.memory_limit),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> ContainerResources {
        let container: Container =
            serde_yaml::from_str(&format!("name: c\nresources: {yaml}")).unwrap();
        ContainerResources::from_container(&container, "spec.containers[0]").unwrap()
    }

    #[test]
    fn requests_default_to_limits_and_qos_follows_the_api_rules() {
        let guaranteed = container("{limits: {cpu: 500m, memory: 128Mi}}");
        assert_eq!(guaranteed.cpu_request, Some(500));
        assert_eq!(guaranteed.memory_request, Some(128 << 20));
        let burstable = container("{requests: {cpu: 100m}}");
        let empty = container("{}");
        assert_eq!(qos_class(&[guaranteed, guaranteed]), QosClass::Guaranteed);
        assert_eq!(qos_class(&[guaranteed, burstable]), QosClass::Burstable);
        assert_eq!(qos_class(&[guaranteed, empty]), QosClass::Burstable);
        assert_eq!(qos_class(&[empty, empty]), QosClass::BestEffort);
        let unequal =
            container("{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 200m, memory: 64Mi}}");
        assert_eq!(qos_class(&[unequal]), QosClass::Burstable);
        assert_eq!(QosClass::BestEffort.name(), "BestEffort");
    }

    #[test]
    fn cgroup_values_match_kubelets_conversions() {
        let one_cpu = container_limits(&container("{limits: {cpu: '1', memory: 1Gi}}"));
        assert_eq!(one_cpu.cpu_shares, 1024);
        assert_eq!(one_cpu.cpu_quota_us, Some(100_000));
        assert_eq!(one_cpu.cpu_weight(), 39);
        assert_eq!(one_cpu.cpu_max(), "100000 100000");
        assert_eq!(one_cpu.memory_limit, Some(1 << 30));
        let small = container_limits(&container("{requests: {cpu: 100m}, limits: {cpu: 1m}}"));
        assert_eq!(small.cpu_shares, 102);
        assert_eq!(small.cpu_weight(), 4);
        assert_eq!(small.cpu_quota_us, Some(1_000), "quota floor");
        let none = container_limits(&container("{}"));
        assert_eq!((none.cpu_shares, none.cpu_weight()), (2, 1));
        assert_eq!(none.cpu_max(), "max 100000");
        assert_eq!(none.memory_limit, None);
        assert_eq!(
            container_limits(&container("{requests: {cpu: '1000'}}")).cpu_shares,
            262_144
        );
    }

    #[test]
    fn pod_cgroup_sums_and_one_unlimited_container_unlimits_it() {
        let a = container("{limits: {cpu: 500m, memory: 128Mi}}");
        let b = container("{limits: {cpu: 250m, memory: 64Mi}}");
        let pod = pod_limits(&[a, b]);
        assert_eq!(pod.cpu_shares, 768);
        assert_eq!(pod.cpu_quota_us, Some(75_000));
        assert_eq!(pod.memory_limit, Some(192 << 20));
        let open = pod_limits(&[a, container("{requests: {cpu: 250m}}")]);
        assert_eq!((open.cpu_quota_us, open.memory_limit), (None, None));
        assert_eq!(open.cpu_shares, 768);
    }

    #[test]
    fn malformed_quantities_name_the_field() {
        let container: Container =
            serde_yaml::from_str("name: c\nresources: {limits: {memory: 12Q}}").unwrap();
        let err = ContainerResources::from_container(&container, "spec.containers[1]")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec.containers[1].resources.limits.memory") && err.contains("12Q"),
            "{err}"
        );
    }
}
