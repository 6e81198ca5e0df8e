//! The OCI runtime spec (config.json) for one container of a pod: the pod's shared
//! namespaces, its cgroup, the container's process, security settings and mounts.
use super::plan::{ContainerPlan, PodDir, PodPlan};
use crate::pods::resources::CFS_PERIOD_US;
use serde_json::{Value, json};

/// The capabilities containers get by default (containerd's and Docker's set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for privileged containers.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Default pids limit per container, so a fork bomb stays inside its pod.
pub const PIDS_LIMIT: i64 = 4096;

/// The cgroup path (relative to each hierarchy) of one container run.
pub fn container_cgroup(pod: &PodPlan, container_id: &str) -> String {
    format!("/{}/{container_id}", pod.cgroup)
}

pub fn runtime_spec(
    pod: &PodPlan,
    container: &ContainerPlan,
    dir: &PodDir,
    container_id: &str,
    rootfs: &str,
) -> Value {
    let security = &container.security;
    let capabilities: Vec<&str> = if security.privileged {
        ALL_CAPABILITIES.to_vec()
    } else {
        container
            .security
            .capabilities
            .iter()
            .map(String::as_str)
            .collect()
    };
    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    if !pod.host_network {
        namespaces.push(json!({"type": "network", "path": dir.namespace("net")}));
        namespaces.push(json!({"type": "uts", "path": dir.namespace("uts")}));
    }
    namespaces.push(json!({"type": "ipc", "path": dir.namespace("ipc")}));
    if !security.privileged {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if security.privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if security.privileged { "rw" } else { "ro" }]}),
    ];
    for file in ["hosts", "hostname", "resolv.conf"] {
        mounts.push(json!({"destination": format!("/etc/{file}"), "type": "bind", "source": dir.etc_file(file), "options": ["rbind", "rprivate", "rw"]}));
    }
    for mount in &container.mounts {
        let access = if mount.read_only { "ro" } else { "rw" };
        mounts.push(match mount.tmpfs_size {
            Some(size) => json!({"destination": mount.destination, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", access, format!("size={size}")]}),
            None => json!({"destination": mount.destination, "type": "bind", "source": mount.source, "options": ["rbind", "rprivate", access]}),
        });
    }

    let limits = &container.limits;
    let mut cpu = json!({"shares": limits.cpu_shares, "period": CFS_PERIOD_US});
    if let Some(quota) = limits.cpu_quota_us {
        cpu["quota"] = json!(quota);
    }
    let mut resources = json!({
        "cpu": cpu,
        "pids": {"limit": PIDS_LIMIT},
        "devices": [{"allow": security.privileged, "access": "rwm"}],
    });
    if let Some(memory) = limits.memory_limit {
        resources["memory"] = json!({"limit": memory});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": container_cgroup(pod, container_id),
        "resources": resources,
    });
    if !security.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }

    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": container.uid, "gid": container.gid},
            "args": container.args,
            "env": container.env,
            "cwd": if container.working_dir.is_empty() { "/" } else { &container.working_dir },
            "capabilities": {
                "bounding": capabilities,
                "effective": capabilities,
                "permitted": capabilities,
            },
            // No rlimits: containers inherit the node's, which a fixed value could exceed.
            "noNewPrivileges": security.no_new_privileges,
        },
        "root": {"path": rootfs, "readonly": security.read_only_root},
        "mounts": mounts,
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::resources::CgroupLimits;
    use crate::pods::restart::RestartPolicy;
    use crate::runtime::plan::{MountPlan, SecurityPlan};
    use std::path::{Path, PathBuf};

    fn plan(host_network: bool) -> (PodPlan, ContainerPlan) {
        let limits = CgroupLimits {
            cpu_shares: 256,
            cpu_quota_us: Some(50_000),
            memory_limit: Some(64 << 20),
        };
        let container = ContainerPlan {
            name: "app".into(),
            image: "busybox".into(),
            image_id: "busybox@sha256:00".into(),
            layers: vec![],
            args: vec!["sh".into()],
            env: vec!["A=1".into()],
            pod_ip_env: vec![],
            working_dir: String::new(),
            uid: 1000,
            gid: 1000,
            limits,
            security: SecurityPlan {
                capabilities: vec!["CAP_KILL".into()],
                read_only_root: true,
                ..SecurityPlan::default()
            },
            mounts: vec![MountPlan {
                source: PathBuf::from("/v/data"),
                destination: "/data".into(),
                read_only: true,
                tmpfs_size: None,
            }],
            probes: Default::default(),
            lifecycle: Default::default(),
        };
        let pod = PodPlan {
            uid: "u1".into(),
            namespace: "default".into(),
            name: "p".into(),
            hostname: "p".into(),
            host_network,
            restart_policy: RestartPolicy::Always,
            termination_grace_secs: 30,
            cgroup: "kubepods/burstable/podu1".into(),
            pod_limits: limits,
            network: None,
            log_dir: PathBuf::from("/var/log/pods/default_p_u1"),
            init_containers: vec![],
            containers: vec![container.clone()],
        };
        (pod, container)
    }

    #[test]
    fn joins_the_pod_namespaces_and_sets_limits() {
        let (pod, container) = plan(false);
        let dir = PodDir::new(Path::new("/run/kaya"), "u1");
        let spec = runtime_spec(&pod, &container, &dir, "c1", "/r");
        let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(
            namespaces.contains(&json!({"type": "network", "path": "/run/kaya/pods/u1/ns/net"}))
        );
        assert_eq!(spec["linux"]["cgroupsPath"], "/kubepods/burstable/podu1/c1");
        assert_eq!(
            spec["linux"]["resources"]["cpu"],
            json!({"shares": 256, "period": 100_000, "quota": 50_000})
        );
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(spec["process"]["user"], json!({"uid": 1000, "gid": 1000}));
        assert_eq!(
            spec["process"]["capabilities"]["effective"],
            json!(["CAP_KILL"])
        );
        assert_eq!(spec["root"]["readonly"], true);
        let data = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert_eq!(data["options"], json!(["rbind", "rprivate", "ro"]));
        assert_eq!(spec["process"]["cwd"], "/");
    }

    #[test]
    fn host_network_pods_keep_the_node_network_and_privileged_gets_everything() {
        let (pod, mut container) = plan(true);
        container.security.privileged = true;
        let spec = runtime_spec(
            &pod,
            &container,
            &PodDir::new(Path::new("/s"), "u1"),
            "c1",
            "/r",
        );
        let types: Vec<&str> = spec["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["pid", "mount", "ipc"]);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            ALL_CAPABILITIES.len()
        );
        assert!(spec["linux"].get("maskedPaths").is_none());
    }
}
