//! kaya-probe: a client the cluster tests start inside a pod (its network namespace and its
//! node's cgroup, so the socket-level service hooks apply). Prints one line per result.
//!
//!   kaya-probe tcp ADDR:PORT        one request; `ok name=<backend> client=<as the backend
//!                                   saw us> peer=<getpeername>`
//!   kaya-probe udp ADDR:PORT        one datagram; `ok name=<backend> from=<source>`
//!   kaya-probe loop ADDR:PORT MS    new connection per request for MS milliseconds;
//!                                   `done ok=<n> failed=<n> names=<a,b> first_error=<e>`
//!   kaya-probe rate ADDR:PORT MS    new connection per request for MS milliseconds, as fast
//!                                   as possible; `rate per_s=<n> connect_p50_us=<t>
//!                                   connect_p99_us=<t> ok=<n> failed=<n>`
//!   kaya-probe matrix MS PROTO:ADDR:PORT...
//!                                   every target at once (tcp: connect and one request;
//!                                   udp: a datagram, answered), each given MS milliseconds;
//!                                   one `PROTO:ADDR:PORT ok|fail` line per target
//! Failures print `err errno=<n> elapsed_us=<t> <message>` and exit 1.
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(3);

fn tcp_request(target: SocketAddr) -> std::io::Result<(String, SocketAddr)> {
    let mut stream = TcpStream::connect_timeout(&target, TIMEOUT)?;
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.write_all(b"who\n")?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read(&mut byte)? == 1 && byte[0] != b'\n' {
        answer.push(byte[0]);
    }
    if answer.is_empty() {
        return Err(std::io::Error::other("empty answer"));
    }
    Ok((String::from_utf8_lossy(&answer).into_owned(), peer))
}

fn fail(started: Instant, err: &std::io::Error) -> ! {
    println!(
        "err errno={} elapsed_us={} {err}",
        err.raw_os_error().unwrap_or(0),
        started.elapsed().as_micros()
    );
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mode), Some(target)) = (args.first(), args.get(1)) else {
        eprintln!(
            "usage: kaya-probe tcp|udp|loop|rate ADDR:PORT [MS] | matrix MS PROTO:ADDR:PORT..."
        );
        std::process::exit(2);
    };
    if mode == "matrix" {
        let Ok(millis) = target.parse::<u64>() else {
            eprintln!("kaya-probe: matrix needs a timeout in milliseconds, not {target:?}");
            std::process::exit(2);
        };
        matrix(Duration::from_millis(millis), &args[2..]);
        return;
    }
    let Ok(target) = target.parse::<SocketAddr>() else {
        eprintln!("kaya-probe: {target:?} is not ADDR:PORT");
        std::process::exit(2);
    };
    let started = Instant::now();
    match mode.as_str() {
        "tcp" => match tcp_request(target) {
            Ok((answer, peer)) => println!("ok name={answer} peer={peer}"),
            Err(err) => fail(started, &err),
        },
        "udp" => {
            let result = (|| -> std::io::Result<(String, SocketAddr)> {
                let socket = UdpSocket::bind("0.0.0.0:0")?;
                socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                let mut buf = [0u8; 512];
                let mut last = std::io::Error::other("no answer");
                for _ in 0..3 {
                    socket.send_to(b"who", target)?;
                    match socket.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            return Ok((String::from_utf8_lossy(&buf[..n]).trim().into(), from));
                        }
                        Err(err) => last = err,
                    }
                }
                Err(last)
            })();
            match result {
                Ok((name, from)) => println!("ok name={name} from={from}"),
                Err(err) => fail(started, &err),
            }
        }
        "loop" => {
            let millis: u64 = args.get(2).and_then(|m| m.parse().ok()).unwrap_or(1000);
            let deadline = started + Duration::from_millis(millis);
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut names = BTreeSet::new();
            let mut first_error = String::from("none");
            while Instant::now() < deadline {
                match tcp_request(target) {
                    Ok((answer, _)) => {
                        ok += 1;
                        let name = answer.split_whitespace().next().unwrap_or_default();
                        names.insert(name.to_owned());
                    }
                    Err(err) => {
                        if failed == 0 {
                            first_error = err.to_string().replace(' ', "_");
                        }
                        failed += 1;
                    }
                }
            }
            let names: Vec<_> = names.into_iter().collect();
            println!(
                "done ok={ok} failed={failed} names={} first_error={first_error}",
                names.join(",")
            );
        }
        "rate" => {
            let millis: u64 = args.get(2).and_then(|m| m.parse().ok()).unwrap_or(1000);
            let deadline = started + Duration::from_millis(millis);
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut connect_us = Vec::new();
            while Instant::now() < deadline {
                let begun = Instant::now();
                let result = TcpStream::connect_timeout(&target, TIMEOUT).and_then(|mut stream| {
                    connect_us.push(begun.elapsed().as_secs_f64() * 1e6);
                    stream.set_read_timeout(Some(TIMEOUT))?;
                    stream.write_all(b"who\n")?;
                    let mut byte = [0u8; 1];
                    stream.read_exact(&mut byte)
                });
                match result {
                    Ok(()) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            connect_us.sort_by(f64::total_cmp);
            let at = |p: f64| {
                let index = ((connect_us.len().max(1) - 1) as f64 * p).round() as usize;
                connect_us.get(index).copied().unwrap_or(0.0)
            };
            println!(
                "rate per_s={:.1} connect_p50_us={:.1} connect_p99_us={:.1} ok={ok} failed={failed}",
                ok as f64 / started.elapsed().as_secs_f64(),
                at(0.50),
                at(0.99)
            );
        }
        other => {
            eprintln!("kaya-probe: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
}

/// One probe per target, all at once: whether each got its answer within `limit`.
fn matrix(limit: Duration, targets: &[String]) {
    let probes: Vec<_> = targets
        .iter()
        .map(|target| {
            let target = target.clone();
            std::thread::spawn(move || {
                let ok = match target.split_once(':') {
                    Some(("tcp", address)) => address
                        .parse()
                        .is_ok_and(|address| tcp_within(address, limit)),
                    Some(("udp", address)) => address
                        .parse()
                        .is_ok_and(|address| udp_within(address, limit)),
                    _ => false,
                };
                (target, ok)
            })
        })
        .collect();
    for probe in probes {
        let (target, ok) = probe.join().expect("probe thread");
        println!("{target} {}", if ok { "ok" } else { "fail" });
    }
}

fn tcp_within(target: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let Ok(mut stream) = TcpStream::connect_timeout(&target, limit) else {
        return false;
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut answer = [0u8; 64];
    stream.set_read_timeout(Some(left)).is_ok()
        && stream.write_all(b"who\n").is_ok()
        && stream.read(&mut answer).is_ok_and(|n| n > 0)
}

/// Sends twice (a first datagram can wait on neighbour resolution) and waits for an answer.
fn udp_within(target: SocketAddr, limit: Duration) -> bool {
    let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else {
        return false;
    };
    let deadline = Instant::now() + limit;
    for attempt in 0..2 {
        if socket.send_to(b"who", target).is_err() {
            return false;
        }
        let slice = if attempt == 0 {
            limit / 2
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        let _ = socket.set_read_timeout(Some(slice.max(Duration::from_millis(1))));
        let mut buf = [0u8; 256];
        if socket
            .recv_from(&mut buf)
            .is_ok_and(|(n, from)| n > 0 && from == target)
        {
            return true;
        }
    }
    false
}
