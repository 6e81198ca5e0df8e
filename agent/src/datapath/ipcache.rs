//! KY_IPCACHE: address prefix (LPM) → security identity, ipBlock identity and tunnel endpoint.
use aya::maps::{
    Map, MapData,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::Ipv4Net;
use kaya_ebpf_common::policy::{IPCACHE_MAP, IpcacheEntry};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Datapath, MapAccessError, ignore_missing, map_err};

pub struct IpcacheMap {
    map: LpmTrie<MapData, u32, IpcacheEntry>,
}

fn key(prefix: Ipv4Net) -> Key<u32> {
    Key::new(
        u32::from(prefix.prefix_len()),
        u32::from_ne_bytes(prefix.network().octets()),
    )
}

impl IpcacheMap {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        Self::from_data(datapath.take_map(IPCACHE_MAP)?)
    }

    /// The map of a running agent, for inspection.
    pub fn open_pinned(pin_dir: &std::path::Path) -> Result<Self, MapAccessError> {
        Self::from_data(super::pinned_map(pin_dir, IPCACHE_MAP)?)
    }

    fn from_data(data: MapData) -> Result<Self, MapAccessError> {
        let map = LpmTrie::try_from(Map::LpmTrie(data)).map_err(map_err(IPCACHE_MAP))?;
        Ok(IpcacheMap { map })
    }

    pub fn insert(&mut self, prefix: Ipv4Net, entry: IpcacheEntry) -> Result<(), MapAccessError> {
        (self.map.insert(&key(prefix), entry, 0)).map_err(map_err(IPCACHE_MAP))
    }

    pub fn remove(&mut self, prefix: Ipv4Net) -> Result<(), MapAccessError> {
        ignore_missing(self.map.remove(&key(prefix))).map_err(map_err(IPCACHE_MAP))
    }

    pub fn entries(&self) -> BTreeMap<Ipv4Net, IpcacheEntry> {
        (self.map.iter().filter_map(Result::ok))
            .filter_map(|(key, entry)| {
                let address = Ipv4Addr::from(key.data().to_ne_bytes());
                let prefix = Ipv4Net::new(address, key.prefix_len() as u8).ok()?;
                Some((prefix, entry))
            })
            .collect()
    }
}
