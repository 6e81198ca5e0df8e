//! Image references as users write them (`busybox`, `localhost:5000/team/app:v1`,
//! `app@sha256:…`), normalised the way Docker and containerd do.
use super::digest::{Digest, DigestError};
use std::fmt;

const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API is not served on its name.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {reference:?}: {reason}")]
    Invalid {
        reference: String,
        reason: &'static str,
    },
    #[error("image reference {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host[:port] as written (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason| ReferenceError::Invalid {
            reference: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if text.chars().any(char::is_whitespace) {
            return Err(invalid("contains whitespace"));
        }
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => {
                let digest = Digest::parse(digest).map_err(|source| ReferenceError::Digest {
                    reference: text.to_string(),
                    source,
                })?;
                (name, Some(digest))
            }
            None => (text, None),
        };
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let last_slash = name.rfind('/').map_or(0, |at| at + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(at) => {
                let tag = &name[last_slash + at + 1..];
                if tag.is_empty()
                    || tag.len() > 128
                    || !tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                {
                    return Err(invalid("tag must be 1-128 of [A-Za-z0-9_.-]"));
                }
                (&name[..last_slash + at], Some(tag.to_string()))
            }
            None => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.is_empty()
            || repository.split('/').any(|part| {
                part.is_empty()
                    || !part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
            })
        {
            return Err(invalid(
                "repository path must be lower-case [a-z0-9._-] components separated by '/'",
            ));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the distribution API is served on.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Loopback registries speak plain HTTP, as containerd and Docker allow by default.
    pub fn scheme(&self) -> &'static str {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(host, port)| {
                if port.chars().all(|c| c.is_ascii_digit()) {
                    host
                } else {
                    self.registry.as_str()
                }
            });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback { "http" } else { "https" }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_string(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_docker_hub_names() {
        let reference = Reference::parse("busybox").unwrap();
        assert_eq!(reference.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(reference.api_host(), "registry-1.docker.io");
        assert_eq!(reference.scheme(), "https");
        assert_eq!(
            Reference::parse("team/app:1.2").unwrap().to_string(),
            "docker.io/team/app:1.2"
        );
    }

    #[test]
    fn registry_with_port_and_digest() {
        let digest = Digest::of(b"x");
        let reference =
            Reference::parse(&format!("127.0.0.1:5000/kaya/busybox:v1@{digest}")).unwrap();
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "kaya/busybox");
        assert_eq!(reference.tag.as_deref(), Some("v1"));
        assert_eq!(reference.manifest_reference(), digest.to_string());
        assert_eq!(reference.scheme(), "http");
        assert_eq!(
            Reference::parse("localhost:5000/a").unwrap().scheme(),
            "http"
        );
        assert_eq!(
            Reference::parse("registry.example.com:5000/a")
                .unwrap()
                .scheme(),
            "https"
        );
        assert_eq!(
            Reference::parse("localhost/a").unwrap().tag.as_deref(),
            Some("latest")
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        let message = Reference::parse("Bad/Name").unwrap_err().to_string();
        assert!(message.contains("lower-case"), "{message}");
        assert!(
            Reference::parse("a:b c")
                .unwrap_err()
                .to_string()
                .contains("whitespace")
        );
        assert!(
            Reference::parse("a:")
                .unwrap_err()
                .to_string()
                .contains("tag")
        );
        assert!(
            Reference::parse("a@sha256:zz")
                .unwrap_err()
                .to_string()
                .contains("sha256")
        );
        assert!(Reference::parse("reg.io//x").is_err());
    }
}
