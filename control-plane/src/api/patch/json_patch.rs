//! RFC 6902 JSON patch: add, remove, replace, move, copy and test operations on JSON
//! pointers (RFC 6901), applied in order to a copy so that a failing patch changes nothing.
use serde_json::{Map, Value};

use super::PatchError;
use super::error::abbreviate;

/// Kubernetes refuses longer JSON patches (apiserver's maxJSONPatchOperations).
const MAX_OPERATIONS: usize = 10_000;

pub(super) fn apply(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Array(operations) = patch else {
        return Err(malformed_patch(
            "a json patch must be a json list of operations",
        ));
    };
    if operations.len() > MAX_OPERATIONS {
        return Err(malformed_patch(&format!(
            "a json patch may hold at most {MAX_OPERATIONS} operations, this one has {}",
            operations.len()
        )));
    }
    let mut document = original.clone();
    for (index, operation) in operations.iter().enumerate() {
        apply_operation(&mut document, operation).map_err(|failure| match failure {
            Failure::Malformed(message) => {
                PatchError::Malformed(format!("json patch operation {index}: {message}"))
            }
            Failure::Test { path, expected } => PatchError::TestFailed {
                operation: index,
                path,
                expected,
            },
        })?;
    }
    Ok(document)
}

fn malformed_patch(message: &str) -> PatchError {
    PatchError::Malformed(message.to_string())
}

/// What went wrong in one operation; `apply` adds the operation's index.
enum Failure {
    Malformed(String),
    Test { path: String, expected: String },
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Malformed(message)
    }
}

fn apply_operation(document: &mut Value, operation: &Value) -> Result<(), Failure> {
    let Value::Object(operation) = operation else {
        return Err("an operation must be a json object".to_string().into());
    };
    let op = string_member(operation, "op")?;
    let path = string_member(operation, "path")?;
    let tokens = parse_pointer(path)?;
    match op {
        "add" => add(document, path, &tokens, value_member(operation)?.clone())?,
        "remove" => {
            remove(document, path, &tokens)?;
        }
        "replace" => {
            let target = lookup_mut(document, &tokens).ok_or_else(|| missing(path))?;
            *target = value_member(operation)?.clone();
        }
        "move" => {
            let from = string_member(operation, "from")?;
            let from_tokens = parse_pointer(from)?;
            if tokens.len() > from_tokens.len() && tokens.starts_with(&from_tokens) {
                return Err(format!("cannot move {from:?} into its own child {path:?}").into());
            }
            let value = remove(document, from, &from_tokens)
                .map_err(|_| format!("\"from\" path {from:?} does not exist"))?;
            add(document, path, &tokens, value)?;
        }
        "copy" => {
            let from = string_member(operation, "from")?;
            let value = lookup(document, &parse_pointer(from)?)
                .ok_or_else(|| format!("\"from\" path {from:?} does not exist"))?
                .clone();
            add(document, path, &tokens, value)?;
        }
        "test" => {
            let expected = value_member(operation)?;
            if lookup(document, &tokens) != Some(expected) {
                return Err(Failure::Test {
                    path: path.to_string(),
                    expected: abbreviate(expected),
                });
            }
        }
        other => {
            return Err(format!(
                "unknown op {other:?}: expected add, remove, replace, move, copy or test"
            )
            .into());
        }
    }
    Ok(())
}

fn string_member<'a>(operation: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match operation.get(name) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(format!("{name:?} must be a string")),
        None => Err(format!("missing {name:?}")),
    }
}

/// `value` may be `null`, but it must be present.
fn value_member(operation: &Map<String, Value>) -> Result<&Value, String> {
    operation
        .get("value")
        .ok_or_else(|| "missing \"value\"".to_string())
}

fn missing(path: &str) -> String {
    format!("path {path:?} does not exist")
}

/// RFC 6901: "" is the whole document, otherwise "/"-separated tokens with `~1` for "/" and
/// `~0` for "~".
fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!(
            "invalid path {pointer:?}: it must be empty or start with \"/\""
        ));
    };
    rest.split('/')
        .map(|token| {
            let mut decoded = String::with_capacity(token.len());
            let mut chars = token.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    decoded.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => decoded.push('~'),
                    Some('1') => decoded.push('/'),
                    _ => {
                        return Err(format!(
                            "invalid path {pointer:?}: \"~\" must be followed by 0 or 1"
                        ));
                    }
                }
            }
            Ok(decoded)
        })
        .collect()
}

/// A list index token: decimal without leading zeros (RFC 6901), below `limit`.
fn list_index(token: &str, path: &str, limit: usize) -> Result<usize, String> {
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let index = if canonical {
        token.parse::<usize>().ok()
    } else {
        None
    };
    match index {
        Some(index) if index < limit => Ok(index),
        Some(_) => Err(format!("index {token} in path {path:?} is out of range")),
        None => Err(format!("{token:?} in path {path:?} is not a list index")),
    }
}

fn lookup<'a>(document: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens
        .iter()
        .try_fold(document, |value, token| match value {
            Value::Object(map) => map.get(token),
            Value::Array(list) => list_index(token, "", list.len()).ok().map(|i| &list[i]),
            _ => None,
        })
}

fn lookup_mut<'a>(document: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    tokens
        .iter()
        .try_fold(document, |value, token| match value {
            Value::Object(map) => map.get_mut(token),
            Value::Array(list) => {
                let index = list_index(token, "", list.len()).ok()?;
                list.get_mut(index)
            }
            _ => None,
        })
}

fn add(document: &mut Value, path: &str, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parent)) = tokens.split_last() else {
        *document = value;
        return Ok(());
    };
    match lookup_mut(document, parent) {
        Some(Value::Object(map)) => {
            map.insert(last.clone(), value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            // "-" appends; an index may also name the position just past the end.
            let index = match last.as_str() {
                "-" => list.len(),
                token => list_index(token, path, list.len() + 1)?,
            };
            list.insert(index, value);
            Ok(())
        }
        Some(_) => Err(format!(
            "path {path:?} does not exist: its parent is neither an object nor a list"
        )),
        None => Err(missing(path)),
    }
}

fn remove(document: &mut Value, path: &str, tokens: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = tokens.split_last() else {
        return Err("cannot remove the whole document".to_string());
    };
    match lookup_mut(document, parent) {
        Some(Value::Object(map)) => map.remove(last).ok_or_else(|| missing(path)),
        Some(Value::Array(list)) => {
            let index = list_index(last, path, list.len())?;
            Ok(list.remove(index))
        }
        _ => Err(missing(path)),
    }
}
