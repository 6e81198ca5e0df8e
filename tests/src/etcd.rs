//! Real etcd members (Debian's etcd-server) on loopback ports for the store tests: a single
//! member or a cluster, each in its own data directory, killed by pid when dropped.
use anyhow::{Context, bail};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

struct Member {
    client_port: u16,
    child: Option<Child>,
}

pub struct EtcdCluster {
    members: Vec<Member>,
    dir: TempDir,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdCluster {
    /// Starts `size` members and waits until each accepts clients.
    pub fn start(size: usize) -> anyhow::Result<EtcdCluster> {
        let dir = tempfile::Builder::new().prefix("kaya-etcd-").tempdir()?;
        let ports: Vec<(u16, u16)> = (0..size)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<anyhow::Result<_>>()?;
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(index, (_, peer))| format!("m{index}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            dir,
        };
        for (index, (client, peer)) in ports.iter().enumerate() {
            let child = spawn_member(cluster.dir.path(), index, *client, *peer, &initial_cluster)?;
            cluster.members.push(Member {
                client_port: *client,
                child: Some(child),
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for member in &cluster.members {
            while TcpStream::connect(("127.0.0.1", member.client_port)).is_err() {
                if Instant::now() > deadline {
                    bail!(
                        "etcd on port {} did not come up; see {}",
                        member.client_port,
                        cluster.dir.path().display()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(cluster)
    }

    /// Client URLs of the members still running.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|member| member.child.is_some())
            .map(|member| format!("http://127.0.0.1:{}", member.client_port))
            .collect()
    }

    /// The index of the member leading the cluster now (asked of each member's status).
    pub fn leader(&self) -> anyhow::Result<usize> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            for (index, member) in self.members.iter().enumerate() {
                if member.child.is_none() {
                    continue;
                }
                let endpoint = format!("http://127.0.0.1:{}", member.client_port);
                let mut client = etcd_client::Client::connect([endpoint], None).await?;
                let status = client.status().await?;
                if status.header().map(|header| header.member_id()) == Some(status.leader()) {
                    return Ok(index);
                }
            }
            bail!("no member of the etcd cluster leads it")
        })
    }

    /// Kills one member (SIGKILL, as a crash).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_member(
    dir: &Path,
    index: usize,
    client: u16,
    peer: u16,
    initial_cluster: &str,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("m{index}.log")))?;
    Command::new("etcd")
        .arg(format!("--name=m{index}"))
        .arg(format!(
            "--data-dir={}",
            dir.join(format!("m{index}")).display()
        ))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg(format!(
            "--initial-cluster-token=kaya-test-{}",
            std::process::id()
        ))
        .arg("--initial-cluster-state=new")
        .arg("--logger=zap")
        .arg("--log-outputs=stderr")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting etcd (Debian's etcd-server)")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            self.kill(index);
        }
    }
}
