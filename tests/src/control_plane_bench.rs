//! `kaya-bench control-plane`: pod creates through the HTTPS API (rate and p99), watch
//! propagation to many watchers, scheduler throughput on pending pods as nodes arrive, and
//! the control plane's RSS holding 10,000 pods and 1,000 services — on SQLite and on etcd.
//! The baseline is the same store written directly (no API in between), same concurrency.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use kaya_control_plane::store::Store;
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::bench::{BenchReport, percentile};

fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        0.0
    } else {
        percentile(&values, 0.99)
    }
}
use crate::control_plane::ControlPlaneProcess;
use crate::etcd::EtcdCluster;

struct Plan {
    creates: usize,
    clients: usize,
    watchers: usize,
    watch_events: usize,
    pending: usize,
    nodes: usize,
    rss_pods: usize,
    rss_services: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                creates: 300,
                clients: 4,
                watchers: 20,
                watch_events: 40,
                pending: 200,
                nodes: 20,
                rss_pods: 1000,
                rss_services: 100,
            }
        } else {
            Plan {
                creates: 3000,
                clients: 8,
                watchers: 100,
                watch_events: 200,
                pending: 1000,
                nodes: 100,
                rss_pods: 10_000,
                rss_services: 1000,
            }
        }
    }
}

fn pod(name: &str, namespace: &str, scheduler: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"schedulerName": scheduler, "containers": [{"name": "web", "image": "registry.example/web:1.0",
                 "ports": [{"containerPort": 8080}], "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    })
}

fn create_namespace(client: &ApiClient, name: &str) -> anyhow::Result<()> {
    let (status, body) = client.request(
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"metadata": {"name": name}})),
    )?;
    if status != 201 {
        bail!("creating namespace {name}: {status} {body}");
    }
    Ok(())
}

/// Runs `call(i)` for i in 0..count on `clients` threads; returns (seconds, each call's ms).
fn timed_parallel(
    clients: usize,
    count: usize,
    call: impl Fn(usize) -> anyhow::Result<()> + Sync,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let latencies = Mutex::new(Vec::with_capacity(count));
    let started = Instant::now();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|worker| {
                let (latencies, call) = (&latencies, &call);
                scope.spawn(move || -> anyhow::Result<()> {
                    for index in (worker..count).step_by(clients) {
                        let sent = Instant::now();
                        call(index)?;
                        latencies
                            .lock()
                            .map_err(|_| anyhow::anyhow!("poisoned"))?
                            .push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|handle| {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("worker thread panicked"))?
        })
    })?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        seconds,
        latencies
            .into_inner()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
    ))
}

/// Creates `count` objects from `make(i)` with `clients` threads; returns (seconds, latencies ms).
fn create_all(
    client: &ApiClient,
    clients: usize,
    count: usize,
    path: &str,
    make: impl Fn(usize) -> Value + Sync,
) -> anyhow::Result<(f64, Vec<f64>)> {
    timed_parallel(clients, count, |index| {
        let (status, body) = client.request("POST", path, Some(&make(index)))?;
        if status != 201 {
            bail!("POST {path}: {status} {body}");
        }
        Ok(())
    })
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |time| time.as_nanos())
}

/// Latencies (ms) from a configmap's write to its ADDED event at each of `watchers`.
fn watch_propagation(client: &ApiClient, plan: &Plan) -> anyhow::Result<Vec<f64>> {
    create_namespace(client, "watch")?;
    let (_, list) = client.request("GET", "/api/v1/namespaces/watch/configmaps", None)?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let ready = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..plan.watchers {
            let (client, latencies, ready, revision) = (
                client.clone(),
                latencies.clone(),
                ready.clone(),
                revision.clone(),
            );
            let events = plan.watch_events;
            handles.push(scope.spawn(move || -> anyhow::Result<()> {
                let mut seen = 0;
                ready.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                client.watch(&format!("/api/v1/namespaces/watch/configmaps?watch=true&resourceVersion={revision}&timeoutSeconds=120"), |event| {
                    let sent: u128 = event["object"]["data"]["sent"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
                    if event["type"] == "ADDED" && sent > 0 {
                        let latency = (unix_nanos().saturating_sub(sent)) as f64 / 1e6;
                        if let Ok(mut all) = latencies.lock() {
                            all.push(latency);
                        }
                        seen += 1;
                    }
                    seen < events
                })
            }));
        }
        while ready.load(std::sync::atomic::Ordering::SeqCst) < plan.watchers {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Let every watch reach the server before the first write.
        std::thread::sleep(Duration::from_millis(500));
        for index in 0..plan.watch_events {
            let body = json!({"metadata": {"name": format!("c{index}")}, "data": {"sent": unix_nanos().to_string()}});
            let (status, response) =
                client.request("POST", "/api/v1/namespaces/watch/configmaps", Some(&body))?;
            if status != 201 {
                bail!("configmap create: {status} {response}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        }
        Ok(())
    })?;
    let latencies = latencies
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    if latencies.len() != plan.watchers * plan.watch_events {
        bail!(
            "watchers saw {} events, expected {}",
            latencies.len(),
            plan.watchers * plan.watch_events
        );
    }
    Ok(latencies)
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
           "status": {"allocatable": {"cpu": "16", "memory": "64Gi", "pods": "110"}, "capacity": {"cpu": "16", "memory": "64Gi", "pods": "110"},
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Pods pending with no nodes; then nodes arrive: pods bound per second until all are.
fn schedule_rate(client: &ApiClient, plan: &Plan) -> anyhow::Result<f64> {
    create_namespace(client, "sched")?;
    create_all(
        client,
        plan.clients,
        plan.pending,
        "/api/v1/namespaces/sched/pods",
        |i| pod(&format!("p{i}"), "sched", "default-scheduler"),
    )?;
    let (_, list) = client.request("GET", "/api/v1/namespaces/sched/pods", None)?;
    let revision = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let bound = Arc::new(Mutex::new(std::collections::HashSet::new()));
    let finished = Arc::new(Mutex::new(None));
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (watcher_client, watcher_bound, watcher_finished, pending) = (
            client.clone(),
            bound.clone(),
            finished.clone(),
            plan.pending,
        );
        let watcher = scope.spawn(move || {
            watcher_client.watch(&format!("/api/v1/namespaces/sched/pods?watch=true&resourceVersion={revision}&timeoutSeconds=300"), |event| {
                if event["object"]["spec"]["nodeName"].as_str().is_some_and(|node| !node.is_empty())
                    && let Ok(mut bound) = watcher_bound.lock()
                {
                    bound.insert(event["object"]["metadata"]["name"].as_str().unwrap_or("").to_owned());
                    if bound.len() == pending {
                        if let Ok(mut finished) = watcher_finished.lock() {
                            *finished = Some(Instant::now());
                        }
                        return false;
                    }
                }
                true
            })
        });
        for index in 0..plan.nodes {
            let (status, body) = client.request(
                "POST",
                "/api/v1/nodes",
                Some(&node(&format!("bench-node-{index}"))),
            )?;
            if status != 201 {
                bail!("node create: {status} {body}");
            }
        }
        watcher
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
        Ok(())
    })?;
    let finished = finished
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .context("not every pod was bound")?;
    Ok(plan.pending as f64 / (finished - started).as_secs_f64())
}

fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .context("VmRSS")?;
    Ok(kb / 1024.0)
}

fn rss_at_scale(client: &ApiClient, plan: &Plan, pid: u32) -> anyhow::Result<f64> {
    let namespaces = 10;
    for index in 0..namespaces {
        create_namespace(client, &format!("scale-{index}"))?;
    }
    create_namespace(client, "scale-services")?;
    let per_namespace = plan.rss_pods / namespaces;
    for index in 0..namespaces {
        let namespace = format!("scale-{index}");
        create_all(
            client,
            plan.clients,
            per_namespace,
            &format!("/api/v1/namespaces/{namespace}/pods"),
            |i| pod(&format!("p{i}"), &namespace, "default-scheduler"),
        )?;
    }
    create_all(
        client,
        plan.clients,
        plan.rss_services,
        "/api/v1/namespaces/scale-services/services",
        |i| json!({"metadata": {"name": format!("s{i}")}, "spec": {"selector": {"app": format!("s{i}")}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )?;
    // Let the controllers and scheduler finish with the new objects.
    std::thread::sleep(Duration::from_secs(5));
    rss_mb(pid)
}

/// The same pod objects written straight into the store, same concurrency (the API's floor).
fn direct_store(store: Arc<dyn Store>, plan: &Plan) -> anyhow::Result<(f64, Vec<f64>)> {
    let bytes = serde_json::to_vec(&pod("p", "direct", "default-scheduler"))?;
    timed_parallel(plan.clients, plan.creates, |index| {
        Ok(store
            .create(&format!("/direct/pods/p{index}"), &bytes)
            .map(|_| ())?)
    })
}

fn measure(
    report: &mut BenchReport,
    plan: &Plan,
    implementation: &str,
    store: Option<&str>,
) -> anyhow::Result<()> {
    let control_plane =
        ControlPlaneProcess::start_with(store, &["--node-monitor-grace-period", "3600"])?;
    let client = ApiClient::new(&control_plane)?;
    create_namespace(&client, "bench")?;
    // Unscheduled pods (no scheduler takes them): the create path alone.
    let (seconds, latencies) = create_all(
        &client,
        plan.clients,
        plan.creates,
        "/api/v1/namespaces/bench/pods",
        |i| pod(&format!("p{i}"), "bench", "bench-none"),
    )?;
    report.push(
        "pod_create_rate",
        implementation,
        plan.creates as f64 / seconds,
        "pods/s",
        true,
    );
    report.push(
        "pod_create_p99_ms",
        implementation,
        p99(latencies),
        "ms",
        false,
    );
    let propagation = watch_propagation(&client, plan)?;
    report.push_scaled(
        "watch_propagation_p99_ms",
        plan.watchers as u64,
        implementation,
        p99(propagation),
        "ms",
        false,
    );
    report.push_scaled(
        "schedule_rate",
        plan.pending as u64,
        implementation,
        schedule_rate(&client, plan)?,
        "pods/s",
        true,
    );
    let pid = control_plane.pid().context("control plane pid")?;
    report.push_scaled(
        "rss_mb",
        plan.rss_pods as u64,
        implementation,
        rss_at_scale(&client, plan, pid)?,
        "MB",
        false,
    );
    Ok(())
}

pub fn run(quick: bool) -> anyhow::Result<BenchReport> {
    let plan = Plan::new(quick);
    let mut report = BenchReport::new("control-plane");
    measure(&mut report, &plan, "kaya-sqlite", None)?;
    let dir = tempfile::tempdir()?;
    let sqlite: Arc<dyn Store> = Arc::new(kaya_control_plane::store::sqlite::SqliteStore::open(
        &dir.path().join("direct.db"),
    )?);
    let (seconds, latencies) = direct_store(sqlite, &plan)?;
    report.push(
        "pod_create_rate",
        "sqlite-direct",
        plan.creates as f64 / seconds,
        "pods/s",
        true,
    );
    report.push(
        "pod_create_p99_ms",
        "sqlite-direct",
        p99(latencies),
        "ms",
        false,
    );
    let etcd = EtcdCluster::start(1)?;
    let endpoints = etcd.endpoints();
    measure(
        &mut report,
        &plan,
        "kaya-etcd",
        Some(&format!("etcd:{}", endpoints.join(","))),
    )?;
    let direct: Arc<dyn Store> = Arc::new(kaya_control_plane::store::etcd::EtcdStore::connect(
        &endpoints,
    )?);
    let (seconds, latencies) = direct_store(direct, &plan)?;
    report.push(
        "pod_create_rate",
        "etcd-direct",
        plan.creates as f64 / seconds,
        "pods/s",
        true,
    );
    report.push(
        "pod_create_p99_ms",
        "etcd-direct",
        p99(latencies),
        "ms",
        false,
    );
    Ok(report)
}
