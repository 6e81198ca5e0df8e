//! kaya-cni against the CNI specification, with a real kaya-agent on a simulated node: every
//! command, the error codes, idempotence, IPAM exhaustion and concurrency, GC, and chaining with
//! Debian's portmap plugin through a conflist.
use kaya_agent_api::{Request, Response};
use kaya_tests::binaries::workspace_binary;
use kaya_tests::cluster::Cluster;
use kaya_tests::cni_exec::{Attachment, Conflist};
use kaya_tests::cni_invoke::{Invocation, failure_code, invoke_raw};
use kaya_tests::netns::TestNetns;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn pod_netns(cluster: &Cluster, name: &str) -> TestNetns {
    TestNetns::create(&format!("{}-pod-{name}", cluster.tag)).expect("pod netns")
}

fn host_links(cluster: &Cluster, prefix: &str) -> Vec<String> {
    let out = cluster.nodes[0].netns.ip(&["-o", "link", "show"]).unwrap();
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap().to_owned())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

fn prefix(cluster: &Cluster) -> String {
    cluster.plugin_conf(0).unwrap()["hostIfPrefix"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn endpoints(cluster: &Cluster) -> Vec<kaya_agent_api::EndpointSpec> {
    match kaya_agent_api::call(
        &cluster.socket_path(0),
        &Request::ListEndpoints,
        Duration::from_secs(2),
    )
    .unwrap()
    {
        Response::Endpoints { endpoints } => endpoints,
        other => panic!("{other:?}"),
    }
}

#[test]
fn add_check_del_lifecycle_plumbs_and_unplumbs_the_pod() {
    let cluster = Cluster::new(1).unwrap();
    let pod = pod_netns(&cluster, "life");
    let result = cluster.cni(0, "ADD", "life", &pod.path()).unwrap();
    assert_eq!(result["cniVersion"], "1.1.0");
    let address = result["ips"][0]["address"].as_str().unwrap();
    let ip = address.strip_suffix("/32").expect("a /32 address");
    assert!(
        cluster.nodes[0]
            .pod_cidr
            .contains(&ip.parse::<std::net::Ipv4Addr>().unwrap())
    );
    assert_eq!(result["ips"][0]["gateway"], "10.244.1.1");
    assert_eq!(
        result["interfaces"][1]["sandbox"],
        pod.path().to_str().unwrap()
    );
    let host = result["interfaces"][0]["name"].as_str().unwrap().to_owned();

    // The pod side really is as the result says.
    assert!(
        pod.ip(&["-o", "addr", "show", "dev", "eth0"])
            .unwrap()
            .contains(address)
    );
    let routes = pod.ip(&["route"]).unwrap();
    assert!(
        routes.contains("default via 10.244.1.1 dev eth0"),
        "{routes}"
    );
    let neigh = pod.ip(&["neigh"]).unwrap();
    assert!(
        neigh.contains("10.244.1.1") && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    assert!(
        pod.ip(&["link", "show", "eth0"])
            .unwrap()
            .contains("mtu 1450")
    );
    let node_routes = cluster.nodes[0].netns.ip(&["route"]).unwrap();
    assert!(
        node_routes.contains(&format!("{ip} dev {host}")),
        "{node_routes}"
    );
    assert!(endpoints(&cluster).iter().any(|e| e.ip == ip));

    let mut check_conf = cluster.plugin_conf(0).unwrap();
    check_conf["prevResult"] = result.clone();
    cluster
        .cni_with(0, "CHECK", "life", &pod.path(), &check_conf)
        .unwrap();

    cluster.cni(0, "DEL", "life", &pod.path()).unwrap();
    assert!(host_links(&cluster, &host).is_empty(), "host veth removed");
    assert!(
        !endpoints(&cluster).iter().any(|e| e.ip == ip),
        "agent forgot the endpoint"
    );
    // DEL is idempotent, also once the namespace is gone.
    cluster.cni(0, "DEL", "life", &pod.path()).unwrap();
    cluster
        .cni(0, "DEL", "life", Path::new("/var/run/netns/gone"))
        .unwrap();
    let err = cluster
        .cni_with(0, "CHECK", "life", &pod.path(), &check_conf)
        .unwrap_err();
    assert_eq!(failure_code(&err), 3, "{err:#}");
}

#[test]
fn add_twice_returns_the_same_result_without_a_second_interface() {
    let cluster = Cluster::new(1).unwrap();
    let pod = pod_netns(&cluster, "twice");
    let first = cluster.cni(0, "ADD", "twice", &pod.path()).unwrap();
    let second = cluster.cni(0, "ADD", "twice", &pod.path()).unwrap();
    assert_eq!(first["ips"], second["ips"]);
    assert_eq!(first["interfaces"], second["interfaces"]);
    assert_eq!(host_links(&cluster, &prefix(&cluster)).len(), 1);
}

#[test]
fn ipam_exhaustion_is_a_clear_error() {
    let cluster = Cluster::new(1).unwrap();
    let mut conf = cluster.plugin_conf(0).unwrap();
    conf["ipam"]["subnet"] = json!("10.244.1.0/29");
    conf["ipam"]["dataDir"] = json!(cluster.state_root.join("small-ipam"));
    let pods: Vec<TestNetns> = (0..6)
        .map(|i| pod_netns(&cluster, &format!("x{i}")))
        .collect();
    for (i, pod) in pods.iter().take(5).enumerate() {
        cluster
            .cni_with(0, "ADD", &format!("x{i}"), &pod.path(), &conf)
            .unwrap();
    }
    let err = cluster
        .cni_with(0, "ADD", "x5", &pods[5].path(), &conf)
        .unwrap_err();
    assert_eq!(failure_code(&err), 100, "{err:#}");
    assert!(
        format!("{err:#}").contains("no free address in 10.244.1.0/29"),
        "{err:#}"
    );
    assert_eq!(
        host_links(&cluster, &prefix(&cluster)).len(),
        5,
        "the failed ADD left nothing behind"
    );
    for (i, pod) in pods.iter().take(5).enumerate() {
        cluster
            .cni_with(0, "DEL", &format!("x{i}"), &pod.path(), &conf)
            .unwrap();
    }
}

#[test]
fn twenty_concurrent_adds_get_distinct_addresses() {
    let cluster = Cluster::new(1).unwrap();
    let conf = cluster.plugin_conf(0).unwrap();
    let pods: Vec<TestNetns> = (0..20)
        .map(|i| pod_netns(&cluster, &format!("c{i}")))
        .collect();
    let node = cluster.nodes[0].netns.path();
    let cni = workspace_binary("kaya-cni");
    let ips: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (node, cni, conf, path) = (node.clone(), cni.clone(), conf.clone(), pod.path());
                scope.spawn(move || {
                    let id = format!("c{i}");
                    let call = Invocation {
                        plugin: &cni,
                        cni_path: cni.parent().unwrap(),
                        command: "ADD",
                        container_id: &id,
                        pod_netns: &path,
                        ifname: "eth0",
                    };
                    let result =
                        invoke_raw(&node, &call, &serde_json::to_vec(&conf).unwrap()).unwrap();
                    result["ips"][0]["address"].as_str().unwrap().to_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 20, "{ips:?}");
    assert_eq!(endpoints(&cluster).len(), 20);
}

#[test]
fn unreachable_agent_means_try_again_later_and_leaves_nothing() {
    let mut cluster = Cluster::new(1).unwrap();
    let pod = pod_netns(&cluster, "noagent");
    cluster.kill_agent(0).unwrap();
    let start = std::time::Instant::now();
    let err = cluster.cni(0, "ADD", "noagent", &pod.path()).unwrap_err();
    assert_eq!(failure_code(&err), 11, "{err:#}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "failed fast, not hung"
    );
    assert!(
        host_links(&cluster, &prefix(&cluster)).is_empty(),
        "veth rolled back"
    );
    let ipam_dir = PathBuf::from(
        cluster.plugin_conf(0).unwrap()["ipam"]["dataDir"]
            .as_str()
            .unwrap(),
    );
    let reserved = std::fs::read_dir(&ipam_dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(reserved, 0, "address released");
    let err = cluster.cni(0, "STATUS", "", Path::new("")).unwrap_err();
    assert_eq!(failure_code(&err), 50, "{err:#}");
    cluster.start_agent(0).unwrap();
    cluster.cni(0, "STATUS", "", Path::new("")).unwrap();
    cluster.cni(0, "ADD", "noagent", &pod.path()).unwrap();
}

#[test]
fn bad_input_gets_the_specified_error_codes() {
    let cluster = Cluster::new(1).unwrap();
    let pod = pod_netns(&cluster, "bad");
    let cni = workspace_binary("kaya-cni");
    let node = cluster.nodes[0].netns.path();
    let run = |command: &str, stdin: &[u8]| {
        let call = Invocation {
            plugin: &cni,
            cni_path: cni.parent().unwrap(),
            command,
            container_id: "bad",
            pod_netns: &pod.path(),
            ifname: "eth0",
        };
        invoke_raw(&node, &call, stdin)
    };
    assert_eq!(
        failure_code(&run("ADD", b"{\"cniVersion\": ").unwrap_err()),
        6
    );
    assert_eq!(failure_code(&run("ADD", b"").unwrap_err()), 6);
    let mut conf = cluster.plugin_conf(0).unwrap();
    conf["mtu"] = json!(10);
    let err = run("ADD", &serde_json::to_vec(&conf).unwrap()).unwrap_err();
    assert_eq!(failure_code(&err), 7);
    assert!(format!("{err:#}").contains("mtu"));
    let mut conf = cluster.plugin_conf(0).unwrap();
    conf["cniVersion"] = json!("7.0.0");
    assert_eq!(
        failure_code(&run("ADD", &serde_json::to_vec(&conf).unwrap()).unwrap_err()),
        1
    );
    assert_eq!(failure_code(&run("FROB", b"{}").unwrap_err()), 4);
    let version = run("VERSION", br#"{"cniVersion":"1.1.0"}"#).unwrap();
    assert!(
        version["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("1.1.0"))
    );
    assert!(
        host_links(&cluster, &prefix(&cluster)).is_empty(),
        "no state from bad input"
    );
}

#[test]
fn gc_releases_leaked_attachments() {
    let cluster = Cluster::new(1).unwrap();
    let keep = pod_netns(&cluster, "keep");
    let leak = pod_netns(&cluster, "leak");
    cluster.cni(0, "ADD", "keep", &keep.path()).unwrap();
    let leaked = cluster.cni(0, "ADD", "leak", &leak.path()).unwrap();
    let mut conf = cluster.plugin_conf(0).unwrap();
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    cluster.cni_with(0, "GC", "", Path::new(""), &conf).unwrap();
    let leaked_host = leaked["interfaces"][0]["name"].as_str().unwrap();
    assert!(host_links(&cluster, leaked_host).is_empty());
    let ips: Vec<String> = endpoints(&cluster).into_iter().map(|e| e.ip).collect();
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert_eq!(host_links(&cluster, &prefix(&cluster)).len(), 1);
}

/// A conflist of kaya-cni followed by `extra`, in CNI 1.0.0: Debian's plugins (1.1 release)
/// speak CNI up to 1.0.0, so the whole chain does.
fn chained(cluster: &Cluster, extra: serde_json::Value) -> Conflist {
    let mut list = cluster.conflist(0).unwrap();
    list["cniVersion"] = json!("1.0.0");
    list["plugins"].as_array_mut().unwrap().push(extra);
    let kaya_dir = workspace_binary("kaya-cni").parent().unwrap().to_owned();
    Conflist {
        list,
        plugin_dirs: vec![kaya_dir, PathBuf::from("/usr/lib/cni")],
    }
}

fn nat_rules(node: &Path) -> String {
    kaya_tests::netns::in_netns(node, || {
        std::process::Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    })
    .unwrap()
    .unwrap()
}

#[test]
fn conflist_chains_kaya_cni_with_bandwidth_through_add_check_del() {
    let cluster = Cluster::new(1).unwrap();
    let conflist = chained(
        &cluster,
        json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
    );
    let pod = pod_netns(&cluster, "shaped");
    let attachment = Attachment {
        container_id: "shaped",
        pod_netns: &pod.path(),
        ifname: "eth0",
        runtime_config: json!({"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 80_000}}),
    };
    let node = cluster.nodes[0].netns.path();
    let result = conflist.add(&node, &attachment).unwrap();
    assert_eq!(result["cniVersion"], "1.0.0");
    assert!(
        result["ips"][0]["address"]
            .as_str()
            .unwrap()
            .starts_with("10.244.1."),
        "{result}"
    );
    let host = result["interfaces"][0]["name"].as_str().unwrap();
    let qdisc = cluster.nodes[0].netns.ip(&["link", "show", host]).unwrap();
    assert!(
        qdisc.contains("qdisc tbf"),
        "bandwidth shaped kaya's host veth: {qdisc}"
    );
    conflist.check(&node, &attachment, &result).unwrap();
    conflist.del(&node, &attachment, Some(&result)).unwrap();
    assert!(host_links(&cluster, &prefix(&cluster)).is_empty());
    assert!(endpoints(&cluster).is_empty());
}

/// portmap gets kaya-cni's result and programs the host port; CHECK is left out because
/// Debian's portmap (plugins 1.1) fails CHECK on IPv4-only results (upstream
/// containernetworking/plugins#819), whatever the first plugin is.
#[test]
fn conflist_chains_kaya_cni_with_portmap() {
    let cluster = Cluster::new(1).unwrap();
    let conflist = chained(
        &cluster,
        json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
    );
    let pod = pod_netns(&cluster, "web");
    let attachment = Attachment {
        container_id: "web",
        pod_netns: &pod.path(),
        ifname: "eth0",
        runtime_config: json!({"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}),
    };
    let node = cluster.nodes[0].netns.path();
    let result = conflist.add(&node, &attachment).unwrap();
    let ip = result["ips"][0]["address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/32")
        .to_owned();
    let rules = nat_rules(&node);
    assert!(
        rules.contains("--dport 18080") && rules.contains(&format!("{ip}:80")),
        "portmap programmed the host port to {ip}:\n{rules}"
    );
    conflist.del(&node, &attachment, Some(&result)).unwrap();
    assert!(
        !nat_rules(&node).contains("--dport 18080"),
        "portmap removed its rules"
    );
    assert!(host_links(&cluster, &prefix(&cluster)).is_empty());
}
