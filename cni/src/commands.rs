//! The CNI commands: ADD, DEL, CHECK, STATUS, GC and VERSION, over the plumbing and agent
//! seams so their logic (idempotence, rollback, error codes) is testable without root.
use kaya_agent_api::{Attachment, ClientError, EndpointSpec, Request, Response};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Command, Env, NetConf, host_ifname};
use crate::ipam::{Ipam, IpamError};
use crate::link::{LinkError, Plumbing, VethRequest};
use crate::spec::{CniError, Plumbed, build_result, code, version_result};

/// Plugin-specific: an interface is not as the attachment needs it (CHECK).
pub const CODE_INTERFACE_MISMATCH: u32 = 102;

/// How the plugin talks to kaya-agent.
pub trait AgentClient {
    fn call(&self, request: &Request) -> Result<Response, ClientError>;
}

pub struct SocketAgent {
    pub socket: PathBuf,
    pub timeout: Duration,
}

impl AgentClient for SocketAgent {
    fn call(&self, request: &Request) -> Result<Response, ClientError> {
        kaya_agent_api::call(&self.socket, request, self.timeout)
    }
}

impl From<IpamError> for CniError {
    fn from(err: IpamError) -> Self {
        match err {
            IpamError::Exhausted(_) => CniError::new(code::IPAM_EXHAUSTED, err.to_string()),
            IpamError::Io { .. } => CniError::new(code::IO_FAILURE, err.to_string()),
        }
    }
}

impl From<LinkError> for CniError {
    fn from(err: LinkError) -> Self {
        CniError::new(code::IO_FAILURE, err.to_string())
    }
}

/// Sends `request`; an unreachable agent is "try again later", a refusal is final.
fn ask(agent: &impl AgentClient, request: &Request) -> Result<Response, CniError> {
    match agent.call(request) {
        Ok(Response::Error { message }) => Err(CniError::new(
            code::AGENT_REFUSED,
            format!("kaya-agent refused: {message}"),
        )),
        Ok(response) => Ok(response),
        Err(err) if err.is_transient() => Err(CniError::new(
            code::TRY_AGAIN_LATER,
            "kaya-agent is not reachable",
        )
        .with_details(err.to_string())),
        Err(err) => Err(CniError::new(code::IO_FAILURE, err.to_string())),
    }
}

/// Version to answer VERSION (and errors) in: the config's when it has a readable one.
pub fn requested_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "1.1.0".to_owned())
}

pub async fn run(
    env: &Env,
    stdin: &[u8],
    plumbing: &impl Plumbing,
    agent: &impl AgentClient,
) -> Result<Option<Value>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_result(&requested_version(stdin))));
    }
    let conf = NetConf::parse(stdin)?;
    match env.command {
        Command::Add => add(env, &conf, plumbing, agent).await.map(Some),
        Command::Del => del(env, &conf, plumbing, agent).await.map(|()| None),
        Command::Check => check(env, &conf, plumbing, agent).await.map(|()| None),
        Command::Status => status(agent).map(|()| None),
        Command::Gc => gc(&conf, plumbing, agent).await.map(|()| None),
        Command::Version => unreachable!("answered above"),
    }
}

fn ipam(conf: &NetConf) -> Ipam {
    Ipam::new(&conf.ipam.data_dir, conf.ipam.subnet, conf.ipam.gateway)
}

fn attachment(env: &Env) -> Attachment {
    Attachment {
        container_id: env.container_id.clone(),
        ifname: env.ifname.clone(),
    }
}

async fn add(
    env: &Env,
    conf: &NetConf,
    plumbing: &impl Plumbing,
    agent: &impl AgentClient,
) -> Result<Value, CniError> {
    let ipam = ipam(conf);
    let host = host_ifname(&conf.host_if_prefix, &env.container_id, &env.ifname);
    // One lock for find-or-allocate: `allocate` returns the attachment's address if it has one.
    let (ip, reserved_before) = {
        let lock = ipam.lock()?;
        let known = ipam.find(&lock, &env.container_id, &env.ifname)?;
        match known {
            Some(ip) => (ip, true),
            None => (ipam.allocate(&lock, &env.container_id, &env.ifname)?, false),
        }
    };
    // A repeated ADD of a complete attachment returns what the first one did.
    if let (true, Some(host_mac)) = (reserved_before, plumbing.host_mac(&host).await?)
        && let Some(pod) = plumbing.pod_side(&env.netns, &env.ifname).await?
        && pod.addresses.contains(&ip)
    {
        let plumbed = plumbed(env, conf, &host, host_mac, pod.mac, ip);
        register(env, &plumbed, &ip.to_string(), agent)?;
        return Ok(build_result(
            &conf.cni_version,
            conf.prev_result.as_ref(),
            &plumbed,
        ));
    }
    let host_ref = host.as_str();
    let ipam_ref = &ipam;
    let rollback = |plumbing_done: bool| async move {
        if plumbing_done {
            let _ = plumbing.delete_host(host_ref).await;
        }
        if let Ok(lock) = ipam_ref.lock() {
            let _ = ipam_ref.release(&lock, &env.container_id, &env.ifname);
        }
    };
    // Left over from an ADD that died half-way: start clean.
    plumbing.delete_host(&host).await?;
    let request = VethRequest {
        host_ifname: host.clone(),
        pod_ifname: env.ifname.clone(),
        netns: env.netns.clone(),
        mtu: conf.mtu,
        address: ip,
        gateway: conf.ipam.gateway,
    };
    let link = match plumbing.create(&request).await {
        Ok(link) => link,
        Err(err) => {
            rollback(false).await;
            return Err(err.into());
        }
    };
    let plumbed = plumbed(env, conf, &host, link.host_mac, link.pod_mac, ip);
    if let Err(err) = register(env, &plumbed, &ip.to_string(), agent) {
        rollback(true).await;
        return Err(err);
    }
    Ok(build_result(
        &conf.cni_version,
        conf.prev_result.as_ref(),
        &plumbed,
    ))
}

fn plumbed(
    env: &Env,
    conf: &NetConf,
    host: &str,
    host_mac: String,
    pod_mac: String,
    ip: std::net::Ipv4Addr,
) -> Plumbed {
    Plumbed {
        host_ifname: host.to_owned(),
        host_mac,
        pod_ifname: env.ifname.clone(),
        pod_mac,
        netns: env.netns.clone(),
        address: format!("{ip}/32"),
        gateway: conf.ipam.gateway.to_string(),
    }
}

fn register(
    env: &Env,
    plumbed: &Plumbed,
    ip: &str,
    agent: &impl AgentClient,
) -> Result<(), CniError> {
    let endpoint = EndpointSpec {
        attachment: attachment(env),
        host_ifname: plumbed.host_ifname.clone(),
        ip: ip.to_owned(),
        pod_mac: plumbed.pod_mac.clone(),
        netns: env.netns.clone(),
    };
    ask(agent, &Request::AddEndpoint { endpoint }).map(drop)
}

async fn del(
    env: &Env,
    conf: &NetConf,
    plumbing: &impl Plumbing,
    agent: &impl AgentClient,
) -> Result<(), CniError> {
    plumbing
        .delete_host(&host_ifname(
            &conf.host_if_prefix,
            &env.container_id,
            &env.ifname,
        ))
        .await?;
    let ipam = ipam(conf);
    {
        let lock = ipam.lock()?;
        ipam.release(&lock, &env.container_id, &env.ifname)?;
    }
    // Local state is gone first: a retried DEL after "try again later" only needs the agent.
    ask(
        agent,
        &Request::DelEndpoint {
            attachment: attachment(env),
        },
    )
    .map(drop)
}

async fn check(
    env: &Env,
    conf: &NetConf,
    plumbing: &impl Plumbing,
    agent: &impl AgentClient,
) -> Result<(), CniError> {
    let ipam = ipam(conf);
    let ip = {
        let lock = ipam.lock()?;
        ipam.find(&lock, &env.container_id, &env.ifname)?
    }
    .ok_or_else(|| {
        CniError::new(
            code::CONTAINER_UNKNOWN,
            format!(
                "no address is reserved for {}/{}",
                env.container_id, env.ifname
            ),
        )
    })?;
    let mismatch = |msg: String| CniError::new(CODE_INTERFACE_MISMATCH, msg);
    let host = host_ifname(&conf.host_if_prefix, &env.container_id, &env.ifname);
    if plumbing.host_mac(&host).await?.is_none() {
        return Err(mismatch(format!("host interface {host} is missing")));
    }
    let pod = plumbing
        .pod_side(&env.netns, &env.ifname)
        .await?
        .ok_or_else(|| {
            mismatch(format!(
                "interface {} is missing in {}",
                env.ifname, env.netns
            ))
        })?;
    if !pod.addresses.contains(&ip) {
        return Err(mismatch(format!(
            "interface {} does not have address {ip}",
            env.ifname
        )));
    }
    if let Some(prev) = &conf.prev_result {
        let expected = format!("{ip}/32");
        let listed = prev["ips"]
            .as_array()
            .is_some_and(|ips| ips.iter().any(|i| i["address"] == expected.as_str()));
        if !listed {
            return Err(mismatch(format!("prevResult does not list {expected}")));
        }
    }
    ask(
        agent,
        &Request::CheckEndpoint {
            attachment: attachment(env),
        },
    )
    .map(drop)
}

fn status(agent: &impl AgentClient) -> Result<(), CniError> {
    match agent.call(&Request::Status) {
        Ok(Response::Status { ready: true, .. }) => Ok(()),
        Ok(other) => Err(CniError::new(
            code::PLUGIN_NOT_AVAILABLE,
            format!("kaya-agent is not ready: {other:?}"),
        )),
        Err(err) => Err(
            CniError::new(code::PLUGIN_NOT_AVAILABLE, "kaya-agent is not reachable")
                .with_details(err.to_string()),
        ),
    }
}

async fn gc(
    conf: &NetConf,
    plumbing: &impl Plumbing,
    agent: &impl AgentClient,
) -> Result<(), CniError> {
    let valid = conf.valid_attachments.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_CONFIG,
            "GC needs cni.dev/valid-attachments in the network config",
        )
    })?;
    let is_valid = |cid: &str, ifname: &str| {
        valid
            .iter()
            .any(|v| v.container_id == cid && v.ifname == ifname)
    };
    let ipam = ipam(conf);
    {
        let lock = ipam.lock()?;
        for reservation in ipam.reservations(&lock)? {
            if !is_valid(&reservation.container_id, &reservation.ifname) {
                ipam.release(&lock, &reservation.container_id, &reservation.ifname)?;
            }
        }
    }
    let valid_hosts: Vec<String> = valid
        .iter()
        .map(|v| host_ifname(&conf.host_if_prefix, &v.container_id, &v.ifname))
        .collect();
    for name in plumbing
        .host_links_with_prefix(&conf.host_if_prefix)
        .await?
    {
        // Only names of our shape (prefix + 8 hex digits) are ours to delete.
        let ours = name
            .strip_prefix(conf.host_if_prefix.as_str())
            .is_some_and(|hash| hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
        if ours && !valid_hosts.contains(&name) {
            plumbing.delete_host(&name).await?;
        }
    }
    let valid = valid
        .iter()
        .map(|v| Attachment {
            container_id: v.container_id.clone(),
            ifname: v.ifname.clone(),
        })
        .collect();
    ask(agent, &Request::Gc { valid }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{PodLink, PodSide};
    use std::cell::RefCell;

    #[derive(Default)]
    struct FakePlumbing {
        links: RefCell<Vec<(String, VethRequest)>>,
        fail_create: bool,
    }

    impl Plumbing for FakePlumbing {
        async fn create(&self, request: &VethRequest) -> Result<PodLink, LinkError> {
            if self.fail_create {
                return Err(LinkError::Missing("eth0".into()));
            }
            self.links
                .borrow_mut()
                .push((request.host_ifname.clone(), request.clone()));
            Ok(PodLink {
                host_mac: "02:00:00:00:00:01".into(),
                pod_mac: "02:00:00:00:00:02".into(),
            })
        }
        async fn host_mac(&self, name: &str) -> Result<Option<String>, LinkError> {
            Ok(self
                .links
                .borrow()
                .iter()
                .any(|(n, _)| n == name)
                .then(|| "02:00:00:00:00:01".into()))
        }
        async fn delete_host(&self, name: &str) -> Result<(), LinkError> {
            self.links.borrow_mut().retain(|(n, _)| n != name);
            Ok(())
        }
        async fn pod_side(&self, _netns: &str, ifname: &str) -> Result<Option<PodSide>, LinkError> {
            Ok(self
                .links
                .borrow()
                .iter()
                .find(|(_, r)| r.pod_ifname == ifname)
                .map(|(_, r)| PodSide {
                    mac: "02:00:00:00:00:02".into(),
                    addresses: vec![r.address],
                }))
        }
        async fn host_links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, LinkError> {
            Ok(self
                .links
                .borrow()
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| n.starts_with(prefix))
                .collect())
        }
    }

    enum FakeAgent {
        Up,
        Down,
        Refusing,
    }

    impl AgentClient for FakeAgent {
        fn call(&self, request: &Request) -> Result<Response, ClientError> {
            match self {
                FakeAgent::Up => Ok(match request {
                    Request::Status => Response::Status {
                        ready: true,
                        node_name: "n".into(),
                    },
                    _ => Response::Ok,
                }),
                FakeAgent::Down => Err(ClientError::Unreachable {
                    path: "/run/kaya/x/agent.sock".into(),
                    source: std::io::ErrorKind::NotFound.into(),
                }),
                FakeAgent::Refusing => Ok(Response::Error {
                    message: "no such link".into(),
                }),
            }
        }
    }

    fn conf(dir: &std::path::Path) -> Vec<u8> {
        format!(
            r#"{{"cniVersion":"1.1.0","name":"kaya","type":"kaya-cni","agentSocket":"/x","mtu":1450,
            "hostIfPrefix":"kyt","ipam":{{"subnet":"10.244.1.0/24","gateway":"10.244.1.1","dataDir":"{}"}}}}"#,
            dir.display()
        )
        .into_bytes()
    }

    fn env(command: Command) -> Env {
        Env {
            command,
            container_id: "c1".into(),
            netns: "/var/run/netns/p".into(),
            ifname: "eth0".into(),
        }
    }

    fn exec(
        command: Command,
        stdin: &[u8],
        plumbing: &FakePlumbing,
        agent: FakeAgent,
    ) -> Result<Option<Value>, CniError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run(&env(command), stdin, plumbing, &agent))
    }

    #[test]
    fn add_twice_returns_the_same_address_and_one_link() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing::default();
        let first = exec(Command::Add, &conf(dir.path()), &plumbing, FakeAgent::Up)
            .unwrap()
            .unwrap();
        let second = exec(Command::Add, &conf(dir.path()), &plumbing, FakeAgent::Up)
            .unwrap()
            .unwrap();
        assert_eq!(first["ips"][0]["address"], "10.244.1.2/32");
        assert_eq!(first["ips"], second["ips"]);
        assert_eq!(plumbing.links.borrow().len(), 1);
    }

    #[test]
    fn unreachable_agent_is_try_again_later_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing::default();
        let err = exec(Command::Add, &conf(dir.path()), &plumbing, FakeAgent::Down).unwrap_err();
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
        assert!(plumbing.links.borrow().is_empty(), "veth removed");
        let ipam = Ipam::new(
            dir.path(),
            "10.244.1.0/24".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
        );
        assert!(
            ipam.reservations(&ipam.lock().unwrap()).unwrap().is_empty(),
            "address released"
        );
    }

    #[test]
    fn refusing_agent_is_a_final_error_and_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing::default();
        let err = exec(
            Command::Add,
            &conf(dir.path()),
            &plumbing,
            FakeAgent::Refusing,
        )
        .unwrap_err();
        assert_eq!(err.code, code::AGENT_REFUSED);
        assert!(err.msg.contains("no such link"));
        assert!(plumbing.links.borrow().is_empty());
    }

    #[test]
    fn failed_plumbing_releases_the_address() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing {
            fail_create: true,
            ..FakePlumbing::default()
        };
        let err = exec(Command::Add, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap_err();
        assert_eq!(err.code, code::IO_FAILURE);
        let ipam = Ipam::new(
            dir.path(),
            "10.244.1.0/24".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
        );
        assert!(ipam.reservations(&ipam.lock().unwrap()).unwrap().is_empty());
    }

    #[test]
    fn del_is_idempotent_and_check_fails_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing::default();
        exec(Command::Add, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap();
        exec(Command::Check, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap();
        for _ in 0..2 {
            assert_eq!(
                exec(Command::Del, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap(),
                None
            );
        }
        let err = exec(Command::Check, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap_err();
        assert_eq!(err.code, code::CONTAINER_UNKNOWN);
    }

    #[test]
    fn status_reports_agent_availability() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing::default();
        assert!(exec(Command::Status, &conf(dir.path()), &plumbing, FakeAgent::Up).is_ok());
        let err = exec(
            Command::Status,
            &conf(dir.path()),
            &plumbing,
            FakeAgent::Down,
        )
        .unwrap_err();
        assert_eq!(err.code, code::PLUGIN_NOT_AVAILABLE);
    }

    #[test]
    fn gc_releases_what_is_not_valid() {
        let dir = tempfile::tempdir().unwrap();
        let plumbing = FakePlumbing::default();
        exec(Command::Add, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap();
        let mut gc_conf: Value = serde_json::from_slice(&conf(dir.path())).unwrap();
        gc_conf["cni.dev/valid-attachments"] = serde_json::json!([]);
        let bytes = serde_json::to_vec(&gc_conf).unwrap();
        exec(Command::Gc, &bytes, &plumbing, FakeAgent::Up).unwrap();
        assert!(plumbing.links.borrow().is_empty());
        let ipam = Ipam::new(
            dir.path(),
            "10.244.1.0/24".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
        );
        assert!(ipam.reservations(&ipam.lock().unwrap()).unwrap().is_empty());
        let err = exec(Command::Gc, &conf(dir.path()), &plumbing, FakeAgent::Up).unwrap_err();
        assert!(err.msg.contains("valid-attachments"));
    }
}
