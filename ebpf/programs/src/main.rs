//! kaya's tc programs: one thin entry per attach point; the logic lives in modules by job.
#![no_std]
#![no_main]

mod ct;
mod delivery;
mod flow;
mod lb;
mod maps;
mod nat;
mod netdev;
mod observe;
mod overlay;
mod packet;
mod policy;
mod reject;
mod sock;
mod translate;

use aya_ebpf::{
    macros::{cgroup_sock_addr, classifier},
    programs::{SockAddrContext, TcContext},
};

/// tc ingress on the host side of every pod veth: traffic leaving a pod.
#[classifier]
pub fn from_pod(ctx: TcContext) -> i32 {
    delivery::from_pod(&ctx)
}

/// tc egress on the host side of every pod veth: traffic the kernel routes into a pod.
#[classifier]
pub fn to_pod(ctx: TcContext) -> i32 {
    delivery::to_pod(&ctx)
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

/// tc ingress on the node's uplink: outside clients of NodePorts, externalIPs and
/// LoadBalancer IPs.
#[classifier]
pub fn from_netdev(ctx: TcContext) -> i32 {
    netdev::from_netdev(&ctx)
}

/// cgroup connect4: TCP (and connected UDP) sockets to a service go to a backend directly.
#[cgroup_sock_addr(connect4)]
pub fn sock_connect4(ctx: SockAddrContext) -> i32 {
    sock::to_backend(&ctx)
}

/// cgroup sendmsg4: unconnected UDP datagrams to a service go to a backend directly.
#[cgroup_sock_addr(sendmsg4)]
pub fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    sock::to_backend(&ctx)
}

/// cgroup recvmsg4: datagrams from a backend show the service as their source.
#[cgroup_sock_addr(recvmsg4)]
pub fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    sock::to_frontend(&ctx)
}

/// cgroup getpeername4: a socket connected through a service reports the service.
#[cgroup_sock_addr(getpeername4)]
pub fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    sock::to_frontend(&ctx)
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
