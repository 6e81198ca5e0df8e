//! The truth-table scenarios (in the spirit of cyclonus): namespaces x, y, z with pods a, b,
//! c in each, and a sequence of NetworkPolicy sets per scenario. Each step's expected 9×9
//! allow/deny matrix per port and protocol comes from the reference model
//! (`policy_model`), never from the agent.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::policy_model::{Labels, ModelPod, Proto, World};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];
/// What every probed pod serves: TCP 80 and 81, UDP 80 and 81; `serve-80-tcp`-style names.
pub const PROBES: [(u16, Proto); 4] = [
    (80, Proto::Tcp),
    (81, Proto::Tcp),
    (80, Proto::Udp),
    (81, Proto::Udp),
];

fn proto_name(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
        Proto::Sctp => "sctp",
    }
}

/// The 9 pods with their labels and named ports; `ips` gives each (namespace, pod) the
/// address the real cluster assigned.
pub fn world(ips: &BTreeMap<(String, String), Ipv4Addr>) -> World {
    let mut world = World::default();
    for ns in NAMESPACES {
        let labels: Labels = [("ns".to_string(), ns.to_string())].into();
        world.namespaces.insert(ns.to_string(), labels);
        for pod in PODS {
            let key = (ns.to_string(), pod.to_string());
            world.pods.push(ModelPod {
                namespace: ns.to_string(),
                name: pod.to_string(),
                labels: [("pod".to_string(), pod.to_string())].into(),
                ip: ips.get(&key).copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
                named_ports: PROBES
                    .iter()
                    .map(|(port, proto)| {
                        (
                            format!("serve-{port}-{}", proto_name(*proto)),
                            *port,
                            *proto,
                        )
                    })
                    .collect(),
            });
        }
    }
    world
}

/// One scenario: policies (YAML) in force at each step; later steps add or remove some.
pub struct Scenario {
    pub name: String,
    pub steps: Vec<Vec<String>>,
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}"
    )
}

fn single(name: &str, ns: &str, spec: &str) -> Scenario {
    Scenario {
        name: name.to_owned(),
        steps: vec![vec![policy(ns, name, spec)]],
    }
}

/// Every scenario; `ip_of` names a pod's address (for ipBlock scenarios).
pub fn scenarios(ip_of: impl Fn(&str, &str) -> Ipv4Addr) -> Vec<Scenario> {
    let mut out = vec![
        single(
            "deny-all-ingress-x",
            "x",
            "  podSelector: {}\n  policyTypes: [Ingress]\n",
        ),
        single(
            "deny-all-egress-x",
            "x",
            "  podSelector: {}\n  policyTypes: [Egress]\n",
        ),
        single(
            "deny-all-both-y",
            "y",
            "  podSelector: {}\n  policyTypes: [Ingress, Egress]\n",
        ),
        single(
            "allow-all-ingress-x",
            "x",
            "  podSelector: {}\n  ingress: [{}]\n",
        ),
        single(
            "allow-all-egress-x",
            "x",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{}]\n",
        ),
        single(
            "deny-ingress-to-a",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n",
        ),
        single(
            "allow-from-pod-b",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]\n",
        ),
        single(
            "allow-from-namespace-y",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n",
        ),
        single(
            "allow-from-all-namespaces",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {}}]}]\n",
        ),
        single(
            "and-namespace-y-pod-b",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}, podSelector: {matchLabels: {pod: b}}}]}]\n",
        ),
        single(
            "or-namespace-y-pod-b",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]\n",
        ),
        single(
            "pod-b-in-any-namespace",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]\n",
        ),
        single(
            "expr-in",
            "x",
            "  podSelector: {}\n  ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, c]}]}}]}]\n",
        ),
        single(
            "expr-notin",
            "x",
            "  podSelector: {}\n  ingress: [{from: [{podSelector: {matchExpressions: [{key: pod, operator: NotIn, values: [a]}]}}]}]\n",
        ),
        single(
            "expr-exists",
            "x",
            "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: Exists}]}}]}]\n",
        ),
        single(
            "expr-doesnotexist",
            "x",
            "  podSelector: {}\n  ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]\n",
        ),
        single(
            "ns-expr-notin-y",
            "x",
            "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: ns, operator: NotIn, values: [y]}]}}]}]\n",
        ),
        single(
            "select-by-expression",
            "y",
            "  podSelector: {matchExpressions: [{key: pod, operator: In, values: [b, c]}]}\n",
        ),
        single(
            "port-80-tcp",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{port: 80}]}]\n",
        ),
        single(
            "port-81-udp",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{port: 81, protocol: UDP}]}]\n",
        ),
        single(
            "named-port",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{port: serve-81-tcp}]}]\n",
        ),
        single(
            "named-port-udp",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{port: serve-80-udp, protocol: UDP}]}]\n",
        ),
        single(
            "end-port-range",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{port: 79, endPort: 80}]}]\n",
        ),
        single(
            "end-port-range-udp",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{port: 81, endPort: 90, protocol: UDP}]}]\n",
        ),
        single(
            "all-ports-of-udp",
            "x",
            "  podSelector: {}\n  ingress: [{ports: [{protocol: UDP}]}]\n",
        ),
        single(
            "peer-and-port",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 81}]}]\n",
        ),
        single(
            "two-rules",
            "x",
            "  podSelector: {matchLabels: {pod: a}}\n  ingress:\n    - {from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}\n    - {from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{port: 81, protocol: UDP}]}\n",
        ),
        single(
            "egress-to-namespace-y",
            "x",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n",
        ),
        single(
            "egress-to-pod-c-port-80",
            "z",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress: [{to: [{podSelector: {matchLabels: {pod: c}}, namespaceSelector: {}}], ports: [{port: 80}]}]\n",
        ),
        single(
            "egress-udp-only",
            "y",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{ports: [{protocol: UDP}]}]\n",
        ),
        single(
            "default-types-with-egress",
            "x",
            "  podSelector: {matchLabels: {pod: b}}\n  egress: [{to: [{podSelector: {}}]}]\n",
        ),
        single(
            "ingress-and-egress",
            "y",
            "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress, Egress]\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: x}}}]}]\n  egress: [{to: [{namespaceSelector: {matchLabels: {ns: z}}}]}]\n",
        ),
    ];
    let y_b = ip_of("y", "b");
    let z_net = ip_of("z", "a");
    out.push(single(
        "ipblock-pod",
        "x",
        &format!("  podSelector: {{}}\n  ingress: [{{from: [{{ipBlock: {{cidr: {y_b}/32}}}}]}}]\n"),
    ));
    out.push(single(
        "ipblock-except",
        "x",
        &format!(
            "  podSelector: {{}}\n  ingress: [{{from: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{y_b}/32]}}}}]}}]\n"
        ),
    ));
    out.push(single(
        "egress-ipblock-except",
        "x",
        &format!(
            "  podSelector: {{matchLabels: {{pod: a}}}}\n  policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 10.244.0.0/16, except: [{z_net}/32]}}}}]}}]\n"
        ),
    ));
    // Unions and sequences: policies added and removed step by step.
    let deny_x = policy("x", "deny", "  podSelector: {}\n");
    let allow_y = policy(
        "x",
        "allow-y",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}]}]\n",
    );
    let allow_z_udp = policy(
        "x",
        "allow-z-udp",
        "  podSelector: {}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}], ports: [{protocol: UDP}]}]\n",
    );
    let deny_egress_z = policy(
        "z",
        "deny-egress",
        "  podSelector: {}\n  policyTypes: [Egress]\n",
    );
    out.push(Scenario {
        name: "union-grows-then-shrinks".into(),
        steps: vec![
            vec![deny_x.clone()],
            vec![deny_x.clone(), allow_y.clone()],
            vec![deny_x.clone(), allow_y.clone(), allow_z_udp.clone()],
            vec![deny_x.clone(), allow_z_udp.clone()],
            vec![],
        ],
    });
    out.push(Scenario {
        name: "ingress-allowed-but-egress-denied".into(),
        steps: vec![
            vec![allow_z_udp.clone()],
            vec![allow_z_udp, deny_egress_z.clone()],
            vec![deny_egress_z],
        ],
    });
    out.push(Scenario {
        name: "policies-in-every-namespace".into(),
        steps: vec![
            NAMESPACES
                .iter()
                .map(|ns| {
                    policy(
                        ns,
                        "only-same-namespace",
                        "  podSelector: {}\n  ingress: [{from: [{podSelector: {}}]}]\n",
                    )
                })
                .collect(),
        ],
    });
    out.push(single("egress-to-service-backend", "y", "  podSelector: {}\n  policyTypes: [Egress]\n  egress: [{to: [{namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: a}}}], ports: [{port: 80}]}]\n"));
    out.push(single(
        "empty-from-list-is-everyone",
        "z",
        "  podSelector: {}\n  ingress: [{from: [], ports: [{port: 81}]}]\n",
    ));
    out.push(single(
        "select-nothing",
        "x",
        "  podSelector: {matchLabels: {pod: nobody}}\n",
    ));
    out
}

/// The expected matrix for one probe: `[from][to]`, pods in NAMESPACES × PODS order.
pub fn expected(world: &World, port: u16, proto: Proto) -> Vec<Vec<bool>> {
    (world.pods.iter())
        .map(|from| {
            world
                .pods
                .iter()
                .map(|to| world.allowed(from, to, port, proto))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips() -> BTreeMap<(String, String), Ipv4Addr> {
        let mut ips = BTreeMap::new();
        for (n, ns) in NAMESPACES.iter().enumerate() {
            for (p, pod) in PODS.iter().enumerate() {
                ips.insert(
                    (ns.to_string(), pod.to_string()),
                    Ipv4Addr::new(10, 244, n as u8 + 1, p as u8 + 2),
                );
            }
        }
        ips
    }

    #[test]
    fn scenarios_parse_and_give_nine_by_nine_matrices() {
        let ips = ips();
        let all = scenarios(|ns, pod| ips[&(ns.to_string(), pod.to_string())]);
        assert!(all.len() >= 40, "{} scenarios", all.len());
        let mut distinct = std::collections::BTreeSet::new();
        for scenario in &all {
            for step in &scenario.steps {
                let mut world = world(&ips);
                for yaml in step {
                    let policy = serde_yaml::from_str(yaml)
                        .unwrap_or_else(|e| panic!("{}: {e}\n{yaml}", scenario.name));
                    world.policies.push(policy);
                }
                for (port, proto) in PROBES {
                    let matrix = expected(&world, port, proto);
                    assert_eq!((matrix.len(), matrix[0].len()), (9, 9));
                    distinct.insert(format!("{matrix:?}"));
                }
            }
        }
        // The scenarios must exercise many different outcomes, not repeat one.
        assert!(distinct.len() > 30, "{} distinct matrices", distinct.len());
    }

    #[test]
    fn deny_all_ingress_in_x_blocks_exactly_the_column_of_x() {
        let ips = ips();
        let all = scenarios(|ns, pod| ips[&(ns.to_string(), pod.to_string())]);
        let deny = all.iter().find(|s| s.name == "deny-all-ingress-x").unwrap();
        let mut world = world(&ips);
        world
            .policies
            .push(serde_yaml::from_str(&deny.steps[0][0]).unwrap());
        let matrix = expected(&world, 80, Proto::Tcp);
        for (from, row) in matrix.iter().enumerate() {
            for (to, allowed) in row.iter().enumerate() {
                // A pod reaching itself stays on its loopback: always allowed.
                assert_eq!(*allowed, to >= 3 || from == to, "from {from} to {to}");
            }
        }
    }
}
