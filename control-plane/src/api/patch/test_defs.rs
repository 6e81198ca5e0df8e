//! Hand-built definitions for the patch tests: the parts of Deployment, Pod, Service and
//! ConfigMap the tests touch, with the upstream patch strategies and merge keys.
use serde_json::{Value, json};

use crate::api::schema::Definitions;

pub(super) const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
pub(super) const SERVICE: &str = "io.k8s.api.core.v1.Service";
pub(super) const CONFIG_MAP: &str = "io.k8s.api.core.v1.ConfigMap";
pub(super) const POD: &str = "io.k8s.api.core.v1.Pod";

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/definitions/{name}") })
}

fn merge_list(item: &str, key: &str) -> Value {
    json!({
        "type": "array",
        "items": reference(item),
        "x-kubernetes-patch-strategy": "merge",
        "x-kubernetes-patch-merge-key": key,
    })
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

pub(super) fn definitions() -> Definitions {
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    let mut strategy = reference("io.k8s.api.apps.v1.DeploymentStrategy");
    strategy["x-kubernetes-patch-strategy"] = json!("retainKeys");
    let mut volumes = merge_list("io.k8s.api.core.v1.Volume", "name");
    volumes["x-kubernetes-patch-strategy"] = json!("merge,retainKeys");
    let definitions = json!({
        DEPLOYMENT: { "type": "object", "properties": {
            "apiVersion": { "type": "string" }, "kind": { "type": "string" },
            "metadata": reference(meta),
            "spec": reference("io.k8s.api.apps.v1.DeploymentSpec"),
        }},
        "io.k8s.api.apps.v1.DeploymentSpec": { "type": "object", "properties": {
            "replicas": { "type": "integer" },
            "selector": reference("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"),
            "strategy": strategy,
            "template": reference("io.k8s.api.core.v1.PodTemplateSpec"),
        }},
        "io.k8s.api.apps.v1.DeploymentStrategy": { "type": "object", "properties": {
            "type": { "type": "string" },
            "rollingUpdate": reference("io.k8s.api.apps.v1.RollingUpdateDeployment"),
        }},
        "io.k8s.api.apps.v1.RollingUpdateDeployment": { "type": "object", "properties": {
            "maxSurge": { "type": "string" }, "maxUnavailable": { "type": "string" },
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector": { "type": "object", "properties": {
            "matchLabels": string_map(),
        }},
        "io.k8s.api.core.v1.PodTemplateSpec": { "type": "object", "properties": {
            "metadata": reference(meta),
            "spec": reference("io.k8s.api.core.v1.PodSpec"),
        }},
        POD: { "type": "object", "properties": {
            "metadata": reference(meta),
            "spec": reference("io.k8s.api.core.v1.PodSpec"),
        }},
        "io.k8s.api.core.v1.PodSpec": { "type": "object", "properties": {
            "containers": merge_list("io.k8s.api.core.v1.Container", "name"),
            "initContainers": merge_list("io.k8s.api.core.v1.Container", "name"),
            "volumes": volumes,
            "tolerations": { "type": "array", "items": reference("io.k8s.api.core.v1.Toleration") },
            "nodeSelector": string_map(),
        }},
        "io.k8s.api.core.v1.Toleration": { "type": "object", "properties": {
            "key": { "type": "string" }, "operator": { "type": "string" },
        }},
        "io.k8s.api.core.v1.Container": { "type": "object", "properties": {
            "name": { "type": "string" }, "image": { "type": "string" },
            "args": { "type": "array", "items": { "type": "string" } },
            "env": merge_list("io.k8s.api.core.v1.EnvVar", "name"),
            "ports": merge_list("io.k8s.api.core.v1.ContainerPort", "containerPort"),
            "volumeMounts": merge_list("io.k8s.api.core.v1.VolumeMount", "mountPath"),
            "resources": reference("io.k8s.api.core.v1.ResourceRequirements"),
        }},
        "io.k8s.api.core.v1.EnvVar": { "type": "object", "properties": {
            "name": { "type": "string" }, "value": { "type": "string" },
            "valueFrom": { "type": "object" },
        }},
        "io.k8s.api.core.v1.ContainerPort": { "type": "object", "properties": {
            "containerPort": { "type": "integer" }, "name": { "type": "string" },
            "protocol": { "type": "string" },
        }},
        "io.k8s.api.core.v1.VolumeMount": { "type": "object", "properties": {
            "mountPath": { "type": "string" }, "name": { "type": "string" },
        }},
        "io.k8s.api.core.v1.ResourceRequirements": { "type": "object", "properties": {
            "limits": string_map(), "requests": string_map(),
        }},
        "io.k8s.api.core.v1.Volume": { "type": "object", "properties": {
            "name": { "type": "string" },
            "configMap": { "type": "object" }, "secret": { "type": "object" },
            "emptyDir": { "type": "object" },
        }},
        meta: { "type": "object", "properties": {
            "name": { "type": "string" }, "namespace": { "type": "string" },
            "labels": string_map(), "annotations": string_map(),
            "finalizers": {
                "type": "array", "items": { "type": "string" },
                "x-kubernetes-patch-strategy": "merge",
            },
            "ownerReferences": merge_list(
                "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "uid"),
        }},
        "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference": { "type": "object", "properties": {
            "uid": { "type": "string" }, "name": { "type": "string" },
        }},
        SERVICE: { "type": "object", "properties": {
            "metadata": reference(meta),
            "spec": reference("io.k8s.api.core.v1.ServiceSpec"),
        }},
        "io.k8s.api.core.v1.ServiceSpec": { "type": "object", "properties": {
            "ports": merge_list("io.k8s.api.core.v1.ServicePort", "port"),
            "selector": string_map(),
            "type": { "type": "string" },
        }},
        "io.k8s.api.core.v1.ServicePort": { "type": "object", "properties": {
            "port": { "type": "integer" }, "targetPort": { "type": "integer" },
            "name": { "type": "string" }, "protocol": { "type": "string" },
        }},
        CONFIG_MAP: { "type": "object", "properties": {
            "metadata": reference(meta),
            "data": string_map(),
        }},
    });
    let Value::Object(map) = definitions else {
        unreachable!("json! of an object literal")
    };
    Definitions::from_map(map)
}
