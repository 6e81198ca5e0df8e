//! A real OCI registry for tests: Debian's `docker-registry` on a loopback port with its own
//! storage directory, optionally behind htpasswd basic auth; stopped (by pid) on drop.
use anyhow::{Context, bail};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRegistry {
    child: Child,
    _dir: tempfile::TempDir,
    pub address: String,
    pub storage: PathBuf,
}

pub struct BasicAuth {
    pub username: &'static str,
    pub password: &'static str,
}

impl TestRegistry {
    pub fn start(auth: Option<BasicAuth>) -> anyhow::Result<TestRegistry> {
        let dir = tempfile::Builder::new()
            .prefix("kaya-registry-")
            .tempdir()?;
        let port = free_port()?;
        let storage = dir.path().join("storage");
        let mut auth_section = String::new();
        if let Some(auth) = &auth {
            let htpasswd = dir.path().join("htpasswd");
            let status = Command::new("htpasswd")
                .args(["-Bbc"])
                .arg(&htpasswd)
                .args([auth.username, auth.password])
                .stderr(Stdio::null())
                .status()
                .context("htpasswd (apache2-utils)")?;
            if !status.success() {
                bail!("htpasswd failed: {status}");
            }
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: kaya-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_section}",
                storage.display()
            ),
        )?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting docker-registry")?;
        let registry = TestRegistry {
            child,
            _dir: dir,
            address: format!("127.0.0.1:{port}"),
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not listen on {} within 20 s",
                    registry.address
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }
}

/// A second registry process serving `storage` (another registry's content) on 127.0.0.1
/// inside a network namespace, where a simulated node's agent pulls from it.
pub struct NamespacedRegistry {
    child: Child,
    _dir: tempfile::TempDir,
    pub address: String,
}

impl NamespacedRegistry {
    pub fn start(
        storage: &std::path::Path,
        netns: &std::path::Path,
        port: u16,
    ) -> anyhow::Result<NamespacedRegistry> {
        let dir = tempfile::Builder::new()
            .prefix("kaya-registry-ns-")
            .tempdir()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let mut command = Command::new("docker-registry");
        command
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::netns::enter_on_exec(&mut command, netns)?;
        let child = command
            .spawn()
            .context("starting docker-registry in a namespace")?;
        let registry = NamespacedRegistry {
            child,
            _dir: dir,
            address: format!("127.0.0.1:{port}"),
        };
        let address = registry.address.clone();
        crate::netns::in_netns(netns, move || -> anyhow::Result<()> {
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(&address).is_err() {
                if Instant::now() > deadline {
                    bail!(
                        "docker-registry did not listen on {address} in the namespace within 20 s"
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })??;
        Ok(registry)
    }
}

impl Drop for NamespacedRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
