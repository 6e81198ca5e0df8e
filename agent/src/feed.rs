//! The standalone feed: one thread rescans the manifest directory (and the local endpoints)
//! and applies each change to the service and policy maps; a failed apply (a full map) is
//! retried on the next round.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::datapath::endpoints::EndpointMap;
use crate::dir_watch::DirectoryWatch;
use crate::manifests::{ManifestDir, Rescan};
use crate::policy::{compile::NodeContext, sync::PolicySync};
use crate::services::sync::ServiceSync;

pub struct Feed {
    source: ManifestDir,
    services: Arc<Mutex<ServiceSync>>,
    policy: Arc<Mutex<PolicySync>>,
    /// The endpoint map, read each round: a new pod must get its policy without waiting
    /// for a manifest change.
    endpoints: EndpointMap,
    /// This node; `endpoints` is refreshed every round.
    node: NodeContext,
    services_done: bool,
    policy_done: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Feed {
    pub fn new(
        source: ManifestDir,
        services: Arc<Mutex<ServiceSync>>,
        policy: Arc<Mutex<PolicySync>>,
        endpoints: EndpointMap,
        node: NodeContext,
    ) -> Self {
        Feed {
            source,
            services,
            policy,
            endpoints,
            node,
            services_done: false,
            policy_done: false,
        }
    }

    /// One round: rescan, and apply what changed or failed last time.
    pub fn round(&mut self) {
        let started = std::time::Instant::now();
        let rescan = match self.source.rescan() {
            Ok(rescan) => {
                for err in &rescan.errors {
                    tracing::error!(%err, "manifest rejected; its last good objects stay");
                }
                rescan
            }
            Err(err) => {
                tracing::warn!(%err, "manifest directory unreadable; nothing changed");
                Rescan::default()
            }
        };
        // Each consumer applies only when its own kinds changed: a policy edit must not
        // replan every service, nor a service edit recompile every policy.
        if rescan.services || !self.services_done {
            let catalog = self.source.catalog();
            self.services_done = match lock(&self.services).apply(&catalog) {
                Ok(()) => true,
                Err(err) => {
                    tracing::error!(%err, "services not fully programmed; retrying");
                    false
                }
            };
        }
        let endpoints = (self.endpoints.entries().into_iter())
            .map(|(ip, info)| (ip, info.endpoint_id))
            .collect();
        let endpoints_changed = endpoints != self.node.endpoints;
        self.node.endpoints = endpoints;
        if rescan.policy || endpoints_changed || !self.policy_done {
            let inputs = self.source.policy_inputs();
            tracing::debug!(
                elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
                "policy inputs gathered"
            );
            self.policy_done = match lock(&self.policy).apply(&inputs, &self.node) {
                Ok(_) => true,
                Err(err) => {
                    tracing::error!(%err, "policy not fully programmed; retrying");
                    false
                }
            };
        }
    }

    /// Runs rounds on a thread of its own (map writes are blocking syscalls): as soon as
    /// the manifest directory changes (inotify), and every `poll` regardless (new local
    /// endpoints, a directory created later, a retry).
    pub fn spawn(mut self, poll: Duration) {
        let watch = DirectoryWatch::new(self.source.dir());
        std::thread::Builder::new()
            .name("feed".into())
            .spawn(move || {
                loop {
                    match &watch {
                        Some(watch) => watch.wait(poll),
                        None => std::thread::sleep(poll),
                    }
                    self.round();
                }
            })
            .expect("spawning the feed thread");
    }
}
