//! Per-CPU verdict counters and, when tracing is on, one ring-buffer event per decision.
use aya_ebpf::programs::TcContext;
use kaya_ebpf_common::{config::FLAG_TRACE, metrics::Reason, trace::TraceEvent};

use crate::maps::{EVENTS, METRICS, config};
use crate::packet::Ipv4Summary;

/// Where a decision sent the packet, for the trace event.
#[derive(Clone, Copy, Default)]
pub struct Decision {
    pub ifindex_out: u32,
    pub tunnel_remote: u32,
    pub vni: u32,
    pub saddr: u32,
    pub daddr: u32,
    pub protocol: u8,
}

impl Decision {
    /// A decision about `ip`, its outcome still to be filled in.
    #[inline(always)]
    pub fn about(ip: &Ipv4Summary) -> Self {
        Decision {
            saddr: ip.saddr,
            daddr: ip.daddr,
            protocol: ip.protocol,
            ..Decision::default()
        }
    }
}

/// Counts one packet (or socket operation) of `len` bytes under `reason`, without an event.
#[inline(always)]
pub fn count(reason: Reason, len: u32) {
    if let Some(counter) = METRICS.get_ptr_mut(reason as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += u64::from(len);
        }
    }
}

/// Counts the final decision about a packet and, when tracing, emits its event.
#[inline(always)]
pub fn record(ctx: &TcContext, point: u8, reason: Reason, decision: Decision, verdict: i32) -> i32 {
    let len = ctx.len();
    count(reason, len);
    if config().flags & FLAG_TRACE != 0 {
        let event = TraceEvent {
            reason: reason as u32,
            // SAFETY: the context pointer is valid for the whole program run.
            ifindex_in: unsafe { (*ctx.skb.skb).ifindex },
            ifindex_out: decision.ifindex_out,
            saddr: decision.saddr,
            daddr: decision.daddr,
            tunnel_remote: decision.tunnel_remote,
            vni: decision.vni,
            len,
            protocol: decision.protocol,
            point,
            _pad: [0; 2],
            verdict,
        };
        // A full ring buffer loses the event, never the packet.
        let _ = EVENTS.output::<TraceEvent>(&event, 0);
    }
    verdict
}
