//! A client for the OCI distribution API: manifests by tag or digest, blobs, and the auth
//! schemes registries use (anonymous, basic, bearer tokens from the registry's realm).
use super::digest::Digest;
use super::install::{BlobSource, SourceError};
use super::manifest::ACCEPT;
use super::reference::Reference;
use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        source: Box<ureq::Error>,
    },
    #[error("GET {url}: {status} {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("GET {url}: unauthorized (status 401){hint}")]
    Unauthorized { url: String, hint: &'static str },
    #[error("token from {realm}: {message}")]
    Token { realm: String, message: String },
    #[error("manifest {url} does not match its digest {digest}")]
    ManifestDigest { url: String, digest: Digest },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// Reads the entry for `registry` from a Docker config (`~/.docker/config.json`, the
    /// format of `kubernetes.io/dockerconfigjson` secrets).
    pub fn from_docker_config(json: &[u8], registry: &str) -> Option<Credentials> {
        use base64::Engine;
        let config: serde_json::Value = serde_json::from_slice(json).ok()?;
        let entry = config.get("auths")?.as_object()?.iter().find(|(host, _)| {
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            host.split('/').next() == Some(registry)
        })?;
        if let (Some(username), Some(password)) = (entry.1.get("username"), entry.1.get("password"))
        {
            return Some(Credentials {
                username: username.as_str()?.to_string(),
                password: password.as_str()?.to_string(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.1.get("auth")?.as_str()?)
            .ok()?;
        let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }

    fn basic(&self) -> String {
        use base64::Engine;
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut realm = None;
        let mut service = None;
        let mut scope = None;
        let mut rest = params;
        while let Some((key, after)) = rest.split_once('=') {
            let key = key.trim().trim_start_matches(',').trim();
            let (value, tail) = match after.strip_prefix('"') {
                Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
                None => after.split_once(',').unwrap_or((after, "")),
            };
            match key {
                "realm" => realm = Some(value.to_string()),
                "service" => service = Some(value.to_string()),
                "scope" => scope = Some(value.to_string()),
                _ => {}
            }
            rest = tail;
        }
        Some(Challenge::Bearer {
            realm: realm?,
            service,
            scope,
        })
    }
}

pub struct Registry {
    agent: ureq::Agent,
    base: String,
    repository: String,
    credentials: Option<Credentials>,
    /// The Authorization header that last worked, reused for every later request.
    authorization: RefCell<Option<String>>,
}

impl Registry {
    pub fn new(reference: &Reference, credentials: Option<Credentials>) -> Registry {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Registry {
            agent,
            base: format!("{}://{}", reference.scheme(), reference.api_host()),
            repository: reference.repository.clone(),
            credentials,
            authorization: RefCell::new(None),
        }
    }

    /// Fetches a manifest by tag or digest; returns its bytes and digest.
    pub fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Digest), RegistryError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base, self.repository);
        let mut response = self.get(&url, Some(ACCEPT))?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(4 * 1024 * 1024)
            .read_to_vec()
            .map_err(|source| RegistryError::Http {
                url: url.clone(),
                source: Box::new(source),
            })?;
        let digest = Digest::of(&bytes);
        if let Ok(pinned) = Digest::parse(reference)
            && pinned != digest
        {
            return Err(RegistryError::ManifestDigest {
                url,
                digest: pinned,
            });
        }
        Ok((bytes, digest))
    }

    fn get(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let send = |authorization: Option<&str>| {
            let mut request = self.agent.get(url);
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if let Some(authorization) = authorization {
                request = request.header("Authorization", authorization);
            }
            request.call().map_err(|source| RegistryError::Http {
                url: url.to_string(),
                source: Box::new(source),
            })
        };
        let cached = self.authorization.borrow().clone();
        let mut response = send(cached.as_deref())?;
        if response.status() == 401 {
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .and_then(Challenge::parse);
            let authorization = match challenge {
                Some(Challenge::Basic) => match &self.credentials {
                    Some(credentials) => credentials.basic(),
                    None => {
                        return Err(RegistryError::Unauthorized {
                            url: url.to_string(),
                            hint: ": the registry wants a username and password",
                        });
                    }
                },
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => self.token(&realm, service.as_deref(), scope.as_deref())?,
                None => {
                    return Err(RegistryError::Unauthorized {
                        url: url.to_string(),
                        hint: "",
                    });
                }
            };
            response = send(Some(&authorization))?;
            if response.status() == 401 {
                return Err(RegistryError::Unauthorized {
                    url: url.to_string(),
                    hint: ": the credentials were refused",
                });
            }
            *self.authorization.borrow_mut() = Some(authorization);
        }
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            return Err(RegistryError::Status {
                url: url.to_string(),
                status,
                message: registry_message(&body),
            });
        }
        Ok(response)
    }

    fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<String, RegistryError> {
        let token_error = |message: String| RegistryError::Token {
            realm: realm.to_string(),
            message,
        };
        let mut request = self.agent.get(realm);
        if let Some(service) = service {
            request = request.query("service", service);
        }
        let scope = scope
            .map(str::to_string)
            .unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        request = request.query("scope", &scope);
        if let Some(credentials) = &self.credentials {
            request = request.header("Authorization", credentials.basic());
        }
        let mut response = request
            .call()
            .map_err(|error| token_error(error.to_string()))?;
        if response.status() != 200 {
            return Err(token_error(format!(
                "status {}",
                response.status().as_u16()
            )));
        }
        let body: serde_json::Value = response
            .body_mut()
            .read_json()
            .map_err(|error| token_error(error.to_string()))?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|token| token.as_str())
            .ok_or_else(|| token_error("response has no token".to_string()))?;
        Ok(format!("Bearer {token}"))
    }
}

/// The registry's own error text (`{"errors":[{"code":…,"message":…}]}`), else the raw body.
fn registry_message(body: &str) -> String {
    let parsed: Option<Vec<String>> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            value.get("errors")?.as_array().map(|errors| {
                errors
                    .iter()
                    .map(|error| {
                        let code = error.get("code").and_then(|c| c.as_str()).unwrap_or("");
                        let message = error.get("message").and_then(|m| m.as_str()).unwrap_or("");
                        format!("{code}: {message}")
                    })
                    .collect()
            })
        });
    match parsed {
        Some(errors) if !errors.is_empty() => errors.join("; "),
        _ => body
            .chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string(),
    }
}

impl BlobSource for Registry {
    fn blob(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, SourceError> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let response = self.get(&url, None)?;
        Ok(Box::new(response.into_body().into_reader()))
    }

    fn manifest(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
        Ok(Registry::manifest(self, &digest.to_string())?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }

    #[test]
    fn reads_docker_config_credentials() {
        let config = br#"{"auths":{"https://127.0.0.1:5000":{"auth":"a2F5YTpzZWNyZXQ="},"r.io":{"username":"u","password":"p"}}}"#;
        assert_eq!(
            Credentials::from_docker_config(config, "127.0.0.1:5000"),
            Some(Credentials {
                username: "kaya".into(),
                password: "secret".into()
            })
        );
        assert_eq!(
            Credentials::from_docker_config(config, "r.io")
                .unwrap()
                .username,
            "u"
        );
        assert_eq!(Credentials::from_docker_config(config, "other.io"), None);
        assert_eq!(Credentials::from_docker_config(b"not json", "r.io"), None);
    }

    #[test]
    fn registry_errors_read_their_message() {
        assert_eq!(
            registry_message(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            ),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(
            registry_message("404 page not found\n"),
            "404 page not found"
        );
    }
}
