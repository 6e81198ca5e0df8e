//! NetworkPolicy (networking.k8s.io/v1) read into the form the compiler needs, validated on
//! the way in: every error names the policy and the field, and a policy that fails is not
//! half-applied.
use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::selector::Selector;
use crate::objects::{Checker, InvalidObject, ObjectName};
use crate::services::Protocol;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyDef {
    pub name: ObjectName,
    /// metadata.resourceVersion, reported back so a caller can tell which version is in force.
    pub revision: String,
    pub pod_selector: Selector,
    /// `Some` when the policy applies to ingress (and so isolates the pods it selects).
    pub ingress: Option<Vec<RuleDef>>,
    pub egress: Option<Vec<RuleDef>>,
}

/// One ingress or egress rule: it allows traffic matching any peer on any port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleDef {
    /// `None`: `from`/`to` absent or empty, every peer.
    pub peers: Option<Vec<PeerDef>>,
    /// `None`: `ports` absent or empty, every port of every protocol.
    pub ports: Option<Vec<PortRule>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerDef {
    Pods {
        namespaces: NamespaceScope,
        pods: Selector,
    },
    Block {
        cidr: Ipv4Net,
        except: Vec<Ipv4Net>,
    },
    /// An IPv6 ipBlock: valid, but the IPv4 datapath never sees such an address.
    NoIpv4,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceScope {
    /// No namespaceSelector: the policy's own namespace.
    Own(String),
    Matching(Selector),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    pub protocol: Protocol,
    pub port: PortMatch,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortMatch {
    Any,
    /// Inclusive; a single port is `Range(p, p)`.
    Range(u16, u16),
    /// A container port name, resolved on the pod that receives the connection.
    Named(String),
}

impl PolicyDef {
    pub fn from_k8s(policy: &NetworkPolicy) -> Result<Self, InvalidObject> {
        let check = Checker::new("NetworkPolicy", &policy.metadata);
        let name = check.name(&policy.metadata)?;
        let Some(spec) = &policy.spec else {
            return check.fail("spec", "required");
        };
        let pod_selector = selector(&check, spec.pod_selector.as_ref(), "spec.podSelector")?;
        let (mut ingress_type, mut egress_type) = (false, false);
        match &spec.policy_types {
            Some(types) => {
                for (index, kind) in types.iter().enumerate() {
                    match kind.as_str() {
                        "Ingress" => ingress_type = true,
                        "Egress" => egress_type = true,
                        other => {
                            return check.fail(
                                format!("spec.policyTypes[{index}]"),
                                format!("{other:?} is not Ingress or Egress"),
                            );
                        }
                    }
                }
            }
            // The API's default: Ingress always, Egress when the policy has egress rules.
            None => (ingress_type, egress_type) = (true, spec.egress.is_some()),
        }
        let rules = |kind: &str, peers_name: &str, rules: Vec<RawRule<'_>>| {
            (rules.into_iter().enumerate())
                .map(|(index, (peers, ports))| {
                    let field = format!("spec.{kind}[{index}]");
                    rule_def(&check, &name.namespace, &field, peers_name, peers, ports)
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let ingress = rules(
            "ingress",
            "from",
            (spec.ingress.iter().flatten())
                .map(|r| (r.from.as_deref(), r.ports.as_deref()))
                .collect(),
        )?;
        let egress = rules(
            "egress",
            "to",
            (spec.egress.iter().flatten())
                .map(|r| (r.to.as_deref(), r.ports.as_deref()))
                .collect(),
        )?;
        Ok(PolicyDef {
            name,
            revision: policy.metadata.resource_version.clone().unwrap_or_default(),
            pod_selector,
            ingress: ingress_type.then_some(ingress),
            egress: egress_type.then_some(egress),
        })
    }
}

/// A rule as the API spells it: its peers (`from` or `to`) and its ports.
type RawRule<'a> = (
    Option<&'a [NetworkPolicyPeer]>,
    Option<&'a [NetworkPolicyPort]>,
);

fn selector(
    check: &Checker,
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    field: &str,
) -> Result<Selector, InvalidObject> {
    match selector {
        None => Ok(Selector::default()),
        Some(selector) => {
            Selector::parse(selector, field).or_else(|err| check.fail(err.field, err.message))
        }
    }
}

fn rule_def(
    check: &Checker,
    namespace: &str,
    field: &str,
    peers_name: &str,
    peers: Option<&[NetworkPolicyPeer]>,
    ports: Option<&[NetworkPolicyPort]>,
) -> Result<RuleDef, InvalidObject> {
    let peers = match peers.filter(|p| !p.is_empty()) {
        None => None,
        Some(peers) => Some(
            (peers.iter().enumerate())
                .map(|(i, p)| peer_def(check, namespace, &format!("{field}.{peers_name}[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let ports = match ports.filter(|p| !p.is_empty()) {
        None => None,
        Some(ports) => Some(
            (ports.iter().enumerate())
                .map(|(i, p)| port_rule(check, &format!("{field}.ports[{i}]"), p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(RuleDef { peers, ports })
}

fn peer_def(
    check: &Checker,
    namespace: &str,
    field: &str,
    peer: &NetworkPolicyPeer,
) -> Result<PeerDef, InvalidObject> {
    if let Some(block) = &peer.ip_block {
        if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
            return check.fail(field, "ipBlock cannot be combined with a selector");
        }
        let cidr = match block.cidr.parse::<IpNet>() {
            Ok(IpNet::V4(cidr)) => cidr,
            Ok(IpNet::V6(_)) => return Ok(PeerDef::NoIpv4),
            Err(_) => {
                return check.fail(
                    format!("{field}.ipBlock.cidr"),
                    format!("{:?} is not a CIDR", block.cidr),
                );
            }
        };
        let mut except = Vec::new();
        for (index, text) in block.except.iter().flatten().enumerate() {
            let fail =
                |message: String| check.fail(format!("{field}.ipBlock.except[{index}]"), message);
            match text.parse::<Ipv4Net>() {
                Ok(net) if cidr.contains(&net) && net.prefix_len() > cidr.prefix_len() => {
                    except.push(net.trunc())
                }
                Ok(_) => return fail(format!("{text:?} is not strictly inside {cidr}")),
                Err(_) => return fail(format!("{text:?} is not an IPv4 CIDR")),
            }
        }
        return Ok(PeerDef::Block {
            cidr: cidr.trunc(),
            except,
        });
    }
    if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
        return check.fail(
            field,
            "a peer needs podSelector, namespaceSelector or ipBlock",
        );
    }
    let namespaces = match &peer.namespace_selector {
        Some(_) => NamespaceScope::Matching(selector(
            check,
            peer.namespace_selector.as_ref(),
            &format!("{field}.namespaceSelector"),
        )?),
        None => NamespaceScope::Own(namespace.to_owned()),
    };
    let pods = selector(
        check,
        peer.pod_selector.as_ref(),
        &format!("{field}.podSelector"),
    )?;
    Ok(PeerDef::Pods { namespaces, pods })
}

fn port_rule(
    check: &Checker,
    field: &str,
    port: &NetworkPolicyPort,
) -> Result<PortRule, InvalidObject> {
    let protocol = check.protocol(format!("{field}.protocol"), port.protocol.as_deref())?;
    let port = match (&port.port, port.end_port) {
        (None, None) => PortMatch::Any,
        (None, Some(_)) => return check.fail(format!("{field}.endPort"), "needs a numeric port"),
        (Some(IntOrString::Int(number)), end) => {
            let start = check.port(format!("{field}.port"), *number)?;
            let end = match end {
                None => start,
                Some(end) => {
                    let end = check.port(format!("{field}.endPort"), end)?;
                    if end < start {
                        return check.fail(
                            format!("{field}.endPort"),
                            format!("{end} is below port {start}"),
                        );
                    }
                    end
                }
            };
            PortMatch::Range(start, end)
        }
        (Some(IntOrString::String(name)), None) if !name.is_empty() => {
            PortMatch::Named(name.clone())
        }
        (Some(IntOrString::String(_)), None) => {
            return check.fail(format!("{field}.port"), "empty port name");
        }
        (Some(IntOrString::String(_)), Some(_)) => {
            return check.fail(
                format!("{field}.endPort"),
                "needs a numeric port, not a name",
            );
        }
    };
    Ok(PortRule { protocol, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<PolicyDef, InvalidObject> {
        let yaml = format!("metadata: {{name: p, namespace: x}}\nspec:\n{spec}");
        PolicyDef::from_k8s(&serde_yaml::from_str(&yaml).unwrap())
    }

    #[test]
    fn policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() {
        let ingress_only = parse("  podSelector: {}").unwrap();
        assert_eq!(ingress_only.ingress, Some(vec![]));
        assert_eq!(ingress_only.egress, None);
        let both = parse("  podSelector: {}\n  egress: [{}]").unwrap();
        assert!(both.ingress.is_some() && both.egress.as_ref().unwrap().len() == 1);
        let egress = parse("  podSelector: {}\n  policyTypes: [Egress]").unwrap();
        assert_eq!((egress.ingress, egress.egress), (None, Some(vec![])));
    }

    #[test]
    fn peers_ports_and_blocks_are_read() {
        let def = parse(
            "  podSelector: {matchLabels: {app: web}}
  ingress:
    - from:
        - podSelector: {matchLabels: {app: api}}
        - namespaceSelector: {}
          podSelector: {}
        - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
        - ipBlock: {cidr: 'fd00::/8'}
      ports: [{port: 80}, {port: http, protocol: UDP}, {port: 8000, endPort: 8080}, {protocol: SCTP}]",
        )
        .unwrap();
        let rule = &def.ingress.unwrap()[0];
        let peers = rule.peers.as_ref().unwrap();
        assert!(
            matches!(&peers[0], PeerDef::Pods { namespaces: NamespaceScope::Own(ns), .. } if ns == "x")
        );
        assert!(matches!(
            &peers[1],
            PeerDef::Pods {
                namespaces: NamespaceScope::Matching(_),
                ..
            }
        ));
        assert_eq!(
            peers[2],
            PeerDef::Block {
                cidr: "10.0.0.0/8".parse().unwrap(),
                except: vec!["10.1.0.0/16".parse().unwrap()]
            }
        );
        assert_eq!(peers[3], PeerDef::NoIpv4);
        let ports = rule.ports.as_ref().unwrap();
        assert_eq!(ports[0].port, PortMatch::Range(80, 80));
        assert_eq!(ports[0].protocol, Protocol::Tcp);
        assert_eq!(
            ports[1],
            PortRule {
                protocol: Protocol::Udp,
                port: PortMatch::Named("http".into())
            }
        );
        assert_eq!(ports[2].port, PortMatch::Range(8000, 8080));
        assert_eq!(
            ports[3],
            PortRule {
                protocol: Protocol::Sctp,
                port: PortMatch::Any
            }
        );
    }

    #[test]
    fn malformed_policies_name_the_field() {
        let cases = [
            (
                "  podSelector: {}\n  policyTypes: [Sideways]",
                "spec.policyTypes[0]",
            ),
            (
                "  podSelector: {matchExpressions: [{key: a, operator: Is}]}",
                "spec.podSelector.matchExpressions[0]",
            ),
            (
                "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]",
                "spec.ingress[0].from[0].ipBlock.cidr",
            ),
            (
                "  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [11.0.0.0/16]}}]}]",
                "except[0]",
            ),
            (
                "  podSelector: {}\n  ingress: [{from: [{}]}]",
                "spec.ingress[0].from[0]",
            ),
            (
                "  podSelector: {}\n  egress: [{ports: [{port: 90, endPort: 80}]}]",
                "spec.egress[0].ports[0].endPort",
            ),
            (
                "  podSelector: {}\n  egress: [{ports: [{port: 0}]}]",
                "spec.egress[0].ports[0].port",
            ),
            (
                "  podSelector: {}\n  egress: [{ports: [{port: 80, protocol: ICMP}]}]",
                "protocol",
            ),
            (
                "  podSelector: {}\n  egress: [{ports: [{port: web, endPort: 90}]}]",
                "endPort",
            ),
        ];
        for (spec, field) in cases {
            let err = parse(spec).unwrap_err().to_string();
            assert!(
                err.contains("NetworkPolicy x/p") && err.contains(field),
                "{spec}: {err}"
            );
        }
    }
}
