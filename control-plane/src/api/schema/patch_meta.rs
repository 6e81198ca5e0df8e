//! Strategic-merge-patch metadata of the served types, copied from the `patchStrategy` /
//! `patchMergeKey` struct tags of k8s.io/api and k8s.io/apimachinery (as of Kubernetes 1.37).
//!
//! Only fields reachable from the served kinds are listed; tagged fields of unserved types
//! (StatefulSetStatus, PersistentVolumeClaimStatus, ServiceAccount, ReplicationControllerStatus,
//! ComponentStatus, ServiceCIDRStatus) are left out. DaemonSetSpec.updateStrategy carries no
//! tag upstream, so it is replaced whole like any untagged struct.

/// One tagged field: `definition.property` patches with `strategy` ("merge", "retainKeys",
/// "merge,retainKeys"); merge lists of objects match elements by `merge_key`, merge lists of
/// primitives (no key) by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchMeta {
    pub definition: &'static str,
    pub property: &'static str,
    pub strategy: &'static str,
    pub merge_key: Option<&'static str>,
}

const fn merge(definition: &'static str, property: &'static str, key: &'static str) -> PatchMeta {
    PatchMeta {
        definition,
        property,
        strategy: "merge",
        merge_key: Some(key),
    }
}

const fn merge_retain(
    definition: &'static str,
    property: &'static str,
    key: &'static str,
) -> PatchMeta {
    PatchMeta {
        strategy: "merge,retainKeys",
        ..merge(definition, property, key)
    }
}

const fn primitive_merge(definition: &'static str, property: &'static str) -> PatchMeta {
    PatchMeta {
        definition,
        property,
        strategy: "merge",
        merge_key: None,
    }
}

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_STATUS: &str = "io.k8s.api.core.v1.PodStatus";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL: &str = "io.k8s.api.core.v1.EphemeralContainer";
const CONTAINER_STATUS: &str = "io.k8s.api.core.v1.ContainerStatus";
const NODE_STATUS: &str = "io.k8s.api.core.v1.NodeStatus";
const CLAIM_STATUS: &str = "io.k8s.api.core.v1.NodeAllocatableResourceClaimStatus";

/// Every tagged field reachable from the served kinds.
pub const TABLE: &[PatchMeta] = &[
    // meta/v1 types.go
    merge(META, "ownerReferences", "uid"),
    primitive_merge(META, "finalizers"),
    // core/v1 types.go: PodSpec
    merge_retain(POD_SPEC, "volumes", "name"),
    merge(POD_SPEC, "initContainers", "name"),
    merge(POD_SPEC, "containers", "name"),
    merge(POD_SPEC, "ephemeralContainers", "name"),
    merge(POD_SPEC, "imagePullSecrets", "name"),
    merge(POD_SPEC, "hostAliases", "ip"),
    merge(POD_SPEC, "topologySpreadConstraints", "topologyKey"),
    merge(POD_SPEC, "schedulingGates", "name"),
    merge_retain(POD_SPEC, "resourceClaims", "name"),
    merge(POD_SPEC, "evictionResponders", "name"),
    // Container and EphemeralContainerCommon (inlined into EphemeralContainer)
    merge(CONTAINER, "ports", "containerPort"),
    merge(CONTAINER, "env", "name"),
    merge(CONTAINER, "volumeMounts", "mountPath"),
    merge(CONTAINER, "volumeDevices", "devicePath"),
    merge(EPHEMERAL, "ports", "containerPort"),
    merge(EPHEMERAL, "env", "name"),
    merge(EPHEMERAL, "volumeMounts", "mountPath"),
    merge(EPHEMERAL, "volumeDevices", "devicePath"),
    // PodStatus and what it contains
    merge(POD_STATUS, "conditions", "type"),
    merge(POD_STATUS, "hostIPs", "ip"),
    merge(POD_STATUS, "podIPs", "ip"),
    merge_retain(POD_STATUS, "resourceClaimStatuses", "name"),
    merge(
        POD_STATUS,
        "nodeAllocatableResourceClaimStatuses",
        "resourceClaimName",
    ),
    merge(CONTAINER_STATUS, "volumeMounts", "mountPath"),
    merge(CONTAINER_STATUS, "allocatedResourcesStatus", "name"),
    merge(
        "io.k8s.api.core.v1.PodVolumeHealth",
        "healthConditions",
        "status",
    ),
    merge(CLAIM_STATUS, "mapping", "name"),
    merge(CLAIM_STATUS, "overhead", "name"),
    // Service, Node, Namespace
    merge("io.k8s.api.core.v1.ServiceSpec", "ports", "port"),
    merge("io.k8s.api.core.v1.ServiceStatus", "conditions", "type"),
    primitive_merge("io.k8s.api.core.v1.NodeSpec", "podCIDRs"),
    merge(NODE_STATUS, "conditions", "type"),
    merge(NODE_STATUS, "addresses", "type"),
    merge("io.k8s.api.core.v1.NamespaceStatus", "conditions", "type"),
    // apps/v1 types.go
    PatchMeta {
        definition: "io.k8s.api.apps.v1.DeploymentSpec",
        property: "strategy",
        strategy: "retainKeys",
        merge_key: None,
    },
    merge("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "type"),
    merge("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "type"),
];

/// The patch metadata of `definition.property`, if the field is tagged.
pub fn lookup(definition: &str, property: &str) -> Option<&'static PatchMeta> {
    TABLE
        .iter()
        .find(|meta| meta.definition == definition && meta.property == property)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name_and_volumes_retain_keys() {
        let containers = lookup(POD_SPEC, "containers").expect("containers tagged");
        assert_eq!(
            (containers.strategy, containers.merge_key),
            ("merge", Some("name"))
        );
        let volumes = lookup(POD_SPEC, "volumes").expect("volumes tagged");
        assert_eq!(volumes.strategy, "merge,retainKeys");
        let ports = lookup(CONTAINER, "ports").expect("ports tagged");
        assert_eq!(ports.merge_key, Some("containerPort"));
        let finalizers = lookup(META, "finalizers").expect("finalizers tagged");
        assert_eq!(finalizers.merge_key, None);
    }

    #[test]
    fn untagged_fields_have_no_meta() {
        assert!(lookup(POD_SPEC, "tolerations").is_none());
        assert!(lookup("io.k8s.api.apps.v1.DaemonSetSpec", "updateStrategy").is_none());
    }

    #[test]
    fn entries_are_unique_and_strategies_known() {
        for (index, meta) in TABLE.iter().enumerate() {
            assert!(matches!(
                meta.strategy,
                "merge" | "retainKeys" | "merge,retainKeys"
            ));
            let first = TABLE.iter().position(|other| {
                (other.definition, other.property) == (meta.definition, meta.property)
            });
            assert_eq!(first, Some(index), "duplicate {meta:?}");
        }
    }
}
