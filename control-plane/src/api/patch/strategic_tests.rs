//! Tests of strategic merge patch on maps and of its errors: nulls, `$patch` on maps,
//! `$retainKeys`, unknown fields, maps of values, malformed directives and the depth limit.
use serde_json::{Value, json};

use super::test_defs::{CONFIG_MAP, DEPLOYMENT, POD, definitions};
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

fn invalid_directive(result: Result<Value, PatchError>, needle: &str) {
    match result {
        Err(PatchError::InvalidDirective(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected an invalid directive error with {needle:?}, got {other:?}"),
    }
}

fn malformed(result: Result<Value, PatchError>, needle: &str) {
    match result {
        Err(PatchError::Malformed(message)) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected a malformed patch error with {needle:?}, got {other:?}"),
    }
}

#[test]
fn maps_merge_recursively_and_null_deletes() {
    let original = json!({"metadata":{"name":"p","labels":{"a":"1","b":"2"}},"spec":{"nodeSelector":{"x":"1"}}});
    let patch = json!({"metadata":{"labels":{"b":null,"c":"3"}},"spec":{"nodeSelector":null}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"metadata":{"name":"p","labels":{"a":"1","c":"3"}},"spec":{}})
    );
}

#[test]
fn null_for_an_absent_key_is_dropped() {
    let patched = smp(
        json!({"metadata":{"name":"p"}}),
        json!({"metadata":{"labels":null}}),
    );
    assert_eq!(patched.unwrap(), json!({"metadata":{"name":"p"}}));
}

#[test]
fn nulls_inside_a_new_map_are_dropped() {
    let patch = json!({"spec":{"nodeSelector":{"a":"1","b":null}}});
    let patched = smp(json!({"spec":{}}), patch).unwrap();
    assert_eq!(patched, json!({"spec":{"nodeSelector":{"a":"1"}}}));
}

#[test]
fn map_of_values_merges_per_key() {
    let original = json!({"metadata":{"name":"c"},"data":{"k1":"v1","k2":"v2"}});
    let patch = json!({"data":{"k1":null,"k3":"v3"}});
    let patched = apply(
        PatchType::StrategicMerge,
        &original,
        &patch,
        &definitions(),
        CONFIG_MAP,
    );
    assert_eq!(
        patched.unwrap(),
        json!({"metadata":{"name":"c"},"data":{"k2":"v2","k3":"v3"}})
    );
}

#[test]
fn patch_replace_on_a_map_replaces_it() {
    let original = json!({"metadata":{"labels":{"a":"1","b":"2"}}});
    let patch = json!({"metadata":{"labels":{"$patch":"replace","c":"3"}}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"metadata":{"labels":{"c":"3"}}})
    );
}

#[test]
fn patch_delete_on_a_map_leaves_it_empty_as_upstream() {
    let original = json!({"metadata":{"labels":{"a":"1"}}});
    let patch = json!({"metadata":{"labels":{"$patch":"delete"}}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"metadata":{"labels":{}}})
    );
}

#[test]
fn patch_delete_on_an_absent_map_sets_nothing() {
    let patch = json!({"metadata":{"labels":{"$patch":"delete"}}});
    assert_eq!(
        smp(json!({"metadata":{}}), patch).unwrap(),
        json!({"metadata":{}})
    );
}

#[test]
fn patch_replace_at_the_top_replaces_the_object() {
    let original = json!({"metadata":{"name":"p"},"spec":{"nodeSelector":{"a":"1"}}});
    let patch = json!({"$patch":"replace","metadata":{"name":"q"}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"metadata":{"name":"q"}})
    );
}

#[test]
fn unknown_patch_type_on_a_map_is_an_error() {
    let patch = json!({"metadata":{"labels":{"$patch":"merge"}}});
    invalid_directive(
        smp(json!({"metadata":{"labels":{}}}), patch),
        "unknown patch type",
    );
    let patch = json!({"metadata":{"labels":{"$patch":7}}});
    invalid_directive(smp(json!({}), patch), "metadata.labels");
}

#[test]
fn retain_keys_must_list_every_key_the_patch_sets() {
    let original = json!({"spec":{"strategy":{"type":"RollingUpdate"}}});
    let patch =
        json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":{}}}});
    let result = apply(
        PatchType::StrategicMerge,
        &original,
        &patch,
        &definitions(),
        DEPLOYMENT,
    );
    invalid_directive(result, "doesn't match retainKeys list");
}

#[test]
fn retain_keys_must_be_a_list() {
    let patch = json!({"spec":{"strategy":{"$retainKeys":"type","type":"Recreate"}}});
    let result = apply(
        PatchType::StrategicMerge,
        &json!({}),
        &patch,
        &definitions(),
        DEPLOYMENT,
    );
    invalid_directive(result, "spec.strategy");
}

#[test]
fn unknown_fields_merge_as_plain_maps_with_atomic_lists() {
    let original = json!({"spec":{"extra":{"a":{"c":2},"list":[{"name":"x","v":1}]}}});
    let patch = json!({"spec":{"extra":{"a":{"b":1},"list":[{"name":"y"}]}}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"spec":{"extra":{"a":{"b":1,"c":2},"list":[{"name":"y"}]}}})
    );
}

#[test]
fn a_value_of_another_type_replaces_the_original() {
    let original = json!({"spec":{"extra":{"a":1}}});
    let patch = json!({"spec":{"extra":["x"]}});
    assert_eq!(
        smp(original, patch).unwrap(),
        json!({"spec":{"extra":["x"]}})
    );
}

#[test]
fn strategic_patch_must_be_an_object() {
    malformed(smp(json!({}), json!([1])), "must be a json object");
    malformed(smp(json!({}), json!("x")), "must be a json object");
}

#[test]
fn unknown_definition_is_unsupported() {
    let result = apply(
        PatchType::StrategicMerge,
        &json!({}),
        &json!({}),
        &definitions(),
        "com.example.v1.Widget",
    );
    let error = result.unwrap_err();
    assert!(error.is_unsupported_media_type());
    assert!(
        error.to_string().contains("com.example.v1.Widget"),
        "{error}"
    );
}

#[test]
fn directive_keys_need_a_field_name() {
    let patch = json!({"metadata":{"$setElementOrderX/finalizers":["a"]}});
    invalid_directive(smp(json!({}), patch), "$setElementOrder/<field>");
    let patch = json!({"metadata":{"$deleteFromPrimitiveList":["a"]}});
    invalid_directive(smp(json!({}), patch), "$deleteFromPrimitiveList/<field>");
}

#[test]
fn set_element_order_must_be_a_list() {
    let patch = json!({"spec":{"$setElementOrder/containers":{"name":"a"}}});
    invalid_directive(smp(json!({"spec":{}}), patch), "must be a list");
}

#[test]
fn delete_from_primitive_list_must_be_a_list() {
    let original = json!({"metadata":{"finalizers":["a"]}});
    let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}});
    invalid_directive(smp(original, patch), "must be a list");
}

#[test]
fn delete_from_primitive_list_refuses_lists_of_maps() {
    let original = json!({"spec":{"containers":[{"name":"a"}]}});
    let patch = json!({"spec":{"$deleteFromPrimitiveList/containers":[{"name":"a"}]}});
    invalid_directive(smp(original, patch), "lists of primitives only");
}

#[test]
fn deep_nesting_is_refused_not_recursed_into() {
    let mut deep = json!("leaf");
    let mut original = json!("leaf");
    for _ in 0..200 {
        deep = json!({ "x": deep });
        original = json!({ "x": original });
    }
    let result = smp(
        json!({"spec":{"extra":original}}),
        json!({"spec":{"extra":deep}}),
    );
    malformed(result, "nests deeper than 128 levels");
}

#[test]
fn errors_name_where_they_happened() {
    let original = json!({"spec":{"containers":[{"name":"web","env":[{"name":"A"}]}]}});
    let patch = json!({"spec":{"containers":[{"name":"web","env":[{"value":"x"}]}]}});
    let error = smp(original, patch).unwrap_err().to_string();
    assert!(error.contains("spec.containers[name=web].env"), "{error}");
    assert!(
        error.contains("does not contain declared merge key \"name\""),
        "{error}"
    );
}

#[test]
fn the_original_is_untouched() {
    let original = json!({"metadata":{"labels":{"a":"1"}}});
    let before = original.clone();
    let _ = apply(
        PatchType::StrategicMerge,
        &original,
        &json!({"metadata":{"labels":{"a":null}}}),
        &definitions(),
        POD,
    );
    assert_eq!(original, before);
}
