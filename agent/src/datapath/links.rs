//! Attaching tc programs so they outlive the agent, and swapping in a restarted agent's
//! freshly loaded program atomically instead of detaching, so no packet sees a gap.
//!
//! Two mechanisms, by how often they run:
//! - long-lived devices (the overlay) use TCX links pinned in bpffs, replaced with
//!   bpf_link_update;
//! - pod veths, attached on every pod start, use tc cls_bpf filters at a fixed priority and
//!   handle, replaced in place (NLM_F_REPLACE). Creating a TCX link waits for an RCU grace
//!   period (10-27 ms measured on the 2-core test machines), which would dominate CNI ADD.
use aya::programs::{
    LinkOrder, SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("attaching {program} to {ifname} {direction}: {source}")]
    Attach {
        program: String,
        ifname: String,
        direction: &'static str,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("pinning link at {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("removing pinned link {path}: {source}")]
    Unpin {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("looking up interface {ifname}: {source}")]
    NoInterface {
        ifname: String,
        source: std::io::Error,
    },
}

/// Priority and handle of kaya's cls_bpf filters: fixed, so a restarted agent finds them.
pub const FILTER_PRIORITY: u16 = 1;
pub const FILTER_HANDLE: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn tc(self) -> TcAttachType {
        match self {
            Direction::Ingress => TcAttachType::Ingress,
            Direction::Egress => TcAttachType::Egress,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

fn attach_error<'a>(
    program: &'a str,
    ifname: &'a str,
    direction: Direction,
) -> impl Fn(aya::programs::ProgramError) -> LinkError + Copy + 'a {
    move |source| LinkError::Attach {
        program: program.to_owned(),
        ifname: ifname.to_owned(),
        direction: direction.name(),
        source: Box::new(source),
    }
}

/// Where the link of `program` on interface `ifindex` is pinned. The ifindex is part of the
/// name: a recreated device gets a new index, so a stale link is never "updated" in place.
pub fn pin_path(links_dir: &Path, program: &str, direction: Direction, ifindex: u32) -> PathBuf {
    links_dir.join(format!("{program}-{}-{ifindex}", direction.name()))
}

/// What `attach_pinned` did, for logs and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link was created and pinned.
    New,
    /// A pinned link from a previous agent now runs this program.
    Adopted,
}

pub fn attach_pinned(
    program: &mut SchedClassifier,
    program_name: &str,
    ifname: &str,
    direction: Direction,
    pin: &Path,
) -> Result<Attached, LinkError> {
    let attach_err = attach_error(program_name, ifname, direction);
    if let Ok(pinned) = PinnedLink::from_pin(pin) {
        let adopted = SchedClassifierLink::try_from(FdLink::from(pinned))
            .map_err(|err| err.to_string())
            .and_then(|link| program.attach_to_link(link).map_err(|err| err.to_string()));
        match adopted {
            Ok(id) => {
                // The pin keeps the link; dropping our handle must not detach it.
                let link = program.take_link(id).map_err(attach_err)?;
                drop(link);
                return Ok(Attached::Adopted);
            }
            Err(reason) => {
                tracing::warn!(pin = %pin.display(), %reason, "pinned link is stale, attaching anew");
                remove_pin(pin)?;
            }
        }
    }
    let id = program
        .attach_with_options(
            ifname,
            direction.tc(),
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(attach_err)?;
    let link = program.take_link(id).map_err(attach_err)?;
    let fd_link = FdLink::try_from(link).map_err(|err| LinkError::Pin {
        path: pin.to_owned(),
        reason: err.to_string(),
    })?;
    if let Some(dir) = pin.parent() {
        std::fs::create_dir_all(dir).map_err(|source| LinkError::Unpin {
            path: dir.to_owned(),
            source,
        })?;
    }
    fd_link.pin(pin).map_err(|err| LinkError::Pin {
        path: pin.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(Attached::New)
}

/// Attaches `program` as a cls_bpf filter on `ifname`, replacing kaya's filter there if one
/// exists (left by a previous agent): the replacement is atomic, the filter never missing.
pub fn attach_filter(
    program: &mut SchedClassifier,
    program_name: &str,
    ifname: &str,
    direction: Direction,
) -> Result<Attached, LinkError> {
    let attach_err = attach_error(program_name, ifname, direction);
    // Fails when the qdisc exists already, which is the usual case; a real problem surfaces
    // as the filter attach failing below.
    let _ = aya::programs::tc::qdisc_add_clsact(ifname);
    let handle = TcHandle::new(0, FILTER_HANDLE);
    let existing =
        SchedClassifierLink::attached(ifname, direction.tc(), FILTER_PRIORITY, handle, None)
            .map_err(|source| LinkError::NoInterface {
                ifname: ifname.to_owned(),
                source,
            })?;
    let (id, how) = match program.attach_to_link(existing) {
        Ok(id) => (id, Attached::Adopted),
        Err(_) => {
            let options = TcAttachOptions::Netlink(NlOptions {
                priority: FILTER_PRIORITY,
                handle,
                ..NlOptions::default()
            });
            let id = program
                .attach_with_options(ifname, direction.tc(), options)
                .map_err(attach_err)?;
            (id, Attached::New)
        }
    };
    // Dropping a netlink link detaches its filter; the filter must stay with the device.
    std::mem::forget(program.take_link(id).map_err(attach_err)?);
    Ok(how)
}

/// Removes kaya's filter from `ifname`; a missing device or filter is not an error.
pub fn detach_filter(program_name: &str, ifname: &str, direction: Direction) {
    let _ = aya::programs::tc::qdisc_detach_program(ifname, direction.tc(), program_name);
}

/// Detaches by removing the pin (the last reference); a missing pin is not an error.
pub fn remove_pin(pin: &Path) -> Result<(), LinkError> {
    match std::fs::remove_file(pin) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(LinkError::Unpin {
            path: pin.to_owned(),
            source: err,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_paths_name_program_direction_and_ifindex() {
        let path = pin_path(
            Path::new("/sys/fs/bpf/kaya/n1/links"),
            "from_pod",
            Direction::Ingress,
            42,
        );
        assert_eq!(
            path,
            Path::new("/sys/fs/bpf/kaya/n1/links/from_pod-ingress-42")
        );
    }

    #[test]
    fn removing_a_missing_pin_is_fine() {
        remove_pin(Path::new("/nonexistent/kaya/pin")).unwrap();
    }
}
