//! KY_LB_*: the service maps (frontend slots, backends, affinity, socket reverse
//! translation). `table` decides the writes; this module does them on the live maps.
pub mod table;

use aya::maps::{HashMap, Map, MapData, MapError};
use kaya_ebpf_common::lb::{
    AFFINITY_MAP, AffinityKey, AffinityValue, BACKENDS_MAP, Backend, BackendKey, SERVICES_MAP,
    ServiceKey, ServiceValue,
};
use std::collections::HashSet;
use std::path::Path;

use super::{Datapath, MapAccessError, ignore_missing, map_err};
pub use table::{LbStore, LbTable, SyncReport, TableError};

/// Live handles of the service maps.
pub struct LbMaps {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, BackendKey, Backend>,
    affinity: HashMap<MapData, AffinityKey, AffinityValue>,
    /// Capacities, for full-map errors and usage metrics.
    pub services_max: u32,
    pub backends_max: u32,
}

fn hash_map<K: aya::Pod, V: aya::Pod>(
    data: MapData,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, MapAccessError> {
    let map = match data.info().map_err(map_err(name))?.map_type() {
        Ok(aya::maps::MapType::LruHash) => Map::LruHashMap(data),
        _ => Map::HashMap(data),
    };
    HashMap::try_from(map).map_err(map_err(name))
}

fn max_entries(data: &MapData, name: &'static str) -> Result<u32, MapAccessError> {
    Ok(data.info().map_err(map_err(name))?.max_entries())
}

impl LbMaps {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        Self::from_data(
            datapath.take_map(SERVICES_MAP)?,
            datapath.take_map(BACKENDS_MAP)?,
            datapath.take_map(AFFINITY_MAP)?,
        )
    }

    /// The maps of a running agent, for inspection.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapAccessError> {
        Self::from_data(
            super::pinned_map(pin_dir, SERVICES_MAP)?,
            super::pinned_map(pin_dir, BACKENDS_MAP)?,
            super::pinned_map(pin_dir, AFFINITY_MAP)?,
        )
    }

    fn from_data(
        services: MapData,
        backends: MapData,
        affinity: MapData,
    ) -> Result<Self, MapAccessError> {
        Ok(LbMaps {
            services_max: max_entries(&services, SERVICES_MAP)?,
            backends_max: max_entries(&backends, BACKENDS_MAP)?,
            services: hash_map(services, SERVICES_MAP)?,
            backends: hash_map(backends, BACKENDS_MAP)?,
            affinity: hash_map(affinity, AFFINITY_MAP)?,
        })
    }

    /// Reads back what the maps hold (a restarted agent adopts it: ids stay, no flow moves).
    pub fn read_table(&self) -> Result<LbTable, MapAccessError> {
        let mut table = LbTable::default();
        for entry in self.services.iter() {
            let (key, value) = entry.map_err(map_err(SERVICES_MAP))?;
            table.slots.insert(key, value);
        }
        for entry in self.backends.iter() {
            let (key, value) = entry.map_err(map_err(BACKENDS_MAP))?;
            table.backends.insert(key.id, value);
        }
        Ok(table)
    }

    /// The head (slot 0) of one frontend, read with a single lookup.
    pub fn head(&self, frontend: &crate::services::FrontendAddr) -> Option<ServiceValue> {
        self.services.get(&table::slot_key(frontend, 0), 0).ok()
    }

    /// Drops affinity entries naming removed backends, so a reused id never inherits them.
    pub fn purge_affinity(&mut self, removed: &HashSet<u32>) -> Result<usize, MapAccessError> {
        let stale: Vec<AffinityKey> = (self.affinity.iter())
            .filter_map(Result::ok)
            .filter(|(_, value)| removed.contains(&value.backend_id))
            .map(|(key, _)| key)
            .collect();
        for key in &stale {
            ignore_missing(self.affinity.remove(key)).map_err(map_err(AFFINITY_MAP))?;
        }
        Ok(stale.len())
    }
}

/// Maps a failed write to a clear error; a full map names the setting that sizes it.
fn write_error(
    map: &'static str,
    setting: &'static str,
    entries: u32,
    operation: &'static str,
) -> impl Fn(MapError) -> TableError {
    move |err| match err {
        MapError::SyscallError(aya::sys::SyscallError { io_error, .. })
            if io_error.raw_os_error() == Some(libc::E2BIG) =>
        {
            TableError::MapFull {
                map,
                setting,
                entries: entries as usize,
            }
        }
        MapError::SyscallError(aya::sys::SyscallError { io_error, .. }) => TableError::Map {
            map,
            operation,
            source: io_error,
        },
        other => TableError::Map {
            map,
            operation,
            source: std::io::Error::other(other.to_string()),
        },
    }
}

impl LbStore for LbMaps {
    fn put_backend(&mut self, id: u32, backend: Backend) -> Result<(), TableError> {
        (self.backends.insert(BackendKey { id }, backend, 0)).map_err(write_error(
            BACKENDS_MAP,
            "backends",
            self.backends_max,
            "update",
        ))
    }
    fn delete_backend(&mut self, id: u32) -> Result<(), TableError> {
        ignore_missing(self.backends.remove(&BackendKey { id })).map_err(write_error(
            BACKENDS_MAP,
            "backends",
            self.backends_max,
            "delete",
        ))
    }
    fn put_slot(&mut self, key: ServiceKey, value: ServiceValue) -> Result<(), TableError> {
        (self.services.insert(key, value, 0)).map_err(write_error(
            SERVICES_MAP,
            "services",
            self.services_max,
            "update",
        ))
    }
    fn delete_slot(&mut self, key: ServiceKey) -> Result<(), TableError> {
        ignore_missing(self.services.remove(&key)).map_err(write_error(
            SERVICES_MAP,
            "services",
            self.services_max,
            "delete",
        ))
    }
}
