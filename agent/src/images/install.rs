//! Installs an image into the store from any blob source (a registry, an OCI layout): the
//! index is resolved to linux/amd64, every blob is verified, layers are unpacked once.
use super::digest::Digest;
use super::manifest::{Manifest, ManifestError};
use super::store::{ImageRecord, ImageStore, StoreError};
use std::io::Read;

pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Where blobs come from.
pub trait BlobSource {
    fn blob(&self, digest: &Digest) -> Result<Box<dyn Read + '_>, SourceError>;

    /// Manifests named by an index; registries serve them on their own endpoint.
    fn manifest(&self, digest: &Digest) -> Result<Vec<u8>, SourceError> {
        let mut bytes = Vec::new();
        self.blob(digest)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("fetching {digest}: {source}")]
    Source { digest: Digest, source: SourceError },
    #[error("manifest {digest}: {source}")]
    Manifest {
        digest: Digest,
        source: ManifestError,
    },
    #[error("manifest {digest} does not match its digest")]
    ManifestDigest { digest: Digest },
    #[error("image index {digest} points at another index")]
    NestedIndex { digest: Digest },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Installs the image whose top manifest (index or image) is `top` under `name`.
pub fn install(
    store: &ImageStore,
    source: &dyn BlobSource,
    name: &str,
    top: &Digest,
    top_bytes: &[u8],
) -> Result<ImageRecord, InstallError> {
    let parse = |digest: &Digest, bytes: &[u8]| {
        Manifest::parse(bytes).map_err(|source| InstallError::Manifest {
            digest: digest.clone(),
            source,
        })
    };
    let (digest, bytes, manifest) = match parse(top, top_bytes)? {
        Manifest::Index { chosen } => {
            let bytes = source
                .manifest(&chosen)
                .map_err(|source| InstallError::Source {
                    digest: chosen.clone(),
                    source,
                })?;
            if chosen.verify(&bytes).is_err() {
                return Err(InstallError::ManifestDigest { digest: chosen });
            }
            let manifest = parse(&chosen, &bytes)?;
            if matches!(manifest, Manifest::Index { .. }) {
                return Err(InstallError::NestedIndex { digest: chosen });
            }
            (chosen, bytes, manifest)
        }
        image => (top.clone(), top_bytes.to_vec(), image),
    };
    let Manifest::Image {
        config,
        layers,
        size,
    } = manifest
    else {
        unreachable!("indexes are resolved above");
    };
    store.write_blob(&digest, &mut bytes.as_slice())?;
    for blob in std::iter::once(&config).chain(&layers) {
        if !store.has_blob(blob) {
            let mut reader = source.blob(blob).map_err(|source| InstallError::Source {
                digest: blob.clone(),
                source,
            })?;
            store.write_blob(blob, &mut reader)?;
        }
    }
    for layer in &layers {
        store.unpack_layer(layer)?;
    }
    let record = ImageRecord {
        name: name.to_string(),
        manifest: digest.to_string(),
        config: config.to_string(),
        layers: layers.iter().map(Digest::to_string).collect(),
        size,
    };
    store.record(record.clone())?;
    Ok(record)
}
