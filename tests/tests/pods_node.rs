//! The agent as kubelet on a simulated cluster: static pods pulled from a real registry,
//! networked by the real kaya-cni, with ConfigMap/Secret volumes and env, status, logs and
//! exec through the agent's local API; bad images, invalid specs; and an agent restart with
//! ten running pods that re-adopts them all without duplicating anything.
use kaya_agent_api::{Request, Response};
use kaya_tests::cluster::Cluster;
use kaya_tests::cluster_pods::pod_ready;
use kaya_tests::netns::in_netns;
use kaya_tests::oci_image::{LayerCompression, TestImage};
use kaya_tests::registry::{NamespacedRegistry, TestRegistry};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const REGISTRY_PORT: u16 = 5000;

fn waiting_reason(pod: &Value) -> String {
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

const WEB: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data:
  greeting: hello from a configmap
---
apiVersion: v1
kind: Secret
metadata: {name: web-secret}
stringData:
  token: s3cr3t
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  # httpd as pid 1 ignores SIGTERM: the grace period decides how long a stop takes.
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: REGISTRY/kaya/busybox:v1
    command: [sh, -c, 'echo started; cp /config/greeting /www/index.html; exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: web-config, key: greeting}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: web-secret, key: token}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: MY_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    readinessProbe: {httpGet: {port: http, path: /}, periodSeconds: 1}
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: secret, mountPath: /secret}
    - {name: www, mountPath: /www}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: config, configMap: {name: web-config, defaultMode: 0440}}
  - {name: secret, secret: {secretName: web-secret, items: [{key: token, path: api/token, mode: 0400}]}}
  - {name: www, emptyDir: {}}
  - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 1Mi}}
"#;

#[test]
fn static_pods_run_from_a_registry_with_network_volumes_status_logs_and_exec() {
    let registry = TestRegistry::start(None).unwrap();
    let image = TestImage::busybox(LayerCompression::Gzip).unwrap();
    image
        .push(&registry.address, "kaya/busybox", "v1", None)
        .unwrap();
    let cluster = Cluster::new(2).unwrap();
    let _in_node = NamespacedRegistry::start(
        &registry.storage,
        &cluster.nodes[0].netns.path(),
        REGISTRY_PORT,
    )
    .unwrap();
    let image_name = format!("127.0.0.1:{REGISTRY_PORT}");
    cluster
        .write_static_pod(0, "web.yaml", &WEB.replace("REGISTRY", &image_name))
        .unwrap();

    let pod = cluster
        .wait_pod(0, "web", "Ready", Duration::from_secs(60), pod_ready)
        .unwrap();
    let status = &pod["status"];
    assert_eq!(status["phase"], "Running");
    let ip = status["podIP"].as_str().unwrap().to_string();
    assert!(
        ip.starts_with("10.244.1."),
        "pod IP {ip} from node 1's pod CIDR"
    );
    let container = &status["containerStatuses"][0];
    assert_eq!(
        container["imageID"],
        format!("{image_name}/kaya/busybox@{}", image.manifest.digest()),
        "the pulled image's digest is the registry's"
    );
    assert!(
        container["containerID"]
            .as_str()
            .unwrap()
            .starts_with("kaya://")
    );
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True"),
            "{kind}: {status:#}"
        );
    }

    let exec = |command: &[&str]| cluster.exec_in_pod(0, "web", None, command).unwrap();
    assert_eq!(
        exec(&["sh", "-c", "echo $GREETING/$TOKEN/$MY_IP/$MY_NAME"]),
        (0, format!("hello from a configmap/s3cr3t/{ip}/web\n"))
    );
    assert_eq!(
        exec(&["cat", "/config/greeting"]).1,
        "hello from a configmap"
    );
    assert_eq!(exec(&["stat", "-c", "%a", "/config/greeting"]).1, "440\n");
    assert_eq!(exec(&["cat", "/secret/api/token"]).1, "s3cr3t");
    assert_eq!(exec(&["stat", "-c", "%a", "/secret/api/token"]).1, "400\n");
    assert_ne!(
        exec(&["touch", "/config/new"]).0,
        0,
        "configMap volumes are read-only"
    );
    assert_eq!(exec(&["hostname"]).1, "web\n");

    // The pod is on the overlay: node 2 reaches it through its pod IP.
    let address: std::net::SocketAddr = format!("{ip}:8080").parse().unwrap();
    let body = in_netns(
        &cluster.nodes[1].netns.path(),
        move || -> anyhow::Result<String> {
            use std::io::{Read, Write};
            let mut stream =
                std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        },
    )
    .unwrap()
    .unwrap();
    assert!(
        body.starts_with("HTTP/1.") && body.ends_with("\r\n\r\nhello from a configmap"),
        "{body}"
    );

    let logs = cluster
        .agent_request(
            0,
            &Request::PodLogs {
                namespace: "default".into(),
                name: "web".into(),
                container: None,
                tail: Some(1),
                since_time: None,
                previous: false,
                timestamps: false,
            },
        )
        .unwrap();
    assert_eq!(
        logs,
        Response::Logs {
            lines: vec!["started".into()]
        }
    );
    match cluster.agent_request(
        0,
        &Request::PodLogs {
            namespace: "default".into(),
            name: "web".into(),
            container: None,
            tail: None,
            since_time: None,
            previous: true,
            timestamps: false,
        },
    ) {
        Ok(Response::Error { message }) => assert!(
            message.contains("previous terminated container"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }

    let Response::Node { node } = cluster.agent_request(0, &Request::NodeStatus).unwrap() else {
        panic!("node status")
    };
    assert_eq!(node["metadata"]["name"], "node-1");
    assert!(
        node["status"]["capacity"]["memory"]
            .as_str()
            .unwrap()
            .ends_with("Ki")
    );
    assert_eq!(
        node["status"]["capacity"]["cpu"],
        std::thread::available_parallelism()
            .unwrap()
            .get()
            .to_string()
    );
    let images = node["status"]["images"].as_array().unwrap();
    assert!(
        images.iter().any(|i| i["names"][0] == container["imageID"]),
        "{images:?}"
    );
    assert!(
        node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    );

    // A memory-backed emptyDir is a tmpfs of its sizeLimit.
    assert!(
        exec(&["sh", "-c", "grep ' /scratch tmpfs ' /proc/mounts"])
            .1
            .contains("size=1024k")
    );
    assert_ne!(
        exec(&["sh", "-c", "head -c 2000000 /dev/zero > /scratch/big"]).0,
        0,
        "writing past sizeLimit fails"
    );

    // A missing image: ErrImagePull first, then ImagePullBackOff, both saying why.
    let broken = "apiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec:\n  containers: [{name: app, image: 'REGISTRY/kaya/absent:v1'}]\n";
    cluster
        .write_static_pod(0, "broken.yaml", &broken.replace("REGISTRY", &image_name))
        .unwrap();
    let pulling = cluster
        .wait_pod(0, "broken", "ErrImagePull", Duration::from_secs(20), |p| {
            waiting_reason(p) == "ErrImagePull"
        })
        .unwrap();
    let message = pulling["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("kaya/absent:v1") && message.contains("MANIFEST_UNKNOWN"),
        "{message}"
    );
    let backing_off = cluster
        .wait_pod(
            0,
            "broken",
            "ImagePullBackOff",
            Duration::from_secs(30),
            |p| waiting_reason(p) == "ImagePullBackOff",
        )
        .unwrap();
    assert!(
        backing_off["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("Back-off pulling image")
    );
    assert_eq!(backing_off["status"]["phase"], "Pending");

    // An invalid spec is refused with the field named, and nothing runs.
    let invalid = "apiVersion: v1\nkind: Pod\nmetadata: {name: invalid}\nspec:\n  restartPolicy: Sometimes\n  containers: [{name: app, image: busybox}]\n";
    cluster
        .write_static_pod(0, "invalid.yaml", invalid)
        .unwrap();
    let refused = cluster
        .wait_pod(0, "invalid", "rejected", Duration::from_secs(10), |p| {
            p["status"]["phase"] == "Failed"
        })
        .unwrap();
    assert!(
        refused["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.restartPolicy"),
        "{refused:#}"
    );

    // Removing a manifest stops its pod and cleans up after it.
    let web_dirs = cluster.pod_dirs(0);
    cluster.remove_static_pod(0, "web.yaml").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while cluster
        .list_pods(0)
        .unwrap()
        .iter()
        .any(|p| p["metadata"]["name"] == "web")
    {
        assert!(std::time::Instant::now() < deadline, "web was not removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        web_dirs.iter().all(|dir| !dir.root.exists()),
        "pod directories removed"
    );
}

#[test]
fn an_agent_restart_re_adopts_ten_running_pods_without_duplicates() {
    let registry = TestRegistry::start(None).unwrap();
    TestImage::busybox(LayerCompression::Gzip)
        .unwrap()
        .push(&registry.address, "kaya/busybox", "v1", None)
        .unwrap();
    let mut cluster = Cluster::new(1).unwrap();
    let _in_node = NamespacedRegistry::start(
        &registry.storage,
        &cluster.nodes[0].netns.path(),
        REGISTRY_PORT,
    )
    .unwrap();
    for index in 0..10 {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: sleeper-{index}}}\nspec:\n  containers: [{{name: app, image: '127.0.0.1:{REGISTRY_PORT}/kaya/busybox:v1', command: [sleep, '3600']}}]\n"
        );
        cluster
            .write_static_pod(0, &format!("sleeper-{index}.yaml"), &yaml)
            .unwrap();
    }
    let running = |cluster: &Cluster| -> BTreeMap<String, String> {
        cluster
            .list_pods(0)
            .unwrap()
            .iter()
            .filter(|pod| pod["status"]["phase"] == "Running" && pod_ready(pod))
            .map(|pod| {
                (
                    pod["metadata"]["name"].as_str().unwrap().to_string(),
                    pod["status"]["containerStatuses"][0]["containerID"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while running(&cluster).len() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "pods did not start: {:#?}",
            cluster.list_pods(0).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = running(&cluster);
    let shims_before: Vec<String> = cluster
        .pod_dirs(0)
        .iter()
        .map(|dir| std::fs::read_to_string(dir.pid()).unwrap())
        .collect();
    assert_eq!(shims_before.len(), 10);

    cluster.kill_agent(0).unwrap();
    cluster.start_agent(0).unwrap();
    // Give the restarted agent several rounds to do anything it would wrongly do.
    std::thread::sleep(Duration::from_secs(2));
    let after = running(&cluster);
    assert_eq!(after, before, "the same ten pods run the same containers");
    let shims_after: Vec<String> = cluster
        .pod_dirs(0)
        .iter()
        .map(|dir| std::fs::read_to_string(dir.pid()).unwrap())
        .collect();
    assert_eq!(
        shims_after, shims_before,
        "the shims were adopted, not replaced"
    );
    for dir in cluster.pod_dirs(0) {
        let plan: kaya_agent::runtime::plan::PodPlan =
            serde_json::from_slice(&std::fs::read(dir.plan()).unwrap()).unwrap();
        let cgroup = std::path::Path::new("/sys/fs/cgroup/memory").join(&plan.cgroup);
        let containers = std::fs::read_dir(&cgroup)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count();
        assert_eq!(
            containers,
            1,
            "one container cgroup in {}",
            cgroup.display()
        );
    }
    let state_root = cluster.state_root.display().to_string();
    let count_shims = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|entry| {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&state_root)
                    && std::fs::read_to_string(entry.path().join("comm"))
                        .unwrap_or_default()
                        .trim()
                        == "kaya-shim"
            })
            .count()
    };
    assert_eq!(count_shims(), 10, "one shim per pod, no duplicates");

    // An adopted shim that dies (it is not the new agent's child) is noticed and replaced.
    let victim = cluster.pod_dirs(0).remove(0);
    let old_pid: i32 = std::fs::read_to_string(victim.pid())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pid = std::fs::read_to_string(victim.pid()).unwrap_or_default();
        let replaced = pid.trim().parse::<i32>().is_ok_and(|pid| pid != old_pid);
        if replaced && running(&cluster).len() == 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the killed shim was not replaced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        count_shims(),
        10,
        "the replacement took the dead shim's place"
    );
}
