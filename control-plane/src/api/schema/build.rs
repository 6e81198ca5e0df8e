//! Builds the served definitions once from k8s-openapi's schemars schemas: the served kinds,
//! their List kinds, group-version-kind tags and the strategic-merge-patch extensions.
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use k8s_openapi::{ListableResource, Resource};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use super::{Definitions, REF_PREFIX, patch_meta};

pub(super) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(super) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
/// Kinds whose Go type declares `metadata` without omitempty, so upstream requires it.
const METADATA_REQUIRED_UPSTREAM: &[&str] = &["io.k8s.api.core.v1.Event"];
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// The definitions `/openapi/v2` serves and request bodies are validated against.
pub fn served() -> &'static Definitions {
    static SERVED: OnceLock<Definitions> = OnceLock::new();
    SERVED.get_or_init(build)
}

/// A served top-level kind: its definition name and group-version-kind.
struct Kind {
    definition: String,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    list_kind: Option<&'static str>,
}

fn build() -> Definitions {
    // Draft 7 keeps `#/definitions/` references; its transforms would wrap `$ref` siblings in
    // `allOf`, which kubectl's OpenAPI parser rejects, so they are dropped.
    let mut generator = SchemaSettings::draft07()
        .with(|settings| {
            settings.meta_schema = None;
            settings.transforms.clear();
        })
        .into_generator();
    let kinds = vec![
        listable::<Namespace>(&mut generator),
        listable::<Pod>(&mut generator),
        listable::<Service>(&mut generator),
        listable::<Endpoints>(&mut generator),
        listable::<ConfigMap>(&mut generator),
        listable::<Secret>(&mut generator),
        listable::<Event>(&mut generator),
        listable::<Node>(&mut generator),
        single::<Binding>(&mut generator),
        listable::<EndpointSlice>(&mut generator),
        listable::<Lease>(&mut generator),
        listable::<Deployment>(&mut generator),
        listable::<ReplicaSet>(&mut generator),
        listable::<DaemonSet>(&mut generator),
        listable::<NetworkPolicy>(&mut generator),
        single::<Scale>(&mut generator),
    ];
    generator.subschema_for::<ListMeta>();

    let mut map = generator.take_definitions(false);
    for schema in map.values_mut() {
        normalise(schema);
    }
    match_upstream_scalars(&mut map);
    for kind in &kinds {
        add_kind(&mut map, kind);
    }
    for meta in patch_meta::TABLE {
        let property = map
            .get_mut(meta.definition)
            .and_then(|definition| definition.get_mut("properties"))
            .and_then(|properties| properties.get_mut(meta.property))
            .and_then(Value::as_object_mut);
        if let Some(property) = property {
            property.insert("x-kubernetes-patch-strategy".into(), meta.strategy.into());
            if let Some(key) = meta.merge_key {
                property.insert("x-kubernetes-patch-merge-key".into(), key.into());
            }
        }
    }
    Definitions::from_map(map)
}

fn listable<T: JsonSchema + ListableResource>(generator: &mut SchemaGenerator) -> Kind {
    Kind {
        list_kind: Some(T::LIST_KIND),
        ..single::<T>(generator)
    }
}

fn single<T: JsonSchema + Resource>(generator: &mut SchemaGenerator) -> Kind {
    generator.subschema_for::<T>();
    Kind {
        definition: T::schema_name().into_owned(),
        group: T::GROUP,
        version: T::VERSION,
        kind: T::KIND,
        list_kind: None,
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{ "group": group, "version": version, "kind": kind }])
}

/// Tags the kind, drops the `metadata` requirement k8s-openapi adds where upstream has none,
/// and adds the List definition, which k8s-openapi models as a generic `List<T>`.
fn add_kind(map: &mut Map<String, Value>, kind: &Kind) {
    let Some(Value::Object(definition)) = map.get_mut(&kind.definition) else {
        return;
    };
    definition.insert(
        "x-kubernetes-group-version-kind".into(),
        gvk(kind.group, kind.version, kind.kind),
    );
    let keeps_metadata = METADATA_REQUIRED_UPSTREAM.contains(&kind.definition.as_str());
    if let Some(Value::Array(required)) = definition.get_mut("required").filter(|_| !keeps_metadata)
    {
        required.retain(|field| field != "metadata");
        if required.is_empty() {
            definition.remove("required");
        }
    }
    let standard = |field: &str| {
        definition
            .get("properties")
            .and_then(|properties| properties.get(field))
            .cloned()
            .unwrap_or_else(|| json!({ "type": "string" }))
    };
    let (api_version, kind_field) = (standard("apiVersion"), standard("kind"));
    let Some(list_kind) = kind.list_kind else {
        return;
    };
    let prefix = kind
        .definition
        .rsplit_once('.')
        .map_or("", |(prefix, _)| prefix);
    let list = json!({
        "description": format!("{list_kind} is a list of {} objects.", kind.kind),
        "type": "object",
        "properties": {
            "apiVersion": api_version,
            "items": {
                "description": format!("List of {} objects.", kind.kind),
                "type": "array",
                "items": { "$ref": format!("{REF_PREFIX}{}", kind.definition) },
            },
            "kind": kind_field,
            "metadata": {
                "$ref": format!("{REF_PREFIX}{LIST_META}"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
        "x-kubernetes-group-version-kind": gvk(kind.group, kind.version, list_kind),
    });
    map.insert(format!("{prefix}.{list_kind}"), list);
}

/// Upstream serves IntOrString as a string of format `int-or-string` and Quantity as a string;
/// k8s-openapi leaves both untyped. Validation still accepts numbers for either.
fn match_upstream_scalars(map: &mut Map<String, Value>) {
    if let Some(Value::Object(schema)) = map.get_mut(INT_OR_STRING) {
        schema.insert("type".into(), "string".into());
        schema.insert("format".into(), "int-or-string".into());
    }
    if let Some(Value::Object(schema)) = map.get_mut(QUANTITY) {
        schema.remove("x-kubernetes-int-or-string");
        schema.insert("type".into(), "string".into());
    }
}

/// Makes a schemars schema valid Swagger 2.0 as kubectl parses it: no boolean schemas, no
/// JSON Schema-only keywords, one type per schema, nothing beside `$ref` but annotations.
fn normalise(schema: &mut Value) {
    if let Value::Bool(_) = schema {
        *schema = json!({});
    }
    let Value::Object(object) = schema else {
        return;
    };
    for keyword in ["$schema", "$defs", "$id", "title"] {
        object.remove(keyword);
    }
    if let Some(Value::Array(types)) = object.get("type") {
        let single = types.iter().find(|t| *t != "null").cloned();
        match single {
            Some(single) => object.insert("type".into(), single),
            None => object.remove("type"),
        };
    }
    if object.contains_key("$ref") {
        object.retain(|key, _| {
            matches!(key.as_str(), "$ref" | "description") || key.starts_with("x-")
        });
    }
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        properties.values_mut().for_each(normalise);
    }
    for keyword in ["items", "additionalProperties"] {
        if let Some(sub) = object.get_mut(keyword).filter(|sub| sub.is_object()) {
            normalise(sub);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk<'a>(schema: &'a Value, found: &mut Vec<&'a Value>) {
        found.push(schema);
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            properties.values().for_each(|sub| walk(sub, found));
        }
        for keyword in ["items", "additionalProperties"] {
            if let Some(sub) = schema.get(keyword).filter(|sub| sub.is_object()) {
                walk(sub, found);
            }
        }
    }

    fn all_schemas() -> Vec<&'static Value> {
        let mut found = Vec::new();
        served()
            .map()
            .values()
            .for_each(|schema| walk(schema, &mut found));
        found
    }

    #[test]
    fn pod_is_tagged_and_containers_merge_by_name() {
        let defs = served();
        let pod = defs.get("io.k8s.api.core.v1.Pod").expect("Pod definition");
        assert_eq!(pod["x-kubernetes-group-version-kind"], gvk("", "v1", "Pod"));
        assert!(
            pod.get("required").is_none(),
            "metadata is optional upstream"
        );
        let event = defs.get("io.k8s.api.core.v1.Event").expect("Event");
        assert!(
            event["required"]
                .as_array()
                .expect("required")
                .contains(&json!("metadata"))
        );
        let containers =
            &defs.get("io.k8s.api.core.v1.PodSpec").expect("PodSpec")["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            defs.kind_definition("apps", "v1", "DeploymentList"),
            Some("io.k8s.api.apps.v1.DeploymentList")
        );
        assert_eq!(
            defs.kind_definition("autoscaling", "v1", "Scale"),
            Some("io.k8s.api.autoscaling.v1.Scale")
        );
    }

    #[test]
    fn every_kind_and_list_is_served() {
        let defs = served();
        for (group, kind) in [
            ("", "Namespace"),
            ("", "Pod"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "Event"),
            ("", "Node"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("coordination.k8s.io", "Lease"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "DaemonSet"),
            ("networking.k8s.io", "NetworkPolicy"),
        ] {
            assert!(defs.kind_definition(group, "v1", kind).is_some(), "{kind}");
            let list = format!("{kind}List");
            let name = defs.kind_definition(group, "v1", &list).expect("list kind");
            let items = &defs.get(name).expect("list definition")["properties"]["items"];
            assert!(defs.resolve(&items["items"]).get("properties").is_some());
        }
        assert!(defs.kind_definition("", "v1", "Binding").is_some());
    }

    #[test]
    fn every_reference_resolves() {
        let defs = served();
        for schema in all_schemas() {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                let name = reference.strip_prefix(REF_PREFIX).expect("definitions ref");
                assert!(defs.get(name).is_some(), "dangling {reference}");
            }
        }
    }

    #[test]
    fn schemas_are_swagger_2() {
        for schema in all_schemas() {
            let object = schema.as_object().expect("schema object");
            for key in object.keys() {
                let swagger = matches!(
                    key.as_str(),
                    "$ref"
                        | "description"
                        | "type"
                        | "format"
                        | "items"
                        | "properties"
                        | "additionalProperties"
                        | "required"
                        | "enum"
                        | "default"
                );
                assert!(swagger || key.starts_with("x-"), "keyword {key}");
            }
            assert!(!object.get("type").is_some_and(Value::is_array));
            if object.get("type").is_some_and(|t| t == "array") {
                assert!(object.get("items").is_some_and(Value::is_object));
            }
        }
        let defs = served();
        let int_or_string = defs.get(INT_OR_STRING).expect("IntOrString");
        assert_eq!(int_or_string["format"], "int-or-string");
        assert_eq!(defs.get(QUANTITY).expect("Quantity")["type"], "string");
    }

    #[test]
    fn every_patch_meta_entry_lands() {
        let defs = served();
        for meta in patch_meta::TABLE {
            let property = defs
                .get(meta.definition)
                .and_then(|definition| definition["properties"].get(meta.property))
                .unwrap_or_else(|| panic!("{}.{}", meta.definition, meta.property));
            assert_eq!(property["x-kubernetes-patch-strategy"], meta.strategy);
        }
    }
}
