//! The etcd backend of `Store` (the `etcd-client` crate): keys and revisions are etcd's own,
//! optimistic concurrency is a transaction comparing the key's mod revision, history and
//! compaction are etcd's MVCC, and the change feed is a watch replayed from a revision.
use super::{Event, EventKind, Listing, Object, Revision, Store, StoreError};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KeyValue,
    KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long one call may take before it is reported as a backend error.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Between attempts to send a request no endpoint accepted.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

pub struct EtcdStore {
    client: Client,
    /// The store's calls are synchronous; etcd-client is async, so calls run here.
    runtime: tokio::runtime::Runtime,
}

fn backend(operation: &'static str) -> impl Fn(etcd_client::Error) -> StoreError {
    move |error| StoreError::Backend {
        operation,
        message: error.to_string(),
    }
}

/// Errors after which etcd has certainly not applied the request, so it can be sent again:
/// no connection could be made; the member had no leader and proposed nothing; a read's
/// ReadIndex was abandoned because the leader changed (etcd returns that for reads only).
fn never_sent(error: &etcd_client::Error) -> bool {
    let message = error.to_string();
    [
        "tcp connect error",
        "etcdserver: no leader",
        "etcdserver: leader changed",
    ]
    .iter()
    .any(|known| message.contains(known))
}

fn object(kv: &KeyValue) -> Object {
    Object {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision() as Revision,
        mod_revision: kv.mod_revision() as Revision,
    }
}

/// A watch event as the store reports it: a delete carries the value the key had.
fn event_of(kind: EventType, kv: &KeyValue, previous: Option<&KeyValue>) -> Event {
    match kind {
        EventType::Put => Event {
            kind: EventKind::Put,
            object: object(kv),
        },
        EventType::Delete => {
            // A delete's kv holds only the key; the value is the last one.
            let mut last = previous.map_or_else(|| object(kv), object);
            last.mod_revision = kv.mod_revision() as Revision;
            Event {
                kind: EventKind::Delete,
                object: last,
            }
        }
    }
}

impl EtcdStore {
    /// Connects to the given endpoints (`host:port`, `http://host:port`).
    pub fn connect(endpoints: &[String]) -> Result<EtcdStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|error| StoreError::Backend {
                operation: "starting the etcd client runtime",
                message: error.to_string(),
            })?;
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(CALL_TIMEOUT)
            .with_timeout(CALL_TIMEOUT);
        let client = runtime
            .block_on(Client::connect(endpoints, Some(options)))
            .map_err(backend("connecting to etcd"))?;
        Ok(EtcdStore { client, runtime })
    }

    /// Runs one KV request, again while it failed in a way that applied nothing (a member
    /// that died stays among the endpoints until the channel notices; an election follows
    /// the leader's death), so a write is never applied twice.
    fn kv<T, F, Fut>(&self, request: F) -> Result<T, etcd_client::Error>
    where
        F: Fn(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match self.runtime.block_on(request(self.client.kv_client())) {
                Err(error) if never_sent(&error) && Instant::now() < deadline => {
                    std::thread::sleep(RETRY_PAUSE);
                }
                result => return result,
            }
        }
    }

    fn txn(&self, operation: &'static str, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.kv(|mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .map_err(backend(operation))
    }

    fn current(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let response = self
            .kv(|mut kv| async move { kv.get(key, None).await })
            .map_err(backend("get"))?;
        Ok(response.kvs().first().map(object))
    }

    /// Why a guarded write was refused: the key is missing or at another revision.
    fn refusal(&self, key: &str, expected: Option<Revision>) -> StoreError {
        match self.current(key) {
            Err(error) => error,
            Ok(None) => StoreError::NotFound {
                key: key.to_string(),
            },
            Ok(Some(current)) => StoreError::Conflict {
                key: key.to_string(),
                expected: expected.unwrap_or(0),
                actual: current.mod_revision,
            },
        }
    }

    /// The key exists, and is at `expected` if one is given.
    fn guard(key: &str, expected: Option<Revision>) -> Vec<Compare> {
        match expected {
            Some(revision) => vec![Compare::mod_revision(
                key,
                CompareOp::Equal,
                revision as i64,
            )],
            None => vec![Compare::create_revision(key, CompareOp::Greater, 0)],
        }
    }

    /// The oldest revision etcd still has (its last compaction), learnt from a watch
    /// started at revision 1, which etcd refuses naming that revision; 0 when unknown.
    fn oldest_revision(&self) -> Revision {
        let mut watch = self.client.watch_client();
        self.runtime.block_on(async {
            let options = WatchOptions::new().with_start_revision(1);
            let Ok(mut stream) = watch.watch("\0", Some(options)).await else {
                return 0;
            };
            loop {
                match tokio::time::timeout(CALL_TIMEOUT, stream.message()).await {
                    Ok(Ok(Some(response))) if response.compact_revision() > 0 => {
                        return response.compact_revision() as Revision;
                    }
                    Ok(Ok(Some(response))) if response.created() => continue,
                    _ => return 0,
                }
            }
        })
    }

    fn list_error(&self, error: etcd_client::Error, at: Revision) -> StoreError {
        let message = error.to_string();
        if message.contains("required revision has been compacted") {
            StoreError::Compacted {
                requested: at,
                compacted: self.oldest_revision(),
            }
        } else if message.contains("future revision") {
            StoreError::FutureRevision {
                requested: at,
                current: self.revision().unwrap_or(0),
            }
        } else {
            StoreError::Backend {
                operation: "list",
                message,
            }
        }
    }
}

impl Store for EtcdStore {
    fn create(&self, key: &str, value: &[u8]) -> Result<Object, StoreError> {
        let txn = Txn::new()
            .when(vec![Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(key, value, None)]);
        let response = self.txn("create", txn)?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let revision = response.header().map_or(0, |h| h.revision()) as Revision;
        Ok(Object {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision: revision,
            mod_revision: revision,
        })
    }

    fn update(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Object, StoreError> {
        let txn = Txn::new()
            .when(Self::guard(key, expected))
            .and_then(vec![TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_prev_key()),
            )]);
        let response = self.txn("update", txn)?;
        if !response.succeeded() {
            return Err(self.refusal(key, expected));
        }
        let revision = response.header().map_or(0, |h| h.revision()) as Revision;
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .unwrap_or_default() as Revision;
        Ok(Object {
            key: key.to_string(),
            value: value.to_vec(),
            create_revision,
            mod_revision: revision,
        })
    }

    fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Object, StoreError> {
        let txn = Txn::new()
            .when(Self::guard(key, expected))
            .and_then(vec![TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )]);
        let response = self.txn("delete", txn)?;
        if !response.succeeded() {
            return Err(self.refusal(key, expected));
        }
        response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(object),
                _ => None,
            })
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_string(),
            })
    }

    fn get(&self, key: &str) -> Result<Object, StoreError> {
        self.current(key)?.ok_or_else(|| StoreError::NotFound {
            key: key.to_string(),
        })
    }

    fn list(&self, prefix: &str, at: Option<Revision>) -> Result<Listing, StoreError> {
        let mut options = GetOptions::new().with_prefix();
        if let Some(revision) = at {
            options = options.with_revision(revision as i64);
        }
        let response = self
            .kv(|mut kv| {
                let options = options.clone();
                async move { kv.get(prefix, Some(options)).await }
            })
            .map_err(|error| self.list_error(error, at.unwrap_or(0)))?;
        let current = response.header().map_or(0, |h| h.revision()) as Revision;
        Ok(Listing {
            items: response.kvs().iter().map(object).collect(),
            revision: at.unwrap_or(current),
        })
    }

    fn changes_since(&self, prefix: &str, after: Revision) -> Result<Vec<Event>, StoreError> {
        let current = self.revision()?;
        if after >= current {
            return Ok(Vec::new());
        }
        let mut watch = self.client.watch_client();
        self.runtime.block_on(async {
            // The whole keyspace is replayed, not just the prefix: every revision is a write
            // somewhere, so the event at `current` marks the end of the history asked for
            // (etcd 3.4 answers a progress request before a new watcher has caught up).
            let options = WatchOptions::new()
                .with_all_keys()
                .with_start_revision(after as i64 + 1)
                .with_prev_key();
            let mut stream = watch
                .watch("\0", Some(options))
                .await
                .map_err(backend("watch"))?;
            let mut events = Vec::new();
            loop {
                let response = tokio::time::timeout(CALL_TIMEOUT, stream.message())
                    .await
                    .map_err(|_| StoreError::Backend {
                        operation: "watch",
                        message: format!(
                            "history up to revision {current} not replayed within {CALL_TIMEOUT:?}"
                        ),
                    })?
                    .map_err(backend("watch"))?
                    .ok_or_else(|| StoreError::Backend {
                        operation: "watch",
                        message: "etcd closed the watch".into(),
                    })?;
                if response.compact_revision() > 0 {
                    return Err(StoreError::Compacted {
                        requested: after,
                        compacted: response.compact_revision() as Revision,
                    });
                }
                if response.canceled() {
                    return Err(StoreError::Backend {
                        operation: "watch",
                        message: format!("etcd cancelled the watch: {}", response.cancel_reason()),
                    });
                }
                // Events come in revision order, all of one revision (a transaction) in the
                // same response: once `current` is reached, this response ends the replay.
                let mut replayed = false;
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    let revision = kv.mod_revision() as Revision;
                    replayed |= revision >= current;
                    if revision <= current && kv.key().starts_with(prefix.as_bytes()) {
                        events.push(event_of(event.event_type(), kv, event.prev_kv()));
                    }
                }
                if replayed {
                    return Ok(events);
                }
            }
        })
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.kv(|mut kv| async move {
            kv.compact(
                revision as i64,
                Some(CompactionOptions::new().with_physical()),
            )
            .await
        })
        .map(drop)
        .map_err(backend("compact"))
    }

    fn feed(&self, prefix: &str, after: Revision) -> Option<super::Feed> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let mut watch = self.client.watch_client();
        let prefix = prefix.to_owned();
        self.runtime.spawn(async move {
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(after as i64 + 1)
                .with_prev_key();
            let Ok(mut stream) = watch.watch(prefix.as_bytes(), Some(options)).await else {
                return;
            };
            while let Ok(Some(response)) = stream.message().await {
                if response.compact_revision() > 0 {
                    let _ = sender.send(Err(StoreError::Compacted {
                        requested: after,
                        compacted: response.compact_revision() as Revision,
                    }));
                    return;
                }
                if response.canceled() {
                    return;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    if sender
                        .send(Ok(event_of(event.event_type(), kv, event.prev_kv())))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Some(receiver)
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let response = self
            .kv(|mut kv| async move {
                kv.get("\0", Some(GetOptions::new().with_count_only()))
                    .await
            })
            .map_err(backend("revision"))?;
        Ok(response.header().map_or(0, |h| h.revision()) as Revision)
    }
}
