//! kaya's tc programs: one thin entry per attach point; the logic lives in modules by job.
#![no_std]
#![no_main]

mod delivery;
mod maps;
mod observe;
mod overlay;
mod packet;

use aya_ebpf::{macros::classifier, programs::TcContext};

/// tc ingress on the host side of every pod veth: traffic leaving a pod.
#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    delivery::from_pod(&ctx)
}

/// tc ingress on the collect_md VXLAN device: decapsulated traffic from other nodes.
#[classifier]
pub fn from_overlay(ctx: TcContext) -> i32 {
    overlay::from_overlay(&ctx)
}

/// tc egress on the VXLAN device: gives host-originated packets their tunnel key.
#[classifier]
pub fn to_overlay(ctx: TcContext) -> i32 {
    overlay::to_overlay(&ctx)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that could reach this; it exists only to link.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
