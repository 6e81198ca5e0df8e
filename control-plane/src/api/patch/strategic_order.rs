//! Element order of merged lists (upstream mergePatchIntoOriginal, normalizeElementOrder and
//! mergeSortedSlice): `$setElementOrder/<field>` or else the patch list gives the order of
//! the elements it names; elements only on the server keep their places among them.
use std::collections::HashMap;

use serde_json::{Map, Value};

use super::PatchError;
use super::error::abbreviate;
use super::location::At;
use super::meta::{Schema, Strategy};
use super::strategic::{DIRECTIVE, SET_ELEMENT_ORDER, directive_field};
use super::strategic_lists::{
    Identity, Kind, atomic_list, element_kind, identities, keyed, merge_list, no_merge_key,
};

/// Handles every `$setElementOrder/<field>` of `patch` together with the patch's `<field>`
/// list, which is merged here and removed from `patch`.
pub(super) fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
    at: &At,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|key| key.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order) = patch.remove(&directive) else {
            continue;
        };
        let name = directive_field(&directive, SET_ELEMENT_ORDER, at)?.to_string();
        let Value::Array(order) = order else {
            return Err(PatchError::InvalidDirective(format!(
                "invalid patch format of setElementOrder list at {at}: {directive} must be a list"
            )));
        };
        let field = schema.field(&name);
        let here = at.field(&name)?;
        let current = match original.get_mut(&name).map(std::mem::take) {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => {
                return Err(PatchError::InvalidDirective(format!(
                    "{directive} at {at}: {here} is not a list"
                )));
            }
        };
        let patched = match patch.remove(&name) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(Value::Null) => {
                // Deleting the list is left to the plain merge of the key.
                patch.insert(name.clone(), Value::Null);
                None
            }
            Some(_) => {
                return Err(PatchError::Malformed(format!(
                    "{here} must be a list to go with {directive}"
                )));
            }
        };
        let kind = element_kind(
            &[
                current.as_deref().unwrap_or_default(),
                patched.as_deref().unwrap_or_default(),
            ],
            &here,
        )?;
        let identity = match (kind, field.merge_key) {
            (Some(Kind::Object), Some(key)) => Identity::MergeKey(key),
            (Some(Kind::Object), None) => {
                return Err(PatchError::InvalidDirective(format!(
                    "{directive} at {at}: the list's elements have no merge key to order them by"
                )));
            }
            _ => Identity::Value,
        };
        let order_ids = order_identities(&order, identity, &directive, at)?;
        validate_order(patched.as_deref(), &order, identity, &here)?;
        let server_order = match &current {
            Some(list) => {
                if let Some(missing) = list.iter().find(|e| identity.of(e).is_none()) {
                    return Err(no_merge_key(missing, identity.name(), &here));
                }
                identities(list, identity)
            }
            None => Vec::new(),
        };
        let merged = match (current, patched) {
            (Some(current), None) => current,
            (current, Some(patched)) if field.strategy == Strategy::Merge => {
                merge_list(current.unwrap_or_default(), patched, &field, &here)?
            }
            (_, Some(patched)) => atomic_list(patched, &field, &here)?,
            (None, None) => continue,
        };
        let merged = keyed(merged, identity, &here)?;
        let ordered = normalize_order(merged, &order_ids, &server_order);
        original.insert(name, Value::Array(ordered));
    }
    Ok(())
}

fn order_identities(
    order: &[Value],
    identity: Identity,
    directive: &str,
    at: &At,
) -> Result<Vec<String>, PatchError> {
    order
        .iter()
        .map(|element| {
            identity.of(element).ok_or_else(|| {
                PatchError::InvalidDirective(format!(
                    "invalid patch format of setElementOrder list at {at}: {directive} element {} \
                     has no merge key {:?}",
                    abbreviate(element),
                    identity.name()
                ))
            })
        })
        .collect()
}

/// The patch list must name its elements in the order `$setElementOrder` gives (upstream
/// validatePatchWithSetOrderList); `$patch` elements are exempt.
fn validate_order(
    patched: Option<&[Value]>,
    order: &[Value],
    identity: Identity,
    at: &At,
) -> Result<(), PatchError> {
    let Some(patched) = patched else {
        return Ok(());
    };
    if order.is_empty() {
        return Ok(());
    }
    let mut remaining = order.iter();
    for element in patched.iter().filter(|e| e.get(DIRECTIVE).is_none()) {
        let Some(wanted) = identity.of(element) else {
            return Err(no_merge_key(element, identity.name(), at));
        };
        if !remaining.any(|named| identity.of(named).as_ref() == Some(&wanted)) {
            return Err(PatchError::InvalidDirective(format!(
                "the order in patch list {} doesn't match $setElementOrder list {} at {at}",
                abbreviate(&Value::Array(patched.to_vec())),
                abbreviate(&Value::Array(order.to_vec()))
            )));
        }
    }
    Ok(())
}

/// Orders merged elements: those `patch_order` names in its order, the others in their
/// `server_order` order, and each server-only element placed before the first patch element
/// that comes after it on the server (elements new to the server count as first).
pub(super) fn normalize_order(
    items: Vec<(String, Value)>,
    patch_order: &[String],
    server_order: &[String],
) -> Vec<Value> {
    let patch_positions = first_positions(patch_order);
    let server_positions = first_positions(server_order);
    let (mut from_patch, mut server_only): (Vec<_>, Vec<_>) = items
        .into_iter()
        .partition(|(id, _)| patch_positions.contains_key(id.as_str()));
    let rank = |positions: &HashMap<&str, usize>, id: &str| {
        positions.get(id).copied().unwrap_or(usize::MAX)
    };
    from_patch.sort_by_key(|(id, _)| rank(&patch_positions, id));
    server_only.sort_by_key(|(id, _)| rank(&server_positions, id));

    let mut ordered = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (Some((l, _)), Some((r, _))) => matches!(
                (server_positions.get(l.as_str()), server_positions.get(r.as_str())),
                (Some(l), Some(r)) if l < r
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_left { left.next() } else { right.next() };
        ordered.extend(next.map(|(_, element)| element));
    }
    ordered
}

fn first_positions(order: &[String]) -> HashMap<&str, usize> {
    let mut positions = HashMap::with_capacity(order.len());
    for (position, id) in order.iter().enumerate() {
        positions.entry(id.as_str()).or_insert(position);
    }
    positions
}
