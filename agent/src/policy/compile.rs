//! Compiles policies, pods and namespaces into what this node's maps must hold: the ipcache,
//! which local endpoints are isolated in which direction, and their allow entries (peer
//! identity × protocol × port prefix → rule). Pure: no maps, no clock, unit-tested.
use ipnet::Ipv4Net;
use kaya_ebpf_common::{
    identity::{IDENTITY_HOST, IDENTITY_REMOTE_NODE, IDENTITY_WORLD},
    policy::{
        DIRECTION_EGRESS, DIRECTION_INGRESS, IDENTITY_ANY, ISOLATED_EGRESS, ISOLATED_INGRESS,
        IpcacheEntry, POLICY_PREFIX_ANY, POLICY_PREFIX_PROTOCOL, PolicyKey,
    },
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::identity::IdentityLabels;
use super::inventory::{NamespaceDef, PodDef};
use super::selector::Labels;
use super::spec::{NamespaceScope, PeerDef, PolicyDef, PortMatch, PortRule, RuleDef};
use crate::objects::ObjectName;

/// What policies, pods and namespaces the node knows.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub namespaces: BTreeMap<String, NamespaceDef>,
    pub pods: Vec<PodDef>,
    pub policies: Vec<PolicyDef>,
}

/// What the node itself contributes.
#[derive(Clone, Debug, Default)]
pub struct NodeContext {
    /// Pods on this node: address → endpoint id.
    pub endpoints: BTreeMap<Ipv4Addr, u32>,
    /// This node's own addresses (node IP, pod gateway): the host identity.
    pub host_addresses: Vec<Ipv4Addr>,
    /// Every other node: its address, and the pod CIDR it owns (tunnel endpoints).
    pub peers: Vec<(Ipv4Addr, Ipv4Net)>,
}

/// A rule, as counters and flow events name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub policy: ObjectName,
    /// DIRECTION_INGRESS or DIRECTION_EGRESS.
    pub direction: u8,
    pub index: usize,
}

/// Numbers the compiler cannot pick alone: identities (shared with other nodes), and rule
/// and CIDR ids (kept stable across compilations so counters and entries survive edits).
pub trait Numbering {
    fn identity(&mut self, labels: &IdentityLabels) -> u32;
    fn rule(&mut self, rule: &RuleRef) -> u32;
    fn cidr(&mut self, prefix: Ipv4Net) -> u32;
}

/// One allow entry: the LPM prefix length over `PolicyKey` and the key.
pub type EntryKey = (u32, PolicyKey);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiled {
    pub ipcache: BTreeMap<Ipv4Net, IpcacheEntry>,
    /// endpoint id → ISOLATED_* bits; endpoints without isolation are absent.
    pub isolation: BTreeMap<u32, u32>,
    pub entries: BTreeMap<EntryKey, u32>,
    pub rules: BTreeMap<u32, RuleRef>,
    pub identities: BTreeMap<u32, IdentityLabels>,
    /// Every pod with an address: (address, name, identity).
    pub pods: Vec<(Ipv4Addr, ObjectName, u32)>,
}

/// A pod with its identity.
struct Member<'a> {
    pod: &'a PodDef,
    ip: Ipv4Addr,
    identity: u32,
}

pub fn compile(inputs: &Inputs, node: &NodeContext, numbering: &mut dyn Numbering) -> Compiled {
    let mut out = Compiled::default();
    let namespaces = |name: &str| -> Labels {
        inputs
            .namespaces
            .get(name)
            .cloned()
            .unwrap_or_else(|| NamespaceDef::implicit(name))
            .labels
    };
    let mut members = Vec::new();
    for pod in &inputs.pods {
        let Some(ip) = pod.ip else { continue };
        let labels = IdentityLabels {
            namespace: pod.name.namespace.clone(),
            namespace_labels: namespaces(&pod.name.namespace),
            pod_labels: pod.labels.clone(),
        };
        let identity = numbering.identity(&labels);
        out.identities.insert(identity, labels);
        out.pods.push((ip, pod.name.clone(), identity));
        members.push(Member { pod, ip, identity });
    }
    let blocks = block_prefixes(&inputs.policies);
    out.ipcache = ipcache(&members, node, &blocks, numbering);

    for (&ip, &endpoint_id) in &node.endpoints {
        let Some(subject) = members.iter().find(|m| m.ip == ip) else {
            continue;
        };
        let mut flags = 0;
        for policy in &inputs.policies {
            if policy.name.namespace != subject.pod.name.namespace
                || !policy.pod_selector.matches(&subject.pod.labels)
            {
                continue;
            }
            let directions = [
                (DIRECTION_INGRESS, ISOLATED_INGRESS, &policy.ingress),
                (DIRECTION_EGRESS, ISOLATED_EGRESS, &policy.egress),
            ];
            for (direction, isolation, rules) in directions {
                let Some(rules) = rules else { continue };
                flags |= isolation;
                for (index, rule) in rules.iter().enumerate() {
                    let rule_ref = RuleRef {
                        policy: policy.name.clone(),
                        direction,
                        index,
                    };
                    let rule_id = numbering.rule(&rule_ref);
                    out.rules.insert(rule_id, rule_ref);
                    let ctx = RuleContext {
                        endpoint_id,
                        direction,
                        subject,
                        members: &members,
                        out_identities: &out.identities,
                        blocks: &blocks,
                    };
                    for (prefix, key) in ctx.entries(rule, numbering) {
                        out.entries.entry((prefix, key)).or_insert(rule_id);
                    }
                }
            }
        }
        if flags != 0 {
            out.isolation.insert(endpoint_id, flags);
        }
    }
    out
}

/// Every ipBlock prefix of every policy (cidrs and excepts): each gets a CIDR identity and
/// an ipcache entry, so the most specific one holding an address decides which blocks it
/// is in.
fn block_prefixes(policies: &[PolicyDef]) -> BTreeSet<Ipv4Net> {
    let mut prefixes = BTreeSet::new();
    let rules = policies
        .iter()
        .flat_map(|p| p.ingress.iter().chain(&p.egress).flatten());
    for peer in rules.flat_map(|r| r.peers.iter().flatten()) {
        if let PeerDef::Block { cidr, except } = peer {
            prefixes.insert(*cidr);
            prefixes.extend(except.iter().copied());
        }
    }
    prefixes
}

/// The longest block prefix holding `prefix` (itself, for a block): at most 33 lookups,
/// whatever the block count.
fn most_specific_block(blocks: &BTreeSet<Ipv4Net>, prefix: &Ipv4Net) -> Option<Ipv4Net> {
    (0..=prefix.prefix_len()).rev().find_map(|len| {
        let candidate = Ipv4Net::new(prefix.addr(), len).ok()?.trunc();
        blocks.contains(&candidate).then_some(candidate)
    })
}

/// The block prefixes inside `cidr`: those whose network address lies in its range (the
/// set is ordered by address), less the shorter ones that only start there.
fn blocks_inside<'b>(
    blocks: &'b BTreeSet<Ipv4Net>,
    cidr: &'b Ipv4Net,
) -> impl Iterator<Item = &'b Ipv4Net> + 'b {
    let first = Ipv4Net::new(cidr.network(), 0).expect("/0 is valid");
    let last = Ipv4Net::new(cidr.broadcast(), 32).expect("/32 is valid");
    blocks
        .range(first..=last)
        .filter(|block| cidr.contains(*block))
}

fn ipcache(
    members: &[Member<'_>],
    node: &NodeContext,
    blocks: &BTreeSet<Ipv4Net>,
    numbering: &mut dyn Numbering,
) -> BTreeMap<Ipv4Net, IpcacheEntry> {
    let host = |ip: Ipv4Addr| Ipv4Net::new(ip, 32).expect("/32 is valid");
    let mut identities: BTreeMap<Ipv4Net, (u32, u32)> = BTreeMap::new();
    for block in blocks {
        identities.insert(*block, (IDENTITY_WORLD, 0));
    }
    for (node_ip, _) in &node.peers {
        identities.insert(host(*node_ip), (IDENTITY_REMOTE_NODE, 0));
    }
    for ip in &node.host_addresses {
        identities.insert(host(*ip), (IDENTITY_HOST, 0));
    }
    for member in members {
        let tunnel = (node.peers.iter())
            .find(|(_, cidr)| cidr.contains(&member.ip))
            .map_or(0, |(node_ip, _)| u32::from_ne_bytes(node_ip.octets()));
        identities.insert(host(member.ip), (member.identity, tunnel));
    }
    (identities.into_iter())
        .map(|(prefix, (identity, tunnel_ip))| {
            let cidr_identity =
                most_specific_block(blocks, &prefix).map_or(0, |block| numbering.cidr(block));
            let entry = IpcacheEntry {
                identity,
                cidr_identity,
                tunnel_ip,
                _pad: 0,
            };
            (prefix, entry)
        })
        .collect()
}

struct RuleContext<'a> {
    endpoint_id: u32,
    direction: u8,
    subject: &'a Member<'a>,
    members: &'a [Member<'a>],
    out_identities: &'a BTreeMap<u32, IdentityLabels>,
    blocks: &'a BTreeSet<Ipv4Net>,
}

/// A set of peers: identities, and the pods behind them (for named egress ports).
struct PeerSet<'a> {
    identity: u32,
    /// Pods a named port resolves on (egress); empty for ingress.
    pods: Vec<&'a PodDef>,
}

impl<'a> RuleContext<'a> {
    fn entries(&self, rule: &RuleDef, numbering: &mut dyn Numbering) -> Vec<EntryKey> {
        let peers = self.peers(rule, numbering);
        let mut keys = Vec::new();
        for peer in &peers {
            let key = |protocol: u8, dport: u16| PolicyKey {
                endpoint_id: self.endpoint_id,
                identity: peer.identity,
                direction: self.direction,
                protocol,
                dport: dport.to_be(),
            };
            let Some(ports) = &rule.ports else {
                keys.push((POLICY_PREFIX_ANY, key(0, 0)));
                continue;
            };
            for PortRule { protocol, port } in ports {
                let protocol = protocol.number();
                let ranges = match port {
                    PortMatch::Any => {
                        keys.push((POLICY_PREFIX_PROTOCOL, key(protocol, 0)));
                        continue;
                    }
                    PortMatch::Range(start, end) => vec![(*start, *end)],
                    PortMatch::Named(name) => {
                        // Named ports resolve on the pod receiving the connection: this
                        // endpoint for ingress, the peer's pods for egress.
                        let receivers: Vec<&PodDef> = if self.direction == DIRECTION_INGRESS {
                            vec![self.subject.pod]
                        } else {
                            peer.pods.clone()
                        };
                        let numbers: BTreeSet<u16> = (receivers.iter())
                            .flat_map(|pod| &pod.ports)
                            .filter(|p| p.name == *name && p.protocol.number() == protocol)
                            .map(|p| p.port)
                            .collect();
                        numbers.into_iter().map(|n| (n, n)).collect()
                    }
                };
                for (start, end) in ranges {
                    for (base, bits) in port_prefixes(start, end) {
                        keys.push((POLICY_PREFIX_PROTOCOL + bits, key(protocol, base)));
                    }
                }
            }
        }
        keys
    }

    fn peers(&self, rule: &RuleDef, numbering: &mut dyn Numbering) -> Vec<PeerSet<'a>> {
        let egress = self.direction == DIRECTION_EGRESS;
        let pods_with = |wanted: &dyn Fn(&Member<'_>) -> bool| -> Vec<&'a PodDef> {
            if !egress {
                return Vec::new();
            }
            self.members
                .iter()
                .filter(|m| wanted(m))
                .map(|m| m.pod)
                .collect()
        };
        let Some(peers) = &rule.peers else {
            return vec![PeerSet {
                identity: IDENTITY_ANY,
                pods: pods_with(&|_| true),
            }];
        };
        let mut out: Vec<PeerSet<'a>> = Vec::new();
        for peer in peers {
            match peer {
                PeerDef::Pods { namespaces, pods } => {
                    for (&identity, labels) in self.out_identities {
                        let namespace_ok = match namespaces {
                            NamespaceScope::Own(name) => labels.namespace == *name,
                            NamespaceScope::Matching(sel) => sel.matches(&labels.namespace_labels),
                        };
                        if namespace_ok && pods.matches(&labels.pod_labels) {
                            out.push(PeerSet {
                                identity,
                                pods: pods_with(&|m| m.identity == identity),
                            });
                        }
                    }
                }
                PeerDef::Block { cidr, except } => {
                    let inside = |net: &Ipv4Net| {
                        cidr.contains(net) && !except.iter().any(|e| e.contains(net))
                    };
                    for block in blocks_inside(self.blocks, cidr).filter(|b| inside(b)) {
                        out.push(PeerSet {
                            identity: numbering.cidr(*block),
                            pods: pods_with(&|m| {
                                inside(&Ipv4Net::new(m.ip, 32).expect("/32 is valid"))
                            }),
                        });
                    }
                }
                PeerDef::NoIpv4 => {}
            }
        }
        out
    }
}

/// The port prefixes covering `start..=end`: (first port, prefix bits of the 16).
pub fn port_prefixes(start: u16, end: u16) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    let (mut next, end) = (u32::from(start), u32::from(end));
    while next <= end {
        // The largest aligned block starting at `next` that stays within the range.
        let mut size = 1u32 << next.trailing_zeros().min(16);
        while next + size - 1 > end {
            size >>= 1;
        }
        out.push((next as u16, 16 - size.trailing_zeros()));
        next += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::numbering::NodeNumbering;
    use kaya_ebpf_common::policy::POLICY_PREFIX_FULL;

    fn pod(ns: &str, name: &str, ip: [u8; 4], named: &[(&str, u16)]) -> PodDef {
        PodDef {
            name: ObjectName {
                namespace: ns.into(),
                name: name.into(),
            },
            labels: [("pod".to_string(), name.to_string())].into(),
            ip: Some(Ipv4Addr::from(ip)),
            node: None,
            ports: (named.iter())
                .map(|(n, p)| super::super::inventory::NamedPort {
                    name: n.to_string(),
                    port: *p,
                    protocol: crate::services::Protocol::Tcp,
                })
                .collect(),
        }
    }

    fn policy(yaml: &str) -> PolicyDef {
        PolicyDef::from_k8s(&serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    /// x/a (10.244.1.2, endpoint 7, local) and x/b, y/c (remote).
    fn setup(policies: &[&str]) -> (Compiled, NodeNumbering) {
        let inputs = Inputs {
            namespaces: BTreeMap::new(),
            pods: vec![
                pod("x", "a", [10, 244, 1, 2], &[("web", 8080)]),
                pod("x", "b", [10, 244, 2, 2], &[("web", 9090)]),
                pod("y", "c", [10, 244, 2, 3], &[]),
            ],
            policies: policies.iter().map(|p| policy(p)).collect(),
        };
        let node = NodeContext {
            endpoints: [(Ipv4Addr::new(10, 244, 1, 2), 7)].into(),
            host_addresses: vec![Ipv4Addr::new(192, 168, 0, 1)],
            peers: vec![(
                Ipv4Addr::new(192, 168, 0, 2),
                "10.244.2.0/24".parse().unwrap(),
            )],
        };
        let mut numbering = NodeNumbering::default();
        let compiled = compile(&inputs, &node, &mut numbering);
        (compiled, numbering)
    }

    fn identity_of(compiled: &Compiled, ns: &str, name: &str) -> u32 {
        (compiled.pods.iter())
            .find(|(_, n, _)| n.namespace == ns && n.name == name)
            .unwrap()
            .2
    }

    #[test]
    fn port_ranges_become_aligned_prefixes() {
        assert_eq!(port_prefixes(80, 80), vec![(80, 16)]);
        assert_eq!(port_prefixes(8000, 8003), vec![(8000, 14)]);
        assert_eq!(port_prefixes(1, 4), vec![(1, 16), (2, 15), (4, 16)]);
        let all = port_prefixes(1, 65535);
        assert_eq!(all.len(), 16);
        let covered: u32 = all.iter().map(|(_, bits)| 1u32 << (16 - bits)).sum();
        assert_eq!(covered, 65535);
    }

    #[test]
    fn ipcache_has_pods_hosts_and_remote_nodes_with_tunnels() {
        let (compiled, _) = setup(&[]);
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let remote = compiled.ipcache[&net("10.244.2.2/32")];
        assert_eq!(remote.tunnel_ip, u32::from_ne_bytes([192, 168, 0, 2]));
        assert_eq!(remote.identity, identity_of(&compiled, "x", "b"));
        assert_eq!(
            compiled.ipcache[&net("10.244.1.2/32")].tunnel_ip,
            0,
            "local pod"
        );
        assert_eq!(
            compiled.ipcache[&net("192.168.0.1/32")].identity,
            IDENTITY_HOST
        );
        assert_eq!(
            compiled.ipcache[&net("192.168.0.2/32")].identity,
            IDENTITY_REMOTE_NODE
        );
        assert!(compiled.isolation.is_empty() && compiled.entries.is_empty());
    }

    #[test]
    fn ingress_rules_become_entries_of_the_selected_local_endpoint() {
        let (compiled, _) = setup(&["metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: web}, {port: 81, protocol: UDP}]}]"]);
        assert_eq!(compiled.isolation[&7], ISOLATED_INGRESS);
        let b = identity_of(&compiled, "x", "b");
        let keys: BTreeSet<_> = compiled.entries.keys().copied().collect();
        let key = |protocol: u8, port: u16| {
            (
                POLICY_PREFIX_FULL,
                PolicyKey {
                    endpoint_id: 7,
                    identity: b,
                    direction: DIRECTION_INGRESS,
                    protocol,
                    dport: port.to_be(),
                },
            )
        };
        // The named port resolves on the receiving pod (x/a: web = 8080), not on x/b.
        assert_eq!(keys, [key(6, 8080), key(17, 81)].into());
        let rule = compiled.entries[&key(6, 8080)];
        assert_eq!(compiled.rules[&rule].policy.name, "p");
    }

    #[test]
    fn egress_named_ports_resolve_on_the_peers_and_blocks_on_prefixes() {
        let (compiled, mut numbering) = setup(&["metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
    - {to: [{podSelector: {}}], ports: [{port: web}]}
    - {to: [{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.3/32]}}]}"]);
        assert_eq!(compiled.isolation[&7], ISOLATED_EGRESS);
        let b = identity_of(&compiled, "x", "b");
        let web: Vec<_> = (compiled.entries.keys())
            .filter(|(_, k)| k.identity == b)
            .map(|(_, k)| u16::from_be(k.dport))
            .collect();
        assert_eq!(web, vec![9090], "x/b serves web on 9090");
        let block = numbering.cidr("10.244.2.0/24".parse().unwrap());
        let except = numbering.cidr("10.244.2.3/32".parse().unwrap());
        let allowed: BTreeSet<u32> = compiled.entries.keys().map(|(_, k)| k.identity).collect();
        assert!(allowed.contains(&block) && !allowed.contains(&except));
        // y/c sits on the excepted address: its ipcache entry carries the except prefix.
        let c = compiled.ipcache[&"10.244.2.3/32".parse().unwrap()];
        assert_eq!(c.cidr_identity, except);
        let b_entry = compiled.ipcache[&"10.244.2.2/32".parse().unwrap()];
        assert_eq!(b_entry.cidr_identity, block);
    }

    #[test]
    fn policies_of_other_namespaces_or_remote_pods_isolate_nothing_here() {
        let (compiled, _) = setup(&[
            "metadata: {name: p, namespace: y}\nspec: {podSelector: {}}",
            "metadata: {name: q, namespace: x}\nspec: {podSelector: {matchLabels: {pod: b}}}",
        ]);
        assert!(compiled.isolation.is_empty());
    }
}
