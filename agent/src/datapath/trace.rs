//! KY_EVENTS: decoding trace events from the ring buffer.
use aya::maps::{Map, RingBuf};
use kaya_ebpf_common::{
    metrics::Reason,
    trace::{EVENTS_MAP, TraceEvent},
};
use std::net::Ipv4Addr;

use super::{Datapath, MapAccessError, map_err};

/// Logs every trace event at debug level (tracing is for debugging; `kaya observe` comes later).
pub fn spawn_logger(datapath: &mut Datapath) -> Result<(), MapAccessError> {
    let data = datapath.take_map(EVENTS_MAP)?;
    let ring = RingBuf::try_from(Map::RingBuf(data)).map_err(map_err(EVENTS_MAP))?;
    // SAFETY: the ring buffer owns its fd, which stays open until the AsyncFd drops it.
    let mut fd =
        unsafe { tokio::io::unix::AsyncFd::register(ring) }.map_err(|err| MapAccessError::Map {
            map: EVENTS_MAP,
            source: aya::maps::MapError::IoError(err.into()),
        })?;
    tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if let Some(event) = decode(&item) {
                    tracing::debug!(target: "kaya::trace", "{}", describe(&event));
                }
            }
            guard.clear_ready();
        }
    });
    Ok(())
}

/// Decodes one ring-buffer record; `None` when it is not a whole event.
pub fn decode(bytes: &[u8]) -> Option<TraceEvent> {
    if bytes.len() < core::mem::size_of::<TraceEvent>() {
        return None;
    }
    // SAFETY: TraceEvent is plain old data and the length was checked; read_unaligned
    // because ring-buffer records are only 8-byte aligned by contract, not by type.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TraceEvent>()) })
}

/// One line a person can read, as `kaya observe` will print it.
pub fn describe(event: &TraceEvent) -> String {
    let reason = Reason::from_u32(event.reason).map_or("unknown", Reason::name);
    format!(
        "{} -> {} proto {} {} in {} out {} vni {} remote {}",
        Ipv4Addr::from(event.saddr.to_ne_bytes()),
        Ipv4Addr::from(event.daddr.to_ne_bytes()),
        event.protocol,
        reason,
        event.ifindex_in,
        event.ifindex_out,
        event.vni,
        Ipv4Addr::from(event.tunnel_remote.to_ne_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_records_are_rejected() {
        assert!(decode(&[0u8; 8]).is_none());
    }

    #[test]
    fn decodes_and_describes() {
        let event = TraceEvent {
            reason: Reason::TunnelEncap as u32,
            saddr: u32::from_ne_bytes([10, 244, 1, 2]),
            daddr: u32::from_ne_bytes([10, 244, 2, 3]),
            vni: 256,
            ..TraceEvent::default()
        };
        // SAFETY: viewing a POD value as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&event as *const TraceEvent).cast::<u8>(),
                core::mem::size_of::<TraceEvent>(),
            )
        };
        let decoded = decode(bytes).unwrap();
        assert_eq!(decoded, event);
        let text = describe(&decoded);
        assert!(text.starts_with("10.244.1.2 -> 10.244.2.3"), "{text}");
        assert!(text.contains("tunnel_encap"), "{text}");
    }
}
