//! Image manifests, indexes and configs: only the fields a node needs, read from OCI and
//! Docker v2 documents alike (their JSON shapes agree on these).
use super::digest::{Digest, DigestError};
use serde::{Deserialize, Serialize};

pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest: {0}")]
    Digest(#[from] DigestError),
    #[error("manifest has neither `manifests` (an index) nor `config` and `layers` (an image)")]
    Shape,
    #[error("image index has no linux/amd64 manifest (it offers: {0})")]
    NoPlatform(String),
}

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Descriptor {
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Manifest {
    /// Points at per-platform manifests; this node takes linux/amd64.
    Index { chosen: Digest },
    Image {
        config: Digest,
        layers: Vec<Digest>,
        size: u64,
    },
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let document: Document = serde_json::from_slice(bytes)?;
        if let Some(manifests) = document.manifests {
            let chosen = manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                // An index without platforms (an OCI layout's) names one image per entry.
                .or_else(|| manifests.iter().find(|m| m.platform.is_none()))
                .ok_or_else(|| {
                    ManifestError::NoPlatform(
                        manifests
                            .iter()
                            .filter_map(|m| m.platform.as_ref())
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                })?;
            return Ok(Manifest::Index {
                chosen: Digest::parse(&chosen.digest)?,
            });
        }
        match (document.config, document.layers) {
            (Some(config), Some(layers)) => Ok(Manifest::Image {
                config: Digest::parse(&config.digest)?,
                size: config.size + layers.iter().map(|l| l.size).sum::<u64>(),
                layers: layers
                    .iter()
                    .map(|l| Digest::parse(&l.digest))
                    .collect::<Result<_, _>>()?,
            }),
            _ => Err(ManifestError::Shape),
        }
    }
}

/// The part of an image config a container inherits.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigDocument {
    #[serde(default)]
    config: Option<RunConfig>,
}

impl RunConfig {
    pub fn parse(bytes: &[u8]) -> Result<RunConfig, ManifestError> {
        let document: ConfigDocument = serde_json::from_slice(bytes)?;
        Ok(document.config.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_linux_amd64_from_an_index() {
        let arm = Digest::of(b"arm");
        let amd = Digest::of(b"amd");
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"digest":"{arm}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},
            {{"digest":"{amd}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#
        );
        assert_eq!(
            Manifest::parse(index.as_bytes()).unwrap(),
            Manifest::Index { chosen: amd }
        );
        let only_arm = format!(
            r#"{{"manifests":[{{"digest":"{arm}","platform":{{"architecture":"arm64","os":"linux"}}}}]}}"#
        );
        let error = Manifest::parse(only_arm.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(error.contains("linux/arm64"), "{error}");
    }

    #[test]
    fn reads_an_image_manifest() {
        let (config, layer) = (Digest::of(b"c"), Digest::of(b"l"));
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{config}","size":10}},"layers":[{{"digest":"{layer}","size":5}}]}}"#
        );
        assert_eq!(
            Manifest::parse(manifest.as_bytes()).unwrap(),
            Manifest::Image {
                config,
                layers: vec![layer],
                size: 15
            }
        );
        assert!(matches!(Manifest::parse(b"{}"), Err(ManifestError::Shape)));
        assert!(matches!(
            Manifest::parse(b"not json"),
            Err(ManifestError::Json(_))
        ));
    }

    #[test]
    fn reads_run_config() {
        let config =
            RunConfig::parse(br#"{"config":{"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"/w"}}"#)
                .unwrap();
        assert_eq!(config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(config.working_dir.as_deref(), Some("/w"));
        assert_eq!(RunConfig::parse(b"{}").unwrap(), RunConfig::default());
    }
}
