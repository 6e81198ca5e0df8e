//! KY_FLOW_EVENTS: the policy decisions the programs report (every drop, the first packet of
//! every admitted flow), read from the pinned ring buffer.
use aya::maps::{Map, MapData, RingBuf};
use kaya_ebpf_common::policy::{FLOW_EVENTS_MAP, FlowEvent};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use super::{MapAccessError, map_err};

pub struct FlowEvents {
    ring: RingBuf<MapData>,
}

impl FlowEvents {
    /// The ring buffer of a running agent. Records are consumed as they are read: run one
    /// reader at a time.
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapAccessError> {
        let data = super::pinned_map(pin_dir, FLOW_EVENTS_MAP)?;
        let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(map_err(FLOW_EVENTS_MAP))?;
        Ok(FlowEvents { ring })
    }

    /// Every event waiting now.
    pub fn drain(&mut self) -> Vec<FlowEvent> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            if let Some(event) = decode(&item) {
                events.push(event);
            }
        }
        events
    }

    /// Blocks until events may be waiting or `timeout` passes (an error only shortens it).
    pub fn wait(&self, timeout: Duration) {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let fd = self.ring.as_fd();
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let _ = poll(
            &mut [PollFd::new(fd, PollFlags::POLLIN)],
            PollTimeout::from(millis),
        );
    }
}

/// Decodes one ring-buffer record; `None` when it is not a whole event.
pub fn decode(bytes: &[u8]) -> Option<FlowEvent> {
    if bytes.len() < core::mem::size_of::<FlowEvent>() {
        return None;
    }
    // SAFETY: FlowEvent is plain old data and the length was checked; read_unaligned because
    // ring-buffer records are only 8-byte aligned by contract, not by type.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FlowEvent>()) })
}
