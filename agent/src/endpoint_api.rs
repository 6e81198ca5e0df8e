//! Serves the local endpoint API (kaya-agent-api) on the instance's unix socket.
use kaya_agent_api::{Request, Response};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;

use crate::endpoint_service::EndpointService;
use crate::pods_api::PodsApi;

/// Longest request line accepted; anything longer is not a real request.
const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("binding endpoint api socket {path}: {source}")]
pub struct BindError {
    path: PathBuf,
    source: std::io::Error,
}

/// Binds the socket, replacing a stale one left by a previous agent.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let err = |source| BindError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    UnixListener::bind(path).map_err(err)
}

pub async fn serve(
    listener: UnixListener,
    service: Arc<Mutex<EndpointService>>,
    pods: Option<Arc<PodsApi>>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let service = service.clone();
                let pods = pods.clone();
                tokio::spawn(async move {
                    if let Err(err) = handle_connection(stream, service, pods).await {
                        tracing::warn!(%err, "endpoint api connection failed");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(%err, "endpoint api accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle_connection(
    stream: UnixStream,
    service: Arc<Mutex<EndpointService>>,
    pods: Option<Arc<PodsApi>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(MAX_REQUEST_BYTES as u64 + 1)).lines();
    while let Some(line) = lines.next_line().await? {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => match pods.clone() {
                // Pod requests read files and may wait on a shim (exec): off the runtime,
                // and never holding the endpoint service that CNI calls need.
                Some(pods) if request.is_pod_request() => {
                    tokio::task::spawn_blocking(move || pods.handle(&request))
                        .await
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| Response::Error {
                            message: "pod request failed".into(),
                        })
                }
                _ => service.lock().await.handle(request).await,
            },
            Err(err) => Response::Error {
                message: format!("malformed request: {err}"),
            },
        };
        let mut bytes = serde_json::to_vec(&response).expect("responses always serialize");
        bytes.push(b'\n');
        write.write_all(&bytes).await?;
    }
    Ok(())
}
