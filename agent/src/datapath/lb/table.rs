//! Pure service-table programming: given what the maps hold and the wanted frontends, the
//! ordered writes that get there without a packet ever seeing a half-written service —
//! backends before the slots naming them, slots before the count that exposes them, the
//! count before surplus slots go, and backends last.
use kaya_ebpf_common::lb::{
    Backend, SVC_FLAG_AFFINITY, SVC_FLAG_DROP_WITHOUT_LOCAL, SVC_FLAG_EXTERNAL,
    SVC_FLAG_PRESERVE_SOURCE, ServiceKey, ServiceValue,
};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::services::{BackendAddr, Frontend, FrontendAddr, Protocol};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("map {map} is full ({entries} entries): raise services.mapSizes.{setting}")]
    MapFull {
        map: &'static str,
        setting: &'static str,
        entries: usize,
    },
    #[error("map {map}: {operation}: {source}")]
    Map {
        map: &'static str,
        operation: &'static str,
        source: std::io::Error,
    },
    #[error("more than {max} {what}: no identifier left")]
    OutOfIds { what: &'static str, max: u32 },
}

/// The writes the datapath maps accept; the real maps and a test double implement it.
pub trait LbStore {
    fn put_backend(&mut self, id: u32, backend: Backend) -> Result<(), TableError>;
    fn delete_backend(&mut self, id: u32) -> Result<(), TableError>;
    fn put_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError>;
    fn delete_slot(&mut self, key: ServiceKey) -> Result<(), TableError>;
}

/// What the maps hold, as far as this agent knows (read back from them at start).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LbTable {
    pub slots: HashMap<ServiceKey, ServiceValue>,
    pub backends: HashMap<u32, Backend>,
}

/// What one sync changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub writes: usize,
    pub deletes: usize,
    /// Backends that are gone: their conntrack and affinity entries can go too.
    pub removed_backends: HashSet<u32>,
}

pub fn be(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

pub fn slot_key(addr: &FrontendAddr, slot: u16) -> ServiceKey {
    ServiceKey {
        address: be(addr.address),
        port: addr.port.to_be(),
        slot,
        protocol: addr.protocol.number(),
        _pad: [0; 3],
    }
}

pub fn backend_value(addr: &BackendAddr) -> Backend {
    Backend {
        address: be(addr.address),
        port: addr.port.to_be(),
        protocol: addr.protocol.number(),
        _pad: 0,
    }
}

pub fn backend_addr(backend: &Backend) -> Option<BackendAddr> {
    Some(BackendAddr {
        address: Ipv4Addr::from(backend.address.to_ne_bytes()),
        port: u16::from_be(backend.port),
        protocol: Protocol::from_number(backend.protocol)?,
    })
}

/// Smallest free identifier at or after a cursor, wrapping; 0 is never handed out.
struct Ids {
    used: HashSet<u32>,
    next: u32,
    max: u32,
    what: &'static str,
}

impl Ids {
    fn take(&mut self) -> Result<u32, TableError> {
        for _ in 0..self.max {
            let id = self.next;
            self.next = if self.next >= self.max {
                1
            } else {
                self.next + 1
            };
            if self.used.insert(id) {
                return Ok(id);
            }
        }
        Err(TableError::OutOfIds {
            what: self.what,
            max: self.max,
        })
    }
}

fn flags(frontend: &Frontend) -> u16 {
    let mut flags = 0;
    if frontend.affinity_timeout_s.is_some() {
        flags |= SVC_FLAG_AFFINITY;
    }
    if frontend.kind.is_external() {
        flags |= SVC_FLAG_EXTERNAL;
    }
    if frontend.preserve_source {
        flags |= SVC_FLAG_PRESERVE_SOURCE;
    }
    if frontend.drop_without_local {
        flags |= SVC_FLAG_DROP_WITHOUT_LOCAL;
    }
    flags
}

impl LbTable {
    /// Programs `wanted` into `store`, keeping `self` equal to what the store holds even
    /// when a write fails half-way (the next sync then carries on from there).
    pub fn sync(
        &mut self,
        wanted: &[Frontend],
        store: &mut impl LbStore,
    ) -> Result<SyncReport, TableError> {
        let (slots, backends, order) = self.desired(wanted)?;
        let mut report = SyncReport::default();
        let mut new_backends: Vec<_> = backends.iter().collect();
        new_backends.sort_by_key(|(id, _)| **id);
        for (id, backend) in new_backends {
            if self.backends.get(id) != Some(backend) {
                store.put_backend(*id, *backend)?;
                self.backends.insert(*id, *backend);
                report.writes += 1;
            }
        }
        for (frontend, count) in &order {
            let head = slot_key(frontend, 0);
            let old_count = self.slots.get(&head).map_or(0, |v| v.count);
            for slot in (1..=*count).chain([0]) {
                let key = slot_key(frontend, slot);
                let value = slots[&key];
                if self.slots.get(&key) != Some(&value) {
                    store.put_slot(key, value)?;
                    self.slots.insert(key, value);
                    report.writes += 1;
                }
            }
            for slot in (*count + 1)..=old_count {
                self.delete_slot(store, slot_key(frontend, slot), &mut report)?;
            }
        }
        // Frontends that went away: the head first, so no packet finds a count without slots.
        let mut stale: Vec<ServiceKey> = (self.slots.keys())
            .filter(|k| !slots.contains_key(k))
            .copied()
            .collect();
        stale.sort_by_key(|k| (k.address, k.port, k.protocol, k.slot));
        for key in stale {
            self.delete_slot(store, key, &mut report)?;
        }
        let mut unused: Vec<u32> = (self.backends.keys())
            .filter(|id| !backends.contains_key(id))
            .copied()
            .collect();
        unused.sort_unstable();
        for id in unused {
            store.delete_backend(id)?;
            self.backends.remove(&id);
            report.deletes += 1;
            report.removed_backends.insert(id);
        }
        Ok(report)
    }

    fn delete_slot(
        &mut self,
        store: &mut impl LbStore,
        key: ServiceKey,
        report: &mut SyncReport,
    ) -> Result<(), TableError> {
        store.delete_slot(key)?;
        self.slots.remove(&key);
        report.deletes += 1;
        Ok(())
    }

    /// The wanted map contents, reusing the identifiers of backends and frontends that stay.
    #[allow(clippy::type_complexity)]
    fn desired(
        &self,
        wanted: &[Frontend],
    ) -> Result<
        (
            HashMap<ServiceKey, ServiceValue>,
            HashMap<u32, Backend>,
            Vec<(FrontendAddr, u16)>,
        ),
        TableError,
    > {
        let known_backends: HashMap<Backend, u32> =
            self.backends.iter().map(|(id, b)| (*b, *id)).collect();
        let mut backend_ids = Ids {
            used: self.backends.keys().copied().collect(),
            next: 1,
            max: u32::MAX - 1,
            what: "backends",
        };
        let mut rev_nat_ids = Ids {
            used: (self.slots.iter())
                .filter(|(k, _)| k.slot == 0)
                .map(|(_, v)| u32::from(v.rev_nat_id))
                .collect(),
            next: 1,
            max: u32::from(u16::MAX),
            what: "frontends",
        };
        let mut slots = HashMap::new();
        let mut backends = HashMap::new();
        let mut assigned: HashMap<Backend, u32> = HashMap::new();
        let mut order = Vec::with_capacity(wanted.len());
        let mut seen = BTreeSet::new();
        for frontend in wanted {
            if !seen.insert(frontend.addr) {
                continue;
            }
            let head = slot_key(&frontend.addr, 0);
            let rev_nat_id = match self.slots.get(&head) {
                Some(existing) => existing.rev_nat_id,
                None => rev_nat_ids.take()? as u16,
            };
            let count = u16::try_from(frontend.backends.len()).unwrap_or(u16::MAX);
            for (index, addr) in frontend
                .backends
                .iter()
                .take(usize::from(count))
                .enumerate()
            {
                let backend = backend_value(addr);
                let id = match (assigned.get(&backend), known_backends.get(&backend)) {
                    (Some(id), _) | (None, Some(id)) => *id,
                    (None, None) => backend_ids.take()?,
                };
                assigned.insert(backend, id);
                backends.insert(id, backend);
                slots.insert(
                    slot_key(&frontend.addr, index as u16 + 1),
                    ServiceValue {
                        backend_id: id,
                        rev_nat_id,
                        ..ServiceValue::default()
                    },
                );
            }
            slots.insert(
                head,
                ServiceValue {
                    backend_id: 0,
                    count,
                    rev_nat_id,
                    flags: flags(frontend),
                    _pad: 0,
                    affinity_timeout_s: frontend.affinity_timeout_s.unwrap_or(0),
                },
            );
            order.push((frontend.addr, count));
        }
        Ok((slots, backends, order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::FrontendKind;

    /// Records every write and checks, after each one, that a packet would find a complete
    /// service: every slot the head's count exposes exists and names an existing backend.
    #[derive(Default)]
    struct Recorder {
        table: LbTable,
        ops: Vec<String>,
        fail_after: Option<usize>,
    }

    impl Recorder {
        fn check(&mut self, op: String) -> Result<(), TableError> {
            if self.fail_after == Some(self.ops.len()) {
                return Err(TableError::MapFull {
                    map: "test",
                    setting: "services",
                    entries: 0,
                });
            }
            self.ops.push(op);
            Ok(())
        }
        fn assert_consistent(&self) {
            for (key, head) in self.table.slots.iter().filter(|(k, _)| k.slot == 0) {
                for slot in 1..=head.count {
                    let key = ServiceKey { slot, ..*key };
                    let value = self.table.slots.get(&key).expect("exposed slot exists");
                    assert!(self.table.backends.contains_key(&value.backend_id));
                }
            }
        }
    }

    impl LbStore for Recorder {
        fn put_backend(&mut self, id: u32, backend: Backend) -> Result<(), TableError> {
            self.check(format!("put backend {id}"))?;
            self.table.backends.insert(id, backend);
            self.assert_consistent();
            Ok(())
        }
        fn delete_backend(&mut self, id: u32) -> Result<(), TableError> {
            self.check(format!("delete backend {id}"))?;
            self.table.backends.remove(&id);
            self.assert_consistent();
            Ok(())
        }
        fn put_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError> {
            self.check(format!("put slot {}", key.slot))?;
            self.table.slots.insert(key, value);
            self.assert_consistent();
            Ok(())
        }
        fn delete_slot(&mut self, key: ServiceKey) -> Result<(), TableError> {
            self.check(format!("delete slot {}", key.slot))?;
            self.table.slots.remove(&key);
            self.assert_consistent();
            Ok(())
        }
    }

    fn frontend(vip: u8, backends: &[u8]) -> Frontend {
        Frontend {
            addr: FrontendAddr {
                address: Ipv4Addr::new(10, 96, 0, vip),
                port: 80,
                protocol: Protocol::Tcp,
            },
            kind: FrontendKind::ClusterIp,
            service: format!("default/s{vip}:"),
            backends: (backends.iter())
                .map(|b| BackendAddr {
                    address: Ipv4Addr::new(10, 244, 1, *b),
                    port: 8080,
                    protocol: Protocol::Tcp,
                })
                .collect(),
            affinity_timeout_s: None,
            preserve_source: false,
            drop_without_local: false,
        }
    }

    #[test]
    fn grow_shrink_and_remove_never_expose_missing_slots() {
        let mut table = LbTable::default();
        let mut store = Recorder::default();
        table.sync(&[frontend(1, &[1, 2])], &mut store).unwrap();
        assert_eq!(
            store.ops,
            [
                "put backend 1",
                "put backend 2",
                "put slot 1",
                "put slot 2",
                "put slot 0"
            ]
        );
        store.ops.clear();
        table.sync(&[frontend(1, &[2, 3, 4])], &mut store).unwrap();
        assert_eq!(store.table, table, "the mirror matches the maps");
        store.ops.clear();
        let report = table.sync(&[frontend(1, &[4])], &mut store).unwrap();
        assert_eq!(store.ops.last().unwrap(), "delete backend 3");
        assert_eq!(report.removed_backends, HashSet::from([2, 3]));
        store.ops.clear();
        table.sync(&[], &mut store).unwrap();
        assert_eq!(
            store.ops,
            ["delete slot 0", "delete slot 1", "delete backend 4"]
        );
        assert!(store.table.slots.is_empty() && store.table.backends.is_empty());
    }

    #[test]
    fn identifiers_stay_stable_and_backends_are_shared() {
        let mut table = LbTable::default();
        let mut store = Recorder::default();
        table
            .sync(&[frontend(1, &[1, 2]), frontend(2, &[2])], &mut store)
            .unwrap();
        assert_eq!(table.backends.len(), 2, "one id per distinct backend");
        let rev = |t: &LbTable, vip| t.slots[&slot_key(&frontend(vip, &[]).addr, 0)].rev_nat_id;
        let before = (rev(&table, 1), rev(&table, 2));
        store.ops.clear();
        let report = table
            .sync(&[frontend(1, &[1, 2]), frontend(2, &[2])], &mut store)
            .unwrap();
        assert!(
            store.ops.is_empty(),
            "a repeated sync writes nothing: {:?}",
            store.ops
        );
        assert_eq!(report.writes + report.deletes, 0);
        assert_eq!(before, (rev(&table, 1), rev(&table, 2)));
    }

    #[test]
    fn a_failed_write_leaves_the_mirror_true_and_the_next_sync_finishes() {
        let mut table = LbTable::default();
        let mut store = Recorder {
            fail_after: Some(3),
            ..Recorder::default()
        };
        let wanted = [frontend(1, &[1, 2, 3])];
        assert!(matches!(
            table.sync(&wanted, &mut store),
            Err(TableError::MapFull { .. })
        ));
        assert_eq!(store.table, table);
        store.fail_after = None;
        table.sync(&wanted, &mut store).unwrap();
        assert_eq!(store.table, table);
        assert_eq!(table.slots.len(), 4);
    }

    #[test]
    fn no_endpoints_is_a_head_with_count_zero() {
        let mut table = LbTable::default();
        let mut store = Recorder::default();
        table.sync(&[frontend(9, &[])], &mut store).unwrap();
        let head = table.slots[&slot_key(&frontend(9, &[]).addr, 0)];
        assert_eq!(head.count, 0);
        assert_ne!(head.rev_nat_id, 0);
    }
}
