//! The agent's record of registered endpoints, persisted so a restarted agent knows which
//! pods it serves and can re-adopt their links (the maps alone do not keep names).
use kaya_agent_api::{Attachment, EndpointSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("reading endpoint registry {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("endpoint registry {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing endpoint registry {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub spec: EndpointSpec,
    pub endpoint_id: u32,
    /// ifindex of the host veth when registered.
    pub ifindex: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    next_id: u32,
    endpoints: Vec<Registered>,
}

pub struct Registry {
    path: PathBuf,
    next_id: u32,
    endpoints: BTreeMap<Attachment, Registered>,
}

impl Registry {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let stored = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice::<Stored>(&bytes).map_err(|source| {
                RegistryError::Corrupt {
                    path: path.to_owned(),
                    source,
                }
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(source) => {
                return Err(RegistryError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Ok(Registry {
            path: path.to_owned(),
            next_id: stored.next_id.max(1),
            endpoints: stored
                .endpoints
                .into_iter()
                .map(|e| (e.spec.attachment.clone(), e))
                .collect(),
        })
    }

    pub fn get(&self, attachment: &Attachment) -> Option<&Registered> {
        self.endpoints.get(attachment)
    }

    pub fn all(&self) -> impl Iterator<Item = &Registered> {
        self.endpoints.values()
    }

    /// Records an endpoint, keeping its id if it was known; returns the id.
    pub fn insert(&mut self, spec: EndpointSpec, ifindex: u32) -> Result<u32, RegistryError> {
        let endpoint_id = match self.endpoints.get(&spec.attachment) {
            Some(known) => known.endpoint_id,
            None => {
                self.next_id += 1;
                self.next_id - 1
            }
        };
        self.endpoints.insert(
            spec.attachment.clone(),
            Registered {
                spec,
                endpoint_id,
                ifindex,
            },
        );
        self.save()?;
        Ok(endpoint_id)
    }

    pub fn remove(&mut self, attachment: &Attachment) -> Result<Option<Registered>, RegistryError> {
        let removed = self.endpoints.remove(attachment);
        if removed.is_some() {
            self.save()?;
        }
        Ok(removed)
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a registry.
    fn save(&self) -> Result<(), RegistryError> {
        let stored = Stored {
            next_id: self.next_id,
            endpoints: self.endpoints.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&stored).expect("registry always serializes");
        let tmp = self.path.with_extension("json.tmp");
        let write_err = |source| RegistryError::Write {
            path: self.path.clone(),
            source,
        };
        std::fs::write(&tmp, bytes).map_err(write_err)?;
        std::fs::rename(&tmp, &self.path).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str) -> EndpointSpec {
        EndpointSpec {
            attachment: Attachment {
                container_id: id.into(),
                ifname: "eth0".into(),
            },
            host_ifname: format!("ky{id}"),
            ip: "10.244.1.5".into(),
            pod_mac: "02:00:00:00:00:01".into(),
            netns: "/var/run/netns/x".into(),
        }
    }

    #[test]
    fn persists_and_keeps_ids_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.json");
        let mut registry = Registry::open(&path).unwrap();
        let a = registry.insert(spec("a"), 5).unwrap();
        let b = registry.insert(spec("b"), 6).unwrap();
        assert_ne!(a, b);
        assert_eq!(registry.insert(spec("a"), 7).unwrap(), a);
        let reopened = Registry::open(&path).unwrap();
        assert_eq!(reopened.all().count(), 2);
        assert_eq!(reopened.get(&spec("a").attachment).unwrap().ifindex, 7);
        let mut reopened = reopened;
        let c = reopened.insert(spec("c"), 8).unwrap();
        assert!(c > b, "ids are never reused: {c} after {b}");
    }

    #[test]
    fn corrupt_file_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.json");
        std::fs::write(&path, b"{not json").unwrap();
        let err = Registry::open(&path).err().unwrap();
        assert!(err.to_string().contains("endpoints.json"), "{err}");
    }
}
