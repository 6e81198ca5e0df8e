//! Services on a 3-node simulated cluster: ClusterIP from every node to backends on every
//! node (socket LB in the pod's cgroup, and the per-packet path), UDP, getpeername() showing
//! the VIP, fast ECONNREFUSED without endpoints, endpoint removal, a rolling replacement
//! with zero failed requests, and ClientIP affinity.
use kaya_agent::services::{FrontendAddr, Protocol};
use kaya_tests::binaries::workspace_binary;
use kaya_tests::cluster::Cluster;
use kaya_tests::netns::in_netns;
use kaya_tests::probe::NameServer;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const BACKEND_PORT: u16 = 8080;

fn http(vip: Ipv4Addr) -> FrontendAddr {
    FrontendAddr {
        address: vip,
        port: 80,
        protocol: Protocol::Tcp,
    }
}

fn service(name: &str, vip: Ipv4Addr, extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: shop}}
spec:
  clusterIP: {vip}
{extra}  ports:
    - {{name: http, port: 80, targetPort: http}}
    - {{name: dns, port: 53, protocol: UDP, targetPort: dns}}
"
    )
}

/// An EndpointSlice naming (pod ip, node, condition) triples.
fn slice(service: &str, endpoints: &[(Ipv4Addr, &str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {service}-1
  namespace: shop
  labels: {{kubernetes.io/service-name: {service}}}
addressType: IPv4
ports:
  - {{name: http, port: {BACKEND_PORT}}}
  - {{name: dns, port: {BACKEND_PORT}, protocol: UDP}}
endpoints:
"
    );
    for (ip, node, conditions) in endpoints {
        yaml +=
            &format!("  - {{addresses: [{ip}], nodeName: {node}, conditions: {{{conditions}}}}}\n");
    }
    if endpoints.is_empty() {
        yaml = yaml.replace("endpoints:\n", "endpoints: []\n");
    }
    yaml
}

const READY: &str = "ready: true";
const TERMINATING: &str = "ready: false, serving: true, terminating: true";

/// Three nodes with a backend pod (name server) and a client pod on each.
struct Fixture {
    cluster: Cluster,
    servers: Vec<Option<NameServer>>,
    backends: Vec<(Ipv4Addr, String)>,
    clients: Vec<usize>,
}

fn fixture() -> Fixture {
    let mut cluster = Cluster::new(3).expect("cluster starts");
    let mut servers = Vec::new();
    let mut backends = Vec::new();
    let mut clients = Vec::new();
    for node in 0..3 {
        let name = format!("web-{}", node + 1);
        let pod = cluster.add_pod(node, &name).expect("backend pod");
        servers.push(Some(
            NameServer::start(&pod.netns.path(), BACKEND_PORT, &name).unwrap(),
        ));
        backends.push((pod.ip, cluster.nodes[node].name.clone()));
        cluster
            .add_pod(node, &format!("client-{}", node + 1))
            .expect("client pod");
        clients.push(cluster.pods.len() - 1);
    }
    Fixture {
        cluster,
        servers,
        backends,
        clients,
    }
}

impl Fixture {
    fn publish(&self, endpoints: &[(Ipv4Addr, &str, &str)]) {
        self.cluster
            .apply_manifest("web-slice.yaml", &slice("web", endpoints))
            .unwrap();
    }
    /// The `web` ClusterIP service with every backend ready, programmed on every node.
    fn serve_web(&self) {
        self.cluster
            .apply_manifest("web.yaml", &service("web", VIP, ""))
            .unwrap();
        self.publish(&self.all_ready());
        self.cluster.wait_frontend(&http(VIP), 3).unwrap();
    }

    fn all_ready(&self) -> Vec<(Ipv4Addr, &str, &str)> {
        (self.backends.iter())
            .map(|(ip, node)| (*ip, node.as_str(), READY))
            .collect()
    }
}

/// Asks the service from a thread in the client's netns (outside the node cgroup: the
/// per-packet tc path translates it).
fn ask_via_tc(cluster: &Cluster, client: usize, vip: Ipv4Addr) -> anyhow::Result<String> {
    in_netns(
        &cluster.pods[client].netns.path(),
        move || -> anyhow::Result<String> {
            let mut stream = TcpStream::connect_timeout(&(vip, 80).into(), Duration::from_secs(3))?;
            stream.set_read_timeout(Some(Duration::from_secs(3)))?;
            stream.write_all(b"who\n")?;
            let mut name = String::new();
            BufReader::new(stream).read_line(&mut name)?;
            // The answer is `<name> client=<addr>`.
            Ok(name
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned())
        },
    )?
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    (line.split_whitespace()).find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn cluster_ip_reaches_backends_on_every_node_from_every_node() {
    let f = fixture();
    f.serve_web();
    let all: BTreeSet<String> = (1..=3).map(|i| format!("web-{i}")).collect();
    for &client in &f.clients {
        let mut via_socket = BTreeSet::new();
        let mut via_tc = BTreeSet::new();
        for _ in 0..60 {
            if via_socket == all && via_tc == all {
                break;
            }
            let line = f.cluster.probe(client, &["tcp", "10.96.0.10:80"]).unwrap();
            assert!(line.starts_with("ok "), "socket LB request failed: {line}");
            // getpeername() inside the pod shows the VIP, not the backend.
            assert_eq!(field(&line, "peer"), Some("10.96.0.10:80"), "{line}");
            via_socket.insert(field(&line, "name").unwrap().to_owned());
            via_tc.insert(ask_via_tc(&f.cluster, client, VIP).unwrap());
        }
        assert_eq!(via_socket, all, "socket LB from client {client}");
        assert_eq!(via_tc, all, "per-packet LB from client {client}");

        let line = f.cluster.probe(client, &["udp", "10.96.0.10:53"]).unwrap();
        assert!(line.starts_with("ok "), "udp through the ClusterIP: {line}");
        // recvmsg() shows the datagram as coming from the VIP.
        assert_eq!(field(&line, "from"), Some("10.96.0.10:53"), "{line}");
    }
    // Hairpin: a backend reaching its own service lands on itself too (the tc path SNATs
    // it to the hairpin address so the reply comes back through the host).
    let web1 = 0;
    let mut from_backend = BTreeSet::new();
    for _ in 0..60 {
        from_backend.insert(ask_via_tc(&f.cluster, web1, VIP).unwrap());
        if from_backend == all {
            break;
        }
    }
    assert_eq!(
        from_backend, all,
        "web-1 reaches every backend, itself included"
    );

    let counters = f.cluster.counters(0).unwrap();
    assert!(counters["socket_translated"].packets > 0);
    assert!(counters["service_translated"].packets > 0);

    // Prometheus: what is programmed, how long the sync took, how full the maps are.
    let page = f.cluster.scrape_metrics(0).unwrap();
    let metric = |name: &str| -> f64 {
        (page.lines())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{page}"))
    };
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert_eq!(metric("kaya_lb_services"), 1.0);
    assert_eq!(metric("kaya_lb_frontends"), 2.0, "http and dns ports");
    assert_eq!(metric("kaya_lb_backends"), 6.0, "3 pods x 2 target ports");
    assert!(metric("kaya_lb_sync_duration_seconds") > 0.0);
    assert_eq!(
        metric("kaya_bpf_map_entries{map=\"services\"}"),
        8.0,
        "2 heads + 6 slots"
    );
    assert!(metric("kaya_bpf_map_capacity{map=\"services\"}") >= 8.0);
    assert!(metric("kaya_datapath_packets_total{reason=\"socket_translated\"}") > 0.0);

    // The operator's view of the live maps.
    let kaya = |what: &str| {
        let output = std::process::Command::new(workspace_binary("kaya"))
            .args([
                "bpf",
                what,
                "list",
                "--instance",
                &f.cluster.nodes[0].instance,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "kaya bpf {what} list: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let services = kaya("lb");
    let http_line = (services.lines())
        .find(|l| l.starts_with("10.96.0.10:80/TCP"))
        .unwrap_or_else(|| panic!("{services}"));
    assert!(http_line.contains(":8080/TCP"), "{services}");
    assert_eq!(services.matches(":8080/TCP").count(), 3, "{services}");
    assert_eq!(services.matches(":8080/UDP").count(), 3, "{services}");
    let conntrack = kaya("ct");
    assert!(
        conntrack
            .lines()
            .any(|l| l.contains("10.96.0.10:80") && l.contains("forward")),
        "{conntrack}"
    );
}

#[test]
fn connect_to_a_vip_without_endpoints_is_refused_at_once() {
    let f = fixture();
    let empty = Ipv4Addr::new(10, 96, 0, 11);
    f.cluster
        .apply_manifest("empty.yaml", &service("empty", empty, ""))
        .unwrap();
    f.cluster.wait_frontend(&http(empty), 0).unwrap();
    for &client in &f.clients {
        let line = f.cluster.probe(client, &["tcp", "10.96.0.11:80"]).unwrap();
        assert_eq!(field(&line, "errno"), Some("111"), "ECONNREFUSED: {line}");
        let elapsed: u64 = field(&line, "elapsed_us").unwrap().parse().unwrap();
        assert!(elapsed < 500_000, "refused at once, not timed out: {line}");
        // Without the socket hook the tc path answers the SYN with a reset.
        let err = ask_via_tc(&f.cluster, client, empty).unwrap_err();
        let io = err.downcast_ref::<std::io::Error>().expect("an io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        let line = f.cluster.probe(client, &["udp", "10.96.0.11:53"]).unwrap();
        assert_eq!(
            field(&line, "errno"),
            Some("111"),
            "udp refused too: {line}"
        );
    }
}

#[test]
fn removed_endpoints_get_no_new_connections_and_others_keep_theirs() {
    let f = fixture();
    f.serve_web();
    // A long-lived connection through the per-packet path, on some backend.
    let client = f.clients[0];
    let netns = f.cluster.pods[client].netns.path();
    let (to_conn, from_test) = std::sync::mpsc::channel::<()>();
    let (to_test, answers) = std::sync::mpsc::channel::<String>();
    let conn = kaya_tests::netns::spawn_in_netns(&netns, move || {
        let mut stream =
            TcpStream::connect_timeout(&(VIP, 80).into(), Duration::from_secs(3)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        while from_test.recv().is_ok() {
            let mut name = String::new();
            let ok = stream.write_all(b"who\n").is_ok() && reader.read_line(&mut name).is_ok();
            to_test
                .send(if ok {
                    name.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                } else {
                    String::new()
                })
                .unwrap();
        }
    })
    .unwrap();
    to_conn.send(()).unwrap();
    let pinned = answers.recv().unwrap();
    assert!(
        pinned.starts_with("web-"),
        "long-lived connection answered: {pinned:?}"
    );

    // Remove one of the other two backends.
    let removed = (1..=3)
        .map(|i| format!("web-{i}"))
        .find(|n| *n != pinned)
        .unwrap();
    let remaining: Vec<_> = (f.backends.iter().enumerate())
        .filter(|(i, _)| format!("web-{}", i + 1) != removed)
        .map(|(_, (ip, node))| (*ip, node.as_str(), READY))
        .collect();
    f.publish(&remaining);
    f.cluster.wait_frontend(&http(VIP), 2).unwrap();
    for _ in 0..30 {
        let line = f.cluster.probe(client, &["tcp", "10.96.0.10:80"]).unwrap();
        assert_ne!(field(&line, "name"), Some(removed.as_str()), "{line}");
        assert_ne!(ask_via_tc(&f.cluster, client, VIP).unwrap(), removed);
    }
    to_conn.send(()).unwrap();
    assert_eq!(
        answers.recv().unwrap(),
        pinned,
        "the established connection continues"
    );
    drop(to_conn);
    conn.join().unwrap();
}

#[test]
fn replacing_every_backend_one_by_one_fails_no_request() {
    let mut f = fixture();
    f.serve_web();
    let load = f
        .cluster
        .spawn_probe(f.clients[1], &["loop", "10.96.0.10:80", "8000"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // (ip, node, conditions) of the endpoints, in slice order.
    let mut endpoints: Vec<(Ipv4Addr, String, &str)> = (f.backends.iter())
        .map(|(ip, node)| (*ip, node.clone(), READY))
        .collect();
    let publish = |f: &Fixture, endpoints: &[(Ipv4Addr, String, &str)]| {
        let view: Vec<_> = (endpoints.iter())
            .map(|(ip, n, c)| (*ip, n.as_str(), *c))
            .collect();
        f.publish(&view);
        let ready = endpoints.iter().filter(|e| e.2 == READY).count() as u16;
        f.cluster.wait_frontend(&http(VIP), ready).unwrap();
    };
    for node in 0..3 {
        let name = format!("new-{}", node + 1);
        let pod = f.cluster.add_pod(node, &name).unwrap();
        let (ip, netns) = (pod.ip, pod.netns.path());
        f.servers.push(Some(
            NameServer::start(&netns, BACKEND_PORT, &name).unwrap(),
        ));
        // The replacement becomes ready, then the old pod terminates, then it is gone.
        endpoints.push((ip, f.cluster.nodes[node].name.clone(), READY));
        publish(&f, &endpoints);
        endpoints[0].2 = TERMINATING;
        publish(&f, &endpoints);
        std::thread::sleep(Duration::from_millis(200));
        endpoints.remove(0);
        publish(&f, &endpoints);
        // In-flight requests finish before the old server stops (its grace period).
        std::thread::sleep(Duration::from_millis(200));
        f.servers[node] = None;
        std::thread::sleep(Duration::from_millis(300));
    }
    let output = load.wait_with_output().unwrap();
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let ok: u64 = field(&line, "ok").unwrap().parse().unwrap();
    assert_eq!(
        field(&line, "failed"),
        Some("0"),
        "no request fails: {line}"
    );
    assert!(ok > 100, "the client kept sending: {line}");
    assert_eq!(
        field(&line, "names"),
        Some("new-1,new-2,new-3,web-1,web-2,web-3"),
        "served by old and new backends: {line}"
    );
}

#[test]
fn client_ip_affinity_sticks_for_its_timeout() {
    let f = fixture();
    let sticky = Ipv4Addr::new(10, 96, 0, 12);
    let extra =
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 1}}\n";
    f.cluster
        .apply_manifest("sticky.yaml", &service("sticky", sticky, extra))
        .unwrap();
    f.cluster
        .apply_manifest("sticky-slice.yaml", &slice("sticky", &f.all_ready()))
        .unwrap();
    f.cluster.wait_frontend(&http(sticky), 3).unwrap();
    let client = f.clients[2];
    let ask = || {
        let line = f.cluster.probe(client, &["tcp", "10.96.0.12:80"]).unwrap();
        field(&line, "name")
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned()
    };
    let mut after_expiry = BTreeSet::new();
    for _ in 0..8 {
        let first = ask();
        for _ in 0..10 {
            assert_eq!(ask(), first, "within the timeout every connection sticks");
        }
        after_expiry.insert(first);
        std::thread::sleep(Duration::from_millis(1300));
    }
    // Each expiry re-picks at random: 8 rounds on one of 3 backends by chance is 3^-7.
    assert!(after_expiry.len() > 1, "affinity expires: {after_expiry:?}");
}

/// Connects from `netns` to `target`, returns the backend's answer (`name client=ip:port`).
fn ask_from(netns: &std::path::Path, target: (Ipv4Addr, u16)) -> anyhow::Result<String> {
    in_netns(netns, move || -> anyhow::Result<String> {
        let mut stream = TcpStream::connect_timeout(&target.into(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"who\n")?;
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer)?;
        Ok(answer.trim().to_owned())
    })?
}

#[test]
fn node_ports_answer_outside_clients_on_every_node() {
    let f = fixture();
    // Backends on nodes 1 and 2 only: node 3 has no local endpoint.
    let endpoints: Vec<_> = f.all_ready().into_iter().take(2).collect();
    let extra = "  type: NodePort\n";
    let yaml = service("web", VIP, extra)
        .replace("targetPort: http}", "targetPort: http, nodePort: 30080}")
        .replace("targetPort: dns}", "targetPort: dns, nodePort: 30053}");
    f.cluster.apply_manifest("web.yaml", &yaml).unwrap();
    f.publish(&endpoints);
    let local = service(
        "local",
        Ipv4Addr::new(10, 96, 0, 13),
        "  type: NodePort\n  externalTrafficPolicy: Local\n",
    )
    .replace("targetPort: http}", "targetPort: http, nodePort: 30081}")
    .replace("targetPort: dns}", "targetPort: dns, nodePort: 30054}");
    f.cluster.apply_manifest("local.yaml", &local).unwrap();
    f.cluster
        .apply_manifest("local-slice.yaml", &slice("local", &endpoints))
        .unwrap();
    let outside_ip = Ipv4Addr::new(192, 168, 50, 100);
    let outside = kaya_tests::underlay::plug_node(
        &f.cluster.underlay,
        &format!("{}-out", f.cluster.tag),
        "out",
        outside_ip,
    )
    .unwrap();
    for (index, node) in f.cluster.nodes.iter().enumerate() {
        let frontend = FrontendAddr {
            address: node.ip,
            port: 30080,
            protocol: Protocol::Tcp,
        };
        f.cluster.wait_frontend_on(index, &frontend, 2).unwrap();
        let local = FrontendAddr {
            port: 30081,
            ..frontend
        };
        f.cluster
            .wait_frontend_on(index, &local, u16::from(index < 2))
            .unwrap();
    }
    let web: BTreeSet<String> = ["web-1", "web-2"].map(String::from).into();
    for (index, node) in f.cluster.nodes.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            let answer = ask_from(&outside.path(), (node.ip, 30080))
                .unwrap_or_else(|e| panic!("NodePort on {} from outside: {e:#}", node.name));
            let name = answer.split_whitespace().next().unwrap().to_owned();
            // externalTrafficPolicy: Cluster: the backend sees the node's gateway, not us.
            assert!(!answer.contains(&outside_ip.to_string()), "{answer}");
            seen.insert(name);
            if seen == web {
                break;
            }
        }
        assert_eq!(seen, web, "node {} spreads over every backend", index + 1);
    }
    // externalTrafficPolicy: Local: only the node's own backend, and the client's address.
    for (index, node) in f.cluster.nodes.iter().take(2).enumerate() {
        let answer = ask_from(&outside.path(), (node.ip, 30081)).unwrap();
        assert!(
            answer.starts_with(&format!("web-{} ", index + 1)),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("client={outside_ip}:")),
            "source kept: {answer}"
        );
    }
    // Node 3 has none of the Local service's endpoints: outside clients are dropped there
    // (as kube-proxy does, so load balancers' health checks steer away), not refused.
    let node3 = f.cluster.nodes[2].ip;
    let dropped = in_netns(&outside.path(), move || {
        TcpStream::connect_timeout(&(node3, 30081).into(), Duration::from_millis(700))
    })
    .unwrap()
    .unwrap_err();
    assert_eq!(dropped.kind(), std::io::ErrorKind::TimedOut, "{dropped}");

    // Node 3 has no backend: its requests went into the overlay, replies came back from it.
    let counters = f.cluster.counters(2).unwrap();
    assert!(counters["nodeport_translated"].packets > 0);
    assert!(counters["nodeport_reply"].packets > 0);
}

#[test]
fn socket_lb_can_be_turned_off_and_on_per_node_across_restarts() {
    let mut f = fixture();
    f.serve_web();
    let client = f.clients[0];
    let socket_count = |f: &Fixture| f.cluster.counters(0).unwrap()["socket_translated"].packets;
    let packet_count = |f: &Fixture| f.cluster.counters(0).unwrap()["service_translated"].packets;
    let ask = |f: &Fixture| {
        let line = f.cluster.probe(client, &["tcp", "10.96.0.10:80"]).unwrap();
        assert!(line.starts_with("ok "), "{line}");
        assert_eq!(field(&line, "peer"), Some("10.96.0.10:80"), "{line}");
    };
    ask(&f);
    let sockets = socket_count(&f);
    assert!(sockets > 0, "the socket hook translated the connection");

    // Off: the same client in the same cgroup is now served by the per-packet path.
    f.cluster.restart_agent(0, false).unwrap();
    let packets = packet_count(&f);
    ask(&f);
    assert_eq!(
        socket_count(&f),
        sockets,
        "no socket translation with socketLB: false"
    );
    assert!(
        packet_count(&f) > packets,
        "the tc path translated it instead"
    );

    // On again: the hooks come back (and the service maps were adopted, not rebuilt).
    f.cluster.restart_agent(0, true).unwrap();
    ask(&f);
    assert!(socket_count(&f) > sockets);
    let log = f.cluster.nodes[0].agent_log();
    assert!(log.contains("socket load balancing detached"), "{log}");
    let last_sync = (log.lines())
        .rfind(|l| l.contains("services synced"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        last_sync.contains("writes=0"),
        "a restart rewrites nothing: {last_sync}"
    );
}
