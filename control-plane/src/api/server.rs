//! The HTTPS listener: TLS with the control plane's certificate, bearer-token
//! authentication, a body size limit, and the routing of each request to discovery,
//! OpenAPI or a verb.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::discovery;
use super::handlers::{self, Api, Call, Reply};
use super::pki::{Identity, Pki};
use super::request::{self, Query, Route};
use super::schema;
use super::status::ApiError;

/// Kubernetes' own limit on request bodies (3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

type Body = BoxBody<Bytes, Infallible>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("tls configuration: {0}")]
    Tls(String),
    #[error("accept on {address}: {source}")]
    Accept {
        address: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Server {
    pub api: Arc<Api>,
    pub pki: Arc<std::sync::RwLock<Pki>>,
    /// host:port clients reach this server at (for /api's serverAddressByClientCIDRs).
    pub address: String,
}

pub fn tls_acceptor(pki: &Pki) -> Result<TlsAcceptor, ServerError> {
    let certificates: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
            .chain(CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|error| ServerError::Tls(format!("certificate pem: {error}")))?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())
        .map_err(|error| ServerError::Tls(format!("key pem: {error}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| ServerError::Tls(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| ServerError::Tls(error.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn json(code: u16, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn error(error: &ApiError) -> Response<Body> {
    json(error.code(), &error.to_status())
}

fn bytes(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

fn stream(receiver: tokio::sync::mpsc::Receiver<Vec<u8>>, content_type: &str) -> Response<Body> {
    let frames = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| {
            (
                Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))),
                receiver,
            )
        })
    });
    Response::builder()
        .status(200)
        .header(CONTENT_TYPE, content_type)
        .header("Transfer-Encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(frames)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

/// What kube-openapi labels the protobuf document (clients cannot parse the `@` in the
/// media type they ask for).
const OPENAPI_PROTOBUF: &str = "application/octet-stream";

fn openapi(accept: Option<&str>) -> Response<Body> {
    static PROTOBUF: OnceLock<Vec<u8>> = OnceLock::new();
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    let definitions = schema::build::served();
    if accept.is_some_and(|accept| accept.contains("protobuf")) {
        let body = PROTOBUF.get_or_init(|| schema::proto::encode_document(definitions));
        return bytes(200, OPENAPI_PROTOBUF, body.clone());
    }
    let body = JSON.get_or_init(|| {
        serde_json::to_vec(&schema::proto::swagger_json(definitions)).unwrap_or_default()
    });
    bytes(200, "application/json", body.clone())
}

impl Server {
    fn authenticate(&self, request: &Request<Incoming>) -> Option<Identity> {
        let header = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let token = header.strip_prefix("Bearer ")?.trim();
        super::pki::authenticate(&self.pki, token)
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let Some(identity) = self.authenticate(&request) else {
            return error(&ApiError::Unauthorized);
        };
        let route = match request::route(request.uri().path()) {
            Ok(route) => route,
            Err(failure) => return error(&failure),
        };
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let accept = header(ACCEPT);
        let content_type = header(CONTENT_TYPE);
        let method = request.method().as_str().to_owned();
        if !matches!(route, Route::Object(_)) && method != "GET" {
            return error(&ApiError::MethodNotAllowed(format!(
                "{method} is not allowed here"
            )));
        }
        match route {
            Route::Version => json(200, &discovery::version()),
            Route::Health => bytes(200, "text/plain", b"ok".to_vec()),
            Route::CoreVersions => json(200, &discovery::core_versions(&self.address)),
            Route::Groups => json(200, &discovery::groups()),
            Route::Group(group) => match discovery::api_group(&group) {
                Some(body) => json(200, &body),
                None => error(&ApiError::NoRoute),
            },
            Route::GroupVersion { group, version } => {
                json(200, &discovery::resource_list(&group, &version))
            }
            Route::OpenApiV2 => openapi(accept.as_deref()),
            Route::Object(target) => {
                let query = Query::parse(request.uri().query());
                let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => return error(&ApiError::TooLarge { limit: MAX_BODY }),
                };
                let call = Call {
                    method: &method,
                    query: &query,
                    presentation: request::presentation(accept.as_deref()),
                    content_type: content_type.as_deref(),
                    body: &body,
                    identity: &identity,
                };
                match handlers::handle(&self.api, target, call).await {
                    Ok(Reply::Json(code, value)) => json(code, &value),
                    Ok(Reply::Stream(receiver)) => stream(receiver, "application/json"),
                    Ok(Reply::TextStream(receiver)) => stream(receiver, "text/plain"),
                    Err(failure) => error(&failure),
                }
            }
        }
    }

    /// Accepts connections until the listener fails; each connection is served on its own task.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        acceptor: TlsAcceptor,
    ) -> Result<(), ServerError> {
        let address = listener
            .local_addr()
            .map_err(|source| ServerError::Accept {
                address: ([0, 0, 0, 0], 0).into(),
                source,
            })?;
        loop {
            let (socket, _) = listener
                .accept()
                .await
                .map_err(|source| ServerError::Accept { address, source })?;
            let _ = socket.set_nodelay(true);
            let server = self.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.respond(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    }
}
