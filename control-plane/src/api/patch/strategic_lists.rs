//! Strategic merge patch on list fields (upstream mergeSlice): merge lists of objects match
//! elements by merge key and honour `$patch` elements, merge lists of primitives are sets,
//! other lists are replaced whole, and `$deleteFromPrimitiveList` removes values.
use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::PatchError;
use super::error::abbreviate;
use super::location::At;
use super::meta::Field;
use super::strategic::{DIRECTIVE, merge_map, unknown_patch_type};
use super::strategic_order::normalize_order;

/// The one JSON type all elements of a merged list must share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// What identifies an element for matching and ordering: the value of its merge key for
/// objects, the value itself for primitives.
#[derive(Debug, Clone, Copy)]
pub(super) enum Identity<'k> {
    MergeKey(&'k str),
    Value,
}

impl<'k> Identity<'k> {
    /// The merge key, for error messages.
    pub(super) fn name(self) -> &'k str {
        match self {
            Identity::MergeKey(key) => key,
            Identity::Value => "",
        }
    }

    /// A hashable rendering of the identity; JSON text keeps `1`, `1.0` and `"1"` apart.
    pub(super) fn of(self, element: &Value) -> Option<String> {
        match self {
            Identity::MergeKey(key) => element.get(key).map(Value::to_string),
            Identity::Value => Some(element.to_string()),
        }
    }
}

pub(super) fn element_kind(lists: &[&[Value]], at: &At) -> Result<Option<Kind>, PatchError> {
    let mut kind = None;
    for element in lists.iter().flat_map(|list| list.iter()) {
        let this = match element {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(_) => Kind::Number,
            Value::String(_) => Kind::String,
            Value::Object(_) => Kind::Object,
            Value::Array(_) => {
                return Err(PatchError::Malformed(format!(
                    "lists of lists are not supported in merge lists (at {at})"
                )));
            }
        };
        match kind {
            Some(previous) if previous != this => {
                return Err(PatchError::Malformed(format!(
                    "list element types are not identical at {at}"
                )));
            }
            _ => kind = Some(this),
        }
    }
    Ok(kind)
}

/// Merges a patch list into a list with patch strategy `merge`.
pub(super) fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
    at: &At,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if element_kind(&[&original, &patch], at)? == Some(Kind::Object) {
        return merge_object_list(original, patch, field, at);
    }
    // Primitives: a union keeping the first of duplicates, ordered like upstream.
    let server_order = identities(&original, Identity::Value);
    let patch_order = identities(&patch, Identity::Value);
    let mut seen = HashSet::new();
    let merged = original
        .into_iter()
        .chain(patch)
        .map(|value| (value.to_string(), value))
        .filter(|(id, _)| seen.insert(id.clone()))
        .collect();
    Ok(normalize_order(merged, &patch_order, &server_order))
}

fn merge_object_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &Field,
    at: &At,
) -> Result<Vec<Value>, PatchError> {
    let Some(key) = field.merge_key else {
        return Err(PatchError::Malformed(format!(
            "cannot merge lists without merge key at {at}"
        )));
    };
    let items = field.schema.items();
    // `$patch` elements first (upstream mergeSliceWithSpecialElements): deletions by merge
    // key, or `replace`, which makes the other patch elements the whole list.
    let mut base = original;
    let mut additions = Vec::new();
    let mut replace = false;
    for element in patch {
        let Value::Object(element) = element else {
            continue; // element_kind found only objects
        };
        let Some(directive) = element.get(DIRECTIVE) else {
            additions.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = element.get(key) else {
                    return Err(no_merge_key(&Value::Object(element.clone()), key, at));
                };
                base.retain(|existing| existing.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::InvalidDirective(format!(
                    "merging lists cannot yet be specified in the patch (at {at})"
                )));
            }
            _ => return Err(unknown_patch_type(directive, at)),
        }
    }
    if replace {
        // The additions below then make up the whole list, each merged into nothing.
        base = Vec::new();
    }
    if let Some(missing) = base.iter().find(|element| element.get(key).is_none()) {
        return Err(no_merge_key(missing, key, at));
    }
    let identity = Identity::MergeKey(key);
    let server_order = identities(&base, identity);
    let mut patch_order = Vec::with_capacity(additions.len());
    // First position of each merge key value, as upstream merges into the first match.
    let mut positions: HashMap<String, usize> = HashMap::new();
    for (position, id) in server_order.iter().enumerate() {
        positions.entry(id.clone()).or_insert(position);
    }
    for element in additions {
        let Some(value) = element.get(key) else {
            return Err(no_merge_key(&Value::Object(element), key, at));
        };
        let id = value.to_string();
        let label = match value {
            Value::String(text) => format!("[{key}={text}]"),
            other => format!("[{key}={other}]"),
        };
        let here = at.element(label)?;
        match positions.get(&id) {
            Some(&position) => {
                let current = match std::mem::take(&mut base[position]) {
                    Value::Object(current) => current,
                    _ => Map::new(),
                };
                base[position] = Value::Object(merge_map(current, element, items, &here)?);
            }
            None => {
                positions.insert(id.clone(), base.len());
                base.push(Value::Object(merge_map(Map::new(), element, items, &here)?));
            }
        }
        patch_order.push(id);
    }
    let keyed = keyed(base, identity, at)?;
    Ok(normalize_order(keyed, &patch_order, &server_order))
}

/// A list replaced whole by the patch. Its elements merge into nothing, so that their
/// directives are applied and dropped; `$patch` elements, meaningless here, are dropped.
pub(super) fn atomic_list(
    patch: Vec<Value>,
    field: &Field,
    at: &At,
) -> Result<Vec<Value>, PatchError> {
    let items = field.schema.items();
    let mut list = Vec::with_capacity(patch.len());
    for (position, element) in patch.into_iter().enumerate() {
        let here = at.element(format!("[{position}]"))?;
        match element {
            Value::Object(element) => match element.get(DIRECTIVE) {
                None => list.push(Value::Object(merge_map(Map::new(), element, items, &here)?)),
                Some(directive) if directive == "replace" || directive == "delete" => {}
                Some(directive) => return Err(unknown_patch_type(directive, &here)),
            },
            Value::Array(inner) => {
                list.push(Value::Array(atomic_list(
                    inner,
                    &Field::atomic(items),
                    &here,
                )?));
            }
            primitive => list.push(primitive),
        }
    }
    Ok(list)
}

/// `$deleteFromPrimitiveList/<field>: [values]`: removes every occurrence of the values from
/// the list, whatever the field's strategy (as upstream); an absent list stays absent.
pub(super) fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    values: Value,
    at: &At,
) -> Result<(), PatchError> {
    let Value::Array(values) = values else {
        return Err(PatchError::InvalidDirective(format!(
            "invalid patch format of primitive list at {at}: \
             $deleteFromPrimitiveList/{field} must be a list"
        )));
    };
    let Some(Value::Array(list)) = original.get_mut(field) else {
        return Ok(());
    };
    let here = at.field(field)?;
    if element_kind(&[list, &values], &here)? == Some(Kind::Object) {
        return Err(PatchError::InvalidDirective(format!(
            "$deleteFromPrimitiveList/{field} at {at} applies to lists of primitives only"
        )));
    }
    let doomed: HashSet<String> = values.iter().map(Value::to_string).collect();
    list.retain(|value| !doomed.contains(&value.to_string()));
    Ok(())
}

/// The identities of a list's elements, in order; elements without one are skipped (callers
/// check merge keys first).
pub(super) fn identities(list: &[Value], identity: Identity) -> Vec<String> {
    list.iter()
        .filter_map(|element| identity.of(element))
        .collect()
}

/// Each element with its identity; an element without one is an error.
pub(super) fn keyed(
    list: Vec<Value>,
    identity: Identity,
    at: &At,
) -> Result<Vec<(String, Value)>, PatchError> {
    list.into_iter()
        .map(|element| match identity.of(&element) {
            Some(id) => Ok((id, element)),
            None => Err(no_merge_key(&element, identity.name(), at)),
        })
        .collect()
}

pub(super) fn no_merge_key(element: &Value, key: &str, at: &At) -> PatchError {
    PatchError::Malformed(format!(
        "map {} at {at} does not contain declared merge key {key:?}",
        abbreviate(element)
    ))
}
