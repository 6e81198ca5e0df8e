//! The scheduler's view of the cluster: each node with what its bound pods request and
//! their labels, kept current from the watch hub (and from the scheduler's own bindings,
//! before the store echoes them back).
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::predicates::{allocatable, pod_requests};
use crate::api::meta;
use crate::controllers::template::pod_active;

pub struct NodeInfo {
    pub node: Value,
    pub cpu: i64,
    pub memory: i64,
    pub pods: i64,
    pub used_cpu: i64,
    pub used_memory: i64,
    /// uid → (namespace, labels) of the pods bound here.
    pub bound: HashMap<String, (String, Map<String, Value>)>,
}

#[derive(Default)]
pub struct Cache {
    pub nodes: HashMap<String, NodeInfo>,
    /// uid → (node, cpu, memory) of every accounted pod.
    placed: HashMap<String, (String, i64, i64)>,
}

impl Cache {
    pub fn set_node(&mut self, node: Value) {
        let name = meta::name(&node).to_owned();
        let (cpu, memory, pods) = allocatable(&node);
        let info = self.nodes.entry(name).or_insert_with(|| NodeInfo {
            node: Value::Null,
            cpu,
            memory,
            pods,
            used_cpu: 0,
            used_memory: 0,
            bound: HashMap::new(),
        });
        info.cpu = cpu;
        info.memory = memory;
        info.pods = pods;
        info.node = node;
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Accounts a pod bound to `node` (no-op if it already is).
    pub fn place(&mut self, pod: &Value, node: &str) {
        let uid = meta::uid(pod).to_owned();
        if self
            .placed
            .get(&uid)
            .is_some_and(|(placed, _, _)| placed == node)
        {
            return;
        }
        self.forget(&uid);
        let (cpu, memory) = pod_requests(pod);
        if let Some(info) = self.nodes.get_mut(node) {
            info.used_cpu += cpu;
            info.used_memory += memory;
            let labels = pod
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            info.bound.insert(
                uid.clone(),
                (meta::namespace(pod).unwrap_or("").to_owned(), labels),
            );
        }
        self.placed.insert(uid, (node.to_owned(), cpu, memory));
    }

    pub fn forget(&mut self, uid: &str) {
        if let Some((node, cpu, memory)) = self.placed.remove(uid)
            && let Some(info) = self.nodes.get_mut(&node)
        {
            info.used_cpu -= cpu;
            info.used_memory -= memory;
            info.bound.remove(uid);
        }
    }

    /// Keeps the accounting in step with a stored pod.
    pub fn observe_pod(&mut self, pod: &Value, deleted: bool) {
        let node = meta::str_field(pod, "/spec/nodeName").unwrap_or("");
        if deleted || node.is_empty() || !pod_active(pod) {
            self.forget(meta::uid(pod));
        } else {
            self.place(pod, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placing_and_forgetting_pods_keeps_usage_exact() {
        let mut cache = Cache::default();
        cache.set_node(json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi"}}}));
        let pod = json!({"metadata": {"uid": "p1", "namespace": "d", "labels": {"app": "web"}}, "spec": {"nodeName": "n1", "containers": [{"resources": {"requests": {"cpu": "500m"}}}]}});
        cache.observe_pod(&pod, false);
        cache.observe_pod(&pod, false);
        assert_eq!(cache.nodes["n1"].used_cpu, 500);
        assert_eq!(cache.nodes["n1"].bound.len(), 1);
        let mut deleting = pod.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        cache.observe_pod(&deleting, false);
        assert_eq!(cache.nodes["n1"].used_cpu, 0);
        assert!(cache.nodes["n1"].bound.is_empty());
    }
}
