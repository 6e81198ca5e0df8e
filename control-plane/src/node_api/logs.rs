//! `kubectl logs` through the node API: each agent keeps a ServeLogs stream open; a log
//! request for a pod goes down its node's stream and the chunks come back to the HTTP
//! client, so the control plane never dials into nodes.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::proto::{LogChunk, LogRequest};
use crate::api::status::ApiError;

#[derive(Default)]
pub struct LogBroker {
    /// node → where its agent takes requests.
    agents: Mutex<HashMap<String, mpsc::Sender<LogRequest>>>,
    /// request id → where its chunks go.
    waiting: Mutex<HashMap<u64, mpsc::Sender<LogChunk>>>,
    next: AtomicU64,
}

/// An open log request; dropping it tells the agent to stop.
pub struct LogStream {
    pub chunks: mpsc::Receiver<LogChunk>,
    id: u64,
    agent: mpsc::Sender<LogRequest>,
}

impl Drop for LogStream {
    fn drop(&mut self) {
        let _ = self.agent.try_send(LogRequest {
            id: self.id,
            cancel: true,
            ..LogRequest::default()
        });
    }
}

impl LogBroker {
    /// An agent connected: requests for `node` go to `sender` (replacing an older stream).
    pub fn attach(&self, node: &str, sender: mpsc::Sender<LogRequest>) {
        if let Ok(mut agents) = self.agents.lock() {
            agents.insert(node.to_owned(), sender);
        }
    }

    pub fn detach(&self, node: &str, sender: &mpsc::Sender<LogRequest>) {
        if let Ok(mut agents) = self.agents.lock()
            && agents
                .get(node)
                .is_some_and(|current| current.same_channel(sender))
        {
            agents.remove(node);
        }
    }

    /// A chunk from an agent, routed to its request (which ends with `done`).
    pub async fn deliver(&self, chunk: LogChunk) {
        let id = chunk.id;
        let finished = chunk.done || !chunk.error.is_empty();
        let target = self
            .waiting
            .lock()
            .ok()
            .and_then(|waiting| waiting.get(&id).cloned());
        if let Some(target) = target {
            let _ = target.send(chunk).await;
        }
        if finished && let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(&id);
        }
    }

    pub async fn request(
        &self,
        node: &str,
        mut request: LogRequest,
    ) -> Result<LogStream, ApiError> {
        let agent = self
            .agents
            .lock()
            .ok()
            .and_then(|agents| agents.get(node).cloned())
            .ok_or_else(|| {
                ApiError::ServiceUnavailable(format!(
                    "node \"{node}\" has no log stream open to the control plane"
                ))
            })?;
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        request.id = id;
        let (sender, chunks) = mpsc::channel(64);
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.insert(id, sender);
        }
        agent.send(request).await.map_err(|_| {
            ApiError::ServiceUnavailable(format!("node \"{node}\" closed its log stream"))
        })?;
        Ok(LogStream { chunks, id, agent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_reach_their_request_and_absent_nodes_are_named() {
        let broker = LogBroker::default();
        assert!(
            matches!(broker.request("n1", LogRequest::default()).await, Err(ApiError::ServiceUnavailable(message)) if message.contains("\"n1\""))
        );
        let (sender, mut requests) = mpsc::channel(4);
        broker.attach("n1", sender);
        let mut stream = broker
            .request(
                "n1",
                LogRequest {
                    pod: "web".into(),
                    ..LogRequest::default()
                },
            )
            .await
            .unwrap();
        let sent = requests.recv().await.unwrap();
        assert_eq!(sent.pod, "web");
        broker
            .deliver(LogChunk {
                id: sent.id,
                data: b"hello\n".to_vec(),
                done: true,
                error: String::new(),
            })
            .await;
        assert_eq!(stream.chunks.recv().await.unwrap().data, b"hello\n");
        drop(stream);
        assert!(
            requests.recv().await.unwrap().cancel,
            "dropping the stream cancels it at the agent"
        );
    }
}
