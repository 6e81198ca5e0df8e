//! Keeps the policy maps equal to the compilation of the current inputs: writes only what
//! changed, in an order that never opens or closes a flow by accident, and keeps the
//! figures Prometheus and `kaya observe` read.
use ipnet::Ipv4Net;
use kaya_ebpf_common::{
    metrics::Counter,
    policy::{DIRECTION_INGRESS, IpcacheEntry},
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::compile::{Compiled, EntryKey, Inputs, NodeContext, compile};
use super::names::{FlowNames, NamesError, PodName};
use super::numbering::NodeNumbering;
use crate::datapath::{MapAccessError, ipcache::IpcacheMap, policy::PolicyMaps};

#[derive(Debug, thiserror::Error)]
pub enum PolicySyncError {
    #[error("programming policy maps: {0}")]
    Maps(#[from] MapAccessError),
    #[error("recording flow names: {0}")]
    Names(#[from] NamesError),
}

#[derive(Clone, Debug, Default)]
pub struct PolicyStats {
    pub policies: usize,
    pub identities: usize,
    pub isolated_endpoints: usize,
    pub entries: usize,
    pub ipcache_entries: usize,
    pub syncs_total: u64,
    pub sync_errors_total: u64,
    pub last_sync: Duration,
}

/// The maps a sync writes, behind a seam so the write order is unit-tested without root.
pub trait PolicyStore: Send {
    fn put_ipcache(&mut self, prefix: Ipv4Net, entry: IpcacheEntry) -> Result<(), MapAccessError>;
    fn delete_ipcache(&mut self, prefix: Ipv4Net) -> Result<(), MapAccessError>;
    fn put_entry(&mut self, key: EntryKey, rule_id: u32) -> Result<(), MapAccessError>;
    fn delete_entry(&mut self, key: EntryKey) -> Result<(), MapAccessError>;
    fn set_isolation(&mut self, endpoint_id: u32, flags: u32) -> Result<(), MapAccessError>;
    fn clear_isolation(&mut self, endpoint_id: u32) -> Result<(), MapAccessError>;
    fn reset_rule_counter(&mut self, rule_id: u32) -> Result<(), MapAccessError>;
    fn rule_counter(&self, rule_id: u32) -> Result<Counter, MapAccessError>;
}

/// The pinned maps themselves.
pub struct MapStore {
    pub ipcache: IpcacheMap,
    pub maps: PolicyMaps,
}

impl PolicyStore for MapStore {
    fn put_ipcache(&mut self, prefix: Ipv4Net, entry: IpcacheEntry) -> Result<(), MapAccessError> {
        self.ipcache.insert(prefix, entry)
    }
    fn delete_ipcache(&mut self, prefix: Ipv4Net) -> Result<(), MapAccessError> {
        self.ipcache.remove(prefix)
    }
    fn put_entry(&mut self, (prefix, key): EntryKey, rule_id: u32) -> Result<(), MapAccessError> {
        self.maps.insert_entry(prefix, key, rule_id)
    }
    fn delete_entry(&mut self, (prefix, key): EntryKey) -> Result<(), MapAccessError> {
        self.maps.remove_entry(prefix, key)
    }
    fn set_isolation(&mut self, endpoint_id: u32, flags: u32) -> Result<(), MapAccessError> {
        self.maps.set_isolation(endpoint_id, flags)
    }
    fn clear_isolation(&mut self, endpoint_id: u32) -> Result<(), MapAccessError> {
        self.maps.clear_isolation(endpoint_id)
    }
    fn reset_rule_counter(&mut self, rule_id: u32) -> Result<(), MapAccessError> {
        self.maps.reset_rule_counter(rule_id)
    }
    fn rule_counter(&self, rule_id: u32) -> Result<Counter, MapAccessError> {
        self.maps.rule_counter(rule_id)
    }
}

/// What one apply changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyReport {
    pub writes: usize,
    pub deletes: usize,
}

/// What the maps hold, as far as this agent wrote or adopted them.
#[derive(Default)]
struct Applied {
    ipcache: BTreeMap<Ipv4Net, IpcacheEntry>,
    entries: BTreeMap<EntryKey, u32>,
    isolation: BTreeMap<u32, u32>,
}

pub struct PolicySync {
    store: Box<dyn PolicyStore>,
    numbering: NodeNumbering,
    applied: Applied,
    names_path: PathBuf,
    names: FlowNames,
    pub stats: PolicyStats,
}

impl PolicySync {
    /// Adopts what the maps already hold, so a restart rewrites nothing that stays.
    pub fn new(ipcache: IpcacheMap, maps: PolicyMaps, names_path: PathBuf) -> Self {
        let applied = Applied {
            ipcache: ipcache.entries(),
            entries: maps.entries(),
            isolation: maps.isolation(),
        };
        Self::with_store(Box::new(MapStore { ipcache, maps }), applied, names_path)
    }

    fn with_store(store: Box<dyn PolicyStore>, applied: Applied, names_path: PathBuf) -> Self {
        PolicySync {
            store,
            numbering: NodeNumbering::default(),
            applied,
            names_path,
            names: FlowNames::default(),
            stats: PolicyStats::default(),
        }
    }

    pub fn apply(
        &mut self,
        inputs: &Inputs,
        node: &NodeContext,
    ) -> Result<PolicyReport, PolicySyncError> {
        let started = Instant::now();
        let compiled = compile(inputs, node, &mut self.numbering);
        let fresh_rules = self.numbering.rules.fresh.clone();
        self.numbering.finish();
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        self.stats.syncs_total += 1;
        let result = self.write(&compiled, &fresh_rules);
        let write_ms = started.elapsed().as_secs_f64() * 1e3 - compile_ms;
        if result.is_err() {
            self.stats.sync_errors_total += 1;
        }
        let report = result?;
        self.record_names(&compiled, inputs, node)?;
        self.stats.policies = inputs.policies.len();
        self.stats.identities = compiled.identities.len();
        self.stats.isolated_endpoints = compiled.isolation.len();
        self.stats.entries = compiled.entries.len();
        self.stats.ipcache_entries = compiled.ipcache.len();
        self.stats.last_sync = started.elapsed();
        tracing::info!(
            policies = inputs.policies.len(),
            entries = compiled.entries.len(),
            isolated = compiled.isolation.len(),
            writes = report.writes,
            deletes = report.deletes,
            compile_ms,
            write_ms,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "policy synced"
        );
        Ok(report)
    }

    /// New entries before the isolation that needs them; isolation lifted before the entries
    /// it needed go; stale ipcache entries last.
    fn write(
        &mut self,
        compiled: &Compiled,
        fresh_rules: &[u32],
    ) -> Result<PolicyReport, MapAccessError> {
        let mut report = PolicyReport::default();
        for (prefix, entry) in &compiled.ipcache {
            if self.applied.ipcache.get(prefix) != Some(entry) {
                self.store.put_ipcache(*prefix, *entry)?;
                self.applied.ipcache.insert(*prefix, *entry);
                report.writes += 1;
            }
        }
        for rule_id in fresh_rules {
            self.store.reset_rule_counter(*rule_id)?;
        }
        for (&(prefix, key), &rule_id) in &compiled.entries {
            if self.applied.entries.get(&(prefix, key)) != Some(&rule_id) {
                self.store.put_entry((prefix, key), rule_id)?;
                self.applied.entries.insert((prefix, key), rule_id);
                report.writes += 1;
            }
        }
        for (&endpoint_id, &flags) in &compiled.isolation {
            if self.applied.isolation.get(&endpoint_id) != Some(&flags) {
                self.store.set_isolation(endpoint_id, flags)?;
                self.applied.isolation.insert(endpoint_id, flags);
                report.writes += 1;
            }
        }
        let lifted: Vec<u32> = (self.applied.isolation.keys())
            .filter(|id| !compiled.isolation.contains_key(id))
            .copied()
            .collect();
        for endpoint_id in lifted {
            self.store.clear_isolation(endpoint_id)?;
            self.applied.isolation.remove(&endpoint_id);
            report.deletes += 1;
        }
        let stale: Vec<EntryKey> = (self.applied.entries.keys())
            .filter(|key| !compiled.entries.contains_key(key))
            .copied()
            .collect();
        for (prefix, key) in stale {
            self.store.delete_entry((prefix, key))?;
            self.applied.entries.remove(&(prefix, key));
            report.deletes += 1;
        }
        let stale: Vec<Ipv4Net> = (self.applied.ipcache.keys())
            .filter(|prefix| !compiled.ipcache.contains_key(prefix))
            .copied()
            .collect();
        for prefix in stale {
            self.store.delete_ipcache(prefix)?;
            self.applied.ipcache.remove(&prefix);
            report.deletes += 1;
        }
        Ok(report)
    }

    fn record_names(
        &mut self,
        compiled: &Compiled,
        inputs: &Inputs,
        node: &NodeContext,
    ) -> Result<(), NamesError> {
        let names = FlowNames {
            pods: (compiled.pods.iter())
                .map(|(ip, name, _)| {
                    let pod = PodName {
                        namespace: name.namespace.clone(),
                        name: name.name.clone(),
                    };
                    (*ip, pod)
                })
                .collect(),
            identities: (compiled.identities.iter())
                .map(|(id, labels)| {
                    let pod_labels: Vec<String> = labels
                        .pod_labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    (
                        *id,
                        format!("{} {}", labels.namespace, pod_labels.join(",")),
                    )
                })
                .collect(),
            rules: (compiled.rules.iter())
                .map(|(id, rule)| {
                    let direction = if rule.direction == DIRECTION_INGRESS {
                        "ingress"
                    } else {
                        "egress"
                    };
                    (*id, format!("{} {direction}[{}]", rule.policy, rule.index))
                })
                .collect(),
            endpoints: node.endpoints.iter().map(|(ip, id)| (*id, *ip)).collect(),
            policies: (inputs.policies.iter())
                .map(|p| (p.name.to_string(), p.revision.clone()))
                .collect(),
        };
        if names != self.names {
            names.save(&self.names_path)?;
            self.names = names;
        }
        Ok(())
    }

    /// Packets and bytes each named rule admitted.
    pub fn rule_counters(&self) -> Vec<(String, kaya_ebpf_common::metrics::Counter)> {
        (self.names.rules.iter())
            .filter_map(|(id, name)| Some((name.clone(), self.store.rule_counter(*id).ok()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::ObjectName;
    use crate::policy::inventory::PodDef;
    use crate::policy::spec::PolicyDef;
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    /// Records every write, in order.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl PolicyStore for Recorder {
        fn put_ipcache(&mut self, prefix: Ipv4Net, _: IpcacheEntry) -> Result<(), MapAccessError> {
            self.0.lock().unwrap().push(format!("put ipcache {prefix}"));
            Ok(())
        }
        fn delete_ipcache(&mut self, prefix: Ipv4Net) -> Result<(), MapAccessError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("delete ipcache {prefix}"));
            Ok(())
        }
        fn put_entry(&mut self, (_, key): EntryKey, _: u32) -> Result<(), MapAccessError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("put entry {}", key.endpoint_id));
            Ok(())
        }
        fn delete_entry(&mut self, (_, key): EntryKey) -> Result<(), MapAccessError> {
            self.0
                .lock()
                .unwrap()
                .push(format!("delete entry {}", key.endpoint_id));
            Ok(())
        }
        fn set_isolation(&mut self, id: u32, _: u32) -> Result<(), MapAccessError> {
            self.0.lock().unwrap().push(format!("isolate {id}"));
            Ok(())
        }
        fn clear_isolation(&mut self, id: u32) -> Result<(), MapAccessError> {
            self.0.lock().unwrap().push(format!("open {id}"));
            Ok(())
        }
        fn reset_rule_counter(&mut self, _: u32) -> Result<(), MapAccessError> {
            Ok(())
        }
        fn rule_counter(&self, _: u32) -> Result<Counter, MapAccessError> {
            Ok(Counter::default())
        }
    }

    fn inputs(policies: &[&str]) -> Inputs {
        let pod = PodDef {
            name: ObjectName {
                namespace: "x".into(),
                name: "a".into(),
            },
            labels: [("pod".to_string(), "a".to_string())].into(),
            ip: Some(Ipv4Addr::new(10, 244, 1, 2)),
            node: None,
            ports: vec![],
        };
        Inputs {
            namespaces: Default::default(),
            pods: vec![pod],
            policies: (policies.iter())
                .map(|yaml| PolicyDef::from_k8s(&serde_yaml::from_str(yaml).unwrap()).unwrap())
                .collect(),
        }
    }

    #[test]
    fn entries_precede_isolation_and_isolation_is_lifted_before_they_go() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::default();
        let mut sync = PolicySync::with_store(
            Box::new(recorder.clone()),
            Applied::default(),
            dir.path().join("names.json"),
        );
        let node = NodeContext {
            endpoints: [(Ipv4Addr::new(10, 244, 1, 2), 7)].into(),
            ..NodeContext::default()
        };
        let allow = "metadata: {name: p, namespace: x}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}}]}]}";
        let report = sync.apply(&inputs(&[allow]), &node).unwrap();
        let log = std::mem::take(&mut *recorder.0.lock().unwrap());
        let position = |op: &str| {
            log.iter()
                .position(|l| l == op)
                .unwrap_or_else(|| panic!("{op}: {log:?}"))
        };
        assert!(position("put entry 7") < position("isolate 7"), "{log:?}");
        assert!(
            position("put ipcache 10.0.0.0/8") < position("put entry 7"),
            "{log:?}"
        );
        assert_eq!(report.deletes, 0);

        // Nothing changed: nothing is written.
        let report = sync.apply(&inputs(&[allow]), &node).unwrap();
        assert_eq!(report, PolicyReport::default());

        let report = sync.apply(&inputs(&[]), &node).unwrap();
        let log = std::mem::take(&mut *recorder.0.lock().unwrap());
        assert!(
            position_in(&log, "open 7") < position_in(&log, "delete entry 7"),
            "{log:?}"
        );
        assert!(
            position_in(&log, "delete entry 7") < position_in(&log, "delete ipcache 10.0.0.0/8"),
            "{log:?}"
        );
        // The pod's own entry loses its ipBlock identity, before the block's entry goes.
        assert_eq!(report.writes, 1, "{log:?}");
        assert!(
            position_in(&log, "put ipcache 10.244.1.2/32")
                < position_in(&log, "delete ipcache 10.0.0.0/8"),
            "{log:?}"
        );
        let names = FlowNames::load(&dir.path().join("names.json")).unwrap();
        assert!(names.policies.is_empty() && names.endpoints[&7] == Ipv4Addr::new(10, 244, 1, 2));
    }

    fn position_in(log: &[String], op: &str) -> usize {
        log.iter()
            .position(|l| l == op)
            .unwrap_or_else(|| panic!("{op}: {log:?}"))
    }
}
