//! NetworkPolicy truth tables on a 3-node simulated cluster, in the spirit of cyclonus:
//! namespaces x, y, z with pods a, b, c spread over the nodes, every scenario's policies
//! applied through the manifest feed, then real TCP and UDP probes between all 81 pod pairs
//! on ports 80 and 81 (and through a ClusterIP to x/a) compared cell by cell with the
//! independent reference model.
use anyhow::{Context, bail};
use kaya_agent::policy::names::{FlowNames, NAMES_FILE};
use kaya_agent::services::{FrontendAddr, Protocol};
use kaya_tests::cluster::Cluster;
use kaya_tests::policy_model::{Proto, World};
use kaya_tests::policy_scenarios::{NAMESPACES, PODS, PROBES, expected, scenarios, world};
use kaya_tests::probe::NameServer;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// How long a probe waits for its answer: a denied probe is one that hears nothing.
const PROBE_MS: u32 = 700;
const SERVICE_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 7, 80);
const POLICY_FILE: &str = "policies.yaml";

fn proto_name(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
    }
}

/// One probe round: `pairs[probe][from][to]`, and `vip[from]` through the service.
struct Observed {
    pairs: Vec<Vec<Vec<bool>>>,
    vip: Vec<bool>,
}

struct TruthTable {
    cluster: Cluster,
    /// Pod index in the cluster for each (namespace, pod), in NAMESPACES × PODS order.
    order: Vec<usize>,
    ips: BTreeMap<(String, String), Ipv4Addr>,
    _servers: Vec<NameServer>,
    revision: u64,
}

impl TruthTable {
    fn new() -> anyhow::Result<Self> {
        let mut cluster = Cluster::new(3)?;
        let mut order = Vec::new();
        let mut ips = BTreeMap::new();
        let mut servers = Vec::new();
        let mut manifests = String::new();
        for (n, ns) in NAMESPACES.iter().enumerate() {
            manifests += &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{ns: {ns}}}}}\n---\n"
            );
            for (p, pod) in PODS.iter().enumerate() {
                // Each namespace spans every node, so each cell mixes local and overlay paths.
                let node = (n + p) % 3;
                let added = cluster.add_pod(node, &format!("{ns}{pod}"))?;
                let ip = added.ip;
                for port in [80, 81] {
                    servers.push(NameServer::start(
                        &added.netns.path(),
                        port,
                        &format!("{ns}/{pod}"),
                    )?);
                }
                order.push(cluster.pods.len() - 1);
                ips.insert((ns.to_string(), pod.to_string()), ip);
                manifests += &format!(
                    "apiVersion: v1
kind: Pod
metadata: {{name: {pod}, namespace: {ns}, labels: {{pod: {pod}}}}}
spec:
  nodeName: {node_name}
  containers:
    - name: serve
      ports:
        - {{name: serve-80-tcp, containerPort: 80}}
        - {{name: serve-81-tcp, containerPort: 81}}
        - {{name: serve-80-udp, containerPort: 80, protocol: UDP}}
        - {{name: serve-81-udp, containerPort: 81, protocol: UDP}}
status: {{podIP: {ip}}}
---
",
                    node_name = cluster.nodes[node].name,
                );
            }
        }
        let backend = ips[&("x".to_string(), "a".to_string())];
        manifests += &format!(
            "apiVersion: v1
kind: Service
metadata: {{name: web, namespace: x}}
spec:
  clusterIP: {SERVICE_VIP}
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: x, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 80}}]
endpoints: [{{addresses: [{backend}]}}]
"
        );
        cluster.apply_manifest("inventory.yaml", &manifests)?;
        let frontend = FrontendAddr {
            address: SERVICE_VIP,
            port: 80,
            protocol: Protocol::Tcp,
        };
        cluster.wait_frontend(&frontend, 1)?;
        let mut table = TruthTable {
            cluster,
            order,
            ips,
            _servers: servers,
            revision: 0,
        };
        table.apply(&[])?;
        Ok(table)
    }

    /// Puts exactly `policies` in force on every node and waits until each agent reports
    /// this revision of each (and no other policy) in force.
    fn apply(&mut self, policies: &[String]) -> anyhow::Result<()> {
        self.revision += 1;
        let mut wanted = BTreeMap::new();
        let mut yaml = String::new();
        for policy in policies {
            let mut doc: serde_yaml::Value = serde_yaml::from_str(policy)?;
            let meta = doc.get_mut("metadata").context("policy metadata")?;
            meta["resourceVersion"] = self.revision.to_string().into();
            let name = format!(
                "{}/{}",
                meta["namespace"].as_str().unwrap_or("default"),
                meta["name"].as_str().unwrap_or_default()
            );
            wanted.insert(name, self.revision.to_string());
            yaml += &serde_yaml::to_string(&doc)?;
            yaml += "---\n";
        }
        self.cluster.apply_manifest(POLICY_FILE, &yaml)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &self.cluster.nodes {
            let path = node.state_dir(&self.cluster.state_root).join(NAMES_FILE);
            loop {
                if FlowNames::load(&path).is_ok_and(|names| names.policies == wanted) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} never put {wanted:?} in force:\n{}",
                        node.name,
                        node.agent_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// Probes every pair on every (port, protocol), and every pod to the service.
    fn probe_all(&self) -> anyhow::Result<Observed> {
        let mut targets = Vec::new();
        for &to in &self.order {
            for (port, proto) in PROBES {
                targets.push(format!(
                    "{}:{}:{port}",
                    proto_name(proto),
                    self.cluster.pods[to].ip
                ));
            }
        }
        targets.push(format!("tcp:{SERVICE_VIP}:80"));
        let mut args = vec!["matrix".to_string(), PROBE_MS.to_string()];
        args.extend(targets.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let children = (self.order.iter())
            .map(|&from| self.cluster.spawn_probe(from, &args))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut pairs = vec![vec![vec![false; 9]; 9]; PROBES.len()];
        let mut vip = Vec::new();
        for (from, child) in children.into_iter().enumerate() {
            let output = child.wait_with_output()?;
            let text = String::from_utf8_lossy(&output.stdout);
            let results: BTreeMap<&str, bool> = (text.lines())
                .filter_map(|line| line.rsplit_once(' '))
                .map(|(target, verdict)| (target, verdict == "ok"))
                .collect();
            if results.len() != targets.len() {
                bail!(
                    "probe from pod {from} printed {} results:\n{text}",
                    results.len()
                );
            }
            for (t, target) in targets.iter().enumerate().take(targets.len() - 1) {
                pairs[t % PROBES.len()][from][t / PROBES.len()] = results[target.as_str()];
            }
            vip.push(results[targets.last().expect("vip target").as_str()]);
        }
        Ok(Observed { pairs, vip })
    }
}

fn label(index: usize) -> String {
    format!("{}/{}", NAMESPACES[index / 3], PODS[index % 3])
}

/// Every cell that differs from the model, as readable lines.
fn mismatches(world: &World, observed: &Observed) -> Vec<String> {
    let (pairs, vip) = (&observed.pairs, &observed.vip);
    let mut out = Vec::new();
    for (probe, (port, proto)) in PROBES.iter().enumerate() {
        let want = expected(world, *port, *proto);
        for from in 0..9 {
            for to in 0..9 {
                if pairs[probe][from][to] != want[from][to] {
                    out.push(format!(
                        "{} -> {} {}/{port}: model {} got {}",
                        label(from),
                        label(to),
                        proto_name(*proto),
                        want[from][to],
                        pairs[probe][from][to]
                    ));
                }
            }
        }
    }
    let backend = 0; // x/a
    for (from, got) in vip.iter().enumerate() {
        let want = world.allowed(&world.pods[from], &world.pods[backend], 80, Proto::Tcp);
        if *got != want {
            out.push(format!(
                "{} -> service web (x/a) tcp/80: model {want} got {got}",
                label(from)
            ));
        }
    }
    out
}

#[test]
fn every_scenario_matches_the_reference_model_cell_for_cell() -> anyhow::Result<()> {
    let mut table = TruthTable::new()?;
    let ips = table.ips.clone();
    let all = scenarios(|ns, pod| ips[&(ns.to_string(), pod.to_string())]);
    assert!(all.len() >= 40, "{} scenarios", all.len());

    // Without policies everything is open: also proves the probes themselves work.
    let open = world(&ips);
    let wrong = mismatches(&open, &table.probe_all()?);
    assert!(wrong.is_empty(), "without policies:\n{}", wrong.join("\n"));

    let mut failures = Vec::new();
    let (mut steps, mut cells) = (0, 0);
    let started = Instant::now();
    for scenario in &all {
        for (index, step) in scenario.steps.iter().enumerate() {
            let mut model = world(&ips);
            for yaml in step {
                model.policies.push(serde_yaml::from_str(yaml)?);
            }
            table.apply(step)?;
            let observed = table.probe_all()?;
            steps += 1;
            cells += 9 * 9 * PROBES.len() + 9;
            for line in mismatches(&model, &observed) {
                failures.push(format!("{} step {}: {line}", scenario.name, index + 1));
            }
        }
    }
    eprintln!(
        "{} scenarios, {steps} steps, {cells} cells probed in {:.1}s",
        all.len(),
        started.elapsed().as_secs_f64()
    );
    table.apply(&[])?;
    assert!(
        failures.is_empty(),
        "{} cells differ from the model:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[test]
fn observe_shows_a_denied_flow_with_its_reason_within_a_second_and_prometheus_counts_it()
-> anyhow::Result<()> {
    let mut table = TruthTable::new()?;
    let allow_b = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]
";
    table.apply(&[allow_b.to_string()])?;
    // x/a lives on node 0; its ingress policy decides there.
    let target_node = table.cluster.pods[table.order[0]].node;
    let (mut observer, lines) = table.cluster.observe(target_node, &["--to-pod", "x/a"])?;
    std::thread::sleep(Duration::from_millis(300));
    let x_a = table.ips[&("x".to_string(), "a".to_string())];
    let (y_a, x_b) = (table.order[3], table.order[1]);
    let capture = kaya_tests::capture::VxlanCapture::start(
        &table.cluster.underlay.path(),
        kaya_ebpf_common::tunnel::VXLAN_PORT,
    )?;
    let denied_at = Instant::now();
    let denied = table
        .cluster
        .probe(y_a, &["matrix", "500", &format!("tcp:{x_a}:80")])?;
    assert!(denied.ends_with("fail"), "{denied}");
    // y/a sits on another node: its SYNs crossed the overlay with its identity as the VNI,
    // the same number the agents give its labels.
    let frames = capture.finish();
    let y_a_ip = table.cluster.pods[y_a].ip;
    let names_path = (table.cluster.nodes[target_node])
        .state_dir(&table.cluster.state_root)
        .join(NAMES_FILE);
    let names = FlowNames::load(&names_path)?;
    let identity = (names.identities.iter())
        .find(|(_, labels)| labels.as_str() == "y pod=a")
        .map(|(id, _)| *id)
        .context("no identity named y pod=a")?;
    let vnis: std::collections::BTreeSet<u32> = (frames.iter())
        .filter(|f| f.inner_src == y_a_ip && f.inner_dst == x_a)
        .map(|f| f.vni)
        .collect();
    assert_eq!(vnis, [identity].into(), "VNIs of y/a's frames: {frames:?}");
    let allowed = table
        .cluster
        .probe(x_b, &["matrix", "500", &format!("tcp:{x_a}:80")])?;
    assert!(allowed.ends_with("ok"), "{allowed}");
    let (mut saw_drop, mut saw_allow) = (None, false);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && (saw_drop.is_none() || !saw_allow) {
        let Ok((arrived, line)) = lines.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        if line.contains("y/a:") && line.contains("-> x/a:80 TCP DROPPED ingress (policy denied") {
            saw_drop.get_or_insert(arrived);
        }
        if line.contains("x/b:")
            && line.contains("FORWARDED ingress (allowed by x/only-b ingress[0])")
        {
            saw_allow = true;
        }
    }
    observer.kill()?;
    observer.wait()?;
    let shown = saw_drop.context("kaya observe never showed y/a -> x/a dropped")?;
    assert!(
        shown.duration_since(denied_at) < Duration::from_secs(1),
        "shown {:?} after the first denied SYN",
        shown.duration_since(denied_at)
    );
    assert!(
        saw_allow,
        "kaya observe never showed x/b -> x/a allowed by its rule"
    );
    table.apply(&[])?;
    Ok(())
}

#[test]
fn a_pods_own_node_always_reaches_it_and_other_nodes_do_not() -> anyhow::Result<()> {
    let mut table = TruthTable::new()?;
    let deny_all = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}}
";
    table.apply(&[deny_all.to_string()])?;
    let x_a = table.ips[&("x".to_string(), "a".to_string())];
    let home = table.cluster.pods[table.order[0]].node;
    let other = (home + 1) % table.cluster.nodes.len();
    let netns: Vec<_> = table.cluster.nodes.iter().map(|n| n.netns.path()).collect();
    let connect_from = |node: usize| -> anyhow::Result<bool> {
        kaya_tests::netns::in_netns(&netns[node], move || {
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from((x_a, 80)),
                Duration::from_millis(700),
            )
            .is_ok()
        })
    };
    // Kubelet probes come from the pod's own node: Kubernetes requires they pass.
    assert!(connect_from(home)?, "x/a's own node is refused");
    assert!(
        !connect_from(other)?,
        "another node's host passes a deny-all policy"
    );
    table.apply(&[])?;
    assert!(
        connect_from(other)?,
        "without the policy the other node reaches x/a"
    );
    Ok(())
}
