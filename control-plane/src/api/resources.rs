//! The served resources: what discovery advertises, how each maps to store keys and which
//! verbs and subresources it has.

pub const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Log,
    /// A namespace's finalizers, emptied by the namespace controller once its content is gone.
    Finalize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Finalize => "finalize",
        }
    }

    pub fn parse(name: &str) -> Option<Subresource> {
        [
            Subresource::Status,
            Subresource::Scale,
            Subresource::Binding,
            Subresource::Log,
            Subresource::Finalize,
        ]
        .into_iter()
        .find(|subresource| subresource.name() == name)
    }

    /// (kind, group, version, verbs) as discovery lists the subresource.
    pub fn discovery(
        self,
        parent_kind: &'static str,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static [&'static str],
    ) {
        match self {
            Subresource::Status | Subresource::Finalize => (parent_kind, "", "", STATUS_VERBS),
            Subresource::Scale => ("Scale", "autoscaling", "v1", STATUS_VERBS),
            Subresource::Binding => ("Binding", "", "", CREATE_ONLY),
            Subresource::Log => ("Pod", "", "", &["get"]),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix of every object of this resource.
    pub fn prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The prefix of the objects in one namespace (or all, for cluster-scoped resources).
    pub fn scope_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(namespace)) => format!("{}{namespace}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.scope_prefix(namespace))
    }

    pub fn has(&self, subresource: Subresource) -> bool {
        self.subresources.contains(&subresource)
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     short: $short:expr, categories: $categories:expr, sub: $sub:expr) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: $short,
            categories: $categories,
            verbs: READ_WRITE,
            subresources: $sub,
        }
    };
}

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];
use Subresource::{Binding, Finalize, Log, Scale, Status};

pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", false, short: &["ns"], categories: NONE, sub: &[Status, Finalize]),
    resource!("", "v1", "Pod", "pods", "pod", true, short: &["po"], categories: ALL, sub: &[Status, Binding, Log]),
    resource!("", "v1", "Service", "services", "service", true, short: &["svc"], categories: ALL, sub: &[Status]),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true, short: &["ep"], categories: NONE, sub: &[]),
    resource!("", "v1", "Node", "nodes", "node", false, short: &["no"], categories: NONE, sub: &[Status]),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true, short: &["cm"], categories: NONE, sub: &[]),
    resource!("", "v1", "Secret", "secrets", "secret", true, short: NONE, categories: NONE, sub: &[]),
    resource!("", "v1", "Event", "events", "event", true, short: &["ev"], categories: NONE, sub: &[]),
    Resource {
        group: "",
        version: "v1",
        kind: "Binding",
        plural: "bindings",
        singular: "binding",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        verbs: CREATE_ONLY,
        subresources: &[],
    },
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, short: NONE, categories: NONE, sub: &[]),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, short: NONE, categories: NONE, sub: &[]),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", true, short: &["deploy"], categories: ALL, sub: &[Status, Scale]),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, short: &["rs"], categories: ALL, sub: &[Status, Scale]),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, short: &["ds"], categories: ALL, sub: &[Status]),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true, short: &["netpol"], categories: NONE, sub: &[]),
];

/// The groups other than core, in the order discovery lists them.
pub const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("coordination.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
    ("networking.k8s.io", "v1"),
];

pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|resource| {
        resource.group == group && resource.version == version && resource.plural == plural
    })
}

/// A served resource the code names (all served versions are v1), for callers that
/// report a missing one as an API error.
pub fn require(group: &str, plural: &str) -> Result<&'static Resource, super::status::ApiError> {
    find(group, "v1", plural).ok_or(super::status::ApiError::NoRoute)
}

pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|resource| resource.group == group && resource.kind == kind)
}

pub fn in_group_version(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    let group = group.to_owned();
    let version = version.to_owned();
    RESOURCES
        .iter()
        .filter(move |resource| resource.group == group && resource.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_namespace_never_match_another_with_the_same_start() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("a"), "web"), "/registry/core/pods/a/web");
        assert!(
            !pods
                .key(Some("ab"), "web")
                .starts_with(&pods.scope_prefix(Some("a")))
        );
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/core/nodes/n1");
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().prefix(),
            "/registry/apps/deployments/"
        );
    }

    #[test]
    fn every_group_has_resources_and_kinds_are_unique() {
        for (group, version) in GROUPS {
            assert!(in_group_version(group, version).count() > 0, "{group}");
        }
        for resource in RESOURCES {
            assert_eq!(by_kind(resource.group, resource.kind), Some(resource));
        }
    }
}
