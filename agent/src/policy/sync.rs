//! Keeps the policy maps equal to the compilation of the current inputs: writes only what
//! changed, in an order that never opens or closes a flow by accident, and keeps the
//! figures Prometheus and `kaya observe` read.
use ipnet::Ipv4Net;
use kaya_ebpf_common::policy::{DIRECTION_INGRESS, IpcacheEntry};
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
    /// Rule id → its name, for the per-rule counters.
    pub rules: BTreeMap<u32, String>,
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
    ipcache: IpcacheMap,
    maps: PolicyMaps,
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
        PolicySync {
            ipcache,
            maps,
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
                self.ipcache.insert(*prefix, *entry)?;
                self.applied.ipcache.insert(*prefix, *entry);
                report.writes += 1;
            }
        }
        for rule_id in fresh_rules {
            self.maps.reset_rule_counter(*rule_id)?;
        }
        for (&(prefix, key), &rule_id) in &compiled.entries {
            if self.applied.entries.get(&(prefix, key)) != Some(&rule_id) {
                self.maps.insert_entry(prefix, key, rule_id)?;
                self.applied.entries.insert((prefix, key), rule_id);
                report.writes += 1;
            }
        }
        for (&endpoint_id, &flags) in &compiled.isolation {
            if self.applied.isolation.get(&endpoint_id) != Some(&flags) {
                self.maps.set_isolation(endpoint_id, flags)?;
                self.applied.isolation.insert(endpoint_id, flags);
                report.writes += 1;
            }
        }
        let lifted: Vec<u32> = (self.applied.isolation.keys())
            .filter(|id| !compiled.isolation.contains_key(id))
            .copied()
            .collect();
        for endpoint_id in lifted {
            self.maps.clear_isolation(endpoint_id)?;
            self.applied.isolation.remove(&endpoint_id);
            report.deletes += 1;
        }
        let stale: Vec<EntryKey> = (self.applied.entries.keys())
            .filter(|key| !compiled.entries.contains_key(key))
            .copied()
            .collect();
        for (prefix, key) in stale {
            self.maps.remove_entry(prefix, key)?;
            self.applied.entries.remove(&(prefix, key));
            report.deletes += 1;
        }
        let stale: Vec<Ipv4Net> = (self.applied.ipcache.keys())
            .filter(|prefix| !compiled.ipcache.contains_key(prefix))
            .copied()
            .collect();
        for prefix in stale {
            self.ipcache.remove(prefix)?;
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
            self.stats.rules = names.rules.clone();
            self.names = names;
        }
        Ok(())
    }

    /// Packets and bytes each named rule admitted.
    pub fn rule_counters(&self) -> Vec<(String, kaya_ebpf_common::metrics::Counter)> {
        (self.stats.rules.iter())
            .filter_map(|(id, name)| Some((name.clone(), self.maps.rule_counter(*id).ok()?)))
            .collect()
    }
}
