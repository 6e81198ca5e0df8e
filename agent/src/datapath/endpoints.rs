//! KY_ENDPOINTS: local pod IP → host veth ifindex, MACs and identity.
use aya::maps::{HashMap, MapData};
use kaya_ebpf_common::endpoint::{ENDPOINTS_MAP, EndpointInfo, EndpointKey};
use std::net::Ipv4Addr;

use super::{Datapath, MapAccessError, map_err};

pub struct EndpointMap {
    map: HashMap<MapData, EndpointKey, EndpointInfo>,
}

pub fn key(ip: Ipv4Addr) -> EndpointKey {
    EndpointKey {
        ip: u32::from_ne_bytes(ip.octets()),
    }
}

impl EndpointMap {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        Self::from_data(datapath.take_map(ENDPOINTS_MAP)?)
    }

    /// The map of a running agent, for inspection.
    pub fn open_pinned(pin_dir: &std::path::Path) -> Result<Self, MapAccessError> {
        Self::from_data(super::pinned_map(pin_dir, ENDPOINTS_MAP)?)
    }

    fn from_data(data: MapData) -> Result<Self, MapAccessError> {
        let map =
            HashMap::try_from(aya::maps::Map::HashMap(data)).map_err(map_err(ENDPOINTS_MAP))?;
        Ok(EndpointMap { map })
    }

    pub fn upsert(&mut self, ip: Ipv4Addr, info: EndpointInfo) -> Result<(), MapAccessError> {
        self.map
            .insert(key(ip), info, 0)
            .map_err(map_err(ENDPOINTS_MAP))
    }

    /// Removes an entry; an entry that is already gone is not an error.
    pub fn remove(&mut self, ip: Ipv4Addr) -> Result<(), MapAccessError> {
        match self.map.remove(&key(ip)) {
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            other => other.map_err(map_err(ENDPOINTS_MAP)),
        }
    }

    pub fn get(&self, ip: Ipv4Addr) -> Option<EndpointInfo> {
        self.map.get(&key(ip), 0).ok()
    }

    pub fn entries(&self) -> Vec<(Ipv4Addr, EndpointInfo)> {
        self.map
            .iter()
            .filter_map(Result::ok)
            .map(|(key, info)| (Ipv4Addr::from(key.ip.to_ne_bytes()), info))
            .collect()
    }
}
