//! Socket-level service load balancing (cgroup v2 sock_addr hooks): connect() and sendmsg()
//! to a frontend go straight to a backend, so the flow needs no per-packet NAT; recvmsg()
//! and getpeername() show the frontend again.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    programs::SockAddrContext,
};
use kaya_ebpf_common::{
    lb::{SockRevNat, SockRevNatKey},
    metrics::Reason,
};

use crate::{
    lb::{self, AFFINITY_BY_NETNS, Client},
    maps::SOCK_REVNAT,
    observe::count,
};

/// Return values of sock_addr programs.
const ALLOW: i32 = 1;
const REJECT: i32 = 0;
const ECONNREFUSED: i32 = 111;

/// connect4 and sendmsg4: a frontend becomes one of its backends.
#[inline(always)]
pub fn to_backend(ctx: &SockAddrContext) -> i32 {
    let addr = ctx.sock_addr;
    // SAFETY: the context pointer is valid for the whole program run.
    let (address, port, protocol) = unsafe {
        (
            (*addr).user_ip4,
            (*addr).user_port as u16,
            (*addr).protocol as u8,
        )
    };
    let Some(service) = lb::frontend(address, port, protocol) else {
        return ALLOW;
    };
    // SAFETY: plain helper call on our own context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.as_ptr()) };
    let client = Client {
        id: netns as u32,
        scope: AFFINITY_BY_NETNS,
    };
    let Some((_, backend)) = lb::select(address, port, protocol, &service, client) else {
        count(Reason::SocketRejected, 0);
        // SAFETY: plain helper call; turns the default EPERM into what kube-proxy's REJECT
        // gives a client.
        unsafe { bpf_set_retval(-ECONNREFUSED) };
        return REJECT;
    };
    let key = SockRevNatKey {
        // SAFETY: as above.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        address: backend.address,
        port: backend.port,
        _pad: 0,
    };
    let frontend = SockRevNat {
        address,
        port,
        rev_nat_id: service.rev_nat_id,
    };
    if SOCK_REVNAT.insert(&key, &frontend, 0).is_err() {
        // Without the entry getpeername() would show the backend: still a working flow.
        count(Reason::DropMapFull, 0);
    }
    // SAFETY: writable fields of the sock_addr context.
    unsafe {
        (*addr).user_ip4 = backend.address;
        (*addr).user_port = u32::from(backend.port);
    }
    count(Reason::SocketTranslated, 0);
    ALLOW
}

/// recvmsg4 and getpeername4: a backend this socket was sent to shows as its frontend.
#[inline(always)]
pub fn to_frontend(ctx: &SockAddrContext) -> i32 {
    let addr = ctx.sock_addr;
    let key = SockRevNatKey {
        // SAFETY: plain helper call on our own context.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        // SAFETY: the context pointer is valid for the whole program run.
        address: unsafe { (*addr).user_ip4 },
        port: unsafe { (*addr).user_port as u16 },
        _pad: 0,
    };
    // SAFETY: copied out at once.
    if let Some(frontend) = unsafe { SOCK_REVNAT.get(&key).copied() } {
        // SAFETY: writable fields of the sock_addr context.
        unsafe {
            (*addr).user_ip4 = frontend.address;
            (*addr).user_port = u32::from(frontend.port);
        }
    }
    ALLOW
}
