//! A kaya-control-plane process for API tests: its own data directory, a loopback port,
//! the admin kubeconfig it writes, and kubectl 1.20 (Debian's kubernetes-client, unpacked
//! by `cargo xtask setup`) pointed at it. Killed by pid when dropped.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::binaries::workspace_binary;

/// Where setup unpacks Debian's kubernetes-client (kubectl 1.20): the machine's
/// /usr/bin/kubectl may be another version or package.
pub const KUBECTL: &str = "/opt/kaya/kubernetes-client/usr/bin/kubectl";
/// Debian's interpreter, which sees python3-kubernetes.
pub const PYTHON: &str = "/usr/bin/python3";

pub struct ControlPlaneProcess {
    child: Option<Child>,
    dir: TempDir,
    store: Option<String>,
    pub address: String,
    pub kubeconfig: PathBuf,
    /// host:port of the node API (gRPC).
    pub node_api: String,
    extra_args: Vec<String>,
}

struct Started {
    child: Child,
    address: String,
    kubeconfig: PathBuf,
    node_api: String,
}

fn spawn(
    dir: &Path,
    store: Option<&str>,
    listen: &str,
    node_api: &str,
    extra: &[String],
) -> anyhow::Result<Started> {
    let mut command = Command::new(workspace_binary("kaya-control-plane"));
    command
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", listen, "--node-api-listen", node_api])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("control-plane.log"))?);
    if let Some(store) = store {
        command.args(["--store", store]);
    }
    let mut child = command.spawn().context("starting kaya-control-plane")?;
    let stdout = child.stdout.take().context("control plane stdout")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = sender.send(line);
        }
        // Keep reading so the process never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match receiver.recv_timeout(Duration::from_secs(60)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.join("control-plane.log")).unwrap_or_default();
            bail!("kaya-control-plane did not start:\n{log}");
        }
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let [
        "listening",
        "on",
        address,
        "kubeconfig",
        kubeconfig,
        "node-api",
        node_api,
    ] = words.as_slice()
    else {
        let _ = child.kill();
        let _ = child.wait();
        bail!("unexpected first line from kaya-control-plane: {line:?}");
    };
    Ok(Started {
        child,
        address: address.to_string(),
        kubeconfig: PathBuf::from(kubeconfig),
        node_api: node_api.to_string(),
    })
}

impl ControlPlaneProcess {
    /// Starts a control plane on a free loopback port; `store` as `--store` takes it
    /// (default: SQLite in the data directory).
    pub fn start(store: Option<&str>) -> anyhow::Result<ControlPlaneProcess> {
        ControlPlaneProcess::start_with(store, &[])
    }

    /// As `start`, with extra flags (`--node-monitor-grace-period 3`).
    pub fn start_with(store: Option<&str>, extra: &[&str]) -> anyhow::Result<ControlPlaneProcess> {
        let dir = tempfile::Builder::new().prefix("kaya-cp-").tempdir()?;
        let extra_args: Vec<String> = extra.iter().map(|arg| arg.to_string()).collect();
        let started = spawn(dir.path(), store, "127.0.0.1:0", "127.0.0.1:0", &extra_args)?;
        Ok(ControlPlaneProcess {
            child: Some(started.child),
            dir,
            store: store.map(str::to_owned),
            address: started.address,
            kubeconfig: started.kubeconfig,
            node_api: started.node_api,
            extra_args,
        })
    }

    /// A node's token for the node API.
    pub fn node_token(&self, node: &str) -> anyhow::Result<String> {
        let output = Command::new(workspace_binary("kaya-control-plane"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["node-token", node])
            .output()?;
        if !output.status.success() {
            bail!(
                "node-token {node}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The admin's bearer token.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let tokens: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
            self.dir.path().join("tokens.json"),
        )?)?;
        tokens["admin"]
            .as_str()
            .map(str::to_owned)
            .context("no admin token in tokens.json")
    }

    /// The cluster CA (PEM) clients verify the control plane with.
    pub fn ca_pem(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("ca.crt"))?)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the process (no chance to flush anything) and starts it again on the same
    /// port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn(
                self.dir.path(),
                self.store.as_deref(),
                &self.address,
                &self.node_api,
                &self.extra_args,
            ) {
                Ok(started) => {
                    self.child = Some(started.child);
                    self.address = started.address;
                    self.kubeconfig = started.kubeconfig;
                    self.node_api = started.node_api;
                    return Ok(());
                }
                // The port may linger a moment after the kill.
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(error),
            }
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("control-plane.log")).unwrap_or_default()
    }

    /// kubectl 1.20 with this control plane's admin kubeconfig.
    pub fn kubectl_command(&self) -> Command {
        let mut command = Command::new(KUBECTL);
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Runs kubectl; returns its output whether it succeeded or not.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.kubectl_command()
            .args(args)
            .output()
            .with_context(|| format!("running {KUBECTL}"))
    }

    /// Runs kubectl, failing with its stderr unless it succeeds; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.kubectl(args)?;
        if !output.status.success() {
            bail!(
                "kubectl {} failed ({}):\n{}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// kubectl with `input` on stdin (`apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> anyhow::Result<Output> {
        use std::io::Write;
        let mut child = self
            .kubectl_command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(input.as_bytes())?;
        Ok(child.wait_with_output()?)
    }

    /// Polls `check` until it returns Some or the timeout passes.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check()? {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; control plane log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
