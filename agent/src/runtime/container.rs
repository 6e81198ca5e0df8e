//! The libcontainer seam: create, start, signal, exec into and delete one container. Every
//! call forks, so only the single-threaded shim may use it.
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
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
    #[error("container {id}: {call}: {source}")]
    Syscall {
        id: String,
        call: &'static str,
        source: nix::Error,
    },
    #[error("container {id} has no process")]
    NoProcess { id: String },
}

/// A started container process and the read ends of its output.
pub struct Started {
    pub pid: Pid,
    /// Becomes readable when the process exits (it is a CLONE_PARENT child without SIGCHLD).
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
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

/// Two pipes (stdout, stderr): the container's ends block as workloads expect, the shim's
/// read ends do not, so one loop can serve every container.
fn output_pipes(id: &str) -> Result<[(OwnedFd, OwnedFd); 2], ContainerError> {
    let syscall = |call| {
        move |source| ContainerError::Syscall {
            id: id.to_string(),
            call,
            source,
        }
    };
    let pipe = || -> Result<(OwnedFd, OwnedFd), ContainerError> {
        let (read, write) = pipe2(OFlag::O_CLOEXEC).map_err(syscall("pipe2"))?;
        nix::fcntl::fcntl(
            read.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        )
        .map_err(syscall("fcntl"))?;
        Ok((read, write))
    };
    Ok([pipe()?, pipe()?])
}

pub fn pidfd_open(pid: Pid) -> nix::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let fd = nix::errno::Errno::result(fd)?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Creates and starts the container described by `bundle/config.json`.
pub fn start(runtime_root: &Path, id: &str, bundle: &Path) -> Result<Started, ContainerError> {
    let [(stdout_read, stdout_write), (stderr_read, stderr_write)] = output_pipes(id)?;
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
    let pid = container
        .pid()
        .ok_or_else(|| ContainerError::NoProcess { id: id.to_string() })?;
    let pidfd = pidfd_open(pid).map_err(|source| ContainerError::Syscall {
        id: id.to_string(),
        call: "pidfd_open",
        source,
    })?;
    Ok(Started {
        pid,
        pidfd,
        stdout: stdout_read,
        stderr: stderr_read,
    })
}

fn load(runtime_root: &Path, id: &str) -> Result<Container, ContainerError> {
    Container::load(runtime_root.join(id)).map_err(runtime(id, "load"))
}

/// Signals every process of the container.
pub fn kill(runtime_root: &Path, id: &str, signal: Signal) -> Result<(), ContainerError> {
    let mut container = load(runtime_root, id)?;
    container.kill(signal, true).map_err(runtime(id, "kill"))
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

/// Removes the container's state and cgroup (killing what is left).
pub fn delete(runtime_root: &Path, id: &str) -> Result<(), ContainerError> {
    let mut container = load(runtime_root, id)?;
    container.delete(true).map_err(runtime(id, "delete"))
}

/// A process started inside a running container (exec probes, `kaya exec`).
pub struct Exec {
    pub pid: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub fn exec(runtime_root: &Path, id: &str, command: &[String]) -> Result<Exec, ContainerError> {
    let [(stdout_read, stdout_write), (stderr_read, stderr_write)] = output_pipes(id)?;
    let pid = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(DefaultExecutor {})
        .with_root_path(runtime_root)
        .map_err(runtime(id, "root path"))?
        .with_stdout(stdout_write)
        .with_stderr(stderr_write)
        .as_tenant()
        .with_container_args(command.to_vec())
        .with_detach(true)
        .build()
        .map_err(runtime(id, "exec"))?;
    Ok(Exec {
        pid,
        stdout: stdout_read,
        stderr: stderr_read,
    })
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
