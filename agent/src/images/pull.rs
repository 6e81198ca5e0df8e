//! imagePullPolicy: decides whether a pod's image is pulled, and turns pull failures into the
//! reasons and messages pods report (ErrImagePull, ErrImageNeverPull, InvalidImageName).
use super::distribution::{Credentials, Registry, RegistryError};
use super::install::{InstallError, install};
use super::reference::{Reference, ReferenceError};
use super::store::{ImageRecord, ImageStore, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// Kubernetes' default: Always for `:latest` or untagged images, else IfNotPresent.
    pub fn resolve(policy: Option<&str>, reference: &Reference) -> Option<PullPolicy> {
        match policy {
            Some("Always") => Some(PullPolicy::Always),
            Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
            Some("Never") => Some(PullPolicy::Never),
            Some(_) => None,
            None if reference.digest.is_none() && reference.tag.as_deref() == Some("latest") => {
                Some(PullPolicy::Always)
            }
            None => Some(PullPolicy::IfNotPresent),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    InvalidName(#[from] ReferenceError),
    #[error("container image {image:?} is not present with pull policy of Never")]
    NeverPull { image: String },
    #[error("failed to pull image {image:?}: {source}")]
    Registry {
        image: String,
        source: RegistryError,
    },
    #[error("failed to pull image {image:?}: {source}")]
    Install { image: String, source: InstallError },
    #[error("image store: {0}")]
    Store(#[from] StoreError),
}

impl PullError {
    /// The waiting reason a container reports for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            PullError::InvalidName(_) => "InvalidImageName",
            PullError::NeverPull { .. } => "ErrImageNeverPull",
            _ => "ErrImagePull",
        }
    }
}

/// Makes `image` present per `policy`; the record is stored under the normalised name.
pub fn ensure_image(
    store: &ImageStore,
    image: &str,
    policy: PullPolicy,
    credentials: Option<Credentials>,
) -> Result<ImageRecord, PullError> {
    let reference = Reference::parse(image)?;
    let name = reference.to_string();
    if policy != PullPolicy::Always
        && let Some(record) = store.lookup(&name)?
    {
        return Ok(record);
    }
    if policy == PullPolicy::Never {
        return Err(PullError::NeverPull {
            image: image.to_string(),
        });
    }
    let registry = Registry::new(&reference, credentials);
    let (bytes, digest) = registry
        .manifest(&reference.manifest_reference())
        .map_err(|source| PullError::Registry {
            image: image.to_string(),
            source,
        })?;
    if let Some(record) = store.lookup(&name)?
        && record.manifest == digest.to_string()
    {
        return Ok(record);
    }
    install(store, &registry, &name, &digest, &bytes).map_err(|source| PullError::Install {
        image: image.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_follows_the_tag() {
        let policy =
            |image: &str, given| PullPolicy::resolve(given, &Reference::parse(image).unwrap());
        assert_eq!(policy("busybox", None), Some(PullPolicy::Always));
        assert_eq!(policy("busybox:1.36", None), Some(PullPolicy::IfNotPresent));
        assert_eq!(
            policy("busybox:latest", Some("Never")),
            Some(PullPolicy::Never)
        );
        assert_eq!(policy("busybox", Some("Sometimes")), None);
    }

    #[test]
    fn never_pull_names_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let error =
            ensure_image(&store, "127.0.0.1:1/absent:v1", PullPolicy::Never, None).unwrap_err();
        assert_eq!(error.reason(), "ErrImageNeverPull");
        assert!(
            error.to_string().contains("127.0.0.1:1/absent:v1"),
            "{error}"
        );
        let error = ensure_image(&store, "Bad Name", PullPolicy::Always, None).unwrap_err();
        assert_eq!(error.reason(), "InvalidImageName");
    }

    #[test]
    fn unreachable_registry_is_err_image_pull() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        // Port 1 on loopback: nothing listens, so the connection is refused at once.
        let error = ensure_image(
            &store,
            "127.0.0.1:1/absent:v1",
            PullPolicy::IfNotPresent,
            None,
        )
        .unwrap_err();
        assert_eq!(error.reason(), "ErrImagePull");
        assert!(
            error
                .to_string()
                .contains("http://127.0.0.1:1/v2/absent/manifests/v1"),
            "{error}"
        );
    }
}
