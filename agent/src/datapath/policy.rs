//! KY_POLICY (per-endpoint allow entries, LPM), KY_POLICY_ENDPOINTS (isolation per endpoint)
//! and KY_POLICY_RULES (per-CPU counters per rule).
use aya::maps::{
    HashMap, Map, MapData, PerCpuArray, PerCpuValues,
    lpm_trie::{Key, LpmTrie},
};
use kaya_ebpf_common::{
    metrics::Counter,
    policy::{
        EndpointPolicy, POLICY_ENDPOINTS_MAP, POLICY_MAP, PolicyEntry, PolicyKey, RULE_COUNTERS_MAP,
    },
};
use std::collections::BTreeMap;
use std::path::Path;

use super::{Datapath, MapAccessError, ignore_missing, map_err};

pub struct PolicyMaps {
    entries: LpmTrie<MapData, PolicyKey, PolicyEntry>,
    endpoints: HashMap<MapData, u32, EndpointPolicy>,
    rules: PerCpuArray<MapData, Counter>,
}

impl PolicyMaps {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        Self::from_data(
            datapath.take_map(POLICY_MAP)?,
            datapath.take_map(POLICY_ENDPOINTS_MAP)?,
            datapath.take_map(RULE_COUNTERS_MAP)?,
        )
    }

    /// The maps of a running agent, for inspection.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapAccessError> {
        Self::from_data(
            super::pinned_map(pin_dir, POLICY_MAP)?,
            super::pinned_map(pin_dir, POLICY_ENDPOINTS_MAP)?,
            super::pinned_map(pin_dir, RULE_COUNTERS_MAP)?,
        )
    }

    fn from_data(
        entries: MapData,
        endpoints: MapData,
        rules: MapData,
    ) -> Result<Self, MapAccessError> {
        Ok(PolicyMaps {
            entries: LpmTrie::try_from(Map::LpmTrie(entries)).map_err(map_err(POLICY_MAP))?,
            endpoints: HashMap::try_from(Map::HashMap(endpoints))
                .map_err(map_err(POLICY_ENDPOINTS_MAP))?,
            rules: PerCpuArray::try_from(Map::PerCpuArray(rules))
                .map_err(map_err(RULE_COUNTERS_MAP))?,
        })
    }

    pub fn insert_entry(
        &mut self,
        prefix: u32,
        key: PolicyKey,
        rule_id: u32,
    ) -> Result<(), MapAccessError> {
        let value = PolicyEntry { rule_id, _pad: 0 };
        (self.entries.insert(&Key::new(prefix, key), value, 0)).map_err(map_err(POLICY_MAP))
    }

    pub fn remove_entry(&mut self, prefix: u32, key: PolicyKey) -> Result<(), MapAccessError> {
        ignore_missing(self.entries.remove(&Key::new(prefix, key))).map_err(map_err(POLICY_MAP))
    }

    pub fn entries(&self) -> BTreeMap<(u32, PolicyKey), u32> {
        (self.entries.iter().filter_map(Result::ok))
            .map(|(key, entry)| ((key.prefix_len(), key.data()), entry.rule_id))
            .collect()
    }

    pub fn set_isolation(&mut self, endpoint_id: u32, flags: u32) -> Result<(), MapAccessError> {
        let value = EndpointPolicy { flags };
        (self.endpoints.insert(endpoint_id, value, 0)).map_err(map_err(POLICY_ENDPOINTS_MAP))
    }

    pub fn clear_isolation(&mut self, endpoint_id: u32) -> Result<(), MapAccessError> {
        ignore_missing(self.endpoints.remove(&endpoint_id)).map_err(map_err(POLICY_ENDPOINTS_MAP))
    }

    pub fn isolation(&self) -> BTreeMap<u32, u32> {
        (self.endpoints.iter().filter_map(Result::ok))
            .map(|(id, policy)| (id, policy.flags))
            .collect()
    }

    /// Packets and bytes a rule admitted, summed over CPUs.
    pub fn rule_counter(&self, rule_id: u32) -> Result<Counter, MapAccessError> {
        let values = (self.rules.get(&rule_id, 0)).map_err(map_err(RULE_COUNTERS_MAP))?;
        Ok(values.iter().fold(Counter::default(), |sum, c| Counter {
            packets: sum.packets + c.packets,
            bytes: sum.bytes + c.bytes,
        }))
    }

    /// Zeroes a rule's counters (a rule id handed to a new rule starts from nothing).
    pub fn reset_rule_counter(&mut self, rule_id: u32) -> Result<(), MapAccessError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, source)| MapAccessError::Map {
            map: RULE_COUNTERS_MAP,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "nr_cpus",
                io_error: source,
            }),
        })?;
        let zeros = PerCpuValues::try_from(vec![Counter::default(); cpus]).map_err(|source| {
            MapAccessError::Map {
                map: RULE_COUNTERS_MAP,
                source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                    call: "per-cpu values",
                    io_error: source,
                }),
            }
        })?;
        (self.rules.set(rule_id, zeros, 0)).map_err(map_err(RULE_COUNTERS_MAP))
    }
}
