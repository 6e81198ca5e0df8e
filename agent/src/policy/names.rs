//! The names behind the numbers in flow events (pods by address, identities, rules), written
//! by the agent after each policy sync and read by `kaya observe`.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// File name inside the agent instance's state directory.
pub const NAMES_FILE: &str = "policy-names.json";

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowNames {
    pub pods: BTreeMap<Ipv4Addr, PodName>,
    /// Identity → `namespace` plus its pod labels, `k=v` joined by commas.
    pub identities: BTreeMap<u32, String>,
    /// Rule id → `namespace/policy ingress[i]`.
    pub rules: BTreeMap<u32, String>,
    /// Endpoint id → pod address.
    pub endpoints: BTreeMap<u32, Ipv4Addr>,
    /// Policies in force: `namespace/name` → resourceVersion.
    pub policies: BTreeMap<String, String>,
}

impl FlowNames {
    /// Replaces the file atomically (write, then rename), so readers never see half of it.
    pub fn save(&self, path: &Path) -> Result<(), NamesError> {
        let fail = |source| NamesError::Write {
            path: path.to_owned(),
            source,
        };
        let temp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(self).expect("names serialize");
        std::fs::write(&temp, bytes).map_err(fail)?;
        std::fs::rename(&temp, path).map_err(fail)
    }

    /// The names a running agent wrote; none yet is an empty set.
    pub fn load(path: &Path) -> Result<FlowNames, NamesError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| NamesError::Corrupt {
                path: path.to_owned(),
                source,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(FlowNames::default()),
            Err(source) => Err(NamesError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }
}
