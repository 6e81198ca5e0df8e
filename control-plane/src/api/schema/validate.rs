//! Checks a request body against a served definition: unknown fields, wrong JSON types and
//! missing required fields, each reported at the JSON path of the offending value.
use std::fmt;

use serde_json::{Map, Value};

use super::Definitions;
use super::build::QUANTITY;

/// Deeper bodies are refused rather than walked: the schemas nest far less than this.
const MAX_DEPTH: usize = 64;

/// One problem in a body, at `path` (`spec.template.spec.containers[0].ports[1].containerPort`,
/// map values as `metadata.labels[app]`; empty for the body itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", prefix(.path))]
pub struct FieldError {
    pub path: String,
    pub kind: FieldErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    UnknownField {
        field: String,
    },
    WrongType {
        expected: &'static str,
        got: &'static str,
    },
    RequiredMissing {
        field: String,
    },
    TooDeep,
    UnknownDefinition {
        definition: String,
    },
}

fn prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl fmt::Display for FieldErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldErrorKind::UnknownField { field } => write!(f, "unknown field \"{field}\""),
            FieldErrorKind::WrongType { expected, got } => {
                write!(f, "expected {expected}, got {got}")
            }
            FieldErrorKind::RequiredMissing { field } => {
                write!(f, "missing required field \"{field}\"")
            }
            FieldErrorKind::TooDeep => write!(f, "nested deeper than {MAX_DEPTH} levels"),
            FieldErrorKind::UnknownDefinition { definition } => {
                write!(f, "no schema named \"{definition}\"")
            }
        }
    }
}

/// Every problem of `value` against the definition named `definition`; empty when it conforms.
/// null is accepted anywhere (it means unset), except for a required field.
pub fn check(defs: &Definitions, definition: &str, value: &Value) -> Vec<FieldError> {
    let mut checker = Checker {
        defs,
        quantity: defs.get(QUANTITY),
        errors: Vec::new(),
    };
    match defs.get(definition) {
        Some(schema) => checker.value(schema, value, "", 0),
        None => checker.push(
            "",
            FieldErrorKind::UnknownDefinition {
                definition: definition.to_owned(),
            },
        ),
    }
    checker.errors
}

struct Checker<'a> {
    defs: &'a Definitions,
    quantity: Option<&'a Value>,
    errors: Vec<FieldError>,
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if is_integer(number) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Whole-valued floats (`2.0`) count, as in JSON Schema; fractions do not.
fn is_integer(number: &serde_json::Number) -> bool {
    number.is_i64() || number.is_u64() || number.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn child(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

impl Checker<'_> {
    fn push(&mut self, path: &str, kind: FieldErrorKind) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            kind,
        });
    }

    fn wrong(&mut self, path: &str, expected: &'static str, value: &Value) {
        let got = json_type(value);
        self.push(path, FieldErrorKind::WrongType { expected, got });
    }

    fn value(&mut self, schema: &Value, value: &Value, path: &str, depth: usize) {
        if value.is_null() {
            return;
        }
        if depth > MAX_DEPTH {
            return self.push(path, FieldErrorKind::TooDeep);
        }
        let schema = self.defs.resolve(schema);
        // Quantity is served as a string, as upstream does, but its decoder takes numbers too.
        if self
            .quantity
            .is_some_and(|quantity| std::ptr::eq(quantity, schema))
        {
            if !(value.is_string() || value.is_number()) {
                self.wrong(path, "string or number", value);
            }
            return;
        }
        let int_or_string = schema.get("format").is_some_and(|f| f == "int-or-string")
            || schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if int_or_string {
            let fits = value.is_string() || matches!(value, Value::Number(n) if is_integer(n));
            if !fits {
                self.wrong(path, "integer or string", value);
            }
            return;
        }
        let declared = schema.get("type").and_then(Value::as_str);
        let (fits, expected) = match declared {
            Some("object") => return self.object(schema, value, path, depth),
            None if schema.get("properties").is_some() => {
                return self.object(schema, value, path, depth);
            }
            Some("array") => return self.array(schema, value, path, depth),
            Some("string") => (value.is_string(), "string"),
            Some("integer") => (
                matches!(value, Value::Number(n) if is_integer(n)),
                "integer",
            ),
            Some("number") => (value.is_number(), "number"),
            Some("boolean") => (value.is_boolean(), "boolean"),
            // Untyped (or unknown) schemas accept anything, as kubectl's validation does.
            _ => (true, ""),
        };
        if !fits {
            self.wrong(path, expected, value);
        }
    }

    fn array(&mut self, schema: &Value, value: &Value, path: &str, depth: usize) {
        let Value::Array(elements) = value else {
            return self.wrong(path, "array", value);
        };
        let Some(items) = schema.get("items") else {
            return;
        };
        for (index, element) in elements.iter().enumerate() {
            self.value(items, element, &format!("{path}[{index}]"), depth + 1);
        }
    }

    fn object(&mut self, schema: &Value, value: &Value, path: &str, depth: usize) {
        let Value::Object(fields) = value else {
            return self.wrong(path, "object", value);
        };
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            self.fields(properties, fields, path, depth);
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                if fields.get(name).is_none_or(Value::is_null) {
                    let field = name.to_owned();
                    self.push(
                        &child(path, name),
                        FieldErrorKind::RequiredMissing { field },
                    );
                }
            }
        } else if let Some(values) = schema.get("additionalProperties").filter(|s| s.is_object()) {
            for (key, field) in fields {
                self.value(values, field, &format!("{path}[{key}]"), depth + 1);
            }
        }
    }

    fn fields(
        &mut self,
        properties: &Map<String, Value>,
        fields: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        for (name, field) in fields {
            let field_path = child(path, name);
            match properties.get(name) {
                Some(property) => self.value(property, field, &field_path, depth + 1),
                None => self.push(
                    &field_path,
                    FieldErrorKind::UnknownField {
                        field: name.clone(),
                    },
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::schema::build::served;
    use serde_json::json;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" }, "annotations": null },
            "spec": {
                "replicas": 3,
                "selector": { "matchLabels": { "app": "web" } },
                "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": "25%", "maxUnavailable": 1 } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.25",
                            "ports": [{ "containerPort": 80, "protocol": "TCP" }, { "containerPort": 443 }],
                            "env": [{ "name": "MODE", "value": "prod" }],
                            "resources": { "limits": { "cpu": "500m", "memory": "128Mi" }, "requests": { "cpu": 0.25 } },
                            "readinessProbe": { "httpGet": { "path": "/", "port": "http" } },
                        }],
                        "terminationGracePeriodSeconds": 30,
                    },
                },
            },
        })
    }

    /// Sorted, so the assertions do not depend on the JSON map's key order.
    fn errors(value: &Value) -> Vec<String> {
        let mut found: Vec<String> = check(served(), DEPLOYMENT, value)
            .iter()
            .map(ToString::to_string)
            .collect();
        found.sort();
        found
    }

    #[test]
    fn accepts_a_realistic_deployment() {
        assert_eq!(errors(&deployment()), Vec::<String>::new());
    }

    #[test]
    fn reports_unknown_field_wrong_type_and_missing_required() {
        let mut body = deployment();
        body["spec"]["foo"] = json!(1);
        body["spec"]["replicas"] = json!("3");
        body["spec"]["template"]["spec"]["containers"][0]["ports"][1]["containerPort"] =
            json!(80.5);
        body["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .map(|container| container.remove("name"));
        assert_eq!(
            errors(&body),
            vec![
                "spec.foo: unknown field \"foo\"",
                "spec.replicas: expected integer, got string",
                "spec.template.spec.containers[0].name: missing required field \"name\"",
                "spec.template.spec.containers[0].ports[1].containerPort: expected integer, got number",
            ]
        );
        let found = check(served(), DEPLOYMENT, &body);
        let replicas = found.iter().find(|error| error.path == "spec.replicas");
        assert_eq!(
            replicas.map(|error| &error.kind),
            Some(&FieldErrorKind::WrongType {
                expected: "integer",
                got: "string"
            })
        );
    }

    #[test]
    fn int_or_string_and_quantities() {
        let mut body = deployment();
        let container = &mut body["spec"]["template"]["spec"]["containers"][0];
        container["resources"]["limits"]["cpu"] = json!(2);
        container["readinessProbe"]["httpGet"]["port"] = json!(8080);
        assert!(errors(&body).is_empty());
        body["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!(true);
        body["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] =
            json!({ "size": 1 });
        assert_eq!(
            errors(&body),
            vec![
                "spec.strategy.rollingUpdate.maxSurge: expected integer or string, got boolean",
                "spec.template.spec.containers[0].resources.limits[memory]: expected string or number, got object",
            ]
        );
    }

    #[test]
    fn maps_check_values_and_top_level_type() {
        let mut body = deployment();
        body["metadata"]["labels"]["tier"] = json!(1);
        assert_eq!(
            errors(&body),
            vec!["metadata.labels[tier]: expected string, got integer"]
        );
        assert_eq!(errors(&json!([])), vec!["expected object, got array"]);
        let unknown = check(served(), "io.example.Nope", &json!({}));
        assert_eq!(
            unknown[0].to_string(),
            "no schema named \"io.example.Nope\""
        );
    }

    #[test]
    fn depth_is_bounded() {
        let mut nested = json!({});
        for _ in 0..200 {
            nested = json!({ "x": nested });
        }
        let schema = json!({ "$ref": "#/definitions/Node" });
        let map = json!({ "Node": { "type": "object", "properties": { "x": schema } } });
        let defs = match map {
            Value::Object(map) => Definitions::from_map(map),
            _ => Definitions::default(),
        };
        let found = check(&defs, "Node", &nested);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, FieldErrorKind::TooDeep);
        assert!(found[0].path.starts_with("x.x.x"));
    }
}
