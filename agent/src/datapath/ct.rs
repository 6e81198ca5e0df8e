//! KY_CT: the service conntrack table (LRU): listing for inspection, and removal of the
//! entries of backends that are gone.
use aya::maps::{HashMap, Map, MapData};
use kaya_ebpf_common::ct::{CT_MAP, CtEntry, CtKey};
use std::collections::HashSet;
use std::path::Path;

use super::{Datapath, MapAccessError, ignore_missing, map_err};

pub struct CtMap {
    map: HashMap<MapData, CtKey, CtEntry>,
}

impl CtMap {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        Self::from_data(datapath.take_map(CT_MAP)?)
    }

    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapAccessError> {
        Self::from_data(super::pinned_map(pin_dir, CT_MAP)?)
    }

    fn from_data(data: MapData) -> Result<Self, MapAccessError> {
        let map = HashMap::try_from(Map::LruHashMap(data)).map_err(map_err(CT_MAP))?;
        Ok(CtMap { map })
    }

    /// A snapshot of every entry (entries may come and go while it is taken).
    pub fn entries(&self) -> Vec<(CtKey, CtEntry)> {
        self.map.iter().filter_map(Result::ok).collect()
    }

    /// Removes both directions of every flow through a removed backend; returns how many.
    pub fn purge_backends(&mut self, removed: &HashSet<u32>) -> Result<usize, MapAccessError> {
        if removed.is_empty() {
            return Ok(0);
        }
        let stale: Vec<CtKey> = (self.entries().into_iter())
            .filter(|(_, entry)| removed.contains(&entry.backend_id))
            .map(|(key, _)| key)
            .collect();
        for key in &stale {
            // The LRU may have evicted it meanwhile.
            ignore_missing(self.map.remove(key)).map_err(map_err(CT_MAP))?;
        }
        Ok(stale.len())
    }
}
