//! Security identities: one number per distinct (namespace labels, pod labels) set, as
//! Cilium does, so policy is decided on small integers carried in the VXLAN VNI. The
//! allocator is local to the node for now; the `IdentityAllocator` trait is the seam a
//! cluster-wide allocator (the control plane) will implement. Because the VNI carries the
//! sender's identity to other nodes, every node must give a label set the same number
//! without talking to the others: the local allocator derives it from a hash of the labels.
use kaya_ebpf_common::identity::{FIRST_POD_IDENTITY, MAX_IDENTITY};
use std::collections::BTreeMap;

/// The labels an identity stands for: the pod's, and its namespace's (prefixed so the two
/// never collide, like Cilium's `io.cilium.k8s.namespace.labels.` source).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityLabels {
    pub namespace: String,
    pub namespace_labels: BTreeMap<String, String>,
    pub pod_labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("no identity left: all {available} pod identities are in use")]
    Exhausted { available: u32 },
    #[error("identity {0} is not allocated")]
    Unknown(u32),
}

pub trait IdentityAllocator {
    /// The identity of `labels`, allocating it (or taking another reference) as needed.
    fn acquire(&mut self, labels: &IdentityLabels) -> Result<u32, IdentityError>;
    /// Drops one reference; the identity is freed with its last one.
    fn release(&mut self, identity: u32) -> Result<(), IdentityError>;
    fn lookup(&self, identity: u32) -> Option<&IdentityLabels>;
}

/// Identities derived from a stable hash of the labels (FNV-1a over their canonical form),
/// reference-counted. Two label sets hashing alike take the next free numbers in the order
/// they arrive: the one case nodes can disagree, at ~n²/2²⁵ odds for n label sets.
#[derive(Debug, Default)]
pub struct LocalAllocator {
    by_labels: BTreeMap<IdentityLabels, u32>,
    by_id: BTreeMap<u32, (IdentityLabels, usize)>,
}

impl IdentityAllocator for LocalAllocator {
    fn acquire(&mut self, labels: &IdentityLabels) -> Result<u32, IdentityError> {
        if let Some(&id) = self.by_labels.get(labels) {
            if let Some((_, refs)) = self.by_id.get_mut(&id) {
                *refs += 1;
            }
            return Ok(id);
        }
        let available = MAX_IDENTITY - FIRST_POD_IDENTITY + 1;
        if self.by_id.len() as u64 >= u64::from(available) {
            return Err(IdentityError::Exhausted { available });
        }
        let mut id = FIRST_POD_IDENTITY + (stable_hash(labels) % u64::from(available)) as u32;
        while self.by_id.contains_key(&id) {
            id = if id == MAX_IDENTITY {
                FIRST_POD_IDENTITY
            } else {
                id + 1
            };
        }
        self.by_labels.insert(labels.clone(), id);
        self.by_id.insert(id, (labels.clone(), 1));
        Ok(id)
    }

    fn release(&mut self, identity: u32) -> Result<(), IdentityError> {
        let (labels, refs) =
            (self.by_id.get_mut(&identity)).ok_or(IdentityError::Unknown(identity))?;
        *refs -= 1;
        if *refs == 0 {
            let labels = labels.clone();
            self.by_id.remove(&identity);
            self.by_labels.remove(&labels);
        }
        Ok(())
    }

    fn lookup(&self, identity: u32) -> Option<&IdentityLabels> {
        self.by_id.get(&identity).map(|(labels, _)| labels)
    }
}

/// FNV-1a over the namespace and the sorted labels, each field terminated by a 0 byte so
/// `a=bc` and `ab=c` differ. Independent of Rust's (randomly seeded) std hasher.
pub fn stable_hash(labels: &IdentityLabels) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |text: &str| {
        for byte in text.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(&labels.namespace);
    for (section, map) in [
        ("ns", &labels.namespace_labels),
        ("pod", &labels.pod_labels),
    ] {
        feed(section);
        for (key, value) in map {
            feed(key);
            feed(value);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ns: &str, app: &str) -> IdentityLabels {
        IdentityLabels {
            namespace: ns.into(),
            namespace_labels: [("team".to_string(), ns.to_string())].into(),
            pod_labels: [("app".to_string(), app.to_string())].into(),
        }
    }

    #[test]
    fn equal_label_sets_share_an_identity_and_different_ones_do_not() {
        let mut ids = LocalAllocator::default();
        let web = ids.acquire(&labels("shop", "web")).unwrap();
        assert!((FIRST_POD_IDENTITY..=MAX_IDENTITY).contains(&web));
        assert_eq!(ids.acquire(&labels("shop", "web")).unwrap(), web);
        let db = ids.acquire(&labels("shop", "db")).unwrap();
        let other_ns = ids.acquire(&labels("blog", "web")).unwrap();
        assert!(db != web && other_ns != web && other_ns != db);
        assert_eq!(ids.lookup(db).unwrap().pod_labels["app"], "db");
    }

    #[test]
    fn identities_are_freed_with_their_last_reference_and_reused() {
        let mut ids = LocalAllocator::default();
        let web = ids.acquire(&labels("shop", "web")).unwrap();
        ids.acquire(&labels("shop", "web")).unwrap();
        let db = ids.acquire(&labels("shop", "db")).unwrap();
        ids.release(web).unwrap();
        assert!(ids.lookup(web).is_some(), "one reference left");
        ids.release(web).unwrap();
        assert!(ids.lookup(web).is_none());
        assert_eq!(ids.release(web), Err(IdentityError::Unknown(web)));
        assert_eq!(
            ids.acquire(&labels("shop", "web")).unwrap(),
            web,
            "same number again"
        );
        assert_eq!(ids.lookup(db).unwrap().pod_labels["app"], "db");
    }

    #[test]
    fn every_node_derives_the_same_number_whatever_the_order() {
        let (mut one, mut two) = (LocalAllocator::default(), LocalAllocator::default());
        let sets: Vec<_> = (0..50).map(|i| labels("ns", &format!("app-{i}"))).collect();
        let forward: Vec<u32> = sets.iter().map(|l| one.acquire(l).unwrap()).collect();
        let mut backward: Vec<u32> = sets.iter().rev().map(|l| two.acquire(l).unwrap()).collect();
        backward.reverse();
        assert_eq!(forward, backward);
        // Pinned: the number is part of the wire protocol between nodes (the VNI).
        assert_eq!(
            stable_hash(&labels("shop", "web")),
            stable_hash(&labels("shop", "web"))
        );
        assert_ne!(
            stable_hash(&labels("shop", "web")),
            stable_hash(&labels("shopw", "eb"))
        );
    }
}
