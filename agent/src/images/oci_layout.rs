//! Imports an OCI image layout tarball (`oci-layout`, `index.json`, `blobs/`) into the store,
//! for nodes that get images without a registry.
use super::digest::Digest;
use super::install::{BlobSource, InstallError, SourceError, install};
use super::manifest::Descriptor;
use super::reference::Reference;
use super::store::{ImageRecord, ImageStore};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path:?} is not an OCI image layout: {reason}")]
    NotLayout { path: PathBuf, reason: String },
    #[error(
        "index.json entry {digest} has no image name: add the {REF_NAME} annotation or pass a name"
    )]
    Unnamed { digest: String },
    #[error("image name {name:?}: {reason}")]
    Name { name: String, reason: String },
    #[error("importing {name}: {source}")]
    Install { name: String, source: InstallError },
}

struct LayoutDir {
    root: PathBuf,
}

impl BlobSource for LayoutDir {
    fn blob(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, SourceError> {
        Ok(Box::new(fs::File::open(
            self.root.join("blobs/sha256").join(digest.hex()),
        )?))
    }
}

/// Imports every image the layout's index names. `name` names an image whose index entry
/// carries only a tag (or nothing).
pub fn import(
    store: &ImageStore,
    tarball: &Path,
    name: Option<&str>,
) -> Result<Vec<ImageRecord>, ImportError> {
    let io_error = |source| ImportError::Io {
        path: tarball.to_path_buf(),
        source,
    };
    let staging = tempfile::Builder::new()
        .prefix("import-")
        .tempdir()
        .map_err(io_error)?;
    let file = fs::File::open(tarball).map_err(io_error)?;
    tar::Archive::new(file)
        .unpack(staging.path())
        .map_err(io_error)?;
    let not_layout = |reason: String| ImportError::NotLayout {
        path: tarball.to_path_buf(),
        reason,
    };
    if !staging.path().join("oci-layout").exists() {
        return Err(not_layout("no oci-layout file".to_string()));
    }
    let index_bytes = fs::read(staging.path().join("index.json"))
        .map_err(|e| not_layout(format!("index.json: {e}")))?;
    #[derive(serde::Deserialize)]
    struct Index {
        manifests: Vec<Descriptor>,
    }
    let index: Index =
        serde_json::from_slice(&index_bytes).map_err(|e| not_layout(format!("index.json: {e}")))?;
    let source = LayoutDir {
        root: staging.path().to_path_buf(),
    };
    let mut imported = Vec::new();
    for entry in &index.manifests {
        let annotations = entry.annotations.clone().unwrap_or_default();
        let annotated = annotations
            .get(CONTAINERD_NAME)
            .or_else(|| annotations.get(REF_NAME));
        let full_name = match (annotated, name) {
            (Some(annotated), _)
                if annotated.contains('/') || annotated.contains(':') && !is_tag(annotated) =>
            {
                annotated.clone()
            }
            (Some(tag), Some(name)) => format!("{name}:{tag}"),
            (None, Some(name)) => name.to_string(),
            _ => {
                return Err(ImportError::Unnamed {
                    digest: entry.digest.clone(),
                });
            }
        };
        let reference = Reference::parse(&full_name).map_err(|error| ImportError::Name {
            name: full_name.clone(),
            reason: error.to_string(),
        })?;
        let install_error = |source| ImportError::Install {
            name: full_name.clone(),
            source,
        };
        let digest = Digest::parse(&entry.digest)
            .map_err(|error| not_layout(format!("index.json digest {}: {error}", entry.digest)))?;
        let bytes = source.manifest(&digest).map_err(|source| {
            install_error(InstallError::Source {
                digest: digest.clone(),
                source,
            })
        })?;
        if digest.verify(&bytes).is_err() {
            return Err(install_error(InstallError::ManifestDigest { digest }));
        }
        imported.push(
            install(store, &source, &reference.to_string(), &digest, &bytes)
                .map_err(install_error)?,
        );
    }
    Ok(imported)
}

fn is_tag(text: &str) -> bool {
    !text.contains('/') && !text.contains(':')
}
