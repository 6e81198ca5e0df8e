//! The libcontainer seam: create, start, exec into and delete one container (kaya-runtime's
//! steps; every call forks, so only a single-threaded process may use it), and the plain
//! file and fd work around a container that the shim does itself (pipes, pidfd, cgroups).
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::fcntl::OFlag;
use nix::unistd::{Pid, pipe2};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {id}: {action}: {source}")]
    Runtime {
        id: String,
        action: &'static str,
        source: Box<libcontainer::error::LibcontainerError>,
    },
    #[error("container {id} has no process")]
    NoProcess { id: String },
}

fn runtime(
    id: &str,
    action: &'static str,
) -> impl FnOnce(libcontainer::error::LibcontainerError) -> ContainerError {
    let id = id.to_string();
    move |source| ContainerError::Runtime {
        id,
        action,
        source: Box::new(source),
    }
}

/// Two pipes (stdout, stderr) as (read, write): the container's ends block as workloads
/// expect, the shim's read ends do not, so one loop can serve every container. (A plain
/// nix error: the shim calls this, and must not pull libcontainer's error types in.)
pub fn output_pipes() -> nix::Result<[(OwnedFd, OwnedFd); 2]> {
    let pipe = || -> nix::Result<(OwnedFd, OwnedFd)> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(
            read.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )?;
        Ok((read, write))
    };
    Ok([pipe()?, pipe()?])
}

/// A descriptor that becomes readable when `pid` exits, whether or not it raises SIGCHLD.
pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = nix::errno::Errno::result(fd)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Creates and starts the container described by `bundle/config.json` with the given
/// stdout and stderr; returns its init's pid.
pub fn start(
    runtime_root: &Path,
    id: &str,
    bundle: &Path,
    stdout_write: OwnedFd,
    stderr_write: OwnedFd,
) -> Result<Pid, ContainerError> {
    let mut container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(runtime_root)
        .map_err(runtime(id, "root path"))?
        .with_stdout(stdout_write)
        .with_stderr(stderr_write)
        .validate_id()
        .map_err(runtime(id, "id"))?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(runtime(id, "create"))?;
    if let Err(source) = container.start() {
        let _ = container.delete(true);
        return Err(runtime(id, "start")(source));
    }
    container
        .pid()
        .ok_or_else(|| ContainerError::NoProcess { id: id.to_string() })
}

fn load(runtime_root: &Path, id: &str) -> Result<Container, ContainerError> {
    Container::load(runtime_root.join(id)).map_err(runtime(id, "load"))
}

/// Removes an exited container's cgroup directories (`cgroup`, relative to each hierarchy)
/// in every hierarchy. A cgroup is briefly busy after its last task is reaped; this retries
/// every half millisecond, where libcontainer's own removal sleeps 10 ms and more.
pub fn remove_cgroup(cgroup: &str) {
    let relative = cgroup.trim_start_matches('/');
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut pending: Vec<PathBuf> = hierarchies
        .flatten()
        .map(|entry| entry.path().join(relative))
        .chain(std::iter::once(Path::new("/sys/fs/cgroup").join(relative)))
        .filter(|path| path.is_dir())
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    while !pending.is_empty() && std::time::Instant::now() < deadline {
        pending.retain(|path| std::fs::remove_dir(path).is_err() && path.exists());
        if !pending.is_empty() {
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }
}

/// Drops the state libcontainer keeps for a container whose processes have all exited and
/// whose cgroup is gone (what `delete` would do then, without loading libcontainer).
pub fn forget(runtime_root: &Path, id: &str) {
    let _ = std::fs::remove_dir_all(runtime_root.join(id));
}

/// Every process in the container's cgroup (from the first hierarchy that lists them).
pub fn cgroup_pids(cgroup: &str) -> Vec<Pid> {
    memory_cgroup_dirs(cgroup)
        .iter()
        .find_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
        .map(|procs| {
            procs
                .lines()
                .filter_map(|line| line.trim().parse().ok())
                .map(Pid::from_raw)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the container's state and cgroup (killing what is left).
pub fn delete(runtime_root: &Path, id: &str) -> Result<(), ContainerError> {
    let mut container = load(runtime_root, id)?;
    container.delete(true).map_err(runtime(id, "delete"))
}

/// Starts `command` inside a running container (exec probes, `kaya exec`); returns its pid.
pub fn exec(
    runtime_root: &Path,
    id: &str,
    command: &[String],
    stdout_write: OwnedFd,
    stderr_write: OwnedFd,
) -> Result<Pid, ContainerError> {
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(runtime_root)
        .map_err(runtime(id, "root path"))?
        .with_stdout(stdout_write)
        .with_stderr(stderr_write)
        .as_tenant()
        .with_container_args(command.to_vec())
        .with_detach(true)
        .build()
        .map_err(runtime(id, "exec"))
}

/// The cgroup v1 memory or v2 unified directory of a container's cgroup path.
pub fn memory_cgroup_dirs(cgroup: &str) -> [PathBuf; 3] {
    let relative = cgroup.trim_start_matches('/');
    [
        Path::new("/sys/fs/cgroup/memory").join(relative),
        Path::new("/sys/fs/cgroup/unified").join(relative),
        Path::new("/sys/fs/cgroup").join(relative),
    ]
}

/// How many times the kernel's OOM killer fired in the cgroup (v1 memory.oom_control or
/// v2 memory.events), read before the cgroup is deleted.
pub fn oom_kills(cgroup: &str) -> u64 {
    for dir in memory_cgroup_dirs(cgroup) {
        for file in ["memory.oom_control", "memory.events"] {
            if let Ok(text) = std::fs::read_to_string(dir.join(file))
                && let Some(count) = parse_oom_kill(&text)
            {
                return count;
            }
        }
    }
    0
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kill_counts_from_either_version() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
    }
}
