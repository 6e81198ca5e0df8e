//! Strategic merge patch on maps, as apimachinery's strategicpatch applies it server side
//! (mergeMap): keys merge recursively, `null` deletes a key, `$patch` replaces or deletes a
//! map, `$retainKeys` drops unlisted keys, and list fields go to strategic_lists by strategy.
use serde_json::{Map, Value};

use super::PatchError;
use super::location::At;
use super::meta::{Field, Schema, Strategy};
use super::strategic_lists::{atomic_list, delete_from_primitive_list, merge_list};
use super::strategic_order::apply_set_element_order;
use crate::api::schema::Definitions;

pub(super) const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
pub(super) const SET_ELEMENT_ORDER: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";

pub(super) fn apply(
    original: &Value,
    patch: &Value,
    defs: &Definitions,
    definition: &str,
) -> Result<Value, PatchError> {
    // Without patch strategies the merge would silently replace merge lists; upstream
    // refuses strategic merge patch for kinds it has no Go type for (custom resources).
    let Some(schema) = Schema::root(defs, definition) else {
        return Err(PatchError::UnsupportedType {
            content_type: "application/strategic-merge-patch+json".to_string(),
            message: format!(
                "strategic merge patch is not supported for {definition}: use a json merge \
                 patch (application/merge-patch+json) or a json patch"
            ),
        });
    };
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a json object".to_string(),
        ));
    };
    let Value::Object(original) = original else {
        return Err(PatchError::Malformed(
            "the patched document is not a json object".to_string(),
        ));
    };
    merge_map(original.clone(), patch.clone(), schema, &At::root()).map(Value::Object)
}

/// Merges `patch` into `original`, both maps described by `schema`.
pub(super) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
    at: &At,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            // What remains of the patch is the new map; its own directives still apply.
            Some("replace") => merge_map(Map::new(), patch, schema, at),
            // Upstream leaves an empty map, not an absent key.
            Some("delete") => Ok(Map::new()),
            _ => Err(unknown_patch_type(&directive, at)),
        };
    }
    retain_keys(&mut original, &mut patch, at)?;
    apply_set_element_order(&mut original, &mut patch, schema, at)?;
    // Deletions from primitive lists run after the lists' additions, so a patch adding and
    // deleting the same value ends without it whatever order its keys came in.
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST, at)?;
            deletions.push((field.to_string(), value));
        } else {
            merge_field(&mut original, key, value, schema, at)?;
        }
    }
    for (field, values) in deletions {
        delete_from_primitive_list(&mut original, &field, values, at)?;
    }
    Ok(original)
}

fn merge_field(
    original: &mut Map<String, Value>,
    key: String,
    patch: Value,
    schema: Schema,
    at: &At,
) -> Result<(), PatchError> {
    if patch.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let field = schema.field(&key);
    let here = at.field(&key)?;
    let current = original.get_mut(&key).map(std::mem::take);
    let merged = match (current, patch) {
        (Some(Value::Object(current)), Value::Object(patch))
            if field.strategy != Strategy::Replace =>
        {
            Some(Value::Object(merge_map(
                current,
                patch,
                field.schema,
                &here,
            )?))
        }
        (Some(Value::Array(current)), Value::Array(patch)) if field.strategy == Strategy::Merge => {
            Some(Value::Array(merge_list(current, patch, &field, &here)?))
        }
        // Absent, null, of another type or replaced whole: the patch value is the new value.
        (_, patch) => fresh_value(patch, &field, &here)?,
    };
    match merged {
        Some(value) => {
            original.insert(key, value);
        }
        None => {
            original.remove(&key);
        }
    }
    Ok(())
}

/// A patch value where nothing merges with it: its directives are applied to nothing and
/// its nulls dropped (upstream's removeDirectives and discardNullValuesFromPatch), so that
/// no `$…` key or null ends up stored. `None`: the value is not to be set at all.
pub(super) fn fresh_value(
    patch: Value,
    field: &Field,
    at: &At,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Null => Ok(None),
        Value::Object(patch) => {
            if patch.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                return Ok(None);
            }
            Ok(Some(Value::Object(merge_map(
                Map::new(),
                patch,
                field.schema,
                at,
            )?)))
        }
        Value::Array(patch) if field.strategy == Strategy::Merge => Ok(Some(Value::Array(
            merge_list(Vec::new(), patch, field, at)?,
        ))),
        Value::Array(patch) => Ok(Some(Value::Array(atomic_list(patch, field, at)?))),
        primitive => Ok(Some(primitive)),
    }
}

/// `$retainKeys: [..]`: keys of the original not listed are dropped before the merge, and
/// the patch may only set listed keys (upstream applyRetainKeysDirective).
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    at: &At,
) -> Result<(), PatchError> {
    let Some(retained) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retained) = retained else {
        return Err(PatchError::InvalidDirective(format!(
            "invalid patch format of retainKeys at {at}: $retainKeys must be a list of field names"
        )));
    };
    let listed = |key: &str| retained.iter().any(|name| name.as_str() == Some(key));
    let unlisted = patch.iter().find(|(key, value)| {
        !value.is_null()
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !listed(key)
    });
    if let Some((key, _)) = unlisted {
        return Err(PatchError::InvalidDirective(format!(
            "patch content doesn't match retainKeys list at {at}: {key:?} is set but not retained"
        )));
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

/// The field a parallel-list directive key (`$setElementOrder/containers`) names.
pub(super) fn directive_field<'k>(
    key: &'k str,
    prefix: &str,
    at: &At,
) -> Result<&'k str, PatchError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix && !field.is_empty() => Ok(field),
        _ => Err(PatchError::InvalidDirective(format!(
            "invalid patch format at {at}: {key:?} is not {prefix}/<field>"
        ))),
    }
}

pub(super) fn unknown_patch_type(directive: &Value, at: &At) -> PatchError {
    PatchError::InvalidDirective(format!(
        "unknown patch type {directive} at {at}: $patch must be \"replace\" or \"delete\""
    ))
}
