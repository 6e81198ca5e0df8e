//! The patch strategy, merge key and schema of a field, read from the served definitions'
//! `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` extensions.
use serde_json::Value;

use crate::api::schema::Definitions;

/// The schema a value is merged under; `node` is `None` where the definitions say nothing
/// (unknown fields), and everything below merges as plain maps and atomic lists.
#[derive(Clone, Copy)]
pub(super) struct Schema<'a> {
    defs: &'a Definitions,
    node: Option<&'a Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    /// Maps merge, lists are replaced whole.
    Default,
    /// Lists merge element-wise (by merge key) or as sets of primitives.
    Merge,
    /// Maps are replaced whole too.
    Replace,
}

/// A field of a map: its schema and how a patch of it merges.
#[derive(Clone, Copy)]
pub(super) struct Field<'a> {
    pub(super) schema: Schema<'a>,
    pub(super) strategy: Strategy,
    pub(super) merge_key: Option<&'a str>,
}

impl<'a> Schema<'a> {
    pub(super) fn root(defs: &'a Definitions, definition: &str) -> Option<Schema<'a>> {
        let node = defs.get(definition)?;
        Some(Schema {
            defs,
            node: Some(defs.resolve(node)),
        })
    }

    /// The field `name` of this object schema; a map's (`additionalProperties`) values
    /// share one schema.
    pub(super) fn field(self, name: &str) -> Field<'a> {
        let property = self.node.and_then(|node| {
            node.get("properties")
                .and_then(|properties| properties.get(name))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
        });
        let Some(property) = property else {
            return Field::atomic(Schema {
                defs: self.defs,
                node: None,
            });
        };
        let resolved = self.defs.resolve(property);
        // The extensions sit next to the property's `$ref`, or on the referenced schema.
        let extension = |name: &str| {
            property
                .get(name)
                .or_else(|| resolved.get(name))
                .and_then(Value::as_str)
        };
        Field {
            schema: Schema {
                defs: self.defs,
                node: Some(resolved),
            },
            strategy: parse_strategy(extension("x-kubernetes-patch-strategy")),
            merge_key: extension("x-kubernetes-patch-merge-key"),
        }
    }

    /// The schema of this list schema's elements.
    pub(super) fn items(self) -> Schema<'a> {
        Schema {
            defs: self.defs,
            node: self
                .node
                .and_then(|node| node.get("items"))
                .map(|items| self.defs.resolve(items)),
        }
    }
}

impl<'a> Field<'a> {
    /// A field without patch metadata: maps merge, lists are replaced.
    pub(super) fn atomic(schema: Schema<'a>) -> Field<'a> {
        Field {
            schema,
            strategy: Strategy::Default,
            merge_key: None,
        }
    }
}

/// "merge", "replace", "retainKeys" or a comma-separated pair. retainKeys needs nothing
/// here: as upstream, the server acts on a patch's `$retainKeys` wherever it appears.
fn parse_strategy(strategy: Option<&str>) -> Strategy {
    let mut parts = strategy.unwrap_or_default().split(',').map(str::trim);
    if parts.clone().any(|part| part == "replace") {
        Strategy::Replace
    } else if parts.any(|part| part == "merge") {
        Strategy::Merge
    } else {
        Strategy::Default
    }
}
