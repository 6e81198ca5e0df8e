//! Trace events: one record per forwarding decision, sent through a ring buffer when tracing is on.
use crate::{assert_offset, assert_size};

pub const EVENTS_MAP: &str = "KY_EVENTS_V1";
pub const EVENTS_BYTES: u32 = 256 * 1024;

/// Which program emitted the event.
pub const POINT_FROM_POD: u8 = 1;
pub const POINT_FROM_OVERLAY: u8 = 2;
pub const POINT_TO_OVERLAY: u8 = 3;
pub const POINT_FROM_NETDEV: u8 = 4;
pub const POINT_TO_POD: u8 = 5;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceEvent {
    /// `metrics::Reason` as u32.
    pub reason: u32,
    /// Interface the packet arrived on.
    pub ifindex_in: u32,
    /// Redirect target (0 when the packet was passed or dropped).
    pub ifindex_out: u32,
    /// Source and destination IPv4, network byte order (0 when not IPv4).
    pub saddr: u32,
    pub daddr: u32,
    /// Tunnel remote (underlay IPv4, network byte order) set or seen; 0 if none.
    pub tunnel_remote: u32,
    /// VNI set or seen (the source identity).
    pub vni: u32,
    /// Packet length.
    pub len: u32,
    /// IP protocol number.
    pub protocol: u8,
    /// POINT_* value.
    pub point: u8,
    pub _pad: [u8; 2],
    /// TC verdict the program returned.
    pub verdict: i32,
}
assert_size!(TraceEvent, 40);
assert_offset!(TraceEvent, protocol, 32);
assert_offset!(TraceEvent, verdict, 36);
