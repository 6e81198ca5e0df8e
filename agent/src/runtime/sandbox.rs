//! A pod's sandbox: network, IPC and UTS namespaces made once and kept alive by bind mounts
//! in the pod directory (as `ip netns add` does), so containers and CNI join them by path
//! and they outlive any one process — including the shim being restarted.
use super::plan::PodDir;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork, sethostname};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox: {call}: {source}")]
    Syscall {
        call: &'static str,
        source: nix::Error,
    },
    #[error("sandbox: namespace holder exited with {0:?}")]
    Holder(WaitStatus),
}

/// The namespaces a pod's containers share, with the flag that makes each.
pub fn kinds(host_network: bool) -> Vec<(&'static str, CloneFlags)> {
    let mut kinds = vec![("ipc", CloneFlags::CLONE_NEWIPC)];
    if !host_network {
        kinds.push(("net", CloneFlags::CLONE_NEWNET));
        kinds.push(("uts", CloneFlags::CLONE_NEWUTS));
    }
    kinds
}

/// Whether the sandbox namespaces already exist (a restarted shim reuses them).
pub fn exists(dir: &PodDir, host_network: bool) -> bool {
    kinds(host_network)
        .iter()
        .all(|(kind, _)| is_mount_point(&dir.namespace(kind)))
}

/// Makes the namespaces. Must be called from a single-threaded process: it forks.
pub fn create(dir: &PodDir, hostname: &str, host_network: bool) -> Result<(), SandboxError> {
    let ns_dir = dir.root.join("ns");
    fs::create_dir_all(&ns_dir).map_err(|source| SandboxError::Io {
        path: ns_dir.clone(),
        source,
    })?;
    let kinds = kinds(host_network);
    for (kind, _) in &kinds {
        let path = dir.namespace(kind);
        fs::write(&path, b"").map_err(|source| SandboxError::Io { path, source })?;
    }
    let flags = kinds
        .iter()
        .fold(CloneFlags::empty(), |all, (_, flag)| all | *flag);
    // SAFETY: the caller is single-threaded; the child only makes syscalls and exits.
    match unsafe { fork() }.map_err(|source| SandboxError::Syscall {
        call: "fork",
        source,
    })? {
        ForkResult::Child => {
            let made = unshare(flags).is_ok()
                && (host_network || sethostname(hostname).is_ok())
                && (host_network || loopback_up())
                && kinds.iter().all(|(kind, _)| {
                    let own = format!("/proc/self/ns/{kind}");
                    mount(
                        Some(own.as_str()),
                        &dir.namespace(kind),
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .is_ok()
                });
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
            unsafe { libc::_exit(if made { 0 } else { 1 }) }
        }
        ForkResult::Parent { child } => {
            match waitpid(child, None).map_err(|source| SandboxError::Syscall {
                call: "waitpid",
                source,
            })? {
                WaitStatus::Exited(_, 0) => Ok(()),
                other => {
                    remove(dir, host_network);
                    Err(SandboxError::Holder(other))
                }
            }
        }
    }
}

/// Unmounts the namespace files; the namespaces die with their last user.
pub fn remove(dir: &PodDir, host_network: bool) {
    for (kind, _) in kinds(host_network) {
        let path = dir.namespace(kind);
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = fs::remove_file(&path);
    }
}

/// Writes /etc/hosts, /etc/hostname and /etc/resolv.conf for the pod's containers.
pub fn write_etc(dir: &PodDir, hostname: &str, pod_ip: Option<&str>) -> Result<(), SandboxError> {
    let etc = dir.root.join("etc");
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SandboxError::Io { path, source }
    };
    fs::create_dir_all(&etc).map_err(io_error(&etc))?;
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = pod_ip {
        hosts.push_str(&format!("{ip}\t{hostname}\n"));
    }
    let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for (name, text) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", resolv),
    ] {
        let path = dir.etc_file(name);
        fs::write(&path, text).map_err(io_error(&path))?;
    }
    Ok(())
}

/// Brings `lo` up in the current network namespace (pods without CNI still have localhost).
fn loopback_up() -> bool {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq naming "lo"; the descriptor is
    // closed before returning.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if socket < 0 {
            return false;
        }
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let mut ok = libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request) == 0;
        if ok {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            ok = libc::ioctl(socket, libc::SIOCSIFFLAGS, &request) == 0;
        }
        libc::close(socket);
        ok
    }
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // A bound nsfs file lives on a different device than the directory holding it.
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(file), Some(Ok(parent))) => file.dev() != parent.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_network_pods_share_only_ipc() {
        let names = |host| {
            kinds(host)
                .into_iter()
                .map(|(name, _)| name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(true), ["ipc"]);
        assert_eq!(names(false), ["ipc", "net", "uts"]);
    }

    #[test]
    fn etc_files_name_the_pod() {
        let root = tempfile::tempdir().unwrap();
        let dir = PodDir {
            root: root.path().to_path_buf(),
        };
        write_etc(&dir, "web-0", Some("10.1.0.7")).unwrap();
        assert!(
            fs::read_to_string(dir.etc_file("hosts"))
                .unwrap()
                .contains("10.1.0.7\tweb-0\n")
        );
        assert_eq!(
            fs::read_to_string(dir.etc_file("hostname")).unwrap(),
            "web-0\n"
        );
        assert!(!exists(&dir, false));
    }
}
