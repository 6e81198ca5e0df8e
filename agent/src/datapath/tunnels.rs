//! KY_TUNNELS: remote pod CIDR (LPM) → underlay IP of the node that owns it.
use aya::maps::{
    MapData,
    lpm_trie::{Key, LpmTrie},
};
use ipnet::Ipv4Net;
use kaya_ebpf_common::tunnel::{TUNNELS_MAP, TunnelEndpoint};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Datapath, MapAccessError, map_err};

pub struct TunnelMap {
    map: LpmTrie<MapData, u32, TunnelEndpoint>,
}

fn key(cidr: Ipv4Net) -> Key<u32> {
    Key::new(
        u32::from(cidr.prefix_len()),
        u32::from_ne_bytes(cidr.network().octets()),
    )
}

fn value(node_ip: Ipv4Addr) -> TunnelEndpoint {
    TunnelEndpoint {
        node_ip: u32::from_ne_bytes(node_ip.octets()),
        _pad: 0,
    }
}

impl TunnelMap {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        Self::from_data(datapath.take_map(TUNNELS_MAP)?)
    }

    /// The map of a running agent, for inspection.
    pub fn open_pinned(pin_dir: &std::path::Path) -> Result<Self, MapAccessError> {
        Self::from_data(super::pinned_map(pin_dir, TUNNELS_MAP)?)
    }

    fn from_data(data: MapData) -> Result<Self, MapAccessError> {
        let map = LpmTrie::try_from(aya::maps::Map::LpmTrie(data)).map_err(map_err(TUNNELS_MAP))?;
        Ok(TunnelMap { map })
    }

    /// Makes the map hold exactly `wanted`: new and changed entries first, stale ones last,
    /// so a packet never finds a hole for a CIDR that stays.
    pub fn sync(&mut self, wanted: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<(), MapAccessError> {
        for (cidr, node_ip) in wanted {
            self.map
                .insert(&key(*cidr), value(*node_ip), 0)
                .map_err(map_err(TUNNELS_MAP))?;
        }
        for (cidr, _) in self.entries() {
            if !wanted.contains_key(&cidr) {
                self.map.remove(&key(cidr)).map_err(map_err(TUNNELS_MAP))?;
            }
        }
        Ok(())
    }

    pub fn entries(&self) -> Vec<(Ipv4Net, Ipv4Addr)> {
        self.map
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(key, tunnel)| {
                let net = Ipv4Net::new(
                    Ipv4Addr::from(key.data().to_ne_bytes()),
                    key.prefix_len() as u8,
                )
                .ok()?;
                Some((net, Ipv4Addr::from(tunnel.node_ip.to_ne_bytes())))
            })
            .collect()
    }
}
