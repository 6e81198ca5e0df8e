//! The scheduler: pending pods are filtered against every node (selectors and affinity,
//! taints, unschedulable nodes, requests against allocatable, anti-affinity on hostname),
//! the feasible ones scored (least allocated, preferred affinity), and the pod bound; a pod
//! no node fits gets PodScheduled=False saying why, and is retried when the cluster changes.
mod cache;
pub mod predicates;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::api::handlers::Api;
use crate::api::meta;
use crate::api::resources;
use crate::api::status::ApiError;
use crate::controllers::events;
use crate::store::EventKind;
use cache::{Cache, NodeInfo};
use predicates::{
    anti_affinity_violated, node_selector_matches, pod_requests, preferred_affinity_score,
    untolerated_taint,
};

pub const SCHEDULER_NAME: &str = "default-scheduler";
const BINDS_IN_FLIGHT: usize = 128;
/// How often an unschedulable pod's changing reason is written at most.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

pub struct Scheduler {
    api: Arc<Api>,
    cache: Mutex<Cache>,
    /// uid → the pod as last seen, waiting for a node.
    pending: Mutex<BTreeMap<String, Value>>,
    /// Pods no node fitted, retried when nodes or pods change.
    /// Kept encoded: thousands of parked pods as decoded objects cost ten times the memory.
    unschedulable: Mutex<HashMap<String, Vec<u8>>>,
    wake: Notify,
    /// Bindings being written at once.
    binds: Arc<tokio::sync::Semaphore>,
    /// Parked pods are to be tried again.
    retry: std::sync::atomic::AtomicBool,
    /// When each unschedulable pod's condition was last written.
    reported: Mutex<HashMap<String, std::time::Instant>>,
}

fn wants_scheduling(pod: &Value) -> bool {
    meta::str_field(pod, "/spec/nodeName").is_none_or(str::is_empty)
        && meta::str_field(pod, "/spec/schedulerName").is_none_or(|name| name == SCHEDULER_NAME)
        && !meta::is_deleting(pod)
        && !matches!(
            meta::str_field(pod, "/status/phase"),
            Some("Succeeded" | "Failed")
        )
}

/// What filtering needs of a pod, worked out once per attempt rather than per node.
struct Candidate<'a> {
    pod: &'a Value,
    namespace: &'a str,
    tolerations: Vec<Value>,
    cpu: i64,
    memory: i64,
    anti_affinity: bool,
}

impl<'a> Candidate<'a> {
    fn of(pod: &'a Value) -> Candidate<'a> {
        let (cpu, memory) = pod_requests(pod);
        Candidate {
            pod,
            namespace: meta::namespace(pod).unwrap_or(""),
            tolerations: pod
                .pointer("/spec/tolerations")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            cpu,
            memory,
            anti_affinity: pod.pointer("/spec/affinity/podAntiAffinity").is_some(),
        }
    }
}

/// Why a node cannot take the pod, in kube-scheduler's words.
fn misfit(candidate: &Candidate<'_>, info: &NodeInfo) -> Option<String> {
    if info.node.pointer("/spec/unschedulable") == Some(&json!(true))
        && !candidate.tolerations.iter().any(|t| {
            t["key"] == "node.kubernetes.io/unschedulable"
                || (t["operator"] == "Exists" && t.get("key").is_none())
        })
    {
        return Some("node(s) were unschedulable".into());
    }
    if let Some(taint) = untolerated_taint(
        &info.node,
        &candidate.tolerations,
        &["NoSchedule", "NoExecute"],
    ) {
        let key = taint["key"].as_str().unwrap_or("");
        let value = taint["value"].as_str().unwrap_or("");
        return Some(format!(
            "node(s) had taint {{{key}: {value}}}, that the pod didn't tolerate"
        ));
    }
    if !node_selector_matches(candidate.pod, &info.node) {
        return Some("node(s) didn't match node selector".into());
    }
    if info.bound.len() as i64 + 1 > info.pods {
        return Some("Too many pods".into());
    }
    if candidate.cpu > 0 && info.used_cpu + candidate.cpu > info.cpu {
        return Some("Insufficient cpu".into());
    }
    if candidate.memory > 0 && info.used_memory + candidate.memory > info.memory {
        return Some("Insufficient memory".into());
    }
    if candidate.anti_affinity {
        let others: Vec<(String, serde_json::Map<String, Value>)> =
            info.bound.values().cloned().collect();
        if anti_affinity_violated(candidate.pod, candidate.namespace, &others) {
            return Some("node(s) didn't match pod anti-affinity rules".into());
        }
    }
    None
}

/// Higher is better: free share of cpu and memory after placing the pod, plus affinity.
fn score(candidate: &Candidate<'_>, info: &NodeInfo) -> i64 {
    let share = |used: i64, total: i64| {
        if total > 0 {
            (total - used) * 100 / total
        } else {
            100
        }
    };
    (share(info.used_cpu + candidate.cpu, info.cpu)
        + share(info.used_memory + candidate.memory, info.memory))
        / 2
        + preferred_affinity_score(candidate.pod, &info.node)
}

/// "0/10 nodes are available: 3 Insufficient cpu, 7 node(s) had taint ...".
fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    if parts.is_empty() {
        return format!("0/{total} nodes are available.");
    }
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

impl Scheduler {
    /// Starts scheduling; returns once the initial state is loaded.
    pub async fn start(api: Arc<Api>) -> Result<Arc<Scheduler>, ApiError> {
        let scheduler = Arc::new(Scheduler {
            api,
            cache: Mutex::new(Cache::default()),
            pending: Mutex::new(BTreeMap::new()),
            unschedulable: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            binds: Arc::new(tokio::sync::Semaphore::new(BINDS_IN_FLIGHT)),
            retry: std::sync::atomic::AtomicBool::new(false),
            reported: Mutex::new(HashMap::new()),
        });
        let mut changes = scheduler.api.registry.hub().subscribe();
        scheduler.resync().await?;
        let feeder = scheduler.clone();
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) => feeder.observe(&change.object, change.kind == EventKind::Delete),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = feeder.resync().await;
                    }
                    Err(_) => return,
                }
            }
        });
        let worker = scheduler.clone();
        tokio::spawn(async move { worker.work().await });
        let retry = scheduler.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                retry.retry_unschedulable();
            }
        });
        Ok(scheduler)
    }

    async fn resync(&self) -> Result<(), ApiError> {
        let nodes = resources::require("", "nodes")?;
        let pods = resources::require("", "pods")?;
        let (node_list, _) = self.api.registry.list(nodes, None, None).await?;
        let (pod_list, _) = self.api.registry.list(pods, None, None).await?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Cache::default();
            node_list.into_iter().for_each(|node| cache.set_node(node));
        }
        for pod in &pod_list {
            self.observe(pod, false);
        }
        Ok(())
    }

    fn observe(&self, object: &Value, deleted: bool) {
        match object.get("kind").and_then(Value::as_str) {
            Some("Node") => {
                if let Ok(mut cache) = self.cache.lock() {
                    if deleted {
                        cache.remove_node(meta::name(object))
                    } else {
                        cache.set_node(object.clone())
                    }
                }
                self.retry_unschedulable();
            }
            Some("Pod") => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.observe_pod(object, deleted);
                }
                let uid = meta::uid(object).to_owned();
                if !deleted && wants_scheduling(object) {
                    let known = self
                        .unschedulable
                        .lock()
                        .is_ok_and(|parked| parked.contains_key(&uid));
                    if !known && let Ok(mut pending) = self.pending.lock() {
                        pending.insert(uid, object.clone());
                        self.wake.notify_one();
                    }
                } else {
                    if let Ok(mut parked) = self.unschedulable.lock() {
                        parked.remove(&uid);
                    }
                    if let Ok(mut reported) = self.reported.lock() {
                        reported.remove(&uid);
                    }
                    // A pod leaving frees room for the parked ones.
                    if deleted || meta::is_deleting(object) {
                        self.retry_unschedulable();
                    }
                }
            }
            _ => {}
        }
    }

    /// Asks for the parked pods to be tried again; a burst of node events (a hundred nodes
    /// joining) becomes one retry, taken when the worker next looks.
    fn retry_unschedulable(&self) {
        self.retry.store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    fn unpark(&self) {
        if !self.retry.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let parked: Vec<(String, Value)> = match self.unschedulable.lock() {
            Ok(mut parked) => parked
                .drain()
                .filter_map(|(uid, bytes)| {
                    serde_json::from_slice(&bytes).ok().map(|pod| (uid, pod))
                })
                .collect(),
            Err(_) => return,
        };
        if let Ok(mut pending) = self.pending.lock() {
            pending.extend(parked);
        }
    }

    async fn work(self: Arc<Self>) {
        loop {
            let notified = self.wake.notified();
            self.unpark();
            let batch: Vec<Value> = match self.pending.lock() {
                Ok(mut pending) => std::mem::take(&mut *pending).into_values().collect(),
                Err(_) => return,
            };
            if batch.is_empty() {
                notified.await;
                continue;
            }
            for pod in batch {
                if let Err(error) = self.schedule(pod).await {
                    tracing::warn!(%error, "scheduling a pod");
                }
            }
        }
    }

    /// Picks a node; None with the reasons every node was rejected.
    fn choose(&self, pod: &Value) -> Result<String, String> {
        let Ok(cache) = self.cache.lock() else {
            return Err("scheduler cache unavailable".into());
        };
        let candidate = Candidate::of(pod);
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(i64, &str)> = None;
        for (name, info) in &cache.nodes {
            match misfit(&candidate, info) {
                Some(reason) => *reasons.entry(reason).or_default() += 1,
                None => {
                    let score = score(&candidate, info);
                    // Ties go to the name that sorts first, so results are reproducible.
                    if best.is_none_or(|(best_score, best_name)| {
                        score > best_score || (score == best_score && name.as_str() < best_name)
                    }) {
                        best = Some((score, name));
                    }
                }
            }
        }
        best.map(|(_, name)| name.to_owned())
            .ok_or_else(|| unschedulable_message(cache.nodes.len(), &reasons))
    }

    async fn schedule(self: &Arc<Self>, pod: Value) -> Result<(), ApiError> {
        let pods = resources::require("", "pods")?;
        match self.choose(&pod) {
            Ok(node) => {
                let mut bound = pod.clone();
                bound["spec"]["nodeName"] = json!(node);
                set_condition(
                    &mut bound,
                    json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()}),
                );
                if let Ok(mut cache) = self.cache.lock() {
                    cache.place(&bound, &node);
                }
                // The decision is made (and the cache assumes it); the write happens in the
                // background, a bounded number at a time, as kube-scheduler binds.
                let permit = self
                    .binds
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| ApiError::Internal("scheduler stopped".into()))?;
                let api = self.api.clone();
                let scheduler = self.clone();
                tokio::spawn(async move {
                    let result = api
                        .registry
                        .update(pods, bound, meta::resource_version(&pod))
                        .await;
                    drop(permit);
                    if let Ok(bound) = &result {
                        let message = format!(
                            "Successfully assigned {}/{} to {node}",
                            meta::namespace(bound).unwrap_or(""),
                            meta::name(bound)
                        );
                        events::record(&api, bound, true, "Scheduled", message, SCHEDULER_NAME)
                            .await;
                    }
                    if let Err(error) = result {
                        if let Ok(mut cache) = scheduler.cache.lock() {
                            cache.forget(meta::uid(&pod));
                        }
                        // Conflict or gone: the watch brings the new version back if it still needs a node.
                        if !matches!(error, ApiError::Conflict { .. } | ApiError::NotFound { .. }) {
                            tracing::warn!(%error, pod = meta::name(&pod), "binding");
                        }
                    }
                });
                Ok(())
            }
            Err(message) => {
                let uid = meta::uid(&pod).to_owned();
                let mut updated = pod.clone();
                set_condition(
                    &mut updated,
                    json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null, "lastTransitionTime": meta::now()}),
                );
                // The condition is written when a pod first fails, and again only when the
                // reason changed and the last write is a while ago: retries as nodes come and
                // go must not turn into a write per pod per event.
                let previous = pod
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|conditions| {
                        conditions
                            .iter()
                            .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                            .cloned()
                    });
                let recently = self
                    .reported
                    .lock()
                    .ok()
                    .and_then(|reported| reported.get(&uid).copied())
                    .is_some_and(|at| at.elapsed() < REPORT_INTERVAL);
                let changed = match &previous {
                    None => true,
                    Some(condition) => condition["message"] != json!(message) && !recently,
                };
                if changed {
                    if let Ok(mut reported) = self.reported.lock() {
                        reported.insert(uid.clone(), std::time::Instant::now());
                    }
                    events::record_detached(
                        &self.api,
                        &pod,
                        false,
                        "FailedScheduling",
                        message.clone(),
                        SCHEDULER_NAME,
                    );
                }
                let stored = if changed {
                    match self
                        .api
                        .registry
                        .update(pods, updated, meta::resource_version(&pod))
                        .await
                    {
                        Ok(stored) => stored,
                        Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => return Ok(()),
                        Err(error) => return Err(error),
                    }
                } else {
                    pod
                };
                if let Ok(mut parked) = self.unschedulable.lock() {
                    parked.insert(uid, serde_json::to_vec(&stored).unwrap_or_default());
                }
                Ok(())
            }
        }
    }
}

/// Replaces the pod's condition of the same type (keeping its transition time if the
/// status is unchanged).
fn set_condition(pod: &mut Value, condition: Value) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let conditions = pod["status"]
        .as_object_mut()
        .map(|status| status.entry("conditions").or_insert_with(|| json!([])));
    if let Some(Value::Array(conditions)) = conditions {
        let mut condition = condition;
        if let Some(previous) = conditions.iter().find(|c| c["type"] == condition["type"])
            && previous["status"] == condition["status"]
        {
            condition["lastTransitionTime"] = previous["lastTransitionTime"].clone();
        }
        conditions.retain(|c| c["type"] != condition["type"]);
        conditions.push(condition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: Value) -> NodeInfo {
        let mut cache = Cache::default();
        cache.set_node(node.clone());
        cache.nodes.remove(meta::name(&node)).unwrap()
    }

    #[test]
    fn misfits_are_named_like_kube_scheduler() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]}, "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"}}});
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "2"}}}]}});
        assert_eq!(
            misfit(&Candidate::of(&pod), &info(node.clone())).as_deref(),
            Some("node(s) had taint {gpu: yes}, that the pod didn't tolerate")
        );
        let tolerant = json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}], "containers": [{"resources": {"requests": {"cpu": "2"}}}]}});
        assert_eq!(
            misfit(&Candidate::of(&tolerant), &info(node)).as_deref(),
            Some("Insufficient cpu")
        );
        let mut reasons = BTreeMap::new();
        reasons.insert("Insufficient cpu".to_owned(), 3);
        reasons.insert("node(s) were unschedulable".to_owned(), 1);
        assert_eq!(
            unschedulable_message(4, &reasons),
            "0/4 nodes are available: 3 Insufficient cpu, 1 node(s) were unschedulable."
        );
    }

    #[test]
    fn emptier_nodes_score_higher() {
        let node = |name: &str| json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "4", "memory": "4Gi"}}});
        let pod = json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}});
        let empty = info(node("a"));
        let mut busy = info(node("b"));
        busy.used_cpu = 2000;
        assert!(score(&Candidate::of(&pod), &empty) > score(&Candidate::of(&pod), &busy));
    }
}
