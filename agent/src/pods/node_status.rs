//! The Node object this kubelet reports: capacity and allocatable from the host, pressure
//! conditions with kubelet's default eviction thresholds, node info and the images held.
use crate::images::store::ImageRecord;
use serde_json::{Value, json};

/// kubelet's default hard eviction threshold `memory.available<100Mi`, held back from
/// allocatable and the line for MemoryPressure.
pub const MEMORY_RESERVE: u64 = 100 << 20;
/// `nodefs.available<10%`.
pub const DISK_PRESSURE_PERCENT: u64 = 10;
pub const MAX_PODS: u64 = 110;

/// What the host says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub cpus: u64,
    pub memory_total: u64,
    pub memory_available: u64,
    pub disk_total: u64,
    pub disk_available: u64,
    pub kernel: String,
    pub os_image: String,
}

impl HostFacts {
    /// Reads /proc/meminfo, the CPU count, statvfs of `disk` and os-release.
    pub fn gather(disk: &std::path::Path) -> HostFacts {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| -> u64 {
            meminfo
                .lines()
                .find_map(|line| {
                    line.strip_prefix(name)?
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
                * 1024
        };
        let (disk_total, disk_available) = nix::sys::statvfs::statvfs(disk)
            .map(|fs| {
                (
                    fs.blocks() * fs.fragment_size(),
                    fs.blocks_available() * fs.fragment_size(),
                )
            })
            .unwrap_or((0, 0));
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        HostFacts {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            memory_total: field("MemTotal:"),
            memory_available: field("MemAvailable:"),
            disk_total,
            disk_available,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            os_image: os_release
                .lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .unwrap_or("Linux")
                .trim_matches('"')
                .to_string(),
        }
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason, "message": message})
}

pub fn node_json(name: &str, ip: &str, host: &HostFacts, images: &[ImageRecord]) -> Value {
    let memory_pressure = host.memory_available < MEMORY_RESERVE;
    let disk_pressure =
        host.disk_total > 0 && host.disk_available * 100 < host.disk_total * DISK_PRESSURE_PERCENT;
    let ki = |bytes: u64| format!("{}Ki", bytes / 1024);
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        }},
        "status": {
            "capacity": {
                "cpu": host.cpus.to_string(),
                "memory": ki(host.memory_total),
                "ephemeral-storage": ki(host.disk_total),
                "pods": MAX_PODS.to_string(),
            },
            "allocatable": {
                "cpu": host.cpus.to_string(),
                "memory": ki(host.memory_total.saturating_sub(MEMORY_RESERVE)),
                "ephemeral-storage": ki(host.disk_total - host.disk_total * DISK_PRESSURE_PERCENT / 100),
                "pods": MAX_PODS.to_string(),
            },
            "conditions": [
                condition("MemoryPressure", memory_pressure,
                    if memory_pressure { "KubeletHasInsufficientMemory" } else { "KubeletHasSufficientMemory" },
                    if memory_pressure { "kubelet has insufficient memory available" } else { "kubelet has sufficient memory available" }),
                condition("DiskPressure", disk_pressure,
                    if disk_pressure { "KubeletHasDiskPressure" } else { "KubeletHasNoDiskPressure" },
                    if disk_pressure { "kubelet has disk pressure" } else { "kubelet has no disk pressure" }),
                condition("PIDPressure", false, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", true, "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kernelVersion": host.kernel,
                "osImage": host.os_image,
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": concat!("kaya://", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": concat!("kaya-", env!("CARGO_PKG_VERSION")),
            },
            "images": images.iter().map(|image| json!({"names": [image.image_id(), image.name], "sizeBytes": image.size})).collect::<Vec<_>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(memory_available: u64, disk_available: u64) -> HostFacts {
        HostFacts {
            cpus: 2,
            memory_total: 8 << 30,
            memory_available,
            disk_total: 100 << 30,
            disk_available,
            kernel: "6.18.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        }
    }

    #[test]
    fn capacity_allocatable_and_conditions() {
        let image = ImageRecord {
            name: "r/app:v1".into(),
            manifest: "sha256:ab".into(),
            config: String::new(),
            layers: vec![],
            size: 42,
        };
        let node = node_json("n1", "10.0.0.1", &host(4 << 30, 50 << 30), &[image]);
        let status = &node["status"];
        assert_eq!(status["capacity"]["cpu"], "2");
        assert_eq!(status["capacity"]["memory"], "8388608Ki");
        assert_eq!(
            status["allocatable"]["memory"], "8286208Ki",
            "100Mi held back for eviction"
        );
        assert_eq!(status["conditions"][3]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["images"][0]["names"][0], "r/app@sha256:ab");
        let pressed = node_json("n1", "10.0.0.1", &host(50 << 20, 5 << 30), &[]);
        assert_eq!(pressed["status"]["conditions"][0]["status"], "True");
        assert_eq!(pressed["status"]["conditions"][1]["status"], "True");
    }
}
