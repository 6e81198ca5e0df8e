//! A container's environment as kubelet builds it: the image's variables, then envFrom,
//! then env (later names win), values from ConfigMaps, Secrets and the downward API, and
//! `$(VAR)` references expanded.
use super::downward::{FieldValue, PodFacts, field};
use super::objects::{PodObjects, Source};
use k8s_openapi::api::core::v1::{Container, Pod};

/// A pod spec that is valid but cannot be run as written (a missing key, a root user under
/// runAsNonRoot); the container waits with reason CreateContainerConfigError.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Environment {
    pub vars: Vec<(String, String)>,
    /// Variables that take the pod IP, filled in when the sandbox has one.
    pub pod_ip_vars: Vec<String>,
}

impl Environment {
    fn set(&mut self, name: &str, value: String) {
        self.pod_ip_vars.retain(|n| n != name);
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.vars
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect()
    }

    /// Expands `$(NAME)` with the variables so far; `$$(NAME)` stays literal `$(NAME)`.
    pub fn expand(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(inner) = after.strip_prefix('(')
                && let Some(end) = inner.find(')')
                && let Some((_, value)) = self.vars.iter().find(|(name, _)| name == &inner[..end])
            {
                out.push_str(value);
                rest = &inner[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        out
    }
}

fn key_value(
    objects: &PodObjects,
    source: Source,
    namespace: &str,
    name: &str,
    key: &str,
    optional: bool,
    field_name: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(data) = objects.data(source, namespace, name) else {
        if optional {
            return Ok(None);
        }
        return Err(ConfigError::new(
            field_name,
            format!("{} {namespace}/{name} not found", source.kind()),
        ));
    };
    match data.get(key) {
        Some(bytes) => Ok(Some(String::from_utf8_lossy(bytes).into_owned())),
        None if optional => Ok(None),
        None => Err(ConfigError::new(
            field_name,
            format!(
                "key {key:?} not found in {} {namespace}/{name}",
                source.kind()
            ),
        )),
    }
}

pub fn resolve(
    pod: &Pod,
    facts: &PodFacts<'_>,
    objects: &PodObjects,
    container: &Container,
    field_prefix: &str,
    image_env: &[String],
) -> Result<Environment, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Environment::default();
    for line in image_env {
        if let Some((name, value)) = line.split_once('=') {
            env.set(name, value.to_string());
        }
    }
    for (index, from) in container.env_from.iter().flatten().enumerate() {
        let field_name = format!("{field_prefix}.envFrom[{index}]");
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (source, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(map), _) => (
                Source::ConfigMap,
                map.name.as_str(),
                map.optional.unwrap_or(false),
            ),
            (None, Some(secret)) => (
                Source::Secret,
                secret.name.as_str(),
                secret.optional.unwrap_or(false),
            ),
            (None, None) => {
                return Err(ConfigError::new(
                    field_name,
                    "needs configMapRef or secretRef",
                ));
            }
        };
        match objects.data(source, namespace, name) {
            Some(data) => {
                for (key, value) in data {
                    env.set(
                        &format!("{prefix}{key}"),
                        String::from_utf8_lossy(&value).into_owned(),
                    );
                }
            }
            None if optional => {}
            None => {
                return Err(ConfigError::new(
                    field_name,
                    format!("{} {namespace}/{name} not found", source.kind()),
                ));
            }
        }
    }
    for (index, var) in container.env.iter().flatten().enumerate() {
        let field_name = format!("{field_prefix}.env[{index}]");
        let Some(from) = &var.value_from else {
            let value = env.expand(var.value.as_deref().unwrap_or(""));
            env.set(&var.name, value);
            continue;
        };
        let value = if let Some(selector) = &from.config_map_key_ref {
            let optional = selector.optional.unwrap_or(false);
            key_value(
                objects,
                Source::ConfigMap,
                namespace,
                &selector.name,
                &selector.key,
                optional,
                &field_name,
            )?
        } else if let Some(selector) = &from.secret_key_ref {
            let optional = selector.optional.unwrap_or(false);
            key_value(
                objects,
                Source::Secret,
                namespace,
                &selector.name,
                &selector.key,
                optional,
                &field_name,
            )?
        } else if let Some(selector) = &from.field_ref {
            match field(pod, facts, &selector.field_path)
                .map_err(|message| ConfigError::new(&field_name, message))?
            {
                FieldValue::Now(value) => Some(value),
                FieldValue::PodIp => {
                    env.pod_ip_vars.push(var.name.clone());
                    env.vars.retain(|(name, _)| name != &var.name);
                    continue;
                }
            }
        } else {
            return Err(ConfigError::new(
                field_name,
                "valueFrom needs configMapKeyRef, secretKeyRef or fieldRef",
            ));
        };
        if let Some(value) = value {
            env.set(&var.name, value);
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};

    fn objects() -> PodObjects {
        let mut objects = PodObjects::default();
        let map: ConfigMap = serde_yaml::from_str(
            "metadata: {name: settings, namespace: default}\ndata: {mode: fast, level: '3'}",
        )
        .unwrap();
        let secret: Secret = serde_yaml::from_str(
            "metadata: {name: creds, namespace: default}\ndata: {password: czNjcmV0}",
        )
        .unwrap();
        objects
            .config_maps
            .insert(("default".into(), "settings".into()), map);
        objects
            .secrets
            .insert(("default".into(), "creds".into()), secret);
        objects
    }

    fn pod(env_yaml: &str) -> Pod {
        serde_yaml::from_str(&format!("metadata: {{name: web, namespace: default}}\nspec:\n  containers:\n  - name: app\n    image: x\n{env_yaml}")).unwrap()
    }

    fn resolved(env_yaml: &str) -> Result<Environment, ConfigError> {
        let pod = pod(env_yaml);
        let facts = PodFacts {
            uid: "u",
            node_name: "n1",
            host_ip: "10.0.0.1",
        };
        let container = pod.spec.as_ref().unwrap().containers[0].clone();
        resolve(
            &pod,
            &facts,
            &objects(),
            &container,
            "spec.containers[0]",
            &["PATH=/bin".to_string(), "MODE=image".to_string()],
        )
    }

    #[test]
    fn later_sources_win_and_references_expand() {
        let env = resolved(
            "    envFrom: [{configMapRef: {name: settings}, prefix: CFG_}]\n    env:\n    - {name: MODE, value: env}\n    - {name: GREETING, value: 'mode $(MODE) level $(CFG_level) $$(MODE) $(NOPE)'}\n    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: creds, key: password}}}\n    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}\n    - {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}\n    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}",
        )
        .unwrap();
        let get = |name: &str| {
            env.vars
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("MODE"), Some("env"));
        assert_eq!(get("CFG_mode"), Some("fast"));
        assert_eq!(get("GREETING"), Some("mode env level 3 $(MODE) $(NOPE)"));
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("NODE"), Some("n1"));
        assert_eq!(env.pod_ip_vars, ["IP"]);
        assert_eq!(env.vars[0], ("PATH".to_string(), "/bin".to_string()));
    }

    #[test]
    fn missing_keys_name_the_field_unless_optional() {
        let error = resolved(
            "    env: [{name: X, valueFrom: {configMapKeyRef: {name: settings, key: absent}}}]",
        )
        .unwrap_err();
        assert_eq!(error.field, "spec.containers[0].env[0]");
        assert!(
            error
                .message
                .contains("key \"absent\" not found in configmap default/settings"),
            "{error}"
        );
        let error =
            resolved("    env: [{name: X, valueFrom: {secretKeyRef: {name: nope, key: k}}}]")
                .unwrap_err();
        assert!(
            error.message.contains("secret default/nope not found"),
            "{error}"
        );
        let env = resolved(
            "    env: [{name: X, valueFrom: {secretKeyRef: {name: nope, key: k, optional: true}}}]",
        )
        .unwrap();
        assert!(env.vars.iter().all(|(n, _)| n != "X"));
    }
}
