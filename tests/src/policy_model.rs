//! An independent reference model of Kubernetes NetworkPolicy (networking.k8s.io/v1), written
//! from the API documentation and sharing no code with the agent: given namespaces, pods and
//! policies, whether a connection from one pod to another on a port is allowed. The policy
//! truth-table tests compare the real datapath with it cell by cell.
use ipnet::Ipv4Net;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn from_api(value: Option<&str>) -> Option<Proto> {
        match value.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ModelPod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub ip: Ipv4Addr,
    /// Named container ports: (name, port, protocol).
    pub named_ports: Vec<(String, u16, Proto)>,
}

#[derive(Clone, Debug, Default)]
pub struct World {
    pub namespaces: BTreeMap<String, Labels>,
    pub pods: Vec<ModelPod>,
    pub policies: Vec<NetworkPolicy>,
}

/// A label selector per the API: matchLabels and matchExpressions all hold; an empty
/// selector selects everything. An unknown operator selects nothing.
pub fn selects(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_hold =
        (selector.match_labels.iter().flatten()).all(|(key, value)| labels.get(key) == Some(value));
    let expressions_hold = selector.match_expressions.iter().flatten().all(|req| {
        let values = req.values.as_deref().unwrap_or_default();
        match (req.operator.as_str(), labels.get(&req.key)) {
            ("In", Some(value)) => values.contains(value),
            ("In", None) => false,
            ("NotIn", Some(value)) => !values.contains(value),
            ("NotIn", None) => true,
            ("Exists", found) => found.is_some(),
            ("DoesNotExist", found) => found.is_none(),
            _ => false,
        }
    });
    labels_hold && expressions_hold
}

/// One rule's peers (from/to) and ports.
type Rule<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// policyTypes, or its default: Ingress always, Egress when the spec has egress rules.
fn applies_to(policy: &NetworkPolicy, direction: Direction) -> bool {
    let Some(spec) = &policy.spec else {
        return false;
    };
    match &spec.policy_types {
        Some(types) => types.iter().any(|t| match direction {
            Direction::Ingress => t == "Ingress",
            Direction::Egress => t == "Egress",
        }),
        None => direction == Direction::Ingress || spec.egress.is_some(),
    }
}

fn selects_pod(policy: &NetworkPolicy, pod: &ModelPod) -> bool {
    let namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
    let everything = LabelSelector::default();
    let selector = (policy.spec.as_ref())
        .and_then(|s| s.pod_selector.as_ref())
        .unwrap_or(&everything);
    namespace == pod.namespace && selects(selector, &pod.labels)
}

impl World {
    fn namespace_labels(&self, namespace: &str) -> Labels {
        self.namespaces.get(namespace).cloned().unwrap_or_default()
    }

    /// Whether `peer` (in `policy_namespace`'s policy) matches `other` (a pod), per the
    /// peer rules: podSelector alone means the policy's namespace; namespaceSelector alone
    /// means every pod there; both means pods matching both; ipBlock matches by address.
    fn peer_matches(
        &self,
        peer: &NetworkPolicyPeer,
        policy_namespace: &str,
        other: &ModelPod,
    ) -> bool {
        if let Some(block) = &peer.ip_block {
            let Ok(cidr) = block.cidr.parse::<Ipv4Net>() else {
                return false;
            };
            let excepted = (block.except.iter().flatten())
                .filter_map(|e| e.parse::<Ipv4Net>().ok())
                .any(|e| e.contains(&other.ip));
            return cidr.contains(&other.ip) && !excepted;
        }
        let namespace_ok = match &peer.namespace_selector {
            Some(selector) => selects(selector, &self.namespace_labels(&other.namespace)),
            None => other.namespace == policy_namespace,
        };
        let pod_ok = match &peer.pod_selector {
            Some(selector) => selects(selector, &other.labels),
            None => true,
        };
        namespace_ok && pod_ok
    }

    /// Whether a rule's ports admit `port`/`proto` at `target` (named ports resolve on the
    /// pod that receives the connection).
    fn port_matches(
        ports: Option<&Vec<NetworkPolicyPort>>,
        target: &ModelPod,
        port: u16,
        proto: Proto,
    ) -> bool {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else {
            return true;
        };
        ports.iter().any(|rule| {
            if Proto::from_api(rule.protocol.as_deref()) != Some(proto) {
                return false;
            }
            match &rule.port {
                None => true,
                Some(IntOrString::Int(number)) => {
                    let end = rule.end_port.unwrap_or(*number);
                    (*number..=end).contains(&i32::from(port))
                }
                Some(IntOrString::String(name)) => (target.named_ports.iter())
                    .any(|(n, p, pr)| n == name && *p == port && *pr == proto),
            }
        })
    }

    fn direction_allows(
        &self,
        direction: Direction,
        subject: &ModelPod,
        other: &ModelPod,
        target: &ModelPod,
        port: u16,
        proto: Proto,
    ) -> bool {
        let mut isolated = false;
        for policy in &self.policies {
            if !applies_to(policy, direction) || !selects_pod(policy, subject) {
                continue;
            }
            isolated = true;
            let policy_namespace = policy.metadata.namespace.as_deref().unwrap_or("default");
            let spec = policy.spec.as_ref().expect("applies_to checked the spec");
            let rules: Vec<Rule<'_>> = match direction {
                Direction::Ingress => (spec.ingress.iter().flatten())
                    .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                    .collect(),
                Direction::Egress => (spec.egress.iter().flatten())
                    .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                    .collect(),
            };
            let allowed = rules.into_iter().any(|(peers, ports)| {
                let peer_ok = match peers.filter(|p| !p.is_empty()) {
                    None => true,
                    Some(peers) => peers
                        .iter()
                        .any(|p| self.peer_matches(p, policy_namespace, other)),
                };
                peer_ok && Self::port_matches(ports, target, port, proto)
            });
            if allowed {
                return true;
            }
        }
        !isolated
    }

    /// Whether a new connection from `from` to `to` on `port`/`proto` is allowed: the
    /// sender's egress and the receiver's ingress must both allow it.
    pub fn allowed(&self, from: &ModelPod, to: &ModelPod, port: u16, proto: Proto) -> bool {
        // A pod reaching its own address never leaves it (loopback): pods cannot block that.
        if from.ip == to.ip {
            return true;
        }
        self.direction_allows(Direction::Egress, from, to, to, port, proto)
            && self.direction_allows(Direction::Ingress, to, from, to, port, proto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Namespaces x, y with ns=x / ns=y; pods a, b, c in each (pod=a...).
    fn world(policies: &[&str]) -> World {
        let mut world = World::default();
        for (n, ns) in ["x", "y"].iter().enumerate() {
            world
                .namespaces
                .insert(ns.to_string(), labels(&[("ns", ns)]));
            for (p, pod) in ["a", "b", "c"].iter().enumerate() {
                world.pods.push(ModelPod {
                    namespace: ns.to_string(),
                    name: pod.to_string(),
                    labels: labels(&[("pod", pod)]),
                    ip: Ipv4Addr::new(10, 244, n as u8 + 1, p as u8 + 2),
                    named_ports: vec![("serve-80".into(), 80, Proto::Tcp)],
                });
            }
        }
        world.policies = policies
            .iter()
            .map(|p| serde_yaml::from_str(p).unwrap())
            .collect();
        world
    }

    fn pod<'a>(world: &'a World, ns: &str, name: &str) -> &'a ModelPod {
        world
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .unwrap()
    }

    #[test]
    fn without_policies_everything_is_allowed_and_deny_all_ingress_isolates() {
        let open = world(&[]);
        assert!(open.allowed(pod(&open, "x", "a"), pod(&open, "y", "b"), 80, Proto::Tcp));
        let deny = world(&["metadata: {name: deny, namespace: x}\nspec: {podSelector: {}}"]);
        assert!(!deny.allowed(pod(&deny, "y", "a"), pod(&deny, "x", "a"), 80, Proto::Tcp));
        // Egress is not isolated by a policy without egress rules (default policyTypes).
        assert!(deny.allowed(pod(&deny, "x", "a"), pod(&deny, "y", "a"), 80, Proto::Tcp));
    }

    #[test]
    fn pod_and_namespace_selectors_in_one_peer_are_anded_in_two_are_ored() {
        let and = world(&["metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]"]);
        let x_a = pod(&and, "x", "a");
        assert!(and.allowed(pod(&and, "y", "b"), x_a, 80, Proto::Tcp));
        assert!(!and.allowed(pod(&and, "y", "a"), x_a, 80, Proto::Tcp));
        assert!(!and.allowed(pod(&and, "x", "b"), x_a, 80, Proto::Tcp));
        let or = world(&["metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]"]);
        let x_a = pod(&or, "x", "a");
        assert!(or.allowed(pod(&or, "y", "a"), x_a, 80, Proto::Tcp));
        assert!(or.allowed(pod(&or, "x", "b"), x_a, 80, Proto::Tcp));
        assert!(
            !or.allowed(pod(&or, "x", "c"), x_a, 80, Proto::Tcp),
            "c is neither in y nor b"
        );
    }

    #[test]
    fn ports_named_ranges_and_protocols() {
        let w = world(&["metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress:
    - ports: [{port: serve-80}]
    - ports: [{port: 8000, endPort: 8010, protocol: UDP}]"]);
        let (from, to) = (pod(&w, "y", "a"), pod(&w, "x", "b"));
        assert!(w.allowed(from, to, 80, Proto::Tcp), "named port");
        assert!(!w.allowed(from, to, 81, Proto::Tcp));
        assert!(w.allowed(from, to, 8005, Proto::Udp), "inside the range");
        assert!(!w.allowed(from, to, 8005, Proto::Tcp), "wrong protocol");
        assert!(!w.allowed(from, to, 8011, Proto::Udp), "past endPort");
    }

    #[test]
    fn ip_blocks_with_except_and_egress_isolation() {
        let w = world(&["metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 10.244.2.0/24, except: [10.244.2.3/32]}}]}]"]);
        let x_a = pod(&w, "x", "a");
        assert!(
            w.allowed(x_a, pod(&w, "y", "a"), 80, Proto::Tcp),
            "10.244.2.2 in the block"
        );
        assert!(
            !w.allowed(x_a, pod(&w, "y", "b"), 80, Proto::Tcp),
            "10.244.2.3 excepted"
        );
        assert!(
            !w.allowed(x_a, pod(&w, "x", "b"), 80, Proto::Tcp),
            "outside the block"
        );
        assert!(
            w.allowed(pod(&w, "x", "b"), x_a, 80, Proto::Tcp),
            "ingress not isolated"
        );
    }

    #[test]
    fn match_expressions_of_each_operator() {
        let l = labels(&[("tier", "web"), ("env", "prod")]);
        let sel = |op: &str, values: &str| -> LabelSelector {
            serde_yaml::from_str(&format!(
                "matchExpressions: [{{key: tier, operator: {op}{values}}}]"
            ))
            .unwrap()
        };
        assert!(selects(&sel("In", ", values: [web, db]"), &l));
        assert!(!selects(&sel("NotIn", ", values: [web]"), &l));
        assert!(selects(&sel("Exists", ""), &l));
        assert!(!selects(&sel("DoesNotExist", ""), &l));
        assert!(
            selects(&sel("NotIn", ", values: [x]"), &labels(&[])),
            "NotIn holds without the key"
        );
    }
}
