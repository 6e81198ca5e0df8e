//! Tests of RFC 6902 JSON patch: every operation, pointer escapes and list indices, and
//! the errors naming the failing operation.
use serde_json::{Value, json};

use super::test_defs::{DEPLOYMENT, definitions};
use super::{PatchError, PatchType, apply};

fn json_patch(original: Value, patch: Value) -> Result<Value, PatchError> {
    apply(
        PatchType::Json,
        &original,
        &patch,
        &definitions(),
        DEPLOYMENT,
    )
}

fn malformed(result: Result<Value, PatchError>) -> String {
    match result {
        Err(PatchError::Malformed(message)) => message,
        other => panic!("expected a malformed patch error, got {other:?}"),
    }
}

#[test]
fn add_sets_keys_inserts_and_appends() {
    let original = json!({"spec":{"replicas":1,"list":["a","c"]}});
    let patch = json!([
        {"op":"add","path":"/spec/paused","value":true},
        {"op":"add","path":"/spec/replicas","value":3},
        {"op":"add","path":"/spec/list/1","value":"b"},
        {"op":"add","path":"/spec/list/-","value":"d"},
        {"op":"add","path":"/spec/list/4","value":"e"},
    ]);
    assert_eq!(
        json_patch(original, patch).unwrap(),
        json!({"spec":{"replicas":3,"paused":true,"list":["a","b","c","d","e"]}})
    );
}

#[test]
fn add_at_the_root_replaces_the_document() {
    let patched = json_patch(
        json!({"a":1}),
        json!([{"op":"add","path":"","value":{"b":2}}]),
    );
    assert_eq!(patched.unwrap(), json!({"b":2}));
}

#[test]
fn add_needs_an_existing_parent() {
    let message = malformed(json_patch(
        json!({"spec":{}}),
        json!([{"op":"test","path":"/spec","value":{}},{"op":"add","path":"/spec/x/y","value":1}]),
    ));
    assert_eq!(
        message,
        "json patch operation 1: path \"/spec/x/y\" does not exist"
    );
}

#[test]
fn add_past_the_end_of_a_list_is_refused() {
    let message = malformed(json_patch(
        json!({"l":[1]}),
        json!([{"op":"add","path":"/l/3","value":1}]),
    ));
    assert!(message.contains("out of range"), "{message}");
}

#[test]
fn remove_deletes_keys_and_elements() {
    let patch = json!([{"op":"remove","path":"/a"},{"op":"remove","path":"/l/0"}]);
    assert_eq!(
        json_patch(json!({"a":1,"b":2,"l":[1,2]}), patch).unwrap(),
        json!({"b":2,"l":[2]})
    );
}

#[test]
fn remove_of_a_missing_path_is_an_error() {
    let patch = json!([{"op":"remove","path":"/a"},{"op":"remove","path":"/spec/x"}]);
    let message = malformed(json_patch(json!({"a":1,"spec":{}}), patch));
    assert_eq!(
        message,
        "json patch operation 1: path \"/spec/x\" does not exist"
    );
    let message = malformed(json_patch(
        json!({"a":1}),
        json!([{"op":"remove","path":""}]),
    ));
    assert!(
        message.contains("cannot remove the whole document"),
        "{message}"
    );
}

#[test]
fn replace_needs_an_existing_target() {
    let patch = json!([{"op":"replace","path":"/spec/replicas","value":5}]);
    assert_eq!(
        json_patch(json!({"spec":{"replicas":1}}), patch.clone()).unwrap(),
        json!({"spec":{"replicas":5}})
    );
    let message = malformed(json_patch(json!({"spec":{}}), patch));
    assert_eq!(
        message,
        "json patch operation 0: path \"/spec/replicas\" does not exist"
    );
}

#[test]
fn move_removes_then_adds() {
    let patch =
        json!([{"op":"move","from":"/a","path":"/b/a"},{"op":"move","from":"/l/0","path":"/l/-"}]);
    assert_eq!(
        json_patch(json!({"a":1,"b":{},"l":[1,2,3]}), patch).unwrap(),
        json!({"b":{"a":1},"l":[2,3,1]})
    );
}

#[test]
fn move_into_its_own_child_or_from_nowhere_is_refused() {
    let message = malformed(json_patch(
        json!({"a":{}}),
        json!([{"op":"move","from":"/a","path":"/a/b"}]),
    ));
    assert!(message.contains("into its own child"), "{message}");
    let message = malformed(json_patch(
        json!({}),
        json!([{"op":"move","from":"/x","path":"/y"}]),
    ));
    assert_eq!(
        message,
        "json patch operation 0: \"from\" path \"/x\" does not exist"
    );
}

#[test]
fn copy_duplicates_a_value() {
    let patch = json!([{"op":"copy","from":"/a","path":"/b"}]);
    assert_eq!(
        json_patch(json!({"a":{"x":1}}), patch).unwrap(),
        json!({"a":{"x":1},"b":{"x":1}})
    );
}

#[test]
fn test_passes_or_fails_the_whole_patch() {
    let original = json!({"spec":{"replicas":1}});
    let passing = json!([{"op":"test","path":"/spec/replicas","value":1},
        {"op":"replace","path":"/spec/replicas","value":2}]);
    assert_eq!(
        json_patch(original.clone(), passing).unwrap(),
        json!({"spec":{"replicas":2}})
    );
    let failing = json!([{"op":"replace","path":"/spec/replicas","value":2},
        {"op":"test","path":"/spec/replicas","value":1}]);
    assert_eq!(
        json_patch(original, failing).unwrap_err(),
        PatchError::TestFailed {
            operation: 1,
            path: "/spec/replicas".to_string(),
            expected: "1".to_string(),
        }
    );
}

#[test]
fn test_of_a_missing_path_fails() {
    let result = json_patch(json!({}), json!([{"op":"test","path":"/a","value":null}]));
    assert!(matches!(
        result,
        Err(PatchError::TestFailed { operation: 0, .. })
    ));
}

#[test]
fn pointer_escapes_and_indices() {
    let original = json!({"a/b":{"c~d":1},"l":[0,1]});
    let patch = json!([{"op":"replace","path":"/a~1b/c~0d","value":2}]);
    assert_eq!(
        json_patch(original.clone(), patch).unwrap()["a/b"]["c~d"],
        2
    );
    let message = malformed(json_patch(
        original.clone(),
        json!([{"op":"remove","path":"/a~2"}]),
    ));
    assert!(message.contains("must be followed by 0 or 1"), "{message}");
    let message = malformed(json_patch(
        original.clone(),
        json!([{"op":"remove","path":"/l/01"}]),
    ));
    assert!(message.contains("is not a list index"), "{message}");
    let message = malformed(json_patch(original, json!([{"op":"remove","path":"l"}])));
    assert!(
        message.contains("must be empty or start with \"/\""),
        "{message}"
    );
}

#[test]
fn malformed_operations_are_named() {
    let original = json!({"a":1});
    let cases = [
        (
            json!({"a":1}),
            "a json patch must be a json list of operations",
        ),
        (
            json!([1]),
            "json patch operation 0: an operation must be a json object",
        ),
        (
            json!([{"path":"/a"}]),
            "json patch operation 0: missing \"op\"",
        ),
        (
            json!([{"op":"add","path":"/a"}]),
            "json patch operation 0: missing \"value\"",
        ),
        (
            json!([{"op":"add","value":1}]),
            "json patch operation 0: missing \"path\"",
        ),
        (
            json!([{"op":"move","path":"/b"}]),
            "json patch operation 0: missing \"from\"",
        ),
        (
            json!([{"op":"add","path":5,"value":1}]),
            "json patch operation 0: \"path\" must be a string",
        ),
        (
            json!([{"op":"increment","path":"/a"}]),
            "json patch operation 0: unknown op \"increment\"",
        ),
    ];
    for (patch, expected) in cases {
        let message = malformed(json_patch(original.clone(), patch));
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[test]
fn explicit_null_is_a_value() {
    let patched = json_patch(json!({}), json!([{"op":"add","path":"/a","value":null}]));
    assert_eq!(patched.unwrap(), json!({"a":null}));
}

#[test]
fn a_failing_patch_changes_nothing() {
    let original = json!({"a":1});
    let patch = json!([{"op":"replace","path":"/a","value":2},{"op":"remove","path":"/zz"}]);
    assert!(json_patch(original.clone(), patch).is_err());
    assert_eq!(original, json!({"a":1}));
}
