//! The controllers: in-process loops that watch the store through the watch hub and
//! reconcile one object at a time (namespace lifecycle, ReplicaSets, Deployments,
//! DaemonSets, EndpointSlices, node IPAM and lifecycle, identities, garbage collection).
mod queue;

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod garbage;
pub mod identities;
pub mod namespace;
pub mod nodes;
pub mod replicaset;
pub mod template;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::api::handlers::Api;
use crate::api::status::ApiError;
use crate::api::watch::Change;
pub use queue::{ObjectKey, Queue};

/// One controller: which objects a change concerns, and how to bring one object to its
/// desired state. Reconciling is level-based: it reads what is, never trusts the event.
pub trait Controller: Send + Sync + 'static {
    const NAME: &'static str;
    /// How often every object is reconciled even without changes (a backstop).
    const RESYNC: Duration = Duration::from_secs(30);

    /// The keys a change makes worth reconciling.
    fn keys_for(&self, change: &Change) -> Vec<ObjectKey>;

    /// Every key (for resyncs and the start).
    fn all_keys(&self, api: &Api) -> impl Future<Output = Result<Vec<ObjectKey>, ApiError>> + Send;

    /// Returns how soon to look again (e.g. waiting for a grace period), if at all.
    fn reconcile(
        &self,
        api: &Api,
        key: &ObjectKey,
    ) -> impl Future<Output = Result<Option<Duration>, ApiError>> + Send;
}

/// Runs a controller until the process ends: a feeder turns hub changes into queued keys,
/// the worker reconciles them one by one.
pub fn spawn<C: Controller>(api: Arc<Api>, controller: C) {
    let controller = Arc::new(controller);
    let queue = Arc::new(Queue::default());
    let mut changes = api.registry.hub().subscribe();
    let feeder_queue = queue.clone();
    let feeder_controller = controller.clone();
    let feeder_api = api.clone();
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => {
                    for key in feeder_controller.keys_for(&change) {
                        feeder_queue.add(key);
                    }
                }
                // Missed changes: reconcile everything rather than guess.
                Err(RecvError::Lagged(_)) => {
                    if let Ok(keys) = feeder_controller.all_keys(&feeder_api).await {
                        keys.into_iter().for_each(|key| feeder_queue.add(key));
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
    let resync_queue = queue.clone();
    let resync_controller = controller.clone();
    let resync_api = api.clone();
    tokio::spawn(async move {
        loop {
            match resync_controller.all_keys(&resync_api).await {
                Ok(keys) => keys.into_iter().for_each(|key| resync_queue.add(key)),
                Err(error) => tracing::warn!(controller = C::NAME, %error, "listing for a resync"),
            }
            tokio::time::sleep(C::RESYNC).await;
        }
    });
    tokio::spawn(async move {
        loop {
            let key = queue.next().await;
            match controller.reconcile(&api, &key).await {
                Ok(Some(after)) => queue.add_after(key, after),
                Ok(None) => {}
                Err(ApiError::Conflict { .. }) => queue.add_after(key, Duration::from_millis(20)),
                Err(error) => {
                    tracing::warn!(controller = C::NAME, key = %key, %error, "reconcile failed; retrying");
                    queue.add_after(key, Duration::from_millis(500));
                }
            }
        }
    });
}

/// Starts every controller.
pub fn spawn_all(api: Arc<Api>, settings: nodes::Settings) {
    spawn(api.clone(), namespace::NamespaceController);
    spawn(api.clone(), garbage::GarbageCollector);
    spawn(api.clone(), replicaset::ReplicaSetController);
    spawn(api.clone(), deployment::DeploymentController);
    spawn(api.clone(), daemonset::DaemonSetController);
    spawn(api.clone(), endpoints::EndpointsController);
    spawn(api.clone(), identities::IdentityController);
    spawn(
        api.clone(),
        nodes::NodeIpamController::new(settings.clone()),
    );
    spawn(api.clone(), nodes::NodeLifecycleController::new(settings));
    tokio::spawn(events::sweep(api));
}
