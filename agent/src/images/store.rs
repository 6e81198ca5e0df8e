//! The node's content-addressed image store: verified blobs, layers unpacked once and shared
//! by every pod, and the table of image names → manifests, with garbage collection.
use super::digest::{Digest, DigestError, copy_hashed};
use super::manifest::{ManifestError, RunConfig};
use super::unpack::{UnpackError, decompressed, unpack};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

const IMAGES_FILE: &str = "images.json";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("image store {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {digest}: {source}")]
    Digest { digest: Digest, source: DigestError },
    #[error("layer {digest}: {source}")]
    Unpack { digest: Digest, source: UnpackError },
    #[error("image table {path:?} is corrupt: {source}")]
    Table {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("image config {digest}: {source}")]
    Config {
        digest: Digest,
        source: ManifestError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One image the node holds, under the name a pod asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub name: String,
    pub manifest: String,
    pub config: String,
    /// Layer digests, lowest first.
    pub layers: Vec<String>,
    pub size: u64,
}

impl ImageRecord {
    /// The imageID Kubernetes reports: `repo@sha256:…` of the manifest.
    pub fn image_id(&self) -> String {
        let repository = self.name.split('@').next().unwrap_or(&self.name);
        let repository = match repository.rfind(':') {
            Some(at) if !repository[at..].contains('/') => &repository[..at],
            _ => repository,
        };
        format!("{repository}@{}", self.manifest)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub images: usize,
    pub blobs: usize,
    pub layers: usize,
}

pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<ImageStore, StoreError> {
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_error(&path))?;
        }
        Ok(ImageStore {
            root: root.to_path_buf(),
        })
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn layer_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("layers").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(io_error(&path))
    }

    /// Stores a blob from a stream; it becomes visible only once its digest checks out.
    pub fn write_blob(&self, digest: &Digest, source: &mut impl Read) -> Result<(), StoreError> {
        let temporary =
            self.root
                .join("tmp")
                .join(format!("{}.{}", digest.hex(), std::process::id()));
        let mut file = fs::File::create(&temporary).map_err(io_error(&temporary))?;
        let (actual, _) = copy_hashed(source, &mut file).map_err(io_error(&temporary))?;
        if &actual != digest {
            let _ = fs::remove_file(&temporary);
            return Err(StoreError::Digest {
                digest: digest.clone(),
                source: DigestError::Mismatch {
                    expected: digest.clone(),
                    actual,
                },
            });
        }
        let path = self.blob_path(digest);
        fs::rename(&temporary, &path).map_err(io_error(&path))
    }

    /// Unpacks a stored layer blob once; later pods reuse the directory.
    pub fn unpack_layer(&self, digest: &Digest) -> Result<PathBuf, StoreError> {
        let target = self.layer_path(digest);
        if target.exists() {
            return Ok(target);
        }
        let staging = self
            .root
            .join("tmp")
            .join(format!("layer-{}", digest.hex()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(io_error(&staging))?;
        let blob_path = self.blob_path(digest);
        let blob = fs::File::open(&blob_path).map_err(io_error(&blob_path))?;
        let unpacked = decompressed(blob).and_then(|tar| unpack(tar, &staging));
        if let Err(source) = unpacked {
            let _ = fs::remove_dir_all(&staging);
            return Err(StoreError::Unpack {
                digest: digest.clone(),
                source,
            });
        }
        fs::rename(&staging, &target).map_err(io_error(&target))?;
        Ok(target)
    }

    pub fn run_config(&self, record: &ImageRecord) -> Result<RunConfig, StoreError> {
        let digest = Digest::parse(&record.config).map_err(|source| StoreError::Digest {
            digest: Digest::of(b""),
            source,
        })?;
        let bytes = self.read_blob(&digest)?;
        RunConfig::parse(&bytes).map_err(|source| StoreError::Config { digest, source })
    }

    pub fn images(&self) -> Result<BTreeMap<String, ImageRecord>, StoreError> {
        let path = self.root.join(IMAGES_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StoreError::Table { path, source })
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    pub fn lookup(&self, name: &str) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self.images()?.remove(name))
    }

    pub fn record(&self, record: ImageRecord) -> Result<(), StoreError> {
        let mut images = self.images()?;
        images.insert(record.name.clone(), record);
        self.write_images(&images)
    }

    fn write_images(&self, images: &BTreeMap<String, ImageRecord>) -> Result<(), StoreError> {
        let path = self.root.join(IMAGES_FILE);
        let temporary = self.root.join("tmp").join(IMAGES_FILE);
        let bytes = serde_json::to_vec_pretty(images).expect("image records always serialise");
        fs::write(&temporary, bytes).map_err(io_error(&temporary))?;
        fs::rename(&temporary, &path).map_err(io_error(&path))
    }

    /// Forgets images no pod uses (by name) and deletes blobs and layers nothing refers to.
    pub fn collect_garbage(&self, in_use: &BTreeSet<String>) -> Result<GcReport, StoreError> {
        let mut images = self.images()?;
        let before = images.len();
        images.retain(|name, _| in_use.contains(name));
        let mut report = GcReport {
            images: before - images.len(),
            ..GcReport::default()
        };
        self.write_images(&images)?;
        let mut live = BTreeSet::new();
        for record in images.values() {
            live.insert(record.manifest.clone());
            live.insert(record.config.clone());
            live.extend(record.layers.iter().cloned());
        }
        let blobs = self.root.join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_error(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&format!("sha256:{name}")) {
                fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
                report.blobs += 1;
            }
        }
        let layers = self.root.join("layers");
        for entry in fs::read_dir(&layers).map_err(io_error(&layers))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&format!("sha256:{name}")) {
                fs::remove_dir_all(entry.path()).map_err(io_error(&entry.path()))?;
                report.layers += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_verified_before_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let digest = Digest::of(b"layer");
        let error = store.write_blob(&digest, &mut &b"other"[..]).unwrap_err();
        assert!(matches!(error, StoreError::Digest { .. }), "{error}");
        assert!(!store.has_blob(&digest));
        store.write_blob(&digest, &mut &b"layer"[..]).unwrap();
        assert_eq!(store.read_blob(&digest).unwrap(), b"layer");
    }

    #[test]
    fn garbage_collection_keeps_what_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let blob = |text: &[u8]| {
            let digest = Digest::of(text);
            store.write_blob(&digest, &mut &text[..]).unwrap();
            digest.to_string()
        };
        let shared = blob(b"shared layer");
        let keep = ImageRecord {
            name: "a:1".into(),
            manifest: blob(b"m1"),
            config: blob(b"c1"),
            layers: vec![shared.clone()],
            size: 1,
        };
        let drop = ImageRecord {
            name: "b:1".into(),
            manifest: blob(b"m2"),
            config: blob(b"c2"),
            layers: vec![shared, blob(b"own layer")],
            size: 1,
        };
        store.record(keep.clone()).unwrap();
        store.record(drop).unwrap();
        let report = store
            .collect_garbage(&BTreeSet::from(["a:1".to_string()]))
            .unwrap();
        assert_eq!(
            report,
            GcReport {
                images: 1,
                blobs: 3,
                layers: 0
            }
        );
        assert_eq!(
            store.images().unwrap().into_values().collect::<Vec<_>>(),
            vec![keep]
        );
        assert!(store.has_blob(&Digest::of(b"shared layer")));
    }

    #[test]
    fn image_id_names_the_repository_and_manifest() {
        let record = ImageRecord {
            name: "127.0.0.1:5000/kaya/busybox:v1".into(),
            manifest: "sha256:ab".into(),
            config: String::new(),
            layers: vec![],
            size: 0,
        };
        assert_eq!(record.image_id(), "127.0.0.1:5000/kaya/busybox@sha256:ab");
    }
}
