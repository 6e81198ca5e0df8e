//! The served types' OpenAPI v2 definitions: one source for `/openapi/v2`, server-side
//! schema validation and the patch strategies strategic merge patch follows.
use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub mod build;
pub mod patch_meta;
pub mod proto;
pub mod validate;

/// Swagger 2.0 `definitions`: name (`io.k8s.api.core.v1.PodSpec`) → schema object. Schemas
/// refer to each other with `{"$ref": "#/definitions/<name>"}`; list fields may carry
/// `x-kubernetes-patch-strategy` ("merge", "retainKeys", "merge,retainKeys", "replace") and
/// `x-kubernetes-patch-merge-key`; top-level kinds carry `x-kubernetes-group-version-kind`.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    map: Map<String, Value>,
    /// (group, version, kind) → definition name, from `x-kubernetes-group-version-kind`.
    kinds: BTreeMap<(String, String, String), String>,
}

const REF_PREFIX: &str = "#/definitions/";

impl Definitions {
    pub fn from_map(map: Map<String, Value>) -> Definitions {
        let mut kinds = BTreeMap::new();
        for (name, schema) in &map {
            let tags = schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array);
            for tag in tags.into_iter().flatten() {
                let field = |key: &str| tag.get(key).and_then(Value::as_str).map(str::to_owned);
                if let (Some(group), Some(version), Some(kind)) =
                    (field("group"), field("version"), field("kind"))
                {
                    kinds.insert((group, version, kind), name.clone());
                }
            }
        }
        Definitions { map, kinds }
    }

    /// The name of the definition tagged with this group-version-kind ("" is the core group).
    pub fn kind_definition(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&(group.to_owned(), version.to_owned(), kind.to_owned()))
            .map(String::as_str)
    }

    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// Follows `$ref` chains to the schema that describes the value itself.
    pub fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        // A bounded walk: a reference cycle in a definition must not hang a request.
        for _ in 0..16 {
            let Some(name) = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|reference| reference.strip_prefix(REF_PREFIX))
            else {
                return schema;
            };
            match self.map.get(name) {
                Some(target) => schema = target,
                None => return schema,
            }
        }
        schema
    }
}
