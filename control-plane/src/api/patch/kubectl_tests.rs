//! Tests replaying the strategic merge patches kubectl 1.20's client-side `apply` computes
//! for common edits of Deployments and Services, and `kubectl scale`'s merge patch.
use serde_json::{Value, json};

use super::test_defs::{DEPLOYMENT, SERVICE, definitions};
use super::{PatchError, PatchType, apply};

fn smp(original: &Value, patch: Value, definition: &str) -> Result<Value, PatchError> {
    apply(
        PatchType::StrategicMerge,
        original,
        &patch,
        &definitions(),
        definition,
    )
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "web", "namespace": "default",
            "labels": { "app": "web", "tier": "frontend" },
            "annotations": {
                "deployment.kubernetes.io/revision": "1",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}",
            },
        },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": "25%" },
            },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "web", "image": "nginx:1.19",
                    "ports": [
                        { "containerPort": 80, "protocol": "TCP" },
                        { "containerPort": 8080, "protocol": "TCP" },
                    ],
                    "env": [{ "name": "A", "value": "1" }, { "name": "B", "value": "2" }],
                }]},
            },
        },
    })
}

fn containers(object: &Value) -> &Value {
    &object["spec"]["template"]["spec"]["containers"]
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|element| element["name"].as_str().unwrap())
        .collect()
}

#[test]
fn removing_a_container_port_and_an_env_var() {
    let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"$setElementOrder/env":[{"name":"A"}],"$setElementOrder/ports":[{"containerPort":80}],"env":[{"$patch":"delete","name":"B"}],"name":"web","ports":[{"$patch":"delete","containerPort":8080}]}]}}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    let mut expected = deployment();
    let web = &mut expected["spec"]["template"]["spec"]["containers"][0];
    web["ports"] = json!([{ "containerPort": 80, "protocol": "TCP" }]);
    web["env"] = json!([{ "name": "A", "value": "1" }]);
    assert_eq!(patched, expected);
}

#[test]
fn changing_an_image_keeps_the_rest_of_the_container() {
    let patch = json!({
        "metadata": { "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"new\":true}" } },
        "spec": { "template": { "spec": {
            "$setElementOrder/containers": [{ "name": "web" }],
            "containers": [{ "image": "nginx:1.21", "name": "web" }],
        }}},
    });
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    let mut expected = deployment();
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.21");
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        json!("{\"new\":true}");
    assert_eq!(patched, expected);
}

#[test]
fn adding_a_container_after_the_existing_one() {
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"web"},{"name":"sidecar"}],
        "containers":[{"image":"busybox","name":"sidecar"}]}}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    assert_eq!(names(containers(&patched)), ["web", "sidecar"]);
    assert_eq!(
        containers(&patched)[1],
        json!({"name": "sidecar", "image": "busybox"})
    );
    assert_eq!(containers(&patched)[0], containers(&deployment())[0]);
}

#[test]
fn adding_a_container_in_front() {
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"init"},{"name":"web"}],
        "containers":[{"image":"busybox","name":"init"}]}}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    assert_eq!(names(containers(&patched)), ["init", "web"]);
}

#[test]
fn reordering_containers_keeps_their_contents() {
    let mut original = deployment();
    containers_mut(&mut original)
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "log", "image": "fluentd" }));
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"log"},{"name":"web"}]}}}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(names(containers(&patched)), ["log", "web"]);
    assert_eq!(containers(&patched)[1], containers(&original)[0]);
}

fn containers_mut(object: &mut Value) -> &mut Value {
    &mut object["spec"]["template"]["spec"]["containers"]
}

#[test]
fn adding_an_env_var_in_the_middle() {
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"web"}],
        "containers":[{"$setElementOrder/env":[{"name":"A"},{"name":"C"},{"name":"B"}],
            "env":[{"name":"C","value":"3"}],"name":"web"}]}}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    assert_eq!(
        containers(&patched)[0]["env"],
        json!([{"name":"A","value":"1"},{"name":"C","value":"3"},{"name":"B","value":"2"}])
    );
}

#[test]
fn server_only_containers_keep_their_place() {
    let mut original = deployment();
    containers_mut(&mut original)
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "istio-proxy", "image": "proxyv2" }));
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"web"}],
        "containers":[{"image":"nginx:1.21","name":"web"}]}}}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(names(containers(&patched)), ["web", "istio-proxy"]);
    assert_eq!(containers(&patched)[0]["image"], "nginx:1.21");
}

#[test]
fn removing_a_label_with_null_and_adding_another() {
    let patch = json!({"metadata":{"labels":{"tier":null,"track":"stable"}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    assert_eq!(
        patched["metadata"]["labels"],
        json!({"app":"web","track":"stable"})
    );
}

#[test]
fn removing_an_annotation_with_null() {
    let patch = json!({"metadata":{"annotations":{"deployment.kubernetes.io/revision":null}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    let annotations = patched["metadata"]["annotations"].as_object().unwrap();
    assert_eq!(annotations.len(), 1);
    assert!(annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
}

#[test]
fn switching_the_strategy_to_recreate_drops_rolling_update() {
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}});
    let patched = smp(&deployment(), patch, DEPLOYMENT).unwrap();
    assert_eq!(patched["spec"]["strategy"], json!({"type":"Recreate"}));
    assert_eq!(patched["spec"]["replicas"], 2);
}

#[test]
fn switching_back_to_rolling_update_with_retain_keys() {
    let mut original = deployment();
    original["spec"]["strategy"] = json!({"type":"Recreate"});
    let patch = json!({"spec":{"strategy":{"$retainKeys":["rollingUpdate","type"],
        "rollingUpdate":{"maxSurge":1},"type":"RollingUpdate"}}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(
        patched["spec"]["strategy"],
        json!({"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}})
    );
}

#[test]
fn switching_a_volume_source_with_retain_keys() {
    let mut original = deployment();
    original["spec"]["template"]["spec"]["volumes"] =
        json!([{"name":"config","configMap":{"name":"c"}},{"name":"tmp","emptyDir":{}}]);
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/volumes":[{"name":"config"},{"name":"tmp"}],
        "volumes":[{"$retainKeys":["name","secret"],"name":"config","secret":{"secretName":"s"}}]}}}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(
        patched["spec"]["template"]["spec"]["volumes"],
        json!([{"name":"config","secret":{"secretName":"s"}},{"name":"tmp","emptyDir":{}}])
    );
}

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web" },
        "spec": {
            "type": "ClusterIP",
            "selector": { "app": "web" },
            "ports": [
                { "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" },
                { "name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP" },
            ],
        },
    })
}

#[test]
fn service_ports_merge_by_port() {
    let patch = json!({"spec":{"$setElementOrder/ports":[{"port":80},{"port":443}],
        "ports":[{"port":443,"targetPort":9443}]}});
    let patched = smp(&service(), patch, SERVICE).unwrap();
    assert_eq!(
        patched["spec"]["ports"],
        json!([
            { "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" },
            { "name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP" },
        ])
    );
}

#[test]
fn service_port_removed_and_another_added() {
    let patch = json!({"spec":{"$setElementOrder/ports":[{"port":80},{"port":9090}],
        "ports":[{"name":"metrics","port":9090,"targetPort":9090},{"$patch":"delete","port":443}]}});
    let patched = smp(&service(), patch, SERVICE).unwrap();
    let ports: Vec<i64> = patched["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|port| port["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [80, 9090]);
    assert_eq!(patched["spec"]["ports"][1]["name"], "metrics");
}

#[test]
fn kubectl_scale_merge_patch() {
    let patch = json!({"spec":{"replicas":5}});
    let patched = apply(
        PatchType::Merge,
        &deployment(),
        &patch,
        &definitions(),
        DEPLOYMENT,
    );
    let mut expected = deployment();
    expected["spec"]["replicas"] = json!(5);
    assert_eq!(patched.unwrap(), expected);
}

#[test]
fn scale_as_strategic_merge_patch() {
    let patched = smp(&deployment(), json!({"spec":{"replicas":0}}), DEPLOYMENT).unwrap();
    assert_eq!(patched["spec"]["replicas"], 0);
    assert_eq!(containers(&patched), containers(&deployment()));
}

#[test]
fn changing_args_replaces_the_atomic_list() {
    let mut original = deployment();
    containers_mut(&mut original)[0]["args"] = json!(["--a", "--b"]);
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"web"}],
        "containers":[{"args":["--x"],"name":"web"}]}}}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(containers(&patched)[0]["args"], json!(["--x"]));
}

#[test]
fn finalizer_removed_with_parallel_deletion_list() {
    let mut original = deployment();
    original["metadata"]["finalizers"] = json!(["a", "b", "c"]);
    let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["b"],
        "$setElementOrder/finalizers":["a","c"]}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(patched["metadata"]["finalizers"], json!(["a", "c"]));
}

#[test]
fn finalizer_added_in_the_given_order() {
    let mut original = deployment();
    original["metadata"]["finalizers"] = json!(["a"]);
    let patch = json!({"metadata":{"$setElementOrder/finalizers":["a","b"],"finalizers":["b"]}});
    let patched = smp(&original, patch, DEPLOYMENT).unwrap();
    assert_eq!(patched["metadata"]["finalizers"], json!(["a", "b"]));
}
