//! The control plane's stores against the conformance suite — embedded SQLite and a real
//! etcd (one member, and three with one killed) — plus what only a real backend can show:
//! restarts and concurrent writers.
use kaya_control_plane::store::etcd::EtcdStore;
use kaya_control_plane::store::sqlite::SqliteStore;
use kaya_control_plane::store::{Store, StoreError};
use kaya_tests::etcd::EtcdCluster;
use kaya_tests::store_conformance;
use std::sync::Arc;

#[test]
fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("kaya.db")).unwrap();
    store_conformance::run(&store, "/registry/pods/default");
    // A second run under another prefix on the same store: revisions are store-wide.
    store_conformance::run(&store, "/registry/configmaps/kube-system");
}

#[test]
fn sqlite_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kaya.db");
    let (object, revision) = {
        let store = SqliteStore::open(&path).unwrap();
        store.create("/registry/namespaces/a", b"{}").unwrap();
        let object = store
            .update("/registry/namespaces/a", b"{\"v\":2}", None)
            .unwrap();
        (object, store.revision().unwrap())
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.revision().unwrap(), revision);
    assert_eq!(store.get("/registry/namespaces/a").unwrap(), object);
    assert_eq!(
        store.changes_since("/registry/", 0).unwrap().len(),
        2,
        "history survives too"
    );
    assert_eq!(
        store
            .create("/registry/namespaces/b", b"{}")
            .unwrap()
            .mod_revision,
        revision + 1
    );
}

#[test]
fn concurrent_writers_never_lose_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("kaya.db")).unwrap());
    store.create("/registry/counter", b"0").unwrap();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 50 {
                    let current = store.get("/registry/counter").unwrap();
                    let value: u64 = std::str::from_utf8(&current.value)
                        .unwrap()
                        .parse()
                        .unwrap();
                    match store.update(
                        "/registry/counter",
                        (value + 1).to_string().as_bytes(),
                        Some(current.mod_revision),
                    ) {
                        Ok(_) => done += 1,
                        Err(StoreError::Conflict { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(
        store.get("/registry/counter").unwrap().value,
        b"200",
        "every increment applied exactly once"
    );
}

#[test]
fn etcd_passes_the_conformance_suite() {
    let cluster = EtcdCluster::start(1).unwrap();
    let store = EtcdStore::connect(&cluster.endpoints()).unwrap();
    store_conformance::run(&store, "/registry/pods/default");
    store_conformance::run(&store, "/registry/configmaps/kube-system");
}

#[test]
fn a_three_member_etcd_passes_the_suite_and_keeps_writing_when_its_leader_dies() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let store = EtcdStore::connect(&cluster.endpoints()).unwrap();
    store_conformance::run(&store, "/registry/pods/default");
    store.create("/registry/counter", b"0").unwrap();
    for round in 0..60u64 {
        if round == 20 {
            // The leader: its death forces an election, the hardest member to lose.
            let leader = cluster.leader().unwrap();
            cluster.kill(leader);
        }
        let current = store.get("/registry/counter").unwrap();
        let value: u64 = std::str::from_utf8(&current.value)
            .unwrap()
            .parse()
            .unwrap();
        store
            .update(
                "/registry/counter",
                (value + 1).to_string().as_bytes(),
                Some(current.mod_revision),
            )
            .unwrap_or_else(|error| panic!("write {round} with a member down: {error}"));
    }
    assert_eq!(store.get("/registry/counter").unwrap().value, b"60");
}
