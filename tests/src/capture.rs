//! Captures VXLAN frames on an underlay namespace with an AF_PACKET socket and decodes the
//! inner packets, to prove cross-node traffic really crossed the overlay.
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::netns::spawn_in_netns;

/// One decapsulated frame seen on the underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct VxlanFrame {
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub vni: u32,
    pub inner_src: Ipv4Addr,
    pub inner_dst: Ipv4Addr,
    pub inner_protocol: u8,
}

pub struct VxlanCapture {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<BTreeSet<VxlanFrame>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const ETH_P_ALL: u16 = 0x0003;

impl VxlanCapture {
    pub fn start(netns: &Path, udp_port: u16) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(BTreeSet::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (thread_stop, thread_frames) = (stop.clone(), frames.clone());
        let thread = spawn_in_netns(netns, move || {
            // SAFETY: plain socket(2); the fd is owned right after.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    i32::from(ETH_P_ALL.to_be()),
                )
            };
            assert!(
                raw >= 0,
                "AF_PACKET socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: raw is a fresh fd we own.
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let timeout = nix::sys::time::TimeVal::new(0, 100_000);
            nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
                .expect("SO_RCVTIMEO");
            ready_tx.send(()).ok();
            let mut buf = vec![0u8; 65536];
            while !thread_stop.load(Ordering::Relaxed) {
                let Ok(n) = nix::sys::socket::recv(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    &mut buf,
                    nix::sys::socket::MsgFlags::empty(),
                ) else {
                    continue;
                };
                if let Some(frame) = decode(&buf[..n], udp_port) {
                    thread_frames.lock().unwrap().insert(frame);
                }
            }
        })?;
        ready_rx.recv_timeout(std::time::Duration::from_secs(3))?;
        Ok(VxlanCapture {
            stop,
            frames,
            thread: Some(thread),
        })
    }

    /// Stops capturing and returns the distinct frames seen.
    pub fn finish(mut self) -> BTreeSet<VxlanFrame> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::take(&mut self.frames.lock().unwrap())
    }
}

impl Drop for VxlanCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Decodes Ethernet / IPv4 / UDP(port) / VXLAN / Ethernet / IPv4.
pub fn decode(frame: &[u8], udp_port: u16) -> Option<VxlanFrame> {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};
    let outer = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(outer_ip)) = &outer.net else {
        return None;
    };
    let Some(TransportSlice::Udp(udp)) = &outer.transport else {
        return None;
    };
    if udp.destination_port() != udp_port {
        return None;
    }
    let vxlan = udp.payload();
    if vxlan.len() < 8 || vxlan[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, vxlan[4], vxlan[5], vxlan[6]]);
    let inner = SlicedPacket::from_ethernet(&vxlan[8..]).ok()?;
    let Some(NetSlice::Ipv4(inner_ip)) = &inner.net else {
        return None;
    };
    Some(VxlanFrame {
        outer_src: outer_ip.header().source_addr(),
        outer_dst: outer_ip.header().destination_addr(),
        vni,
        inner_src: inner_ip.header().source_addr(),
        inner_dst: inner_ip.header().destination_addr(),
        inner_protocol: inner_ip.header().protocol().0,
    })
}
