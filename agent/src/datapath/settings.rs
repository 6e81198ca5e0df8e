//! KY_CONFIG: the single entry of datapath settings (devices, node IP, hairpin IP, flags).
use aya::maps::{Array, MapData};
use kaya_ebpf_common::config::{CONFIG_KEY, CONFIG_MAP, DatapathConfig, FLAG_TRACE, HAIRPIN_IP};
use std::net::Ipv4Addr;

use super::{Datapath, MapAccessError, map_err};

pub fn render(
    overlay_ifindex: u32,
    uplink_ifindex: u32,
    node_ip: Ipv4Addr,
    snat_ip: Ipv4Addr,
    trace: bool,
) -> DatapathConfig {
    DatapathConfig {
        overlay_ifindex,
        flags: if trace { FLAG_TRACE } else { 0 },
        node_ip: u32::from_ne_bytes(node_ip.octets()),
        uplink_ifindex,
        hairpin_ip: u32::from_ne_bytes(HAIRPIN_IP),
        snat_ip: u32::from_ne_bytes(snat_ip.octets()),
    }
}

pub struct SettingsMap {
    map: Array<MapData, DatapathConfig>,
}

impl SettingsMap {
    pub fn open(datapath: &mut Datapath) -> Result<Self, MapAccessError> {
        let data = datapath.take_map(CONFIG_MAP)?;
        let map = Array::try_from(aya::maps::Map::Array(data)).map_err(map_err(CONFIG_MAP))?;
        Ok(SettingsMap { map })
    }

    pub fn write(&mut self, config: DatapathConfig) -> Result<(), MapAccessError> {
        self.map
            .set(CONFIG_KEY, config, 0)
            .map_err(map_err(CONFIG_MAP))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_keeps_network_byte_order() {
        let config = render(
            7,
            3,
            Ipv4Addr::new(192, 168, 1, 2),
            Ipv4Addr::new(10, 244, 1, 1),
            true,
        );
        assert_eq!(config.node_ip.to_ne_bytes(), [192, 168, 1, 2]);
        assert_eq!(config.flags, FLAG_TRACE);
        assert_eq!(config.overlay_ifindex, 7);
    }
}
