//! The numbers compilation needs from outside: identities from the allocator, and rule and
//! CIDR ids that stay the same while their rule or prefix exists.
use ipnet::Ipv4Net;
use kaya_ebpf_common::policy::{FIRST_CIDR_IDENTITY, RULE_COUNTERS_MAX};
use std::collections::{BTreeMap, BTreeSet};

use super::compile::{Numbering, RuleRef};
use super::identity::{IdentityAllocator, IdentityLabels, LocalAllocator};

/// Ids handed out lowest-free-first from `first`, kept while their key is in use.
#[derive(Debug)]
pub struct StableIds<K: Ord + Clone> {
    next: u32,
    limit: u32,
    free: BTreeSet<u32>,
    ids: BTreeMap<K, u32>,
    /// Ids asked for since the last `retain_used` (ids, not keys: no clone per lookup).
    used: BTreeSet<u32>,
    /// Ids handed out since the last `retain_used` (callers reset what they count).
    pub fresh: Vec<u32>,
}

impl<K: Ord + Clone> StableIds<K> {
    pub fn new(first: u32, limit: u32) -> Self {
        StableIds {
            next: first,
            limit,
            free: BTreeSet::new(),
            ids: BTreeMap::new(),
            used: BTreeSet::new(),
            fresh: Vec::new(),
        }
    }

    /// The id of `key`, or 0 when every id is taken.
    pub fn get(&mut self, key: &K) -> u32 {
        if let Some(&id) = self.ids.get(key) {
            self.used.insert(id);
            return id;
        }
        let id = match self.free.pop_first() {
            Some(id) => id,
            None if self.next < self.limit => {
                self.next += 1;
                self.next - 1
            }
            None => return 0,
        };
        self.ids.insert(key.clone(), id);
        self.used.insert(id);
        self.fresh.push(id);
        id
    }

    /// Frees the ids of keys not asked for since the last call.
    pub fn retain_used(&mut self) {
        let used = std::mem::take(&mut self.used);
        let free = &mut self.free;
        self.ids.retain(|_, id| {
            let keep = used.contains(id);
            if !keep {
                free.insert(*id);
            }
            keep
        });
        self.fresh.clear();
    }
}

/// `Numbering` for one node: identities from an allocator (references held for the label
/// sets of the last compilation), rule ids from 1, CIDR identities above pod identities.
pub struct NodeNumbering<A: IdentityAllocator = LocalAllocator> {
    allocator: A,
    held: BTreeMap<IdentityLabels, u32>,
    asked: BTreeMap<IdentityLabels, u32>,
    pub rules: StableIds<RuleRef>,
    cidrs: StableIds<Ipv4Net>,
}

impl<A: IdentityAllocator + Default> Default for NodeNumbering<A> {
    fn default() -> Self {
        NodeNumbering {
            allocator: A::default(),
            held: BTreeMap::new(),
            asked: BTreeMap::new(),
            rules: StableIds::new(1, RULE_COUNTERS_MAX),
            cidrs: StableIds::new(FIRST_CIDR_IDENTITY, u32::MAX),
        }
    }
}

impl<A: IdentityAllocator> NodeNumbering<A> {
    /// Releases what the last compilation no longer used.
    pub fn finish(&mut self) {
        let asked = std::mem::take(&mut self.asked);
        for (labels, id) in std::mem::replace(&mut self.held, asked) {
            if !self.held.contains_key(&labels) {
                let _ = self.allocator.release(id);
            }
        }
        self.rules.retain_used();
        self.cidrs.retain_used();
    }
}

impl<A: IdentityAllocator> Numbering for NodeNumbering<A> {
    fn identity(&mut self, labels: &IdentityLabels) -> u32 {
        if let Some(&id) = self.asked.get(labels) {
            return id;
        }
        let id = match self.held.get(labels) {
            Some(&id) => id,
            None => match self.allocator.acquire(labels) {
                Ok(id) => id,
                Err(err) => {
                    tracing::error!(%err, namespace = labels.namespace, "no identity for a label set; its pods count as the world");
                    kaya_ebpf_common::identity::IDENTITY_WORLD
                }
            },
        };
        self.asked.insert(labels.clone(), id);
        id
    }

    fn rule(&mut self, rule: &RuleRef) -> u32 {
        self.rules.get(rule)
    }

    fn cidr(&mut self, prefix: Ipv4Net) -> u32 {
        self.cidrs.get(&prefix)
    }
}
