//! The control plane's storage contract, etcd's model: every write gets the next store-wide
//! revision (Kubernetes' resourceVersion), updates and deletes can require the revision the
//! caller read, past revisions can be listed, and changes after a revision can be replayed
//! until compaction removes them (then: Compacted, the API's 410 Gone). Backends: embedded
//! SQLite (the default) and etcd.
pub mod etcd;
pub mod sqlite;

pub type Revision = u64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watch delivers it; a delete carries the value the key had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub object: Object,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub items: Vec<Object>,
    /// The revision the listing reflects (the store's current one unless asked for another).
    pub revision: Revision,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    #[error(
        "key {key:?} was modified: the write expected revision {expected}, the key is at {actual}"
    )]
    Conflict {
        key: String,
        expected: Revision,
        actual: Revision,
    },
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (current: {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("store backend: {operation}: {message}")]
    Backend {
        operation: &'static str,
        message: String,
    },
}

pub trait Store: Send + Sync {
    fn create(&self, key: &str, value: &[u8]) -> Result<Object, StoreError>;
    /// Replaces the value; with `expected`, only if the key's mod revision is still that.
    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Object, StoreError>;
    /// Deletes the key (with `expected` as in `update`); returns what it held.
    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Object, StoreError>;
    fn get(&self, key: &str) -> Result<Object, StoreError>;
    /// Keys under `prefix` as they were at `at` (default: now), in key order.
    fn list(&self, prefix: &str, at: Option<Revision>) -> Result<Listing, StoreError>;
    /// Changes under `prefix` after revision `after`, in revision order (a watch's backlog).
    fn changes_since(&self, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError>;
    /// Forgets history before `revision` (the latest state of every key is kept).
    fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    fn revision(&self) -> Result<Revision, StoreError>;

    /// A live feed of the changes under `prefix` after `after`, in revision order, where the
    /// backend pushes changes (etcd's watch); None means: poll `changes_since`. The feed
    /// ends (its sender dropped) on any error; the reader starts a new one from where it got.
    fn feed(&self, _prefix: &str, _after: Revision) -> Option<Feed> {
        None
    }
}

pub type Feed = tokio::sync::mpsc::UnboundedReceiver<Result<Event, StoreError>>;
