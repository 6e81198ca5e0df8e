//! Loads the eBPF object with every map pinned under the instance's bpffs directory, so a
//! restarted agent reuses the live maps (and established flows keep their state).
use aya::{Ebpf, EbpfLoader, maps::MapData, programs::SchedClassifier};
use std::path::{Path, PathBuf};

use super::{EBPF_OBJECT, MapAccessError};
use crate::config::MapSizes;
use kaya_ebpf_common::{
    ct::CT_MAP,
    lb::{AFFINITY_MAP, BACKENDS_MAP, SERVICES_MAP, SOCK_REVNAT_MAP},
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("creating bpffs directory {path}: {source}")]
    PinDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not on a bpffs mount (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs { path: PathBuf },
    #[error("loading the eBPF object: {0}")]
    Object(#[from] Box<aya::EbpfError>),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("program {name} is missing from the eBPF object or has another type")]
    MissingProgram { name: &'static str },
    #[error(transparent)]
    Map(#[from] MapAccessError),
}

/// BPF_FS_MAGIC from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

pub struct Datapath {
    ebpf: Ebpf,
}

impl Datapath {
    /// Loads (but does not attach) every program; maps are created or adopted at `pin_dir`.
    pub fn load(pin_dir: &Path) -> Result<Self, LoadError> {
        Self::load_sized(pin_dir, &MapSizes::default())
    }

    /// As `load`, creating the service maps with the given capacities.
    pub fn load_sized(pin_dir: &Path, sizes: &MapSizes) -> Result<Self, LoadError> {
        std::fs::create_dir_all(pin_dir).map_err(|source| LoadError::PinDir {
            path: pin_dir.to_owned(),
            source,
        })?;
        let stat = nix::sys::statfs::statfs(pin_dir).map_err(|errno| LoadError::PinDir {
            path: pin_dir.to_owned(),
            source: errno.into(),
        })?;
        if stat.filesystem_type().0 != BPF_FS_MAGIC {
            return Err(LoadError::NotBpffs {
                path: pin_dir.to_owned(),
            });
        }
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries(SERVICES_MAP, sizes.services)
            .map_max_entries(BACKENDS_MAP, sizes.backends)
            .map_max_entries(AFFINITY_MAP, sizes.affinity)
            .map_max_entries(CT_MAP, sizes.conntrack)
            .map_max_entries(SOCK_REVNAT_MAP, sizes.sock_rev_nat)
            .load(EBPF_OBJECT)
            .map_err(Box::new)?;
        for name in [
            super::PROG_FROM_POD,
            super::PROG_TO_POD,
            super::PROG_FROM_OVERLAY,
            super::PROG_TO_OVERLAY,
            super::PROG_FROM_NETDEV,
        ] {
            classifier(&mut ebpf, name)?
                .load()
                .map_err(|source| LoadError::Program {
                    name,
                    source: Box::new(source),
                })?;
        }
        for name in super::sock_lb::SOCK_PROGRAMS {
            let program: &mut aya::programs::CgroupSockAddr = (ebpf.program_mut(name))
                .and_then(|p| p.try_into().ok())
                .ok_or(LoadError::MissingProgram { name })?;
            program.load().map_err(|source| LoadError::Program {
                name,
                source: Box::new(source),
            })?;
        }
        Ok(Datapath { ebpf })
    }

    pub fn program(&mut self, name: &'static str) -> Result<&mut SchedClassifier, LoadError> {
        classifier(&mut self.ebpf, name)
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Takes ownership of a map's data, for the typed wrapper of its family.
    pub fn take_map(&mut self, name: &'static str) -> Result<MapData, MapAccessError> {
        use aya::maps::Map;
        match self.ebpf.take_map(name) {
            Some(
                Map::HashMap(data)
                | Map::LruHashMap(data)
                | Map::LpmTrie(data)
                | Map::Array(data)
                | Map::PerCpuArray(data)
                | Map::RingBuf(data),
            ) => Ok(data),
            _ => Err(MapAccessError::Missing { map: name }),
        }
    }

    /// The aya-log ring buffer, forwarded into the agent's tracing logs.
    pub fn logger(&mut self) -> Option<aya_log::EbpfLogger<&'static dyn log::Log>> {
        aya_log::EbpfLogger::init(&mut self.ebpf).ok()
    }
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, LoadError> {
    ebpf.program_mut(name)
        .and_then(|program| program.try_into().ok())
        .ok_or(LoadError::MissingProgram { name })
}

/// Removes an instance's pinned maps and links: the datapath is gone after this.
pub fn unpin_all(pin_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(pin_dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Mounts bpffs at `path` unless something is mounted there already.
pub fn ensure_bpffs(path: &Path) -> Result<(), LoadError> {
    std::fs::create_dir_all(path).map_err(|source| LoadError::PinDir {
        path: path.to_owned(),
        source,
    })?;
    let is_bpffs = nix::sys::statfs::statfs(path)
        .map(|stat| stat.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if is_bpffs {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        path,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|errno| LoadError::PinDir {
        path: path.to_owned(),
        source: errno.into(),
    })
}
