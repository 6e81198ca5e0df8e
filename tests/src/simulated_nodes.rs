//! Lightweight simulated agents for control plane tests: each registers a node over the
//! node API with its own token, renews its lease, watches the state its node gets, and
//! plays kubelet for the pods bound to it (Running and Ready with an IP from the node's pod
//! CIDR; gone once deleted). Stopping one is a node lost without a word.
use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use kaya_control_plane::node_api::proto::node_api_client::NodeApiClient;
use kaya_control_plane::node_api::proto::{
    LeaseRenewal, LogChunk, LogRequest, PodStatusReport, PodTerminated, RegisterRequest,
    WatchRequest, update::Type,
};
use serde_json::{Value, json};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::control_plane::ControlPlaneProcess;

/// What a simulated node offers and how it is labelled and tainted.
#[derive(Debug, Clone)]
pub struct NodeShape {
    pub cpu: &'static str,
    pub memory: &'static str,
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Value>,
}

impl Default for NodeShape {
    fn default() -> NodeShape {
        NodeShape {
            cpu: "4",
            memory: "8Gi",
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
}

/// What a node's stream has delivered so far (kind → names), for assertions.
#[derive(Default)]
pub struct Seen {
    pub objects: BTreeMap<String, HashSet<String>>,
    pub revision: u64,
}

pub struct SimulatedNode {
    pub name: String,
    running: Arc<AtomicBool>,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

type Client =
    NodeApiClient<tonic::service::interceptor::InterceptedService<Channel, Authorization>>;

#[derive(Clone)]
pub struct Authorization(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Authorization {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// A node API client with `token`, verifying the control plane against its CA.
pub async fn connect(control_plane: &ControlPlaneProcess, token: &str) -> anyhow::Result<Client> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(control_plane.ca_pem()?))
        .domain_name("localhost");
    let channel = Endpoint::from_shared(format!("https://{}", control_plane.node_api))?
        .tls_config(tls)?
        .connect()
        .await?;
    let value = format!("Bearer {token}")
        .parse()
        .context("token as metadata")?;
    Ok(NodeApiClient::with_interceptor(
        channel,
        Authorization(value),
    ))
}

fn node_object(name: &str, index: u8, shape: &NodeShape) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": shape.labels.clone().into_iter().chain([("kubernetes.io/hostname".to_owned(), name.to_owned())]).collect::<BTreeMap<_, _>>()},
        "spec": {"taints": shape.taints},
        "status": {
            "capacity": {"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods.to_string()},
            "allocatable": {"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods.to_string()},
            "addresses": [{"type": "InternalIP", "address": format!("192.0.2.{index}")}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated agent is posting ready status", "lastHeartbeatTime": null, "lastTransitionTime": null}],
            "nodeInfo": {"kubeletVersion": "v1.20.0-kaya-sim", "osImage": "simulated", "kernelVersion": "6.18", "containerRuntimeVersion": "kaya://sim", "operatingSystem": "linux", "architecture": "amd64",
                         "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
        },
    })
}

fn running_status(pod: &Value, ip: &str, host_ip: &str) -> Value {
    let now = kaya_control_plane::api::meta::now();
    let containers: Vec<Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|container| json!({"name": container["name"], "image": container["image"], "imageID": "", "ready": true, "started": true, "restartCount": 0,
                                "state": {"running": {"startedAt": now}}, "containerID": format!("kaya://{}", container["name"].as_str().unwrap_or(""))}))
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({
        "phase": "Running",
        "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": host_ip, "startTime": now,
        "conditions": [condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
        "containerStatuses": containers,
    })
}

impl SimulatedNode {
    /// Registers node `name` (index: its place, for addresses) and starts playing it.
    pub async fn start(
        control_plane: &ControlPlaneProcess,
        name: &str,
        index: u8,
        shape: NodeShape,
    ) -> anyhow::Result<SimulatedNode> {
        let token = control_plane.node_token(name)?;
        let mut client = connect(control_plane, &token).await?;
        let registered = client
            .register(RegisterRequest {
                node_json: serde_json::to_vec(&node_object(name, index, &shape))?,
            })
            .await
            .with_context(|| format!("registering {name}"))?;
        let _: Value = serde_json::from_slice(&registered.get_ref().node_json)?;
        client
            .renew_lease(LeaseRenewal {
                duration_seconds: 40,
            })
            .await?;
        let running = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(play(
            client,
            name.to_owned(),
            index,
            running.clone(),
            seen.clone(),
        ));
        Ok(SimulatedNode {
            name: name.to_owned(),
            running,
            seen,
            task,
        })
    }

    /// The node goes silent: no lease renewals, no status, stream closed.
    pub fn stop(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.task.abort();
    }
}

impl Drop for SimulatedNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `count` nodes named node-0, node-1, ... shaped by `shape(index)`.
pub async fn start_nodes(
    control_plane: &ControlPlaneProcess,
    count: u8,
    shape: impl Fn(u8) -> NodeShape,
) -> anyhow::Result<Vec<SimulatedNode>> {
    let mut nodes = Vec::new();
    for index in 0..count {
        nodes.push(
            SimulatedNode::start(
                control_plane,
                &format!("node-{index}"),
                index + 1,
                shape(index),
            )
            .await?,
        );
    }
    Ok(nodes)
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The simulated container log: "line N of namespace/pod/container".
pub fn simulated_log(request: &LogRequest, lines: usize) -> String {
    let all: Vec<String> = (1..=lines)
        .map(|n| {
            format!(
                "line {n} of {}/{}/{}\n",
                request.namespace, request.pod, request.container
            )
        })
        .collect();
    let keep = if request.tail_lines >= 0 {
        (request.tail_lines as usize).min(all.len())
    } else {
        all.len()
    };
    all[all.len() - keep..].concat()
}

/// Answers log requests as an agent would: three lines per container (a fourth a moment
/// later when following); no previous instance exists.
async fn serve_logs(mut client: Client) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<LogChunk>(16);
    let outgoing = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let Ok(response) = client.serve_logs(outgoing).await else {
        return;
    };
    let mut requests = response.into_inner();
    while let Ok(Some(request)) = requests.message().await {
        if request.cancel {
            continue;
        }
        let sender = sender.clone();
        tokio::spawn(async move {
            let id = request.id;
            if request.previous {
                let error = format!(
                    "previous terminated container \"{}\" in pod \"{}\" not found",
                    request.container, request.pod
                );
                let _ = sender
                    .send(LogChunk {
                        id,
                        data: Vec::new(),
                        done: true,
                        error,
                    })
                    .await;
                return;
            }
            let _ = sender
                .send(LogChunk {
                    id,
                    data: simulated_log(&request, 3).into_bytes(),
                    done: !request.follow,
                    error: String::new(),
                })
                .await;
            if request.follow {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let last = LogRequest {
                    tail_lines: 1,
                    ..request
                };
                let _ = sender
                    .send(LogChunk {
                        id,
                        data: simulated_log(&last, 4).into_bytes(),
                        done: true,
                        error: String::new(),
                    })
                    .await;
            }
        });
    }
}

/// The pod CIDR's n-th address (the node's pod CIDR arrives with its NodeRoute).
fn pod_ip(cidr: &str, n: u32) -> String {
    let base: Ipv4Addr = cidr
        .split('/')
        .next()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(Ipv4Addr::new(10, 244, 0, 0));
    Ipv4Addr::from(u32::from(base) + 2 + n).to_string()
}

async fn play(
    mut client: Client,
    node: String,
    index: u8,
    running: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut lease_client = client.clone();
    let lease_running = running.clone();
    tokio::spawn(async move {
        while lease_running.load(Ordering::SeqCst) {
            let _ = lease_client
                .renew_lease(LeaseRenewal {
                    duration_seconds: 40,
                })
                .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // Ends with this task: a stopped node's log stream goes too.
    let _logs = AbortOnDrop(tokio::spawn(serve_logs(client.clone())));
    let Ok(response) = client.watch(WatchRequest { resume_revision: 0 }).await else {
        return;
    };
    let mut stream = response.into_inner();
    let mut cidr = String::new();
    let mut next_ip = 0;
    let mut started: HashSet<String> = HashSet::new();
    while let Ok(Some(event)) = stream.message().await {
        if !running.load(Ordering::SeqCst) {
            return;
        }
        let mut objects: Vec<(i32, kaya_control_plane::node_api::proto::Object)> = event
            .objects
            .into_iter()
            .map(|object| (Type::Added as i32, object))
            .collect();
        objects.extend(
            event
                .updates
                .into_iter()
                .filter_map(|update| update.object.map(|object| (update.r#type, object))),
        );
        for (kind, object) in objects {
            let Ok(value) = serde_json::from_slice::<Value>(&object.json) else {
                continue;
            };
            let name = value
                .pointer("/metadata/name")
                .or_else(|| value.get("name"))
                .or_else(|| value.get("ip"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if let Ok(mut seen) = seen.lock() {
                seen.revision = event.revision;
                let names = seen.objects.entry(object.kind.clone()).or_default();
                if kind == Type::Deleted as i32 {
                    names.remove(&name);
                } else {
                    names.insert(name.clone());
                }
            }
            if object.kind == "NodeRoute" && value["name"] == node.as_str() {
                cidr = value["podCIDR"].as_str().unwrap_or("").to_owned();
            }
            if object.kind != "Pod" || kind == Type::Deleted as i32 {
                continue;
            }
            let namespace = value
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let uid = value
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if value
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|stamp| !stamp.is_null())
            {
                let _ = client
                    .report_pod_terminated(PodTerminated {
                        namespace,
                        name,
                        uid,
                    })
                    .await;
            } else if started.insert(uid) {
                next_ip += 1;
                let status =
                    running_status(&value, &pod_ip(&cidr, next_ip), &format!("192.0.2.{index}"));
                let _ = client
                    .report_pod_status(PodStatusReport {
                        namespace,
                        name,
                        status_json: serde_json::to_vec(&status).unwrap_or_default(),
                    })
                    .await;
            }
        }
    }
}
