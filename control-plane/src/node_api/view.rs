//! What one node sees: its own pods, every service, endpoint slice, network policy and
//! namespace, the node routes (underlay IP and pod CIDR of each node), identities and the
//! ipcache (pod IP → identity). Store changes become the node's updates here.
use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use super::proto::{Object, Update, update::Type};
use crate::api::meta;
use crate::api::watch::Change;
use crate::controllers::identities::{IDENTITY_PREFIX, identity_labels, label_set_key};
use crate::store::EventKind;

const SHARED_KINDS: &[&str] = &["Service", "EndpointSlice", "NetworkPolicy", "Namespace"];

pub fn object(kind: &str, value: &Value) -> Object {
    Object {
        kind: kind.to_owned(),
        json: serde_json::to_vec(value).unwrap_or_default(),
    }
}

fn update(kind: Type, object: Object) -> Update {
    Update {
        r#type: kind as i32,
        object: Some(object),
    }
}

/// A node's route: where its pods are reached.
pub fn node_route(node: &Value) -> Value {
    let address = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|address| address["type"] == "InternalIP")
        .and_then(|address| address["address"].as_str())
        .unwrap_or("");
    json!({"kind": "NodeRoute", "name": meta::name(node), "internalIP": address, "podCIDR": meta::str_field(node, "/spec/podCIDR").unwrap_or("")})
}

fn pod_key(pod: &Value) -> String {
    format!("{}/{}", meta::namespace(pod).unwrap_or(""), meta::name(pod))
}

/// A pod's address and the label set its identity is for.
struct Endpoint {
    ip: String,
    label_set: String,
    node: String,
}

/// The state behind one node's stream, so each change can be turned into updates.
pub struct NodeView {
    node: String,
    /// Pods bound to this node that the agent has been sent.
    own_pods: HashSet<String>,
    /// label-set key → identity.
    identities: HashMap<String, u64>,
    /// pod key → its ipcache entry's inputs.
    endpoints: HashMap<String, Endpoint>,
    /// pod keys whose identity is not allocated yet, by label set.
    waiting: HashMap<String, HashSet<String>>,
}

impl NodeView {
    pub fn new(node: &str) -> NodeView {
        NodeView {
            node: node.to_owned(),
            own_pods: HashSet::new(),
            identities: HashMap::new(),
            endpoints: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    fn ipcache_entry(&self, pod_key: &str) -> Option<Value> {
        let endpoint = self.endpoints.get(pod_key)?;
        let identity = self.identities.get(&endpoint.label_set)?;
        Some(
            json!({"kind": "IPCacheEntry", "ip": endpoint.ip, "identity": identity, "node": endpoint.node}),
        )
    }

    /// Applies a change; returns what the agent must be sent.
    pub fn apply(&mut self, key: &str, kind: EventKind, object: &Value) -> Vec<Update> {
        let deleted = kind == EventKind::Delete;
        let change_type = |created: bool| {
            if deleted {
                Type::Deleted
            } else if created {
                Type::Added
            } else {
                Type::Modified
            }
        };
        if key.starts_with(IDENTITY_PREFIX) {
            return self.apply_identity(object, deleted);
        }
        let Some(object_kind) = object.get("kind").and_then(Value::as_str) else {
            return Vec::new();
        };
        match object_kind {
            "Pod" => self.apply_pod(object, deleted),
            "Node" => vec![update(
                change_type(false),
                self::object("NodeRoute", &node_route(object)),
            )],
            kind if SHARED_KINDS.contains(&kind) => {
                vec![update(change_type(false), self::object(kind, object))]
            }
            _ => Vec::new(),
        }
    }

    fn apply_identity(&mut self, identity: &Value, deleted: bool) -> Vec<Update> {
        let namespace = identity["namespace"].as_str().unwrap_or("");
        let labels = identity["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
            .collect();
        let label_set = label_set_key(namespace, &labels);
        let Some(id) = identity["id"].as_u64() else {
            return Vec::new();
        };
        let mut updates = vec![update(
            if deleted { Type::Deleted } else { Type::Added },
            object("Identity", identity),
        )];
        if deleted {
            self.identities.remove(&label_set);
            return updates;
        }
        self.identities.insert(label_set.clone(), id);
        for pod in self.waiting.remove(&label_set).into_iter().flatten() {
            if let Some(entry) = self.ipcache_entry(&pod) {
                updates.push(update(Type::Added, object("IPCacheEntry", &entry)));
            }
        }
        updates
    }

    fn apply_pod(&mut self, pod: &Value, deleted: bool) -> Vec<Update> {
        let key = pod_key(pod);
        let mut updates = Vec::new();
        let bound_here = meta::str_field(pod, "/spec/nodeName") == Some(self.node.as_str());
        if bound_here || self.own_pods.contains(&key) {
            let kind = if deleted {
                self.own_pods.remove(&key);
                Type::Deleted
            } else if self.own_pods.insert(key.clone()) {
                Type::Added
            } else {
                Type::Modified
            };
            updates.push(update(kind, object("Pod", pod)));
        }
        let ip = meta::str_field(pod, "/status/podIP")
            .unwrap_or("")
            .to_owned();
        let previous = self.ipcache_entry(&key);
        if deleted || ip.is_empty() {
            if let Some(endpoint) = self.endpoints.remove(&key) {
                self.waiting
                    .entry(endpoint.label_set)
                    .or_default()
                    .remove(&key);
            }
            if let Some(entry) = previous {
                updates.push(update(Type::Deleted, object("IPCacheEntry", &entry)));
            }
            return updates;
        }
        let label_set = label_set_key(meta::namespace(pod).unwrap_or(""), &identity_labels(pod));
        let node = meta::str_field(pod, "/spec/nodeName")
            .unwrap_or("")
            .to_owned();
        self.endpoints.insert(
            key.clone(),
            Endpoint {
                ip,
                label_set: label_set.clone(),
                node,
            },
        );
        match self.ipcache_entry(&key) {
            Some(entry) if Some(&entry) != previous.as_ref() => {
                if let Some(old) = previous.filter(|old| old["ip"] != entry["ip"]) {
                    updates.push(update(Type::Deleted, object("IPCacheEntry", &old)));
                }
                updates.push(update(Type::Added, object("IPCacheEntry", &entry)));
            }
            Some(_) => {}
            None => {
                self.waiting.entry(label_set).or_default().insert(key);
            }
        }
        updates
    }

    /// A hub change, as updates for this node.
    pub fn apply_change(&mut self, change: &Change) -> Vec<Update> {
        self.apply(&change.key, change.kind, &change.object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(updates: &[Update]) -> Vec<(i32, String)> {
        updates
            .iter()
            .map(|u| {
                (
                    u.r#type,
                    u.object
                        .as_ref()
                        .map(|o| o.kind.clone())
                        .unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn a_node_gets_its_own_pods_and_everyone_s_addresses() {
        let mut view = NodeView::new("n1");
        let pod = |name: &str, node: &str, ip: &str| json!({"kind": "Pod", "metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}}, "spec": {"nodeName": node}, "status": {"podIP": ip}});
        // Another node's pod: no Pod update, and no ipcache entry until its identity exists.
        assert!(
            view.apply(
                "/registry/core/pods/d/b",
                EventKind::Put,
                &pod("b", "n2", "10.0.2.5")
            )
            .is_empty()
        );
        let identity =
            json!({"kind": "Identity", "id": 300, "namespace": "d", "labels": {"app": "web"}});
        let updates = view.apply(
            "/registry/kaya.io/identities/300",
            EventKind::Put,
            &identity,
        );
        assert_eq!(
            kinds(&updates),
            vec![
                (Type::Added as i32, "Identity".into()),
                (Type::Added as i32, "IPCacheEntry".into())
            ]
        );
        let own = view.apply(
            "/registry/core/pods/d/a",
            EventKind::Put,
            &pod("a", "n1", "10.0.1.5"),
        );
        assert_eq!(
            kinds(&own),
            vec![
                (Type::Added as i32, "Pod".into()),
                (Type::Added as i32, "IPCacheEntry".into())
            ]
        );
        let again = view.apply(
            "/registry/core/pods/d/a",
            EventKind::Put,
            &pod("a", "n1", "10.0.1.5"),
        );
        assert_eq!(kinds(&again), vec![(Type::Modified as i32, "Pod".into())]);
        let gone = view.apply(
            "/registry/core/pods/d/a",
            EventKind::Delete,
            &pod("a", "n1", "10.0.1.5"),
        );
        assert_eq!(
            kinds(&gone),
            vec![
                (Type::Deleted as i32, "Pod".into()),
                (Type::Deleted as i32, "IPCacheEntry".into())
            ]
        );
        let secret = json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "d"}});
        assert!(
            view.apply("/registry/core/secrets/d/s", EventKind::Put, &secret)
                .is_empty()
        );
    }
}
