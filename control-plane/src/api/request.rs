//! Request parsing: URL paths to the resource they address, query parameters, and the
//! representation (object or Table) the Accept header asks for.
use std::collections::HashMap;

use super::resources::{self, Resource, Subresource};
use super::status::ApiError;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion { group: String, version: String },
    OpenApiV2,
    Object(Target),
}

/// One resource collection or object, maybe a subresource of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

fn resolve(group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    if rest.is_empty() {
        return Ok(Route::GroupVersion {
            group: group.to_owned(),
            version: version.to_owned(),
        });
    }
    let find = |plural: &str| resources::find(group, version, plural).ok_or(ApiError::NoRoute);
    // `namespaces/{ns}/{resource}/...` addresses namespaced objects; `namespaces`,
    // `namespaces/{name}` and `namespaces/{name}/{status|finalize}` the namespaces themselves.
    let namespaced = rest[0] == "namespaces"
        && rest.len() >= 3
        && (!group.is_empty() || Subresource::parse(rest[2]).is_none());
    let (namespace, rest) = if namespaced {
        (Some(rest[1].to_owned()), &rest[2..])
    } else {
        (None, rest)
    };
    let resource = find(rest[0])?;
    if namespaced != resource.namespaced && namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    let name = rest.get(1).map(|name| name.to_string());
    let subresource = match rest.get(2) {
        None => None,
        Some(name) => Some(
            Subresource::parse(name)
                .filter(|subresource| resource.has(*subresource))
                .ok_or(ApiError::NoRoute)?,
        ),
    };
    if rest.len() > 3 || name.as_deref() == Some("") {
        return Err(ApiError::NoRoute);
    }
    Ok(Route::Object(Target {
        resource,
        namespace,
        name,
        subresource,
    }))
}

pub fn route(path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match segments.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz"] | ["livez"] | ["readyz"] => Ok(Route::Health),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["api"] => Ok(Route::CoreVersions),
        ["apis"] => Ok(Route::Groups),
        ["apis", group] => resources::GROUPS
            .iter()
            .any(|(name, _)| name == group)
            .then(|| Route::Group(group.to_string()))
            .ok_or(ApiError::NoRoute),
        ["api", "v1", rest @ ..] => resolve("", "v1", rest),
        ["apis", group, version, rest @ ..] => {
            if !resources::GROUPS.contains(&(*group, *version)) {
                return Err(ApiError::NoRoute);
            }
            resolve(group, version, rest)
        }
        _ => Err(ApiError::NoRoute),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes
            .get(index + 1..index + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (bytes[index], escaped) {
            (b'+', _) => decoded.push(b' '),
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 2;
            }
            (byte, _) => decoded.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Query parameters, decoded; the last of repeated keys wins.
#[derive(Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        Query(
            query
                .unwrap_or("")
                .split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(key), percent_decode(value))
                })
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        // Go's strconv.ParseBool spellings (the Python client sends "True").
        matches!(
            self.get(key),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True")
        )
    }

    pub fn number(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|text| {
                text.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "query parameter {key}: {text:?} is not an integer"
                    ))
                })
            })
            .transpose()
    }
}

/// How a response presents objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presentation {
    Object,
    /// meta.k8s.io Table, in the version the client asked for.
    Table(&'static str),
}

/// Picks the first acceptable representation from an Accept header.
pub fn presentation(accept: Option<&str>) -> Presentation {
    for entry in accept.unwrap_or("").split(',') {
        let mut parts = entry.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let parameters: HashMap<&str, &str> =
            parts.filter_map(|part| part.split_once('=')).collect();
        if media != "application/json" && media != "*/*" {
            continue;
        }
        match (
            parameters.get("as"),
            parameters.get("v"),
            parameters.get("g"),
        ) {
            (Some(&"Table"), Some(&"v1"), Some(&"meta.k8s.io")) => {
                return Presentation::Table("v1");
            }
            (Some(&"Table"), Some(&"v1beta1"), Some(&"meta.k8s.io")) => {
                return Presentation::Table("v1beta1");
            }
            (None, _, _) => return Presentation::Object,
            _ => continue,
        }
    }
    Presentation::Object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &str) -> Target {
        match route(path).unwrap() {
            Route::Object(target) => target,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_address_collections_objects_and_subresources() {
        let pods = target("/api/v1/namespaces/default/pods");
        assert_eq!(
            (pods.resource.plural, pods.namespace.as_deref(), pods.name),
            ("pods", Some("default"), None)
        );
        let status = target("/apis/apps/v1/namespaces/ns1/deployments/web/scale");
        assert_eq!(status.subresource, Some(Subresource::Scale));
        assert_eq!(status.name.as_deref(), Some("web"));
        let namespace = target("/api/v1/namespaces/kube-system");
        assert_eq!(
            (namespace.resource.plural, namespace.name.as_deref()),
            ("namespaces", Some("kube-system"))
        );
        let finalize = target("/api/v1/namespaces/kube-system/finalize");
        assert_eq!(finalize.subresource, Some(Subresource::Finalize));
        assert_eq!(target("/api/v1/pods").namespace, None);
        assert_eq!(
            target("/api/v1/nodes/n1/status").subresource,
            Some(Subresource::Status)
        );
        assert_eq!(
            route("/apis/apps/v1").unwrap(),
            Route::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            }
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "/api/v1/widgets",
            "/apis/apps/v2/deployments",
            "/api/v1/namespaces/a/nodes/n1",
            "/api/v1/namespaces/a/configmaps/x/scale",
            "/nothing",
        ] {
            assert_eq!(route(path).unwrap_err(), ApiError::NoRoute, "{path}");
        }
    }

    #[test]
    fn queries_decode_percent_escapes() {
        let query = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=500&watch=true&bad=%zz&end=%4",
        ));
        assert_eq!(query.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(query.number("limit").unwrap(), Some(500));
        assert!(query.flag("watch"));
        assert!(Query::parse(Some("watch=True")).flag("watch"));
        assert!(!Query::parse(Some("watch=false")).flag("watch"));
        assert_eq!(query.get("bad"), Some("%zz"));
        assert_eq!(query.get("end"), Some("%4"));
        assert!(Query::parse(Some("limit=x")).number("limit").is_err());
    }

    #[test]
    fn kubectl_asks_for_tables() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(presentation(Some(accept)), Presentation::Table("v1"));
        assert_eq!(presentation(Some("application/json")), Presentation::Object);
        assert_eq!(presentation(None), Presentation::Object);
    }
}
