//! Validation shared by every Kubernetes object kaya reads: names, and errors that name the
//! object and the field at fault.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::fmt;
use std::net::Ipv4Addr;

use crate::services::frontend::Protocol;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectName {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {message}")]
pub struct InvalidObject {
    pub kind: &'static str,
    pub object: String,
    pub field: String,
    pub message: String,
}

/// Builds `InvalidObject` errors for one object.
pub(crate) struct Checker {
    kind: &'static str,
    object: String,
}

impl Checker {
    pub(crate) fn new(kind: &'static str, meta: &ObjectMeta) -> Self {
        let object = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or("default"),
            meta.name.as_deref().unwrap_or("<unnamed>")
        );
        Checker { kind, object }
    }
    pub(crate) fn fail<T>(
        &self,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Result<T, InvalidObject> {
        Err(InvalidObject {
            kind: self.kind,
            object: self.object.clone(),
            field: field.into(),
            message: message.into(),
        })
    }
    pub(crate) fn name(&self, meta: &ObjectMeta) -> Result<ObjectName, InvalidObject> {
        let Some(name) = meta.name.clone().filter(|n| !n.is_empty()) else {
            return self.fail("metadata.name", "required");
        };
        Ok(ObjectName {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name,
        })
    }
    pub(crate) fn ipv4(&self, field: String, value: &str) -> Result<Ipv4Addr, InvalidObject> {
        value
            .parse()
            .or_else(|_| self.fail(field, format!("{value:?} is not an IPv4 address")))
    }
    pub(crate) fn port(&self, field: String, value: i32) -> Result<u16, InvalidObject> {
        match u16::try_from(value) {
            Ok(port) if port > 0 => Ok(port),
            _ => self.fail(field, format!("{value} is not a port (1-65535)")),
        }
    }
    pub(crate) fn protocol(
        &self,
        field: String,
        value: Option<&str>,
    ) -> Result<Protocol, InvalidObject> {
        Protocol::parse(value).map_or_else(
            || {
                self.fail(
                    field,
                    format!("{:?} is not TCP, UDP or SCTP", value.unwrap_or_default()),
                )
            },
            Ok,
        )
    }
}
