//! Tests of RFC 7386 JSON merge patch and of naming patch types by content type.
use serde_json::{Value, json};

use super::test_defs::{DEPLOYMENT, definitions};
use super::{PatchError, PatchType, apply};

fn merge(original: Value, patch: Value) -> Result<Value, PatchError> {
    apply(
        PatchType::Merge,
        &original,
        &patch,
        &definitions(),
        DEPLOYMENT,
    )
}

#[test]
fn null_deletes_and_objects_merge() {
    let original = json!({"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"replicas":1}});
    let patch = json!({"metadata":{"labels":{"a":null,"c":"3"}},"spec":null});
    assert_eq!(
        merge(original, patch).unwrap(),
        json!({"metadata":{"labels":{"b":"2","c":"3"}}})
    );
}

#[test]
fn lists_are_replaced_whole() {
    let original = json!({"spec":{"containers":[{"name":"a"},{"name":"b"}]}});
    let patch = json!({"spec":{"containers":[{"name":"c"}]}});
    assert_eq!(
        merge(original, patch).unwrap(),
        json!({"spec":{"containers":[{"name":"c"}]}})
    );
}

#[test]
fn nulls_inside_new_objects_are_dropped() {
    let patch = json!({"spec":{"selector":{"a":"1","b":null}}});
    assert_eq!(
        merge(json!({}), patch).unwrap(),
        json!({"spec":{"selector":{"a":"1"}}})
    );
}

#[test]
fn an_object_replaces_a_primitive() {
    assert_eq!(
        merge(json!({"a":"x"}), json!({"a":{"b":1}})).unwrap(),
        json!({"a":{"b":1}})
    );
}

#[test]
fn merge_patch_must_be_an_object() {
    assert!(matches!(
        merge(json!({}), json!([1])),
        Err(PatchError::Malformed(_))
    ));
    assert!(matches!(
        merge(json!({}), json!(null)),
        Err(PatchError::Malformed(_))
    ));
}

#[test]
fn deep_merge_patch_is_refused() {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!({ "x": deep });
    }
    let error = merge(json!({}), deep).unwrap_err().to_string();
    assert!(error.contains("deeper than 128"), "{error}");
}

#[test]
fn content_types_name_patch_types() {
    let cases = [
        ("application/json-patch+json", PatchType::Json),
        ("application/merge-patch+json", PatchType::Merge),
        (
            "application/strategic-merge-patch+json",
            PatchType::StrategicMerge,
        ),
        (
            "application/strategic-merge-patch+json; charset=utf-8",
            PatchType::StrategicMerge,
        ),
        (
            " Application/Merge-Patch+JSON ;charset=UTF-8",
            PatchType::Merge,
        ),
    ];
    for (content_type, expected) in cases {
        assert_eq!(PatchType::from_content_type(content_type), Ok(expected));
    }
    for patch_type in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
        assert_eq!(
            PatchType::from_content_type(patch_type.content_type()),
            Ok(patch_type)
        );
    }
}

#[test]
fn server_side_apply_is_not_supported() {
    let error = PatchType::from_content_type("application/apply-patch+yaml").unwrap_err();
    assert!(error.is_unsupported_media_type());
    assert!(error.to_string().contains("server-side apply"), "{error}");
}

#[test]
fn other_content_types_are_named_in_the_error() {
    for content_type in ["application/json", "text/plain", ""] {
        let error = PatchType::from_content_type(content_type).unwrap_err();
        assert!(error.is_unsupported_media_type());
        assert!(
            error.to_string().contains(&format!("{content_type:?}")),
            "{error}"
        );
    }
}
