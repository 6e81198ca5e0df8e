//! KY_METRICS: per-CPU counters of forwarding decisions, summed over CPUs by reason.
use aya::maps::{Map, MapData, PerCpuArray};
use kaya_ebpf_common::metrics::{Counter, METRICS_MAP, Reason};
use std::collections::BTreeMap;
use std::path::Path;

use super::{MapAccessError, map_err};

/// Totals per reason name.
pub type Totals = BTreeMap<&'static str, Counter>;

/// Reads the counters of a running instance from its pinned map.
pub fn read_pinned(pin_dir: &Path) -> Result<Totals, MapAccessError> {
    let data = super::pinned_map(pin_dir, METRICS_MAP)?;
    let map: PerCpuArray<MapData, Counter> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(map_err(METRICS_MAP))?;
    let mut totals = Totals::new();
    for reason in Reason::ALL {
        let values = map.get(&(reason as u32), 0).map_err(map_err(METRICS_MAP))?;
        let total = values.iter().fold(Counter::default(), |sum, cpu| Counter {
            packets: sum.packets + cpu.packets,
            bytes: sum.bytes + cpu.bytes,
        });
        totals.insert(reason.name(), total);
    }
    Ok(totals)
}
