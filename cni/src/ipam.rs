//! Host-local style IPAM: one file per reserved address (holding the attachment), a
//! `last_reserved_ip` cursor for round-robin allocation, and an exclusive flock around every
//! change, so concurrent plugin processes never hand out the same address.
use ipnet::Ipv4Net;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("ipam {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no free address in {0}")]
    Exhausted(Ipv4Net),
}

/// Proof that the caller holds the IPAM lock; released on drop.
pub struct IpamLock {
    _flock: nix::fcntl::Flock<File>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub ip: Ipv4Addr,
    pub container_id: String,
    pub ifname: String,
}

pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Net,
    gateway: Ipv4Addr,
}

const LOCK_FILE: &str = "lock";
const CURSOR_FILE: &str = "last_reserved_ip";

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
    let path = path.to_owned();
    move |source| IpamError::Io { op, path, source }
}

impl Ipam {
    pub fn new(dir: &Path, subnet: Ipv4Net, gateway: Ipv4Addr) -> Self {
        Ipam {
            dir: dir.to_owned(),
            subnet,
            gateway,
        }
    }

    pub fn lock(&self) -> Result<IpamLock, IpamError> {
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        let path = self.dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(
            |(_, errno)| IpamError::Io {
                op: "locking",
                path: path.clone(),
                source: errno.into(),
            },
        )?;
        Ok(IpamLock { _flock: flock })
    }

    /// Every reservation on disk.
    pub fn reservations(&self, _lock: &IpamLock) -> Result<Vec<Reservation>, IpamError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io("listing", &self.dir)(err)),
        };
        let mut reservations = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let Ok(ip) = entry.file_name().to_string_lossy().parse::<Ipv4Addr>() else {
                continue;
            };
            let path = entry.path();
            let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
            let mut lines = text.lines();
            reservations.push(Reservation {
                ip,
                container_id: lines.next().unwrap_or_default().to_owned(),
                ifname: lines.next().unwrap_or_default().to_owned(),
            });
        }
        reservations.sort_by_key(|r| r.ip);
        Ok(reservations)
    }

    pub fn find(
        &self,
        lock: &IpamLock,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self
            .reservations(lock)?
            .into_iter()
            .find(|r| r.container_id == container_id && r.ifname == ifname)
            .map(|r| r.ip))
    }

    /// The attachment's address: the one it already has, or the next free one after the
    /// last reserved (round robin, so a released address is not reused at once).
    pub fn allocate(
        &self,
        lock: &IpamLock,
        container_id: &str,
        ifname: &str,
    ) -> Result<Ipv4Addr, IpamError> {
        let reservations = self.reservations(lock)?;
        if let Some(known) = reservations
            .iter()
            .find(|r| r.container_id == container_id && r.ifname == ifname)
        {
            return Ok(known.ip);
        }
        let taken: std::collections::BTreeSet<Ipv4Addr> =
            reservations.into_iter().map(|r| r.ip).collect();
        // u64 so that the walk cannot overflow, whatever the subnet's size.
        let first = u64::from(u32::from(self.subnet.network())) + 1;
        let last = u64::from(u32::from(self.subnet.broadcast())).saturating_sub(1);
        if last < first {
            return Err(IpamError::Exhausted(self.subnet));
        }
        let cursor_path = self.dir.join(CURSOR_FILE);
        let cursor = std::fs::read_to_string(&cursor_path)
            .ok()
            .and_then(|text| text.trim().parse::<Ipv4Addr>().ok())
            .map(|ip| u64::from(u32::from(ip)))
            .filter(|c| (first..=last).contains(c))
            .unwrap_or(last);
        let size = last - first + 1;
        for step in 1..=size {
            let offset = (cursor - first + step) % size;
            let candidate = Ipv4Addr::from(u32::try_from(first + offset).unwrap_or(u32::MAX));
            if candidate == self.gateway || taken.contains(&candidate) {
                continue;
            }
            let path = self.dir.join(candidate.to_string());
            std::fs::write(&path, format!("{container_id}\n{ifname}\n"))
                .map_err(io("writing", &path))?;
            std::fs::write(&cursor_path, candidate.to_string())
                .map_err(io("writing", &cursor_path))?;
            return Ok(candidate);
        }
        Err(IpamError::Exhausted(self.subnet))
    }

    /// Releases the attachment's address; `None` when it had none.
    pub fn release(
        &self,
        lock: &IpamLock,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<Ipv4Addr>, IpamError> {
        let Some(ip) = self.find(lock, container_id, ifname)? else {
            return Ok(None);
        };
        let path = self.dir.join(ip.to_string());
        std::fs::remove_file(&path).map_err(io("removing", &path))?;
        Ok(Some(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, subnet: &str) -> Ipam {
        let subnet: Ipv4Net = subnet.parse().unwrap();
        Ipam::new(dir, subnet, Ipv4Addr::from(u32::from(subnet.network()) + 1))
    }

    #[test]
    fn allocates_in_order_skipping_gateway_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.244.1.0/24");
        let lock = ipam.lock().unwrap();
        let a = ipam.allocate(&lock, "a", "eth0").unwrap();
        let b = ipam.allocate(&lock, "b", "eth0").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(b, Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(ipam.allocate(&lock, "a", "eth0").unwrap(), a);
    }

    #[test]
    fn release_frees_and_round_robin_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.244.1.0/24");
        let lock = ipam.lock().unwrap();
        let a = ipam.allocate(&lock, "a", "eth0").unwrap();
        assert_eq!(ipam.release(&lock, "a", "eth0").unwrap(), Some(a));
        assert_eq!(ipam.release(&lock, "a", "eth0").unwrap(), None);
        let b = ipam.allocate(&lock, "b", "eth0").unwrap();
        assert_ne!(
            a, b,
            "a just-released address is not handed out again at once"
        );
    }

    #[test]
    fn exhaustion_names_the_subnet() {
        let dir = tempfile::tempdir().unwrap();
        // /29: .1 gateway, .2-.6 usable.
        let ipam = ipam(dir.path(), "10.244.1.0/29");
        let lock = ipam.lock().unwrap();
        for i in 0..5 {
            ipam.allocate(&lock, &format!("c{i}"), "eth0").unwrap();
        }
        let err = ipam.allocate(&lock, "c5", "eth0").unwrap_err();
        assert_eq!(err.to_string(), "no free address in 10.244.1.0/29");
    }

    #[test]
    fn the_largest_subnet_does_not_overflow_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "0.0.0.0/0");
        let lock = ipam.lock().unwrap();
        assert_eq!(
            ipam.allocate(&lock, "a", "eth0").unwrap(),
            Ipv4Addr::new(0, 0, 0, 2)
        );
    }

    #[test]
    fn reservations_persist_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let first = ipam(dir.path(), "10.244.1.0/24");
        let ip = first.allocate(&first.lock().unwrap(), "a", "eth0").unwrap();
        let second = ipam(dir.path(), "10.244.1.0/24");
        let lock = second.lock().unwrap();
        assert_eq!(second.find(&lock, "a", "eth0").unwrap(), Some(ip));
        assert_eq!(second.reservations(&lock).unwrap()[0].container_id, "a");
    }

    #[test]
    fn concurrent_allocations_get_distinct_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let ipam = ipam(&path, "10.244.1.0/24");
                    let lock = ipam.lock().unwrap();
                    ipam.allocate(&lock, &format!("c{i}"), "eth0").unwrap()
                })
            })
            .collect();
        let ips: std::collections::BTreeSet<_> =
            threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(ips.len(), 20);
    }
}
