//! Probes and lifecycle hooks as the kubelet runs them: exec inside the container, HTTP GET
//! and TCP connect from the node to the pod IP, each within its timeout.
use super::capture;
use super::step::{self, StepOutput, StepRequest};
use crate::pods::probe::{Kind, ProbeState, ProbeTiming, Verdict};
use crate::runtime::plan::{ActionPlan, ProbePlan};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

/// What kubelet's prober calls itself.
pub const USER_AGENT: &str = "kube-probe/1.30";

/// One probe of one running container.
pub struct Prober {
    pub kind: Kind,
    plan: ProbePlan,
    pub state: ProbeState,
    pub next: Instant,
}

impl Prober {
    pub fn new(kind: Kind, plan: &ProbePlan, started: Instant) -> Prober {
        let timing = ProbeTiming {
            initial_delay: Duration::from_millis(plan.initial_delay_ms),
            period: Duration::from_millis(plan.period_ms),
            timeout: Duration::from_millis(plan.timeout_ms),
            success_threshold: plan.success_threshold,
            failure_threshold: plan.failure_threshold,
        };
        Prober {
            kind,
            plan: plan.clone(),
            state: ProbeState::new(timing, kind),
            next: started + timing.initial_delay,
        }
    }

    /// Runs the probe once and schedules the next run.
    pub fn run(&mut self, target: &Target<'_>, now: Instant) -> Verdict {
        let outcome = perform(
            &self.plan.action,
            target,
            Duration::from_millis(self.plan.timeout_ms),
        );
        self.next = now + Duration::from_millis(self.plan.period_ms);
        self.state.record(outcome.is_ok())
    }
}

/// Where actions run: the container (exec) and the pod's address (HTTP, TCP).
pub struct Target<'a> {
    pub runtime_root: &'a Path,
    pub container_id: &'a str,
    pub pod_ip: &'a str,
    /// The kaya-runtime binary that starts exec actions.
    pub runtime: &'a Path,
}

/// Runs a probe or hook action; `Err` carries why it failed.
pub fn perform(action: &ActionPlan, target: &Target<'_>, timeout: Duration) -> Result<(), String> {
    match action {
        ActionPlan::Exec { command } => {
            let captured = capture::exec(
                target.runtime,
                target.runtime_root,
                target.container_id,
                command,
                timeout,
            )?;
            if captured.timed_out {
                return Err(format!("command {command:?} timed out after {timeout:?}"));
            }
            if captured.exit_code != 0 {
                return Err(format!(
                    "command {command:?} exited with {}: {}",
                    captured.exit_code,
                    String::from_utf8_lossy(&captured.stderr).trim()
                ));
            }
            Ok(())
        }
        ActionPlan::TcpSocket { host, port } => {
            let address = resolve(host.as_deref().unwrap_or(target.pod_ip), *port)?;
            TcpStream::connect_timeout(&address, timeout)
                .map(drop)
                .map_err(|error| format!("dial tcp {address}: {error}"))
        }
        ActionPlan::HttpGet {
            host,
            port,
            path,
            scheme,
            headers,
        } => {
            let host = host.as_deref().unwrap_or(target.pod_ip);
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let url = format!("{}://{authority}{path}", scheme.to_lowercase());
            let status = if scheme.eq_ignore_ascii_case("https") {
                // TLS is the runtime's job: the shim does not carry a TLS stack.
                let request = StepRequest::HttpsGet {
                    url: url.clone(),
                    headers: headers.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                };
                match step::run(target.runtime, &request, None)? {
                    StepOutput::HttpStatus { status } => status,
                    other => return Err(format!("Get {url:?}: unexpected step output {other:?}")),
                }
            } else {
                let address = resolve(host, *port)?;
                http_get(address, &authority, path, headers, timeout)
                    .map_err(|error| format!("Get {url:?}: {error}"))?
            };
            // Kubernetes: 200 ≤ status < 400 is a success.
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {status}"))
            }
        }
    }
}

/// A plain HTTP/1.1 GET as kubelet's prober sends it; returns the status code. Redirects
/// are not followed: a 3xx is a success already.
fn http_get(
    address: SocketAddr,
    authority: &str,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<u16> {
    let deadline = std::time::Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&address, timeout)?;
    let left = || {
        deadline
            .saturating_duration_since(std::time::Instant::now())
            .max(Duration::from_millis(1))
    };
    stream.set_write_timeout(Some(left()))?;
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: */*\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
    {
        request.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.set_read_timeout(Some(left()))?;
    let mut line = String::new();
    BufReader::new(stream.take(8192)).read_line(&mut line)?;
    parse_status_line(&line).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed HTTP response {:?}", line.trim_end()),
        )
    })
}

/// `HTTP/1.x 204 No Content` → 204.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut fields = line.split_whitespace();
    if !fields.next()?.starts_with("HTTP/") {
        return None;
    }
    fields.next()?.parse().ok()
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|error| format!("resolving {host}: {error}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn target() -> Target<'static> {
        Target {
            runtime_root: Path::new("/nonexistent"),
            container_id: "c",
            pod_ip: "127.0.0.1",
            runtime: Path::new("/nonexistent/kaya-runtime"),
        }
    }

    #[test]
    fn reads_the_status_code_from_the_status_line() {
        assert_eq!(parse_status_line("HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line("HTTP/1.0 302 Found\r\n"), Some(302));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line("HTTP/1.1 abc\r\n"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[test]
    fn tcp_probes_connect_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let action = ActionPlan::TcpSocket { host: None, port };
        assert!(perform(&action, &target(), Duration::from_secs(1)).is_ok());
        drop(listener);
        let error = perform(&action, &target(), Duration::from_secs(1)).unwrap_err();
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    }

    #[test]
    fn http_probes_judge_the_status_code() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            for status in ["204 No Content", "500 Internal Server Error"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).unwrap();
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
        });
        let action = ActionPlan::HttpGet {
            host: None,
            port,
            path: "/healthz".into(),
            scheme: "HTTP".into(),
            headers: vec![],
        };
        assert!(perform(&action, &target(), Duration::from_secs(2)).is_ok());
        let error = perform(&action, &target(), Duration::from_secs(2)).unwrap_err();
        assert!(error.contains("500"), "{error}");
        server.join().unwrap();
    }
}
