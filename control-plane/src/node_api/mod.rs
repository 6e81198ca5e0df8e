//! The node API (gRPC, tonic): agents register their node, watch the state their node needs
//! and report pod and node status and lease renewals. A node's token lets it see and change
//! only what its node needs (as Kubernetes' NodeRestriction).
pub mod proto {
    tonic::include_proto!("kaya.node.v1");
}
pub mod logs;
mod reports;
pub mod view;

use std::pin::Pin;
use std::sync::{Arc, RwLock};

use futures::Stream;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status};

use crate::api::handlers::Api;
use crate::api::pki::{Identity, Pki};
use crate::api::registry::decode;
use crate::api::status::ApiError;
use crate::store::EventKind;
use proto::node_api_server::{NodeApi, NodeApiServer};
use proto::{
    Ack, LeaseRenewal, NodeStatusReport, PodStatusReport, PodTerminated, RegisterRequest,
    RegisterResponse, WatchEvent, WatchRequest,
};
use view::NodeView;

pub struct NodeService {
    api: Arc<Api>,
    pki: Arc<RwLock<Pki>>,
}

type LogRequests = Pin<Box<dyn Stream<Item = Result<proto::LogRequest, Status>> + Send>>;

pub fn status_of(error: ApiError) -> Status {
    let message = error.to_string();
    match error {
        ApiError::NotFound { .. } | ApiError::NoRoute => Status::not_found(message),
        ApiError::Forbidden(_) => Status::permission_denied(message),
        ApiError::Unauthorized => Status::unauthenticated(message),
        ApiError::BadRequest(_)
        | ApiError::Invalid { .. }
        | ApiError::UnsupportedMediaType(_)
        | ApiError::TooLarge { .. } => Status::invalid_argument(message),
        ApiError::Conflict { .. }
        | ApiError::ConflictWith { .. }
        | ApiError::AlreadyExists { .. } => Status::aborted(message),
        ApiError::Expired { .. } => Status::out_of_range(message),
        _ => Status::internal(message),
    }
}

impl NodeService {
    pub fn new(api: Arc<Api>, pki: Arc<RwLock<Pki>>) -> NodeService {
        NodeService { api, pki }
    }

    /// The node the caller's token belongs to.
    fn node_of<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("a node token is required (authorization: Bearer ...)")
            })?;
        match crate::api::pki::authenticate(&self.pki, token.trim()) {
            Some(Identity::Node(node)) => Ok(node),
            Some(Identity::Admin) => Err(Status::permission_denied(
                "the node API is for node credentials, not the admin's",
            )),
            None => Err(Status::unauthenticated("unknown token")),
        }
    }

    pub fn into_server(self) -> NodeApiServer<NodeService> {
        NodeApiServer::new(self)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

/// Everything the node needs, at one revision, with the view that produced it.
async fn snapshot(
    api: &Api,
    node: &str,
    at: Option<u64>,
) -> Result<(WatchEvent, NodeView), ApiError> {
    let store = api.registry.store().clone();
    let listing = tokio::task::spawn_blocking(move || store.list("/registry/", at))
        .await
        .map_err(|error| ApiError::Internal(error.to_string()))?
        .map_err(|error| crate::api::status::from_store(error, "", ""))?;
    let mut view = NodeView::new(node);
    let mut objects = Vec::new();
    // Identities first, so pods find theirs.
    let (identities, others): (Vec<_>, Vec<_>) = listing.items.iter().partition(|object| {
        object
            .key
            .starts_with(crate::controllers::identities::IDENTITY_PREFIX)
    });
    for object in identities.into_iter().chain(others) {
        let Ok(value) = decode(object) else { continue };
        for update in view.apply(&object.key, EventKind::Put, &value) {
            if update.r#type != proto::update::Type::Deleted as i32 {
                objects.extend(update.object);
            }
        }
    }
    Ok((
        WatchEvent {
            revision: listing.revision,
            snapshot: true,
            objects,
            updates: Vec::new(),
        },
        view,
    ))
}

async fn stream_node(
    api: Arc<Api>,
    node: String,
    resume: u64,
    out: mpsc::Sender<Result<WatchEvent, Status>>,
) {
    let mut changes = api.registry.hub().subscribe();
    let mut resumed = None;
    if resume > 0 {
        let store = api.registry.store().clone();
        let backlog =
            tokio::task::spawn_blocking(move || store.changes_since("/registry/", resume)).await;
        if let Ok(Ok(events)) = backlog
            && let Ok((_, mut view)) = snapshot(&api, &node, Some(resume)).await
        {
            let mut last = resume;
            let mut updates = Vec::new();
            for event in &events {
                last = event.object.mod_revision;
                if let Ok(value) = decode(&event.object) {
                    updates.extend(view.apply(&event.object.key, event.kind, &value));
                }
            }
            resumed = Some((
                WatchEvent {
                    revision: last,
                    snapshot: false,
                    objects: Vec::new(),
                    updates,
                },
                view,
            ));
        }
        // Compacted (or unreadable): the agent gets a snapshot instead, below.
    }
    let (first, mut view) = match resumed {
        Some(resumed) => resumed,
        None => match snapshot(&api, &node, None).await {
            Ok(snapshot) => snapshot,
            Err(error) => {
                let _ = out.send(Err(status_of(error))).await;
                return;
            }
        },
    };
    let mut last = first.revision;
    if out.send(Ok(first)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            _ = out.closed() => return,
            received = changes.recv() => match received {
                Ok(change) => {
                    if change.revision <= last {
                        continue;
                    }
                    last = change.revision;
                    let updates = view.apply_change(&change);
                    if !updates.is_empty() && out.send(Ok(WatchEvent { revision: last, snapshot: false, objects: Vec::new(), updates })).await.is_err() {
                        return;
                    }
                }
                // Fell behind: start over with a fresh snapshot.
                Err(broadcast::error::RecvError::Lagged(_)) => match snapshot(&api, &node, None).await {
                    Ok((event, fresh)) => {
                        last = event.revision;
                        view = fresh;
                        if out.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = out.send(Err(status_of(error))).await;
                        return;
                    }
                },
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[tonic::async_trait]
impl NodeApi for NodeService {
    type WatchStream = WatchStream;
    type ServeLogsStream = LogRequests;

    async fn serve_logs(
        &self,
        request: Request<tonic::Streaming<proto::LogChunk>>,
    ) -> Result<Response<Self::ServeLogsStream>, Status> {
        let node = self.node_of(&request)?;
        let mut chunks = request.into_inner();
        let (sender, receiver) = mpsc::channel(64);
        let broker = self.api.logs.clone();
        broker.attach(&node, sender.clone());
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = chunks.message().await {
                broker.deliver(chunk).await;
            }
            broker.detach(&node, &sender);
        });
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (Ok(item), receiver))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let node = self.node_of(&request)?;
        let stored = reports::register(&self.api, &node, &request.get_ref().node_json)
            .await
            .map_err(status_of)?;
        Ok(Response::new(RegisterResponse {
            node_json: serde_json::to_vec(&stored).unwrap_or_default(),
        }))
    }

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let node = self.node_of(&request)?;
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(stream_node(
            self.api.clone(),
            node,
            request.get_ref().resume_revision,
            sender,
        ));
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_pod_status(
        &self,
        request: Request<PodStatusReport>,
    ) -> Result<Response<Ack>, Status> {
        let node = self.node_of(&request)?;
        reports::pod_status(&self.api, &node, request.get_ref())
            .await
            .map_err(status_of)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_pod_terminated(
        &self,
        request: Request<PodTerminated>,
    ) -> Result<Response<Ack>, Status> {
        let node = self.node_of(&request)?;
        reports::pod_terminated(&self.api, &node, request.get_ref())
            .await
            .map_err(status_of)?;
        Ok(Response::new(Ack {}))
    }

    async fn report_node_status(
        &self,
        request: Request<NodeStatusReport>,
    ) -> Result<Response<Ack>, Status> {
        let node = self.node_of(&request)?;
        reports::node_status(&self.api, &node, &request.get_ref().status_json)
            .await
            .map_err(status_of)?;
        Ok(Response::new(Ack {}))
    }

    async fn renew_lease(&self, request: Request<LeaseRenewal>) -> Result<Response<Ack>, Status> {
        let node = self.node_of(&request)?;
        reports::renew_lease(&self.api, &node, request.get_ref().duration_seconds)
            .await
            .map_err(status_of)?;
        Ok(Response::new(Ack {}))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    #[error("node api tls: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// Serves the node API on `listener` with the control plane's certificate.
pub async fn serve(
    service: NodeService,
    listener: TcpListener,
    cert_pem: String,
    key_pem: String,
) -> Result<(), NodeApiError> {
    let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
    tonic::transport::Server::builder()
        .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?
        .add_service(service.into_server())
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}
