//! Encodes the served definitions as the `/openapi/v2` document: Swagger JSON, and the gnostic
//! `openapi.v2.Document` protobuf kubectl requests
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
use prost::Message;
use serde_json::{Map, Value, json};

use super::Definitions;

const SWAGGER: &str = "2.0";
const TITLE: &str = "Kubernetes";
const VERSION: &str = "v1.20.0";

/// The Swagger 2.0 document as JSON: no paths, only the definitions.
pub fn swagger_json(defs: &Definitions) -> Value {
    json!({
        "swagger": SWAGGER,
        "info": { "title": TITLE, "version": VERSION },
        "paths": {},
        "definitions": defs.map(),
    })
}

/// The same document as gnostic's `openapi.v2.Document` protobuf.
pub fn encode_document(defs: &Definitions) -> Vec<u8> {
    document(defs).encode_to_vec()
}

fn document(defs: &Definitions) -> v2::Document {
    v2::Document {
        swagger: SWAGGER.into(),
        info: Some(v2::Info {
            title: TITLE.into(),
            version: VERSION.into(),
        }),
        paths: Some(v2::Paths::default()),
        definitions: Some(v2::Definitions {
            additional_properties: named_schemas(defs.map()),
        }),
    }
}

fn named_schemas(map: &Map<String, Value>) -> Vec<v2::NamedSchema> {
    map.iter()
        .map(|(name, value)| v2::NamedSchema {
            name: name.clone(),
            value: Some(schema(value)),
        })
        .collect()
}

/// Extension and enum values travel as YAML text; JSON is valid YAML, and kubectl parses it
/// with yaml.Unmarshal.
fn any(value: &Value) -> v2::Any {
    v2::Any {
        yaml: value.to_string(),
    }
}

fn text(object: &Map<String, Value>, key: &str) -> String {
    object
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(single)) => vec![single.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn schema(value: &Value) -> v2::Schema {
    let Value::Object(object) = value else {
        return v2::Schema::default();
    };
    let types = strings(object.get("type"));
    let items = match object.get("items") {
        Some(Value::Array(many)) => Some(many.iter().map(schema).collect()),
        Some(one @ Value::Object(_)) => Some(vec![schema(one)]),
        _ => None,
    };
    let additional_properties = match object.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            Some(v2::additional_properties_item::Oneof::Boolean(*allowed))
        }
        Some(sub @ Value::Object(_)) => Some(v2::additional_properties_item::Oneof::Schema(
            Box::new(schema(sub)),
        )),
        _ => None,
    };
    v2::Schema {
        xref: text(object, "$ref"),
        format: text(object, "format"),
        title: text(object, "title"),
        description: text(object, "description"),
        default: object.get("default").map(any),
        required: strings(object.get("required")),
        r#enum: object
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| values.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: additional_properties
            .map(|oneof| v2::AdditionalPropertiesItem { oneof: Some(oneof) }),
        r#type: (!types.is_empty()).then_some(v2::TypeItem { value: types }),
        items: items.map(|schema| v2::ItemsItem { schema }),
        properties: object
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| v2::Properties {
                additional_properties: named_schemas(properties),
            }),
        vendor_extension: object
            .iter()
            .filter(|(key, _)| key.starts_with("x-"))
            .map(|(key, value)| v2::NamedAny {
                name: key.clone(),
                value: Some(any(value)),
            })
            .collect(),
    }
}

/// The subset of gnostic's openapiv2/OpenAPIv2.proto (package `openapi.v2`) the document uses,
/// with its field numbers; fields left out are never set.
pub mod v2 {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "1")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub title: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(message, optional, tag = "5")]
        pub default: Option<Any>,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, tag = "21")]
        pub additional_properties: Option<AdditionalPropertiesItem>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
        pub oneof: Option<additional_properties_item::Oneof>,
    }

    pub mod additional_properties_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(Box<super::Schema>),
            #[prost(bool, tag = "2")]
            Boolean(bool),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    /// gnostic's Any; its `google.protobuf.Any value = 1` is never used for JSON-born values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::schema::build::served;

    fn small() -> Definitions {
        let map = json!({
            "io.example.Thing": {
                "description": "A thing.",
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": { "type": "string" },
                    "ports": {
                        "type": "array",
                        "items": { "$ref": "#/definitions/io.example.Port" },
                        "x-kubernetes-patch-merge-key": "port",
                        "x-kubernetes-patch-strategy": "merge",
                    },
                    "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                },
                "x-kubernetes-group-version-kind": [{ "group": "", "version": "v1", "kind": "Thing" }],
            },
            "io.example.Port": { "type": "integer", "format": "int32" },
        });
        match map {
            Value::Object(map) => Definitions::from_map(map),
            _ => Definitions::default(),
        }
    }

    #[test]
    fn small_document_round_trips() {
        let bytes = encode_document(&small());
        let decoded = v2::Document::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(decoded, document(&small()));
        assert_eq!(decoded.swagger, "2.0");
        assert_eq!(
            decoded.info.as_ref().map(|info| info.title.as_str()),
            Some("Kubernetes")
        );
        let definitions = decoded
            .definitions
            .expect("definitions")
            .additional_properties;
        let thing = definitions
            .iter()
            .find(|named| named.name == "io.example.Thing")
            .and_then(|named| named.value.as_ref())
            .expect("Thing");
        assert_eq!(
            thing.r#type.as_ref().map(|t| t.value.clone()),
            Some(vec!["object".into()])
        );
        assert_eq!(thing.required, vec!["name".to_owned()]);
        let gvk = &thing.vendor_extension[0];
        assert_eq!(gvk.name, "x-kubernetes-group-version-kind");
        let yaml = gvk
            .value
            .as_ref()
            .map(|any| any.yaml.as_str())
            .unwrap_or_default();
        let parsed: serde_yaml::Value = serde_yaml::from_str(yaml).expect("extension is YAML");
        assert_eq!(parsed[0]["kind"], "Thing");
        let properties = &thing
            .properties
            .as_ref()
            .expect("properties")
            .additional_properties;
        let ports = properties
            .iter()
            .find(|p| p.name == "ports")
            .and_then(|p| p.value.as_ref());
        let ports = ports.expect("ports");
        assert_eq!(
            ports.items.as_ref().map(|i| i.schema[0].xref.as_str()),
            Some("#/definitions/io.example.Port")
        );
        let strategy = ports
            .vendor_extension
            .iter()
            .find(|e| e.name == "x-kubernetes-patch-strategy");
        let strategy = strategy
            .and_then(|e| e.value.as_ref())
            .map(|any| any.yaml.as_str());
        assert_eq!(strategy, Some("\"merge\""));
        let labels = properties
            .iter()
            .find(|p| p.name == "labels")
            .and_then(|p| p.value.as_ref());
        let additional = labels
            .and_then(|l| l.additional_properties.clone())
            .and_then(|a| a.oneof);
        assert!(matches!(
            additional,
            Some(v2::additional_properties_item::Oneof::Schema(schema)) if schema.r#type.as_ref().is_some_and(|t| t.value == ["string"])
        ));
    }

    #[test]
    fn served_document_decodes_with_every_definition() {
        let bytes = encode_document(served());
        let decoded = v2::Document::decode(bytes.as_slice()).expect("decodes");
        let count = decoded
            .definitions
            .map_or(0, |d| d.additional_properties.len());
        assert_eq!(count, served().map().len());
        let json = swagger_json(served());
        assert_eq!(json["swagger"], "2.0");
        assert!(json["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
    }
}
