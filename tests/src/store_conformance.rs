//! One conformance suite for every control-plane store backend (SQLite now, etcd next): the
//! revision, concurrency, history, change-feed and compaction rules of `Store`. Each call
//! works under its own key prefix, so a backend can be checked while holding other data.
use kaya_control_plane::store::{EventKind, Store, StoreError};

pub fn run(store: &dyn Store, prefix: &str) {
    let key = |name: &str| format!("{prefix}/{name}");
    let start = store.revision().unwrap();

    // Create: each write takes the next revision; a second create is refused.
    let a = store.create(&key("a"), b"a1").unwrap();
    assert_eq!((a.create_revision, a.mod_revision), (start + 1, start + 1));
    let b = store.create(&key("b"), b"b1").unwrap();
    assert_eq!(b.mod_revision, start + 2);
    assert_eq!(
        store.create(&key("a"), b"again"),
        Err(StoreError::AlreadyExists { key: key("a") })
    );
    assert_eq!(
        store.revision().unwrap(),
        start + 2,
        "a refused write takes no revision"
    );

    // Update with optimistic concurrency (resourceVersion).
    let stale = store
        .update(&key("a"), b"a2", Some(a.mod_revision + 100))
        .unwrap_err();
    assert_eq!(
        stale,
        StoreError::Conflict {
            key: key("a"),
            expected: a.mod_revision + 100,
            actual: a.mod_revision
        }
    );
    let a2 = store
        .update(&key("a"), b"a2", Some(a.mod_revision))
        .unwrap();
    assert_eq!(
        (a2.create_revision, a2.mod_revision, a2.value.as_slice()),
        (a.create_revision, start + 3, &b"a2"[..])
    );
    assert!(matches!(
        store.update(&key("a"), b"x", Some(a.mod_revision)),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.update(&key("missing"), b"x", None),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.get(&key("a")).unwrap(), a2);
    assert_eq!(
        store.get(&key("missing")),
        Err(StoreError::NotFound {
            key: key("missing")
        })
    );

    // Delete returns what the key held; afterwards it is gone and may be created again.
    assert!(matches!(
        store.delete(&key("b"), Some(1)),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.delete(&key("b"), Some(b.mod_revision)).unwrap(), b);
    assert!(matches!(
        store.get(&key("b")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete(&key("b"), None),
        Err(StoreError::NotFound { .. })
    ));
    let after_delete = store.revision().unwrap();
    assert_eq!(after_delete, start + 4);

    // Lists: now, and as of earlier revisions; the future is refused.
    store
        .create(&format!("{prefix}-sibling/x"), b"outside")
        .unwrap();
    let now = store.list(&format!("{prefix}/"), None).unwrap();
    assert_eq!(
        now.items.iter().map(|o| o.key.clone()).collect::<Vec<_>>(),
        [key("a")]
    );
    let before = store.list(&format!("{prefix}/"), Some(start + 2)).unwrap();
    let values: Vec<(String, Vec<u8>)> = before
        .items
        .iter()
        .map(|o| (o.key.clone(), o.value.clone()))
        .collect();
    assert_eq!(
        values,
        [(key("a"), b"a1".to_vec()), (key("b"), b"b1".to_vec())]
    );
    assert_eq!(before.revision, start + 2);
    let current = store.revision().unwrap();
    assert!(matches!(
        store.list(&format!("{prefix}/"), Some(current + 5)),
        Err(StoreError::FutureRevision { .. })
    ));

    // The change feed: everything after a revision, in order, deletes with their last value.
    let events = store.changes_since(&format!("{prefix}/"), start).unwrap();
    let summary: Vec<(EventKind, String, Vec<u8>, u64)> = events
        .iter()
        .map(|e| {
            (
                e.kind,
                e.object.key.clone(),
                e.object.value.clone(),
                e.object.mod_revision,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (EventKind::Put, key("a"), b"a1".to_vec(), start + 1),
            (EventKind::Put, key("b"), b"b1".to_vec(), start + 2),
            (EventKind::Put, key("a"), b"a2".to_vec(), start + 3),
            (EventKind::Delete, key("b"), b"b1".to_vec(), start + 4),
        ]
    );
    assert_eq!(
        store
            .changes_since(&format!("{prefix}/"), start + 3)
            .unwrap()
            .len(),
        1
    );

    // Compaction: history before the point is gone (410 Gone for watchers), state is kept.
    let a3 = store.update(&key("a"), b"a3", None).unwrap();
    store.compact(a3.mod_revision).unwrap();
    assert!(matches!(
        store.changes_since(&format!("{prefix}/"), start + 1),
        Err(StoreError::Compacted { .. })
    ));
    assert!(matches!(
        store.list(&format!("{prefix}/"), Some(start + 2)),
        Err(StoreError::Compacted { .. })
    ));
    assert_eq!(
        store
            .list(&format!("{prefix}/"), Some(a3.mod_revision))
            .unwrap()
            .items,
        std::slice::from_ref(&a3)
    );
    assert_eq!(store.get(&key("a")).unwrap(), a3);
    assert!(
        store
            .changes_since(&format!("{prefix}/"), a3.mod_revision)
            .unwrap()
            .is_empty()
    );
    let a4 = store
        .update(&key("a"), b"a4", Some(a3.mod_revision))
        .unwrap();
    assert_eq!(
        store
            .changes_since(&format!("{prefix}/"), a3.mod_revision)
            .unwrap()[0]
            .object,
        a4
    );
}
