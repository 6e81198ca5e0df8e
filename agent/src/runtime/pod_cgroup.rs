//! The pod-level cgroup (`kubepods/<qos>/pod<uid>`): the pod's summed limits, above its
//! containers' own cgroups, on whichever cgroup version the host runs (cgroups-rs).
use crate::pods::resources::{CFS_PERIOD_US, CgroupLimits};
use cgroups_rs::fs::{Cgroup, cpu::CpuController, hierarchies, memory::MemController};

#[derive(Debug, thiserror::Error)]
#[error("pod cgroup {path}: {action}: {source}")]
pub struct PodCgroupError {
    path: String,
    action: &'static str,
    source: cgroups_rs::fs::error::Error,
}

pub fn create(path: &str, limits: &CgroupLimits) -> Result<(), PodCgroupError> {
    let fail = |action| {
        move |source| PodCgroupError {
            path: path.to_string(),
            action,
            source,
        }
    };
    let cgroup = Cgroup::new(hierarchies::auto(), path).map_err(fail("create"))?;
    if let Some(cpu) = cgroup.controller_of::<CpuController>() {
        cpu.set_shares(limits.cpu_shares)
            .map_err(fail("cpu shares"))?;
        let quota = limits.cpu_quota_us.map_or(-1, |quota| quota as i64);
        cpu.set_cfs_quota_and_period(Some(quota), Some(CFS_PERIOD_US))
            .map_err(fail("cpu quota"))?;
    }
    if let (Some(memory), Some(limit)) =
        (cgroup.controller_of::<MemController>(), limits.memory_limit)
    {
        memory
            .set_limit(limit as i64)
            .map_err(fail("memory limit"))?;
    }
    Ok(())
}

pub fn remove(path: &str) {
    let cgroup = Cgroup::load(hierarchies::auto(), path);
    let _ = cgroup.delete();
}
