//! A container's root filesystem: its image layers stacked read-only under a per-container
//! writable layer with overlayfs, so pods share unpacked layers and never change them.
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mounting overlay on {path:?} (lowerdir={lower}): {source}")]
    Mount {
        path: PathBuf,
        lower: String,
        source: nix::Error,
    },
    #[error("image has no layers")]
    NoLayers,
}

/// Paths of one container's filesystem under `dir`.
pub struct Rootfs {
    pub merged: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

impl Rootfs {
    pub fn at(dir: &Path) -> Rootfs {
        Rootfs {
            merged: dir.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
        }
    }

    /// The overlay options for `layers` (lowest first): overlayfs lists the top layer first.
    pub fn options(&self, layers: &[PathBuf]) -> Result<String, RootfsError> {
        if layers.is_empty() {
            return Err(RootfsError::NoLayers);
        }
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|layer| layer.display().to_string())
            .collect();
        Ok(format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.upper.display(),
            self.work.display()
        ))
    }

    /// Mounts the overlay unless it is mounted already (a restarted container keeps its
    /// writable layer, as a restarted Kubernetes container does not: callers clear it).
    pub fn mount(&self, layers: &[PathBuf]) -> Result<(), RootfsError> {
        let options = self.options(layers)?;
        for path in [&self.merged, &self.upper, &self.work] {
            fs::create_dir_all(path).map_err(|source| RootfsError::Io {
                path: path.clone(),
                source,
            })?;
        }
        mount(
            Some("overlay"),
            &self.merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|source| RootfsError::Mount {
            path: self.merged.clone(),
            lower: options.split(',').next().unwrap_or_default().to_string(),
            source,
        })
    }

    /// Unmounts and deletes the writable layer.
    pub fn remove(&self) {
        let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
        for path in [&self.merged, &self.upper, &self.work] {
            let _ = fs::remove_dir_all(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lists_the_top_layer_first() {
        let rootfs = Rootfs::at(Path::new("/c"));
        let options = rootfs
            .options(&[PathBuf::from("/l/base"), PathBuf::from("/l/top")])
            .unwrap();
        assert_eq!(
            options,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
        assert!(matches!(rootfs.options(&[]), Err(RootfsError::NoLayers)));
    }
}
