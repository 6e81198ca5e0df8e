//! Tests of strategic merge patch on lists: merge by key, `$patch` elements, primitive
//! unions and deletions, atomic lists, and element order (cases from apimachinery's tests).
use serde_json::{Value, json};

use super::test_defs::{POD, definitions};
use super::{PatchError, PatchType, apply};

fn smp(original: Value, patch: Value) -> Result<Value, PatchError> {
    apply(
        PatchType::StrategicMerge,
        &original,
        &patch,
        &definitions(),
        POD,
    )
}

fn pod_containers(names: &[(&str, Option<&str>)]) -> Value {
    let containers: Vec<Value> = names
        .iter()
        .map(|(name, image)| match image {
            Some(image) => json!({ "name": name, "image": image }),
            None => json!({ "name": name }),
        })
        .collect();
    json!({ "spec": { "containers": containers } })
}

fn finalizers(list: Value) -> Value {
    json!({ "metadata": { "finalizers": list } })
}

fn error_text(result: Result<Value, PatchError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn merge_list_updates_and_appends_by_key() {
    let original = pod_containers(&[("a", Some("1")), ("b", Some("2"))]);
    let patch = json!({"spec":{"containers":[{"name":"b","image":"3"},{"name":"c"}]}});
    // Without $setElementOrder, new elements come first (upstream mergeSortedSlice).
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"spec":{"containers":[{"name":"a","image":"1"},{"name":"b","image":"3"},{"name":"c"}]}})
    );
}

#[test]
fn new_primitives_without_order_come_first_as_upstream() {
    let patched = smp(
        finalizers(json!(["a"])),
        json!({"metadata":{"finalizers":["b"]}}),
    );
    assert_eq!(patched.unwrap(), finalizers(json!(["b", "a"])));
}

#[test]
fn primitive_union_has_no_duplicates() {
    let patched = smp(
        finalizers(json!(["a", "b"])),
        json!({"metadata":{"finalizers":["b","a","a"]}}),
    );
    assert_eq!(patched.unwrap(), finalizers(json!(["b", "a"])));
}

#[test]
fn delete_from_primitive_list_removes_all_occurrences() {
    let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["b","zz"]}});
    let patched = smp(finalizers(json!(["a", "b", "c", "b"])), patch);
    assert_eq!(patched.unwrap(), finalizers(json!(["a", "c"])));
}

#[test]
fn delete_from_an_absent_primitive_list_adds_nothing() {
    let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}});
    assert_eq!(
        smp(json!({"metadata":{}}), patch).unwrap(),
        json!({"metadata":{}})
    );
}

#[test]
fn delete_from_primitive_list_works_on_atomic_lists_too() {
    let original = json!({"spec":{"containers":[{"name":"w","args":["1","2","3"]}]}});
    let patch = json!({"spec":{"containers":[{"name":"w","$deleteFromPrimitiveList/args":["2"]}]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"spec":{"containers":[{"name":"w","args":["1","3"]}]}})
    );
}

#[test]
fn adding_and_deleting_primitives_with_order() {
    // apimachinery "add and delete items in lists of scalars", three-way case.
    let patch = json!({"metadata":{"$setElementOrder/finalizers":["1","2","4"],
        "$deleteFromPrimitiveList/finalizers":["3"]}});
    let patched = smp(finalizers(json!(["1", "2", "3", "4"])), patch);
    assert_eq!(patched.unwrap(), finalizers(json!(["1", "2", "4"])));
}

#[test]
fn added_primitive_keeps_server_only_neighbours() {
    // apimachinery "add an item in a list of primitives and preserve order".
    let patch =
        json!({"metadata":{"$setElementOrder/finalizers":["3","1","2"],"finalizers":["3"]}});
    let patched = smp(finalizers(json!(["1", "4", "2"])), patch);
    assert_eq!(patched.unwrap(), finalizers(json!(["3", "1", "4", "2"])));
}

#[test]
fn delete_element_by_merge_key() {
    let original = pod_containers(&[("a", None), ("b", None), ("c", None)]);
    let patch = json!({"spec":{"containers":[{"$patch":"delete","name":"b"}]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        pod_containers(&[("a", None), ("c", None)])
    );
}

#[test]
fn delete_of_a_missing_element_is_harmless() {
    let original = pod_containers(&[("a", None)]);
    let patch = json!({"spec":{"containers":[{"$patch":"delete","name":"zz"}]}});
    assert_eq!(smp(original.clone(), patch).unwrap(), original);
}

#[test]
fn patch_replace_element_replaces_the_list() {
    let original = pod_containers(&[("a", Some("1")), ("b", None)]);
    let patch = json!({"spec":{"containers":[{"name":"only","image":"x"},{"$patch":"replace"}]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        pod_containers(&[("only", Some("x"))])
    );
}

#[test]
fn patch_merge_element_is_refused() {
    let patch = json!({"spec":{"containers":[{"$patch":"merge","name":"a"}]}});
    let error = error_text(smp(pod_containers(&[("a", None)]), patch));
    assert!(
        error.contains("merging lists cannot yet be specified"),
        "{error}"
    );
}

#[test]
fn delete_element_needs_the_merge_key() {
    let patch = json!({"spec":{"containers":[{"$patch":"delete","image":"x"}]}});
    let error = error_text(smp(pod_containers(&[("a", None)]), patch));
    assert!(
        error.contains("does not contain declared merge key \"name\""),
        "{error}"
    );
}

#[test]
fn mixed_element_types_are_refused() {
    let error = error_text(smp(
        finalizers(json!(["a"])),
        json!({"metadata":{"finalizers":[1]}}),
    ));
    assert!(
        error.contains("list element types are not identical"),
        "{error}"
    );
    let error = error_text(smp(
        finalizers(json!(["a"])),
        json!({"metadata":{"finalizers":[["a"]]}}),
    ));
    assert!(error.contains("lists of lists"), "{error}");
}

#[test]
fn new_element_has_its_directives_applied() {
    let patch = json!({"spec":{"containers":[{"name":"new","env":[
        {"name":"X","value":"1"},{"$patch":"delete","name":"Y"}],"$setElementOrder/env":[{"name":"X"}]}]}});
    assert_eq!(
        smp(json!({"spec":{}}), patch).unwrap(),
        json!({"spec":{"containers":[{"name":"new","env":[{"name":"X","value":"1"}]}]}})
    );
}

#[test]
fn atomic_list_of_maps_is_replaced() {
    let original = json!({"spec":{"tolerations":[{"key":"a"},{"key":"b"}]}});
    let patch = json!({"spec":{"tolerations":[{"key":"c","operator":null}]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"spec":{"tolerations":[{"key":"c"}]}})
    );
}

#[test]
fn owner_references_merge_by_uid() {
    let original = json!({"metadata":{"ownerReferences":[{"uid":"1","name":"a"}]}});
    let patch =
        json!({"metadata":{"ownerReferences":[{"uid":"1","name":"b"},{"uid":"2","name":"c"}]}});
    let patched = smp(original, patch).unwrap();
    let references = patched["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(references.len(), 2);
    assert!(references.contains(&json!({"uid":"1","name":"b"})));
    assert!(references.contains(&json!({"uid":"2","name":"c"})));
}

#[test]
fn order_not_covering_a_patch_element_is_an_error() {
    // apimachinery "should check if order in $setElementOrder and patch list match".
    let original = pod_containers(&[("1", None), ("3", None), ("2", None)]);
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"1"},{"name":"2"},{"name":"3"}],
        "containers":[{"name":"3","image":"3"},{"name":"1","image":"1"}]}});
    let error = error_text(smp(original, patch));
    assert!(
        error.contains("doesn't match $setElementOrder list"),
        "{error}"
    );
}

#[test]
fn order_may_name_elements_that_do_not_exist() {
    // apimachinery "$setElementOrder contains item that is not present in the list".
    let original = pod_containers(&[("1", None), ("3", None)]);
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"3"},{"name":"2"},{"name":"1"}],
        "containers":[{"name":"3","image":"3"},{"name":"1","image":"1"}]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        pod_containers(&[("3", Some("3")), ("1", Some("1"))])
    );
}

#[test]
fn server_only_elements_stay_between_their_neighbours() {
    // apimachinery "set elements order in a list with server-only items 2" and "3".
    let order = json!([{"name":"2"},{"name":"1"},{"name":"4"},{"name":"3"}]);
    let original = pod_containers(&[
        ("1", None),
        ("2", None),
        ("9", None),
        ("3", None),
        ("4", None),
    ]);
    let patch = json!({"spec":{"$setElementOrder/containers":order}});
    let patched = smp(original, patch.clone()).unwrap();
    assert_eq!(
        patched,
        pod_containers(&[
            ("2", None),
            ("1", None),
            ("9", None),
            ("4", None),
            ("3", None)
        ])
    );

    let names = ["1", "2", "7", "9", "8", "3", "4"];
    let original = pod_containers(&names.map(|name| (name, None)));
    let patched = smp(original, patch).unwrap();
    let expected = ["2", "1", "7", "9", "8", "4", "3"];
    assert_eq!(patched, pod_containers(&expected.map(|name| (name, None))));
}

#[test]
fn server_only_element_after_all_ordered_ones_goes_last() {
    // apimachinery "set elements order in a list with server-only items".
    let original = pod_containers(&[
        ("1", None),
        ("3", None),
        ("4", None),
        ("2", None),
        ("9", None),
    ]);
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"4"},{"name":"2"},{"name":"3"},{"name":"1"}]}});
    let expected = ["4", "2", "3", "1", "9"].map(|name| (name, None));
    assert_eq!(smp(original, patch).unwrap(), pod_containers(&expected));
}

#[test]
fn duplicates_are_ordered_together() {
    // apimachinery "behavior of set element order for a merging list with duplicate".
    let original = json!({"spec":{"containers":[{"name":"1"},{"name":"2","image":"dup1"},
        {"name":"3"},{"name":"2","image":"dup2"},{"name":"4"}]}});
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"2"},{"name":"1"},
        {"name":"4"},{"name":"3"},{"name":"2"}]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"spec":{"containers":[{"name":"2","image":"dup1"},{"name":"2","image":"dup2"},
            {"name":"1"},{"name":"4"},{"name":"3"}]}})
    );
}

#[test]
fn order_elements_need_the_merge_key() {
    let patch = json!({"spec":{"$setElementOrder/containers":[{"image":"x"}]}});
    let error = error_text(smp(pod_containers(&[("a", None)]), patch));
    assert!(error.contains("has no merge key \"name\""), "{error}");
}

#[test]
fn order_directive_for_an_absent_list_sets_the_patch_list_in_order() {
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],
        "containers":[{"name":"a"},{"name":"b"}]}});
    let error = error_text(smp(json!({"spec":{}}), patch));
    assert!(error.contains("doesn't match"), "{error}");
    let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"b"},{"name":"a"}],
        "containers":[{"name":"b"},{"name":"a"}]}});
    assert_eq!(
        smp(json!({"spec":{}}), patch).unwrap(),
        pod_containers(&[("b", None), ("a", None)])
    );
}
