//! The eBPF dataplane as userspace sees it: loading the embedded object with its maps pinned
//! per instance, and one module per map family mirroring the programs.
pub mod ct;
pub mod endpoints;
pub mod flows;
pub mod ipcache;
pub mod lb;
pub mod links;
pub mod loader;
pub mod metrics;
pub mod policy;
pub mod settings;
pub mod sock_lb;
pub mod trace;
pub mod tunnels;

pub use loader::{Datapath, LoadError};

/// Names of the tc programs in the object, one per attach point.
pub const PROG_FROM_POD: &str = "from_pod";
pub const PROG_TO_POD: &str = "to_pod";
pub const PROG_FROM_OVERLAY: &str = "from_overlay";
pub const PROG_TO_OVERLAY: &str = "to_overlay";
pub const PROG_FROM_NETDEV: &str = "from_netdev";

/// The eBPF object built by build.rs from ebpf/programs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kaya"));

#[derive(Debug, thiserror::Error)]
pub enum MapAccessError {
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {map} is missing from the eBPF object")]
    Missing { map: &'static str },
}

pub(crate) fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> MapAccessError {
    move |source| MapAccessError::Map { map, source }
}

/// A delete of an entry that is already gone (an LRU eviction, a concurrent delete) is fine.
pub(crate) fn ignore_missing(
    result: Result<(), aya::maps::MapError>,
) -> Result<(), aya::maps::MapError> {
    match result {
        Err(aya::maps::MapError::KeyNotFound | aya::maps::MapError::ElementNotFound) => Ok(()),
        other => other,
    }
}

/// Opens a map another process (the running agent) pinned under `pin_dir`.
pub fn pinned_map(
    pin_dir: &std::path::Path,
    map: &'static str,
) -> Result<aya::maps::MapData, MapAccessError> {
    aya::maps::MapData::from_pin(pin_dir.join(map)).map_err(map_err(map))
}
