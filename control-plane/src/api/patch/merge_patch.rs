//! RFC 7386 JSON merge patch: objects merge key by key, `null` removes a key, anything else
//! (lists included) replaces the target value.
use serde_json::{Map, Value};

use super::{MAX_DEPTH, PatchError};

pub(super) fn apply(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    // A non-object merge patch would replace the whole object; Kubernetes refuses it.
    if !patch.is_object() {
        return Err(PatchError::Malformed(
            "a json merge patch must be a json object".to_string(),
        ));
    }
    let mut document = original.clone();
    merge(&mut document, patch, 0)?;
    Ok(document)
}

fn merge(target: &mut Value, patch: &Value, depth: usize) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if depth >= MAX_DEPTH {
        return Err(PatchError::Malformed(format!(
            "json merge patch nests deeper than {MAX_DEPTH} levels"
        )));
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        return Ok(());
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            let slot = target.entry(key.clone()).or_insert(Value::Null);
            merge(slot, value, depth + 1)?;
        }
    }
    Ok(())
}
