//! One control plane process: the store it was given, the watch hub, the API server with
//! its credentials, and the bootstrap objects.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::net::TcpListener;

use crate::api::allocation::Allocator;
use crate::api::bootstrap;
use crate::api::handlers::Api;
use crate::api::pki::{Pki, PkiError};
use crate::api::registry::Registry;
use crate::api::server::{self, Server, ServerError};
use crate::api::status::ApiError;
use crate::api::watch::WatchHub;
use crate::scheduler::Scheduler;
use crate::store::etcd::EtcdStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Store, StoreError};

/// `sqlite:PATH` or `etcd:URL,URL,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Sqlite(PathBuf),
    Etcd(Vec<String>),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreSpec, String> {
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => {
                Ok(StoreSpec::Sqlite(PathBuf::from(path)))
            }
            Some(("etcd", endpoints)) => {
                let endpoints: Vec<String> = endpoints
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned)
                    .collect();
                if endpoints.is_empty() {
                    return Err(
                        "etcd: needs at least one endpoint (etcd:http://127.0.0.1:2379)".into(),
                    );
                }
                Ok(StoreSpec::Etcd(endpoints))
            }
            _ => Err(format!(
                "{text:?}: expected sqlite:PATH or etcd:URL[,URL...]"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreSpec,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The node API (gRPC) agents connect to.
    pub node_api_listen: SocketAddr,
    /// The address agents and pods reach the API server at (default: the listen address,
    /// or 127.0.0.1 when listening on all addresses).
    pub advertise_address: Option<IpAddr>,
    pub service_cidr: Ipv4Net,
    pub nodes: crate::controllers::nodes::Settings,
    /// History older than this is compacted (watches from before it get 410 Gone).
    pub compaction_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("credentials: {0}")]
    Pki(#[from] PkiError),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("api server: {0}")]
    Server(#[from] ServerError),
    #[error("node api: {0}")]
    NodeApi(#[from] crate::node_api::NodeApiError),
    #[error("bootstrap objects: {0}")]
    Bootstrap(ApiError),
}

fn open_store(spec: &StoreSpec) -> Result<(Arc<dyn Store>, Duration), StoreError> {
    Ok(match spec {
        // Only this process writes SQLite: local writes wake the watch hub, polling is a backstop.
        StoreSpec::Sqlite(path) => (Arc::new(SqliteStore::open(path)?), Duration::from_secs(1)),
        // Other control planes may write the same etcd: poll often.
        StoreSpec::Etcd(endpoints) => (
            Arc::new(EtcdStore::connect(endpoints)?),
            Duration::from_millis(50),
        ),
    })
}

/// Every interval, compacts history up to the revision seen one interval earlier, so a
/// watch can always resume from a revision less than an interval old (as the API server
/// compacts etcd every five minutes).
async fn compact_periodically(store: Arc<dyn Store>, interval: Duration) {
    let mut previous: Option<u64> = None;
    loop {
        tokio::time::sleep(interval).await;
        let reader = store.clone();
        let Ok(Ok(current)) = tokio::task::spawn_blocking(move || reader.revision()).await else {
            continue;
        };
        if let Some(revision) = previous {
            let compactor = store.clone();
            if let Ok(Err(error)) =
                tokio::task::spawn_blocking(move || compactor.compact(revision)).await
            {
                tracing::warn!(%error, revision, "compacting the store");
            }
        }
        previous = Some(current);
    }
}

/// A started control plane (its listener bound, bootstrap done).
pub struct ControlPlane {
    pub address: SocketAddr,
    pub node_api_address: SocketAddr,
    node_api_listener: TcpListener,
    node_service: crate::node_api::NodeService,
    server_pem: (String, String),
    pub kubeconfig: PathBuf,
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl ControlPlane {
    pub async fn start(config: Config) -> Result<ControlPlane, ControlPlaneError> {
        let spec = config.store.clone();
        let (store, poll) = tokio::task::spawn_blocking(move || open_store(&spec))
            .await
            .map_err(|error| StoreError::Backend {
                operation: "open",
                message: error.to_string(),
            })??;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ControlPlaneError::Listen {
                    address: config.listen,
                    source,
                })?;
        let address = listener
            .local_addr()
            .map_err(|source| ControlPlaneError::Listen {
                address: config.listen,
                source,
            })?;
        let advertise = config
            .advertise_address
            .unwrap_or(if address.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                address.ip()
            });
        let hosts = vec![advertise.to_string(), address.ip().to_string()];
        let pki = Pki::load_or_create(&config.data_dir, &hosts)?;
        let kubeconfig =
            pki.write_admin_kubeconfig(&format!("https://{advertise}:{}", address.port()))?;
        let acceptor = server::tls_acceptor(&pki)?;
        let server_pem = (
            format!("{}{}", pki.server_cert_pem, pki.ca_pem),
            pki.server_key_pem.clone(),
        );
        let node_api_listener =
            TcpListener::bind(config.node_api_listen)
                .await
                .map_err(|source| ControlPlaneError::Listen {
                    address: config.node_api_listen,
                    source,
                })?;
        let node_api_address =
            node_api_listener
                .local_addr()
                .map_err(|source| ControlPlaneError::Listen {
                    address: config.node_api_listen,
                    source,
                })?;
        let hub = WatchHub::start(store.clone(), poll)
            .await
            .map_err(ControlPlaneError::Bootstrap)?;
        tokio::spawn(compact_periodically(
            store.clone(),
            config.compaction_interval,
        ));
        let api = Arc::new(Api {
            registry: Registry::new(store.clone(), hub),
            allocator: Arc::new(Allocator::new(store, config.service_cidr)),
            logs: Arc::new(crate::node_api::logs::LogBroker::default()),
        });
        bootstrap::run(&api, (&advertise.to_string(), address.port()))
            .await
            .map_err(ControlPlaneError::Bootstrap)?;
        crate::controllers::spawn_all(api.clone(), config.nodes.clone());
        Scheduler::start(api.clone())
            .await
            .map_err(ControlPlaneError::Bootstrap)?;
        let pki = Arc::new(std::sync::RwLock::new(pki));
        let node_service = crate::node_api::NodeService::new(api.clone(), pki.clone());
        let server = Arc::new(Server {
            api,
            pki,
            address: format!("{advertise}:{}", address.port()),
        });
        Ok(ControlPlane {
            address,
            node_api_address,
            node_api_listener,
            node_service,
            server_pem,
            kubeconfig,
            server,
            listener,
            acceptor,
        })
    }

    /// Serves the HTTPS API and the node API until either fails.
    pub async fn serve(self) -> Result<(), ControlPlaneError> {
        let (cert, key) = self.server_pem;
        let node_api = crate::node_api::serve(self.node_service, self.node_api_listener, cert, key);
        tokio::select! {
            result = self.server.serve(self.listener, self.acceptor) => Ok(result?),
            result = node_api => Ok(result?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse() {
        assert_eq!(
            "sqlite:/var/lib/kaya/state.db".parse(),
            Ok(StoreSpec::Sqlite("/var/lib/kaya/state.db".into()))
        );
        assert_eq!(
            "etcd:http://a:2379, http://b:2379".parse(),
            Ok(StoreSpec::Etcd(vec![
                "http://a:2379".into(),
                "http://b:2379".into()
            ]))
        );
        assert!("etcd:".parse::<StoreSpec>().is_err());
        assert!("mysql:x".parse::<StoreSpec>().is_err());
    }
}
