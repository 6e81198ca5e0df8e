//! The shim's control socket: one JSON request per connection, one JSON response.
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimRequest {
    /// Stop the pod: preStop hooks, SIGTERM, the grace period, SIGKILL, then teardown.
    Stop { grace_secs: Option<u64> },
    /// Run a command in a container and return its output (non-interactive exec).
    Exec {
        container: String,
        command: Vec<String>,
        timeout_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShimResponse {
    Ok,
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
pub enum ProtocolError {
    #[error("shim socket {path:?}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("shim socket {path:?}: bad message: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// Sends a request and waits up to `timeout` for the answer.
pub fn call(
    socket: &Path,
    request: &ShimRequest,
    timeout: Duration,
) -> Result<ShimResponse, ProtocolError> {
    let path = socket.display().to_string();
    let io = |source| ProtocolError::Io {
        path: path.clone(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|source| ProtocolError::Json {
        path: path.clone(),
        source,
    })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer).map_err(|source| ProtocolError::Json { path, source })
}
