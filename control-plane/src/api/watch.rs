//! Watches: one hub follows the store's change feed and fans events out to every watcher;
//! each watch replays its backlog from the store (410 Gone once compacted), then follows the
//! hub, filtered by scope and selectors, with bookmarks and a timeout.
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc};

use super::registry::decode;
use super::resources::Resource;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{ApiError, from_store};
use crate::store::{Event, EventKind, Store};

/// A store change with the object decoded once for every watcher.
#[derive(Debug)]
pub struct Change {
    pub kind: EventKind,
    pub key: String,
    pub revision: u64,
    /// Put of a key's first version (ADDED) rather than a later one (MODIFIED).
    pub created: bool,
    pub object: Value,
}

fn change_of(event: &Event) -> Option<Change> {
    let object = decode(&event.object).ok()?;
    Some(Change {
        kind: event.kind,
        key: event.object.key.clone(),
        revision: event.object.mod_revision,
        created: event.object.create_revision == event.object.mod_revision,
        object,
    })
}

pub struct WatchHub {
    store: Arc<dyn Store>,
    sender: broadcast::Sender<Arc<Change>>,
    wake: Notify,
    delivered: AtomicU64,
}

const FEED_PREFIX: &str = "/registry/";
/// Changes kept for subscribers that are behind. Each holds a decoded object, so this bounds
/// memory (a few thousand objects); a subscriber further behind is cut off and re-lists.
const HUB_BUFFER: usize = 2048;

impl WatchHub {
    /// Starts following the store; `poll` bounds how late a write made by another control
    /// plane (sharing etcd) is seen — local writes wake the hub at once.
    pub async fn start(store: Arc<dyn Store>, poll: Duration) -> Result<Arc<WatchHub>, ApiError> {
        let reader = store.clone();
        // Store calls block (etcd's client runs its own runtime): never on an async worker.
        let revision = tokio::task::spawn_blocking(move || reader.revision())
            .await
            .map_err(|error| ApiError::Internal(error.to_string()))?
            .map_err(|error| from_store(error, "", ""))?;
        let (sender, _) = broadcast::channel(HUB_BUFFER);
        let hub = Arc::new(WatchHub {
            store,
            sender,
            wake: Notify::new(),
            delivered: AtomicU64::new(revision),
        });
        let follower = hub.clone();
        tokio::spawn(async move { follower.follow(poll).await });
        Ok(hub)
    }

    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The newest revision every subscriber has been sent.
    pub fn revision(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.sender.subscribe()
    }

    fn deliver(&self, event: &Event) {
        let revision = event.object.mod_revision;
        if revision <= self.revision() {
            return;
        }
        if let Some(change) = change_of(event) {
            // No receivers is fine: nobody is watching.
            let _ = self.sender.send(Arc::new(change));
        }
        self.delivered.store(revision, Ordering::Release);
    }

    /// Fell behind compaction: watchers resume from their own revisions (and get 410 if
    /// those are gone too); the hub goes on from now.
    async fn skip_ahead(&self) {
        let store = self.store.clone();
        if let Ok(Ok(current)) = tokio::task::spawn_blocking(move || store.revision()).await {
            tracing::warn!(
                after = self.revision(),
                current,
                "watch hub: history compacted under it; skipping ahead"
            );
            self.delivered.store(current, Ordering::Release);
        }
    }

    async fn follow(self: Arc<Self>, poll: Duration) {
        loop {
            // A backend that pushes changes (etcd) is followed live.
            if let Some(mut feed) = self.store.feed(FEED_PREFIX, self.revision()) {
                while let Some(item) = feed.recv().await {
                    match item {
                        Ok(event) => self.deliver(&event),
                        Err(crate::store::StoreError::Compacted { .. }) => {
                            self.skip_ahead().await;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let _ = tokio::time::timeout(poll, self.wake.notified()).await;
            let after = self.revision();
            let store = self.store.clone();
            let events =
                tokio::task::spawn_blocking(move || store.changes_since(FEED_PREFIX, after)).await;
            match events {
                Ok(Ok(events)) => events.iter().for_each(|event| self.deliver(event)),
                Ok(Err(crate::store::StoreError::Compacted { .. })) => self.skip_ahead().await,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "watch hub: reading the change feed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => {}
            }
        }
    }
}

/// What one watch request asked for.
pub struct WatchSpec {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Events after this revision; None = the current state as ADDED events first.
    pub since: Option<u64>,
    pub bookmarks: bool,
    pub timeout: Duration,
}

/// Turns an object into what the client asked for (the object itself or a Table).
pub type Encoder = Box<dyn Fn(&Value) -> Value + Send + Sync>;

fn line(kind: &str, object: Value) -> Vec<u8> {
    let mut bytes =
        serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

struct Filter {
    prefix: String,
    labels: LabelSelector,
    fields: FieldSelector,
    /// Keys currently selected, so an update that leaves the selection is a DELETED.
    selected: HashSet<String>,
}

impl Filter {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }

    /// The event type a client sees for a change, if it sees it at all.
    fn event_type(&mut self, change: &Change) -> Option<&'static str> {
        if !change.key.starts_with(&self.prefix) {
            return None;
        }
        if self.unfiltered() {
            return Some(match change.kind {
                EventKind::Delete => "DELETED",
                EventKind::Put if change.created => "ADDED",
                EventKind::Put => "MODIFIED",
            });
        }
        let selects = self.selects(&change.object);
        let was = match (change.kind, selects) {
            (EventKind::Put, true) => !self.selected.insert(change.key.clone()),
            _ => self.selected.remove(&change.key),
        };
        match (change.kind, selects, was) {
            (EventKind::Delete, _, _) => (was || selects).then_some("DELETED"),
            (EventKind::Put, true, true) => Some("MODIFIED"),
            (EventKind::Put, true, false) => Some("ADDED"),
            (EventKind::Put, false, was) => was.then_some("DELETED"),
        }
    }

    fn unfiltered(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

/// Runs one watch, writing event lines into `out` until the timeout, the client leaving
/// or the hub dropping it (a slow watcher is cut off; clients watch again from their last
/// resourceVersion).
pub async fn run(hub: Arc<WatchHub>, spec: WatchSpec, encode: Encoder, out: mpsc::Sender<Vec<u8>>) {
    let mut receiver = hub.subscribe();
    let prefix = spec.resource.scope_prefix(spec.namespace.as_deref());
    let mut filter = Filter {
        prefix: prefix.clone(),
        labels: spec.labels,
        fields: spec.fields,
        selected: HashSet::new(),
    };
    let store = hub.store.clone();
    let started = match spec.since {
        None => {
            let list_prefix = prefix.clone();
            let listing = tokio::task::spawn_blocking(move || store.list(&list_prefix, None)).await;
            let Ok(Ok(listing)) = listing else { return };
            for object in &listing.items {
                let Ok(value) = decode(object) else { continue };
                if filter.selects(&value) {
                    if !filter.unfiltered() {
                        filter.selected.insert(object.key.clone());
                    }
                    if out.send(line("ADDED", encode(&value))).await.is_err() {
                        return;
                    }
                }
            }
            listing.revision
        }
        Some(since) => {
            let seed_prefix = prefix.clone();
            let seed_store = store.clone();
            // Which keys were selected at `since`, so the first updates are typed right.
            if !filter.unfiltered()
                && let Ok(Ok(listing)) =
                    tokio::task::spawn_blocking(move || seed_store.list(&seed_prefix, Some(since)))
                        .await
            {
                for object in &listing.items {
                    if decode(object).is_ok_and(|value| filter.selects(&value)) {
                        filter.selected.insert(object.key.clone());
                    }
                }
            }
            let backlog_prefix = prefix.clone();
            let backlog =
                tokio::task::spawn_blocking(move || store.changes_since(&backlog_prefix, since))
                    .await;
            let events = match backlog {
                Ok(Ok(events)) => events,
                Ok(Err(error)) => {
                    let status = from_store(error, spec.resource.plural, "").to_status();
                    let _ = out.send(line("ERROR", status)).await;
                    return;
                }
                Err(_) => return,
            };
            let mut last = since;
            for event in &events {
                let Some(change) = change_of(event) else {
                    continue;
                };
                last = change.revision;
                if let Some(kind) = filter.event_type(&change)
                    && out.send(line(kind, encode(&change.object))).await.is_err()
                {
                    return;
                }
            }
            last
        }
    };
    let mut last_sent = started;
    let deadline = tokio::time::Instant::now() + spec.timeout;
    let mut bookmark = tokio::time::interval(Duration::from_secs(5));
    bookmark.tick().await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = out.closed() => return,
            _ = bookmark.tick(), if spec.bookmarks => {
                let revision = hub.revision().max(last_sent);
                let object = json!({
                    "kind": spec.resource.kind,
                    "apiVersion": spec.resource.api_version(),
                    "metadata": {"resourceVersion": revision.to_string()},
                });
                if out.send(line("BOOKMARK", object)).await.is_err() {
                    return;
                }
            }
            received = receiver.recv() => {
                let change = match received {
                    Ok(change) => change,
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                };
                if change.revision <= last_sent {
                    continue;
                }
                last_sent = change.revision;
                if let Some(kind) = filter.event_type(&change)
                    && out.send(line(kind, encode(&change.object))).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
