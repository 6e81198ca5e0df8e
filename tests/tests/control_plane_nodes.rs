//! The control plane with simulated agents on the node API: scheduling 100 replicas across
//! 10 nodes within requests and taints, a lost node's pods evicted and recreated elsewhere,
//! rollouts kubectl follows and undoes, ClusterIPs and NodePorts never handed out twice,
//! and a node's credentials limited to its own node.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use kaya_control_plane::api::quantity;
use kaya_control_plane::node_api::proto::{PodStatusReport, WatchRequest};
use kaya_tests::control_plane::ControlPlaneProcess;
use kaya_tests::simulated_nodes::{NodeShape, SimulatedNode, connect, start_nodes};
use serde_json::{Value, json};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn pods(control_plane: &ControlPlaneProcess, namespace: &str) -> anyhow::Result<Vec<Value>> {
    let list: Value = serde_json::from_str(
        &control_plane.kubectl_ok(&["get", "pods", "-n", namespace, "-o", "json"])?,
    )?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

fn running_on(pod: &Value) -> Option<String> {
    (pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null())
        .then(|| pod["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: REPLICAS
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - name: web
        image: nginx:1.25
        resources: {requests: {cpu: 300m, memory: 256Mi}}
"#;

#[test]
fn a_hundred_replicas_fit_ten_nodes_by_requests_and_taints() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let runtime = runtime();
    let nodes = runtime.block_on(start_nodes(&control_plane, 10, |index| {
        let mut shape = NodeShape::default();
        if index < 2 {
            shape
                .taints
                .push(json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}));
        }
        shape
    }))?;
    control_plane.kubectl_stdin(
        &["apply", "-f", "-"],
        &DEPLOYMENT.replace("REPLICAS", "100"),
    )?;
    let running =
        control_plane.wait_for("100 running replicas", Duration::from_secs(60), || {
            let placed: Vec<String> = pods(&control_plane, "default")?
                .iter()
                .filter_map(running_on)
                .collect();
            Ok((placed.len() == 100).then_some(placed))
        })?;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    running
        .iter()
        .for_each(|node| *per_node.entry(node.clone()).or_default() += 1);
    // 4 CPUs / 300m = 13 pods per node at most; tainted node-0 and node-1 get none.
    assert!(
        per_node
            .keys()
            .all(|node| node != "node-0" && node != "node-1"),
        "{per_node:?}"
    );
    assert!(per_node.values().all(|count| *count <= 13), "{per_node:?}");
    let table = control_plane.kubectl_ok(&["get", "deployment", "web"])?;
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().nth(1) == Some("100/100")),
        "{table}"
    );
    // The 101st..: beyond what the untainted nodes hold (8 × 13 = 104).
    control_plane.kubectl_ok(&["scale", "deployment", "web", "--replicas=110"])?;
    let message =
        control_plane.wait_for("an unschedulable pod", Duration::from_secs(30), || {
            Ok(pods(&control_plane, "default")?.iter().find_map(|pod| {
                pod["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                    .and_then(|c| c["message"].as_str().map(str::to_owned))
            }))
        })?;
    assert!(
        message.starts_with("0/10 nodes are available:")
            && message.contains("8 Insufficient cpu")
            && message.contains("2 node(s) had taint {dedicated: db}"),
        "{message}"
    );
    let nodes_json: Value =
        serde_json::from_str(&control_plane.kubectl_ok(&["get", "nodes", "-o", "json"])?)?;
    let requested: HashMap<String, i64> = pods(&control_plane, "default")?
        .iter()
        .filter_map(running_on)
        .fold(HashMap::new(), |mut sums, node| {
            *sums.entry(node).or_default() += 300;
            sums
        });
    for node in nodes_json["items"].as_array().into_iter().flatten() {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        let allocatable =
            quantity::millis(node["status"]["allocatable"]["cpu"].as_str().unwrap_or("0"))?;
        assert!(
            requested.get(name).copied().unwrap_or(0) <= allocatable,
            "{name} over-committed"
        );
        assert!(
            node["spec"]["podCIDR"]
                .as_str()
                .is_some_and(|cidr| cidr.starts_with("10.244.")),
            "no pod CIDR for {name}"
        );
    }
    drop(nodes);
    Ok(())
}

#[test]
fn a_lost_node_goes_not_ready_and_its_pods_are_recreated_elsewhere() -> anyhow::Result<()> {
    let control_plane =
        ControlPlaneProcess::start_with(None, &["--node-monitor-grace-period", "2"])?;
    let runtime = runtime();
    let nodes = runtime.block_on(start_nodes(&control_plane, 3, |_| NodeShape::default()))?;
    control_plane.kubectl_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("REPLICAS", "6"))?;
    control_plane.wait_for("6 running replicas", Duration::from_secs(30), || {
        Ok((pods(&control_plane, "default")?
            .iter()
            .filter_map(running_on)
            .count()
            == 6)
            .then_some(()))
    })?;
    let lost = "node-0";
    let had: usize = pods(&control_plane, "default")?
        .iter()
        .filter_map(running_on)
        .filter(|node| node == lost)
        .count();
    assert!(had > 0, "no pod landed on {lost}");
    nodes[0].stop();
    control_plane.wait_for("node-0 NotReady", Duration::from_secs(20), || {
        let table = control_plane.kubectl_ok(&["get", "nodes"])?;
        Ok(table
            .lines()
            .any(|row| {
                row.starts_with("node-0 ") && row.split_whitespace().nth(1) == Some("NotReady")
            })
            .then_some(()))
    })?;
    let node: Value =
        serde_json::from_str(&control_plane.kubectl_ok(&["get", "node", lost, "-o", "json"])?)?;
    assert!(
        node["spec"]["taints"]
            .as_array()
            .is_some_and(|taints| taints.iter().any(|t| t["key"]
                == "node.kubernetes.io/unreachable"
                && t["effect"] == "NoExecute")),
        "{node}"
    );
    control_plane.wait_for(
        "6 replicas running on the other nodes",
        Duration::from_secs(30),
        || {
            let pods = pods(&control_plane, "default")?;
            let elsewhere = pods
                .iter()
                .filter_map(running_on)
                .filter(|node| node != lost)
                .count();
            let evicted = pods
                .iter()
                .filter(|pod| pod["spec"]["nodeName"] == lost)
                .all(|pod| !pod["metadata"]["deletionTimestamp"].is_null());
            Ok((elsewhere == 6 && evicted).then_some(()))
        },
    )?;
    drop(nodes);
    Ok(())
}

#[test]
fn kubectl_follows_a_rollout_undoes_it_and_deletes_a_namespace_with_everything_in_it()
-> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let runtime = runtime();
    let nodes = runtime.block_on(start_nodes(&control_plane, 2, |_| NodeShape::default()))?;
    let manifest = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n".to_owned()
        + &DEPLOYMENT
            .replace("REPLICAS", "4")
            .replace("namespace: default", "namespace: shop")
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {a: b}\n";
    let applied = control_plane.kubectl_stdin(&["apply", "-f", "-"], &manifest)?;
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let status = control_plane.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ])?;
    assert!(status.contains("successfully rolled out"), "{status}");
    let described = control_plane.kubectl_ok(&["describe", "deployment", "web", "-n", "shop"])?;
    assert!(
        described.contains("ScalingReplicaSet") && described.contains("Scaled up replica set web-"),
        "{described}"
    );
    let first_pod = pods(&control_plane, "shop")?
        .first()
        .and_then(|pod| pod["metadata"]["name"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let described = control_plane.kubectl_ok(&["describe", "pod", &first_pod, "-n", "shop"])?;
    assert!(
        described.contains("Scheduled")
            && described.contains(&format!("Successfully assigned shop/{first_pod} to node-")),
        "{described}"
    );
    control_plane.kubectl_ok(&[
        "set",
        "image",
        "deployment/web",
        "web=nginx:1.26",
        "-n",
        "shop",
    ])?;
    let status = control_plane.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ])?;
    assert!(status.contains("successfully rolled out"), "{status}");
    let images: HashSet<String> = pods(&control_plane, "shop")?
        .iter()
        .filter(|pod| running_on(pod).is_some())
        .filter_map(|pod| {
            pod["spec"]["containers"][0]["image"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(images, HashSet::from(["nginx:1.26".to_owned()]));
    let history =
        control_plane.kubectl_ok(&["rollout", "history", "deployment/web", "-n", "shop"])?;
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let undone = control_plane.kubectl_ok(&["rollout", "undo", "deployment/web", "-n", "shop"])?;
    assert!(undone.contains("rolled back"), "{undone}");
    let status = control_plane.kubectl_ok(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "shop",
        "--timeout=60s",
    ])?;
    assert!(status.contains("successfully rolled out"), "{status}");
    let image = control_plane.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])?;
    assert_eq!(image, "nginx:1.25");
    let revision = control_plane.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ])?;
    assert_eq!(revision, "3");
    // The service's endpoints are the running pods.
    let slices: Value = serde_json::from_str(&control_plane.kubectl_ok(&[
        "get",
        "endpointslices",
        "-n",
        "shop",
        "-o",
        "json",
    ])?)?;
    let ready = slices["items"][0]["endpoints"]
        .as_array()
        .map_or(0, |endpoints| {
            endpoints
                .iter()
                .filter(|e| e["conditions"]["ready"] == true)
                .count()
        });
    assert_eq!(ready, 4, "{slices}");
    let deleted = control_plane.kubectl_ok(&["delete", "namespace", "shop", "--timeout=60s"])?;
    assert!(deleted.contains("namespace \"shop\" deleted"), "{deleted}");
    for kind in [
        "pods",
        "deployments",
        "replicasets",
        "services",
        "configmaps",
        "endpointslices",
    ] {
        let left: Value = serde_json::from_str(
            &control_plane.kubectl_ok(&["get", kind, "-n", "shop", "-o", "json"])?,
        )?;
        assert_eq!(
            left["items"].as_array().map(Vec::len),
            Some(0),
            "{kind} left in a deleted namespace"
        );
    }
    drop(nodes);
    Ok(())
}

#[test]
fn cluster_ips_and_node_ports_are_never_handed_out_twice() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let services = |batch: usize| -> String {
        (0..50).map(|n| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: s{batch}-{n}, namespace: default}}\nspec:\n  type: NodePort\n  selector: {{app: x}}\n  ports: [{{port: 80}}]\n---\n")).collect()
    };
    // Four kubectl processes at once: allocations race on the server.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|batch| {
                let control_plane = &control_plane;
                let manifest = services(batch);
                scope.spawn(move || control_plane.kubectl_stdin(&["apply", "-f", "-"], &manifest))
            })
            .collect();
        for handle in handles {
            let output = handle.join().expect("kubectl thread")?;
            anyhow::ensure!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        anyhow::Ok(())
    })?;
    let check = || -> anyhow::Result<(HashSet<String>, HashSet<i64>)> {
        let list: Value = serde_json::from_str(
            &control_plane.kubectl_ok(&["get", "services", "-A", "-o", "json"])?,
        )?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let ips: Vec<String> = items
            .iter()
            .filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned))
            .collect();
        let ports: Vec<i64> = items
            .iter()
            .flat_map(|s| s["spec"]["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["nodePort"].as_i64())
            .collect();
        let unique_ips: HashSet<String> = ips.iter().cloned().collect();
        let unique_ports: HashSet<i64> = ports.iter().copied().collect();
        anyhow::ensure!(
            unique_ips.len() == ips.len(),
            "a cluster IP was handed out twice"
        );
        anyhow::ensure!(
            unique_ports.len() == ports.len(),
            "a node port was handed out twice"
        );
        Ok((unique_ips, unique_ports))
    };
    let (ips, ports) = check()?;
    assert_eq!((ips.len(), ports.len()), (201, 200));
    assert!(ports.iter().all(|port| (30000..=32767).contains(port)));
    // Asking for a taken port is refused by name; a released one can be had again.
    let taken = control_plane.kubectl_ok(&[
        "get",
        "service",
        "s0-0",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ])?;
    let clash = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: clash}}\nspec:\n  type: NodePort\n  ports: [{{port: 80, nodePort: {taken}}}]\n"
    );
    let refused = control_plane.kubectl_stdin(&["apply", "-f", "-"], &clash)?;
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("provided port is already allocated"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    control_plane.kubectl_ok(&["delete", "service", "s0-0"])?;
    let reused = control_plane.kubectl_stdin(&["apply", "-f", "-"], &clash)?;
    assert!(
        reused.status.success(),
        "{}",
        String::from_utf8_lossy(&reused.stderr)
    );
    check()?;
    Ok(())
}

#[test]
fn a_node_sees_and_changes_only_what_its_node_needs() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let runtime = runtime();
    runtime.block_on(async {
        let one = SimulatedNode::start(&control_plane, "node-0", 1, NodeShape::default()).await?;
        let two = SimulatedNode::start(&control_plane, "node-1", 2, NodeShape::default()).await?;
        let pinned = |name: &str, node: &str| format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default, labels: {{app: {name}}}}}\nspec:\n  nodeName: {node}\n  containers: [{{name: a, image: busybox}}]\n");
        control_plane.kubectl_stdin(&["apply", "-f", "-"], &(pinned("mine", "node-0") + "---\n" + &pinned("theirs", "node-1")))?;
        control_plane.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  ports: [{port: 80}]\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: default}\nspec: {podSelector: {}}\n")?;
        control_plane.wait_for("both pods running", Duration::from_secs(20), || {
            Ok((pods(&control_plane, "default")?.iter().filter_map(running_on).count() == 2).then_some(()))
        })?;
        control_plane.wait_for("node-0's view", Duration::from_secs(20), || {
            let seen = one.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let has = |kind: &str, name: &str| seen.objects.get(kind).is_some_and(|names| names.contains(name));
            let ipcache = seen.objects.get("IPCacheEntry").map_or(0, HashSet::len);
            Ok((has("Pod", "mine") && !has("Pod", "theirs") && has("Service", "web") && has("NetworkPolicy", "deny")
                && has("NodeRoute", "node-1") && has("Namespace", "default") && ipcache >= 2 && seen.objects.get("Identity").is_some_and(|ids| !ids.is_empty()))
                .then_some(()))
        })?;
        // node-0's token may not report status for node-1's pod.
        let mut client = connect(&control_plane, &control_plane.node_token("node-0")?).await?;
        let denied = client.report_pod_status(PodStatusReport { namespace: "default".into(), name: "theirs".into(), status_json: b"{\"phase\":\"Failed\"}".to_vec() }).await;
        assert_eq!(denied.map_err(|status| status.code()).err(), Some(tonic::Code::PermissionDenied));
        // A bad token is refused; the admin's token is not a node's.
        let mut stranger = connect(&control_plane, "not-a-token").await?;
        assert_eq!(stranger.watch(WatchRequest { resume_revision: 0 }).await.map(|_| ()).map_err(|status| status.code()).err(), Some(tonic::Code::Unauthenticated));
        let phase = control_plane.kubectl_ok(&["get", "pod", "theirs", "-o", "jsonpath={.status.phase}"])?;
        assert_eq!(phase, "Running");
        // Resuming from a revision replays only what changed since.
        let revision = one.seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.revision;
        control_plane.kubectl_ok(&["delete", "pod", "mine", "--wait=false"])?;
        let mut resumed = client.watch(WatchRequest { resume_revision: revision }).await?.into_inner();
        let event = tokio::time::timeout(Duration::from_secs(10), resumed.message()).await??.ok_or_else(|| anyhow::anyhow!("stream ended"))?;
        assert!(!event.snapshot, "a resume within history is not a snapshot");
        assert!(event.updates.iter().any(|update| update.object.as_ref().is_some_and(|object| object.kind == "Pod")), "{event:?}");
        drop((one, two));
        anyhow::Ok(())
    })
}

#[test]
fn daemonsets_follow_nodes_and_roll_and_owners_take_their_dependents() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let runtime = runtime();
    let nodes = runtime.block_on(start_nodes(&control_plane, 3, |index| {
        let mut shape = NodeShape::default();
        if index == 2 {
            shape
                .taints
                .push(json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}));
        }
        shape
    }))?;
    let daemonset = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: default}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: agent, image: agent:1}]\n";
    control_plane.kubectl_stdin(&["apply", "-f", "-"], daemonset)?;
    let on_nodes = |image: &str| -> anyhow::Result<Vec<String>> {
        let mut placed: Vec<String> = pods(&control_plane, "default")?
            .iter()
            .filter(|pod| pod["spec"]["containers"][0]["image"] == image)
            .filter_map(running_on)
            .collect();
        placed.sort();
        Ok(placed)
    };
    control_plane.wait_for(
        "a daemon pod on each untainted node",
        Duration::from_secs(20),
        || Ok((on_nodes("agent:1")? == ["node-0", "node-1"]).then_some(())),
    )?;
    control_plane.kubectl_ok(&["set", "image", "daemonset/agent", "agent=agent:2"])?;
    control_plane.wait_for(
        "the daemonset rolled to agent:2",
        Duration::from_secs(30),
        || {
            let status: Value = serde_json::from_str(&control_plane.kubectl_ok(&[
                "get",
                "daemonset",
                "agent",
                "-o",
                "json",
            ])?)?;
            let done = status["status"]["updatedNumberScheduled"] == 2
                && status["status"]["numberAvailable"] == 2
                && status["status"]["desiredNumberScheduled"] == 2;
            Ok((done
                && on_nodes("agent:2")? == ["node-0", "node-1"]
                && on_nodes("agent:1")?.is_empty())
            .then_some(()))
        },
    )?;

    // Background deletion: the garbage collector removes the ReplicaSet and its pods.
    control_plane.kubectl_stdin(&["apply", "-f", "-"], &DEPLOYMENT.replace("REPLICAS", "2"))?;
    control_plane.wait_for("2 web pods", Duration::from_secs(20), || {
        Ok((pods(&control_plane, "default")?
            .iter()
            .filter(|pod| pod["metadata"]["labels"]["app"] == "web")
            .filter_map(running_on)
            .count()
            == 2)
            .then_some(()))
    })?;
    control_plane.kubectl_ok(&["delete", "deployment", "web"])?;
    control_plane.wait_for(
        "the deployment's replicaset and pods gone",
        Duration::from_secs(20),
        || {
            let replicasets: Value = serde_json::from_str(&control_plane.kubectl_ok(&[
                "get",
                "replicasets",
                "-o",
                "json",
            ])?)?;
            let web_pods = pods(&control_plane, "default")?
                .iter()
                .filter(|pod| pod["metadata"]["labels"]["app"] == "web")
                .count();
            Ok(
                (replicasets["items"].as_array().is_some_and(Vec::is_empty) && web_pods == 0)
                    .then_some(()),
            )
        },
    )?;
    // Orphaning: the daemonset goes, its pods stay without an owner.
    control_plane.kubectl_ok(&["delete", "daemonset", "agent", "--cascade=false"])?;
    std::thread::sleep(Duration::from_secs(1));
    let left: Vec<Value> = pods(&control_plane, "default")?
        .into_iter()
        .filter(|pod| pod["metadata"]["labels"]["app"] == "agent")
        .collect();
    assert_eq!(left.len(), 2);
    assert!(
        left.iter().all(|pod| pod["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)),
        "{left:?}"
    );
    drop(nodes);
    Ok(())
}

#[test]
fn a_node_token_on_the_http_api_is_limited_to_its_node() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let token = control_plane.node_token("node-0")?;
    control_plane.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Secret\nmetadata: {name: private, namespace: default}\nstringData: {k: v}\n")?;
    let as_node =
        |args: &[&str]| control_plane.kubectl(&[&["--token", token.as_str()], args].concat());
    let services = as_node(&["get", "services"])?;
    assert!(
        services.status.success(),
        "{}",
        String::from_utf8_lossy(&services.stderr)
    );
    let secret = as_node(&["get", "secret", "private"])?;
    assert!(
        String::from_utf8_lossy(&secret.stderr)
            .contains("User \"system:node:node-0\" cannot get resource \"secrets\""),
        "{}",
        String::from_utf8_lossy(&secret.stderr)
    );
    let all_pods = as_node(&["get", "pods", "-A"])?;
    assert!(!all_pods.status.success(), "a node listed every pod");
    let own_pods = as_node(&[
        "get",
        "pods",
        "-A",
        "--field-selector",
        "spec.nodeName=node-0",
    ])?;
    assert!(
        own_pods.status.success(),
        "{}",
        String::from_utf8_lossy(&own_pods.stderr)
    );
    let delete = as_node(&["delete", "namespace", "default"])?;
    assert!(
        String::from_utf8_lossy(&delete.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    Ok(())
}

#[test]
fn kubectl_logs_reach_the_pod_s_agent_over_its_node_api_stream() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let runtime = runtime();
    let nodes = runtime.block_on(start_nodes(&control_plane, 1, |_| NodeShape::default()))?;
    control_plane.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  containers: [{name: app, image: a}, {name: sidecar, image: b}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: nowhere, namespace: default}\nspec:\n  nodeSelector: {zone: mars}\n  containers: [{name: app, image: a}]\n")?;
    control_plane.wait_for("web running", Duration::from_secs(20), || {
        Ok(pods(&control_plane, "default")?
            .iter()
            .any(|pod| pod["metadata"]["name"] == "web" && running_on(pod).is_some())
            .then_some(()))
    })?;
    let logs = control_plane.kubectl_ok(&["logs", "web", "-c", "app"])?;
    assert_eq!(
        logs,
        "line 1 of default/web/app\nline 2 of default/web/app\nline 3 of default/web/app\n"
    );
    let tail = control_plane.kubectl_ok(&["logs", "web", "-c", "sidecar", "--tail=1"])?;
    assert_eq!(tail, "line 3 of default/web/sidecar\n");
    let followed = control_plane.kubectl_ok(&["logs", "-f", "web", "-c", "app"])?;
    assert!(
        followed.ends_with("line 3 of default/web/app\nline 4 of default/web/app\n"),
        "{followed}"
    );
    let stderr = |args: &[&str]| -> anyhow::Result<String> {
        Ok(String::from_utf8_lossy(&control_plane.kubectl(args)?.stderr).into_owned())
    };
    assert!(
        stderr(&["logs", "web"])?.contains(
            "a container name must be specified for pod web, choose one of: [app sidecar]"
        )
    );
    assert!(
        stderr(&["logs", "web", "-c", "app", "--previous"])?
            .contains("previous terminated container \"app\" in pod \"web\" not found")
    );
    assert!(stderr(&["logs", "nowhere"])?.contains("pod nowhere does not have a host assigned"));
    drop(nodes);
    control_plane.wait_for(
        "the agent's log stream to close",
        Duration::from_secs(10),
        || {
            Ok(stderr(&["logs", "web", "-c", "app"])?
                .contains("node \"node-0\" has no log stream open to the control plane")
                .then_some(()))
        },
    )?;
    Ok(())
}
