//! Socket-level load balancing: the four cgroup sock_addr programs attached (as pinned bpf
//! links) to the node's cgroup v2 root, so connect()/sendmsg() of every process below it
//! reach backends directly. A restarted agent swaps its new programs into the pinned links
//! with BPF_LINK_UPDATE, so sockets are never without the hooks.
use aya::programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::Datapath;

pub const PROG_SOCK_CONNECT4: &str = "sock_connect4";
pub const PROG_SOCK_SENDMSG4: &str = "sock_sendmsg4";
pub const PROG_SOCK_RECVMSG4: &str = "sock_recvmsg4";
pub const PROG_SOCK_GETPEERNAME4: &str = "sock_getpeername4";
pub const SOCK_PROGRAMS: [&str; 4] = [
    PROG_SOCK_CONNECT4,
    PROG_SOCK_SENDMSG4,
    PROG_SOCK_RECVMSG4,
    PROG_SOCK_GETPEERNAME4,
];

#[derive(Debug, thiserror::Error)]
pub enum SockLbError {
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("program {name} is missing from the eBPF object or is not a cgroup sock_addr program")]
    MissingProgram { name: &'static str },
    #[error("attaching {program} to cgroup {cgroup}: {source}")]
    Attach {
        program: &'static str,
        cgroup: PathBuf,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("pinned link {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
}

/// Where the pinned link of `program` lives.
pub fn pin_path(links_dir: &Path, program: &str) -> PathBuf {
    links_dir.join(format!("{program}-cgroup"))
}

fn program<'a>(
    datapath: &'a mut Datapath,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, SockLbError> {
    (datapath.ebpf_mut().program_mut(name))
        .and_then(|p| p.try_into().ok())
        .ok_or(SockLbError::MissingProgram { name })
}

/// Attaches (or re-points the pinned links of) every socket program at `cgroup`.
pub fn attach(datapath: &mut Datapath, cgroup: &Path, links_dir: &Path) -> Result<(), SockLbError> {
    let cgroup_fd = std::fs::File::open(cgroup).map_err(|source| SockLbError::Cgroup {
        path: cgroup.to_owned(),
        source,
    })?;
    std::fs::create_dir_all(links_dir).map_err(|err| SockLbError::Pin {
        path: links_dir.to_owned(),
        reason: err.to_string(),
    })?;
    for name in SOCK_PROGRAMS {
        let pin = pin_path(links_dir, name);
        let program = program(datapath, name)?;
        let attach_err = |source| SockLbError::Attach {
            program: name,
            cgroup: cgroup.to_owned(),
            source: Box::new(source),
        };
        if pin.exists() {
            let prog_fd = program.fd().map_err(attach_err)?.as_fd().as_raw_fd();
            match bpf_sys::obj_get(&pin).and_then(|link| bpf_sys::link_update(&link, prog_fd)) {
                Ok(()) => continue,
                Err(err) => {
                    tracing::warn!(pin = %pin.display(), %err, "pinned socket link is stale, attaching anew");
                    let _ = std::fs::remove_file(&pin);
                }
            }
        }
        // bpf_link cgroup attachments take no flags (they always allow others); aya maps
        // Single to none.
        let id = program
            .attach(&cgroup_fd, CgroupAttachMode::Single)
            .map_err(attach_err)?;
        let link = program.take_link(id).map_err(attach_err)?;
        let pin_err = |reason: String| SockLbError::Pin {
            path: pin.clone(),
            reason,
        };
        let fd_link = FdLink::try_from(link).map_err(|e| pin_err(e.to_string()))?;
        fd_link.pin(&pin).map_err(|e| pin_err(e.to_string()))?;
    }
    Ok(())
}

/// Detaches socket LB (per-node opt-out): dropping the last reference to a link detaches it.
pub fn detach(links_dir: &Path) -> Result<bool, SockLbError> {
    let mut removed = false;
    for name in SOCK_PROGRAMS {
        let pin = pin_path(links_dir, name);
        match std::fs::remove_file(&pin) {
            Ok(()) => removed = true,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(SockLbError::Pin {
                    path: pin,
                    reason: err.to_string(),
                });
            }
        }
    }
    Ok(removed)
}

/// The two bpf(2) commands aya 0.14 does not offer for pinned cgroup links.
mod bpf_sys {
    use super::*;

    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_LINK_UPDATE: libc::c_long = 29;

    fn bpf(cmd: libc::c_long, attr: &mut [u64; 4], what: &str) -> std::io::Result<i64> {
        // SAFETY: `attr` is a zero-padded bpf_attr large enough for both commands.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr.as_mut_ptr(),
                std::mem::size_of_val(attr),
            )
        };
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                err.kind(),
                format!("bpf({what}): {err}"),
            ));
        }
        Ok(ret)
    }

    pub fn obj_get(path: &Path) -> std::io::Result<OwnedFd> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("path has a NUL byte"))?;
        let mut attr = [0u64; 4];
        attr[0] = c_path.as_ptr() as u64;
        let fd = bpf(BPF_OBJ_GET, &mut attr, "BPF_OBJ_GET")?;
        // SAFETY: the kernel just returned this new descriptor to us.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    pub fn link_update(link: &OwnedFd, prog_fd: i32) -> std::io::Result<()> {
        let mut attr = [0u64; 4];
        // link_fd, new_prog_fd (u32 each), then flags and old_prog_fd stay 0.
        attr[0] = u64::from(link.as_raw_fd() as u32) | (u64::from(prog_fd as u32) << 32);
        bpf(BPF_LINK_UPDATE, &mut attr, "BPF_LINK_UPDATE").map(drop)
    }
}

/// The cgroup v2 root of this host: /sys/fs/cgroup on unified hosts, the `unified` mount on
/// hybrid ones.
pub fn default_cgroup_root() -> PathBuf {
    const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if nix::sys::statfs::statfs(candidate)
            .is_ok_and(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("/sys/fs/cgroup")
}
