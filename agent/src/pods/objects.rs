//! The ConfigMaps and Secrets a node's pods may read (env and volumes), by namespace and name,
//! and the byte values of their keys.
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct PodObjects {
    pub config_maps: BTreeMap<(String, String), ConfigMap>,
    pub secrets: BTreeMap<(String, String), Secret>,
}

/// Which kind of object a key came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    pub fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "configmap",
            Source::Secret => "secret",
        }
    }
}

impl PodObjects {
    /// Every key of the object with its bytes; `None` when the object does not exist.
    pub fn data(
        &self,
        source: Source,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, Vec<u8>>> {
        let key = (namespace.to_string(), name.to_string());
        match source {
            Source::ConfigMap => {
                let map = self.config_maps.get(&key)?;
                let mut data: BTreeMap<String, Vec<u8>> = map
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect();
                data.extend(
                    map.binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone())),
                );
                Some(data)
            }
            Source::Secret => {
                let secret = self.secrets.get(&key)?;
                let mut data: BTreeMap<String, Vec<u8>> = secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.0.clone()))
                    .collect();
                // stringData wins over data, as the API server merges them.
                data.extend(
                    secret
                        .string_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
                );
                Some(data)
            }
        }
    }
}
