//! Network namespaces owned by one test, named with a unique prefix and removed on drop,
//! plus running code inside a namespace from a dedicated thread.
use anyhow::{Context, bail};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Every namespace a test creates starts with this, then the test process's pid, so a
/// sweeper can tell leftovers of dead test runs from namespaces of running ones.
pub const PREFIX: &str = "kyt-";
const NETNS_DIR: &str = "/var/run/netns";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique tag for this process: `<pid>x<counter>`.
pub fn unique_tag() -> String {
    format!(
        "{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[derive(Debug)]
pub struct TestNetns {
    name: String,
}

impl TestNetns {
    /// Creates `kyt-<pid>-<label>` with loopback up.
    pub fn create(label: &str) -> anyhow::Result<Self> {
        let name = format!("{PREFIX}{}-{label}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = TestNetns { name };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a program inside this namespace (entered between fork and exec) for its stdout.
    pub fn run_command(&self, argv: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]);
        enter_on_exec(&mut command, &self.path())?;
        run(&mut command)
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates stay here.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        in_netns(&self.path(), f)
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("spawning {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `f` on a fresh thread that has setns'd into the namespace at `path`.
pub fn in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::thread::spawn(move || -> anyhow::Result<T> {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        Ok(f())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread in netns panicked"))?
}

/// Spawns a thread inside the namespace and returns its handle (for long-running work).
pub fn spawn_in_netns<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<std::thread::JoinHandle<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("setns into test netns");
        f()
    }))
}

/// Deletes namespaces left by test processes that no longer exist.
pub fn sweep() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}

/// Makes `command` enter the network namespace at `netns` and die if the test dies.
pub fn enter_on_exec(command: &mut Command, netns: &Path) -> anyhow::Result<()> {
    let file: OwnedFd = std::fs::File::open(netns)
        .with_context(|| format!("opening {}", netns.display()))?
        .into();
    let raw = file.as_raw_fd();
    // SAFETY: only async-signal-safe calls (setns, prctl) between fork and exec; the fd stays
    // open in the parent until the Command is dropped because the closure owns it.
    unsafe {
        command.pre_exec(move || {
            let _keep = &file;
            if libc::setns(raw, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Makes `command` move itself into `cgroup` between fork and exec.
pub fn join_cgroup_on_exec(command: &mut Command, cgroup: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(cgroup.join("cgroup.procs").as_os_str().as_bytes())?;
    // SAFETY: only open/write/close (async-signal-safe) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // "0" moves the writing process itself.
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
