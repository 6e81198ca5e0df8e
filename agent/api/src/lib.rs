//! The agent's local endpoint API: one JSON request per line over a unix stream socket,
//! one JSON response line back. kaya-cni uses it to register pod endpoints, because the
//! agent is the only writer of BPF state.
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Name of the socket file inside an agent instance's state directory.
pub const SOCKET_NAME: &str = "agent.sock";

/// Identifies one attachment the way the CNI spec does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
}

/// A pod interface that kaya-cni has plumbed and wants the datapath to serve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub attachment: Attachment,
    /// Name of the host side of the veth pair.
    pub host_ifname: String,
    /// Pod IPv4 address (dotted quad).
    pub ip: String,
    /// MAC of the pod-side interface, `aa:bb:cc:dd:ee:ff`.
    pub pod_mac: String,
    /// Path of the pod's network namespace.
    pub netns: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Register (or re-register, idempotently) an endpoint.
    AddEndpoint { endpoint: EndpointSpec },
    /// Forget an endpoint; succeeds when it is already gone.
    DelEndpoint { attachment: Attachment },
    /// Succeeds when the endpoint is programmed as registered.
    CheckEndpoint { attachment: Attachment },
    /// Forget every endpoint not in `valid` (CNI GC).
    Gc { valid: Vec<Attachment> },
    /// Liveness and readiness of the agent (CNI STATUS).
    Status,
    /// Every registered endpoint.
    ListEndpoints,
    /// This node's pods with their status, as Kubernetes Pod objects.
    ListPods,
    /// A container's log (CRI format parsed to lines).
    PodLogs {
        namespace: String,
        name: String,
        container: Option<String>,
        /// Only the last `tail` lines.
        tail: Option<usize>,
        /// Only lines at or after this RFC 3339 time.
        since_time: Option<String>,
        /// The previous (terminated) run's log instead of the current one.
        #[serde(default)]
        previous: bool,
        /// Prefix each line with its timestamp.
        #[serde(default)]
        timestamps: bool,
    },
    /// This node as a Kubernetes Node object (capacity, allocatable, conditions, images).
    NodeStatus,
    /// Run a command in a container and return its output (non-interactive exec).
    PodExec {
        namespace: String,
        name: String,
        container: Option<String>,
        command: Vec<String>,
    },
}

impl Request {
    /// Requests about pods (served by the kubelet half of the agent).
    pub fn is_pod_request(&self) -> bool {
        matches!(
            self,
            Request::ListPods
                | Request::NodeStatus
                | Request::PodLogs { .. }
                | Request::PodExec { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Endpoints {
        endpoints: Vec<EndpointSpec>,
    },
    Status {
        ready: bool,
        node_name: String,
    },
    Pods {
        pods: Vec<serde_json::Value>,
    },
    Node {
        node: serde_json::Value,
    },
    Logs {
        lines: Vec<String>,
    },
    Exec {
        exit_code: i32,
        stdout: String,
        stderr: String,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent socket {path} unreachable: {source}")]
    Unreachable {
        path: String,
        source: std::io::Error,
    },
    #[error("agent socket {path}: i/o failed: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("agent socket {path}: bad response: {source}")]
    BadResponse {
        path: String,
        source: serde_json::Error,
    },
    #[error("agent socket {path}: connection closed without a response")]
    NoResponse { path: String },
}

impl ClientError {
    /// True when retrying later may succeed (agent down or restarting).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. } | ClientError::NoResponse { .. }
        ) || matches!(self, ClientError::Io { source, .. } if source.kind() == std::io::ErrorKind::TimedOut || source.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Sends one request and waits at most `timeout` for each of connect, write and read.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    let stream =
        connect_with_timeout(socket, timeout).map_err(|source| ClientError::Unreachable {
            path: path.clone(),
            source,
        })?;
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("request types always serialize");
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    let mut reader = BufReader::new(&stream);
    let mut answer = String::new();
    let read = reader.read_line(&mut answer).map_err(io)?;
    if read == 0 {
        return Err(ClientError::NoResponse { path });
    }
    serde_json::from_str(&answer).map_err(|source| ClientError::BadResponse { path, source })
}

/// Unix sockets connect immediately or fail (no SYN wait), so a plain connect cannot hang;
/// the timeout still bounds the rare case of a full accept backlog.
fn connect_with_timeout(socket: &Path, timeout: Duration) -> std::io::Result<UnixStream> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match UnixStream::connect(socket) {
            Ok(stream) => return Ok(stream),
            Err(err)
                if err.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_with_an_op_tag() {
        let request = Request::DelEndpoint {
            attachment: Attachment {
                container_id: "abc".into(),
                ifname: "eth0".into(),
            },
        };
        let text = serde_json::to_string(&request).unwrap();
        assert!(text.contains(r#""op":"del_endpoint""#), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
    }

    #[test]
    fn missing_socket_is_transient() {
        let err = call(
            Path::new("/nonexistent/kaya/agent.sock"),
            &Request::Status,
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("/nonexistent/kaya/agent.sock"));
    }
}
