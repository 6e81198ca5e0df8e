//! Reachability probes between namespaces: TCP and UDP echo servers, and TCP, UDP and ICMP
//! echo clients, all run on threads inside the namespaces (no external tools needed).
use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::netns::{in_netns, spawn_in_netns};

pub const ECHO_PORT: u16 = 7007;
const TIMEOUT: Duration = Duration::from_secs(3);

/// TCP and UDP echo on ECHO_PORT inside a namespace, until dropped.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(netns: &Path) -> anyhow::Result<Self> {
        let (stop, threads) = serve(netns, ECHO_PORT, echo_tcp, |request| request.to_vec())?;
        Ok(EchoServer { stop, threads })
    }
}

/// A TCP and a UDP server on `port` inside `netns`, until `stop` is set: each accepted
/// connection goes to `on_tcp` on a thread of its own; each datagram is answered with
/// `udp_answer(request)`.
#[allow(clippy::type_complexity)]
fn serve(
    netns: &Path,
    port: u16,
    on_tcp: impl Fn(TcpStream) + Send + Sync + Clone + 'static,
    udp_answer: impl Fn(&[u8]) -> Vec<u8> + Send + 'static,
) -> anyhow::Result<(Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (tcp_stop, tcp_ready) = (stop.clone(), ready_tx.clone());
    let tcp = spawn_in_netns(netns, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind tcp server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        tcp_ready.send(()).ok();
        while !tcp_stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let on_tcp = on_tcp.clone();
                    stream.set_nonblocking(false).ok();
                    std::thread::spawn(move || on_tcp(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    })?;
    let udp_stop = stop.clone();
    let udp = spawn_in_netns(netns, move || {
        let socket = UdpSocket::bind(("0.0.0.0", port)).expect("bind udp server");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .ok();
        ready_tx.send(()).ok();
        let mut buf = [0u8; 2048];
        while !udp_stop.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&udp_answer(&buf[..n]), peer);
            }
        }
    })?;
    for _ in 0..2 {
        ready_rx
            .recv_timeout(TIMEOUT)
            .context("test server did not start")?;
    }
    Ok((stop, vec![tcp, udp]))
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn echo_tcp(mut stream: TcpStream) {
    stream.set_nonblocking(false).ok();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The kaya-probe client (tests/src/bin/kaya-probe.rs) with `args`, set to run inside
/// `netns` and, when given, `cgroup` (where the socket-level service hooks apply); its
/// stdout is piped.
pub fn probe_command(
    netns: &Path,
    cgroup: Option<&Path>,
    args: &[&str],
) -> anyhow::Result<std::process::Command> {
    let mut command = std::process::Command::new(crate::binaries::workspace_binary("kaya-probe"));
    command
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    crate::netns::enter_on_exec(&mut command, netns)?;
    if let Some(cgroup) = cgroup {
        crate::netns::join_cgroup_on_exec(&mut command, cgroup)?;
    }
    Ok(command)
}

/// Connects from `netns` to `dst`, sends a message and expects it back.
pub fn tcp_echo(netns: &Path, dst: Ipv4Addr) -> anyhow::Result<()> {
    in_netns(netns, move || -> anyhow::Result<()> {
        let mut stream = TcpStream::connect_timeout(&SocketAddr::from((dst, ECHO_PORT)), TIMEOUT)
            .with_context(|| format!("tcp connect to {dst}"))?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let message = format!("kaya tcp probe to {dst}");
        stream.write_all(message.as_bytes())?;
        let mut back = vec![0u8; message.len()];
        stream
            .read_exact(&mut back)
            .with_context(|| format!("tcp echo from {dst}"))?;
        if back != message.as_bytes() {
            bail!("tcp echo from {dst} returned other bytes");
        }
        Ok(())
    })?
}

/// Sends a datagram from `netns` to `dst` and expects it back (three tries: UDP may drop).
pub fn udp_echo(netns: &Path, dst: Ipv4Addr) -> anyhow::Result<()> {
    in_netns(netns, move || -> anyhow::Result<()> {
        let socket = UdpSocket::bind(("0.0.0.0", 0))?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let message = format!("kaya udp probe to {dst}");
        let mut buf = [0u8; 512];
        for _ in 0..3 {
            socket.send_to(message.as_bytes(), (dst, ECHO_PORT))?;
            if let Ok((n, from)) = socket.recv_from(&mut buf)
                && from.ip() == std::net::IpAddr::V4(dst)
                && &buf[..n] == message.as_bytes()
            {
                return Ok(());
            }
        }
        bail!("no udp echo from {dst}")
    })?
}

/// Sends ICMP echo requests from `netns` to `dst` over a raw socket and waits for a reply.
pub fn icmp_echo(netns: &Path, dst: Ipv4Addr) -> anyhow::Result<()> {
    in_netns(netns, move || -> anyhow::Result<()> {
        use nix::sys::socket::{
            AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn, recvfrom,
            sendto, socket,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::empty(),
            SockProtocol::Icmp,
        )
        .context("raw icmp socket")?;
        let timeout = nix::sys::time::TimeVal::new(1, 0);
        nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
        let ident = (std::process::id() & 0xffff) as u16;
        let target = SockaddrIn::from(std::net::SocketAddrV4::new(dst, 0));
        for seq in 0..3u16 {
            let header = etherparse::Icmpv4Header::with_checksum(
                etherparse::Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: ident, seq }),
                b"kaya",
            );
            let mut packet = header.to_bytes().to_vec();
            packet.extend_from_slice(b"kaya");
            sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &packet,
                &target,
                MsgFlags::empty(),
            )?;
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            let mut buf = [0u8; 1500];
            while std::time::Instant::now() < deadline {
                let Ok((n, from)) =
                    recvfrom::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf)
                else {
                    break;
                };
                let Some(from) = from else { continue };
                if from.ip() != dst {
                    continue;
                }
                // Raw IPv4 sockets deliver the IP header too.
                let Ok((_, icmp)) = etherparse::Ipv4Header::from_slice(&buf[..n]) else {
                    continue;
                };
                if let Ok((reply, _)) = etherparse::Icmpv4Header::from_slice(icmp)
                    && let etherparse::Icmpv4Type::EchoReply(echo) = reply.icmp_type
                    && echo.id == ident
                {
                    return Ok(());
                }
            }
        }
        bail!("no icmp echo reply from {dst}")
    })?
}

/// Answers every request on a TCP connection with `<name> client=<peer>`, and every UDP
/// datagram with `name`, so a test can tell which backend a service sent it to and what
/// source address reached it.
pub struct NameServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl NameServer {
    pub fn start(netns: &Path, port: u16, name: &str) -> anyhow::Result<Self> {
        let tcp_name = name.to_owned();
        let on_tcp = move |mut stream: TcpStream| {
            // One line back per request line, until the client closes.
            let peer = stream
                .peer_addr()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let answer = format!("{tcp_name} client={peer}\n");
            let mut request = [0u8; 256];
            while let Ok(n) = stream.read(&mut request) {
                if n == 0 || stream.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
        };
        let udp_name = name.as_bytes().to_vec();
        let (stop, threads) = serve(netns, port, on_tcp, move |_| udp_name.clone())?;
        Ok(NameServer { stop, threads })
    }
}

impl Drop for NameServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Answers each TCP connection on `port` once (`ok\n`) and closes it, inline on one
/// thread with a blocking accept: the cheapest server, for connection-rate measurements.
pub struct OneShotServer {
    stop: Arc<AtomicBool>,
    netns: std::path::PathBuf,
    port: u16,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OneShotServer {
    pub fn start(netns: &Path, port: u16) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_stop = stop.clone();
        let thread = spawn_in_netns(netns, move || {
            let listener = TcpListener::bind(("0.0.0.0", port)).expect("bind one-shot server");
            ready_tx.send(()).ok();
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(mut stream) = stream {
                    let mut request = [0u8; 64];
                    let _ = stream.read(&mut request);
                    let _ = stream.write_all(b"ok\n");
                }
            }
        })?;
        ready_rx
            .recv_timeout(TIMEOUT)
            .context("one-shot server did not start")?;
        Ok(OneShotServer {
            stop,
            netns: netns.to_owned(),
            port,
            thread: Some(thread),
        })
    }
}

impl Drop for OneShotServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the blocking accept.
        let port = self.port;
        let _ = in_netns(&self.netns, move || TcpStream::connect(("127.0.0.1", port)));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
