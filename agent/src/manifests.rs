//! The standalone source of desired state: a directory of YAML/JSON manifests (Service,
//! discovery.k8s.io/v1 EndpointSlice, Namespace, Pod, networking.k8s.io/v1 NetworkPolicy,
//! List), rescanned for changes. A file that fails to parse keeps its last good objects, so
//! a typo never removes a working service or opens a policy.
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::policy::compile::Inputs;
use crate::policy::inventory::{NamespaceDef, PodDef};
use crate::policy::spec::PolicyDef;
use crate::services::catalog::{Catalog, ServiceDef, SliceDef};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading manifest directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: document {document}: {message}")]
    Document {
        path: PathBuf,
        /// 1-based, as editors count `---` separated documents.
        document: usize,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    Service(ServiceDef),
    Slice(SliceDef),
    Namespace(NamespaceDef),
    Pod(PodDef),
    Policy(PolicyDef),
}

struct FileState {
    /// (modification time, length, inode): unchanged means the file is not read again, so
    /// a large directory costs a stat per file per round.
    stamp: Option<(std::time::SystemTime, u64, u64)>,
    digest: u64,
    objects: Vec<Parsed>,
}

fn stamp(path: &Path) -> Option<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

pub struct ManifestDir {
    dir: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

/// What a rescan found.
#[derive(Debug, Default)]
pub struct Rescan {
    /// Services or EndpointSlices were added, changed or removed.
    pub services: bool,
    /// Namespaces, Pods or NetworkPolicies were added, changed or removed.
    pub policy: bool,
    /// Problems in files that changed since the last scan (each reported once).
    pub errors: Vec<ManifestError>,
}

impl Rescan {
    pub fn changed(&self) -> bool {
        self.services || self.policy
    }

    /// Notes that `objects` came or went, so their consumers apply again.
    fn touch(&mut self, objects: &[Parsed]) {
        for object in objects {
            match object {
                Parsed::Service(_) | Parsed::Slice(_) => self.services = true,
                Parsed::Namespace(_) | Parsed::Pod(_) | Parsed::Policy(_) => self.policy = true,
            }
        }
    }
}

impl ManifestDir {
    pub fn new(dir: &Path) -> Self {
        ManifestDir {
            dir: dir.to_owned(),
            files: BTreeMap::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn rescan(&mut self) -> Result<Rescan, ManifestError> {
        let dir_err = |source| ManifestError::Dir {
            path: self.dir.clone(),
            source,
        };
        let present = manifest_files(&self.dir).map_err(dir_err)?;
        let mut rescan = Rescan::default();
        self.files.retain(|path, file| {
            let keep = present.contains(path);
            if !keep {
                rescan.touch(&file.objects);
            }
            keep
        });
        for path in present {
            let stamp = stamp(&path);
            if stamp.is_some() && self.files.get(&path).is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(source) => {
                    rescan.errors.push(ManifestError::Read { path, source });
                    continue;
                }
            };
            let digest = digest(&text);
            if let Some(file) = self.files.get_mut(&path)
                && file.digest == digest
            {
                file.stamp = stamp;
                continue;
            }
            match parse_file(&path, &text) {
                Ok(objects) => {
                    if let Some(old) = self.files.get(&path) {
                        rescan.touch(&old.objects);
                    }
                    rescan.touch(&objects);
                    let state = FileState {
                        stamp,
                        digest,
                        objects,
                    };
                    self.files.insert(path, state);
                }
                Err(err) => {
                    rescan.errors.push(err);
                    // Remember the digest so the same broken content is reported once; the
                    // objects stay those of the last good version.
                    let objects = self
                        .files
                        .remove(&path)
                        .map(|f| f.objects)
                        .unwrap_or_default();
                    let state = FileState {
                        stamp,
                        digest,
                        objects,
                    };
                    self.files.insert(path, state);
                }
            }
        }
        Ok(rescan)
    }

    /// Every object of every file; a later file's object replaces an earlier one's.
    pub fn catalog(&self) -> Catalog {
        let mut catalog = Catalog::default();
        for object in self.files.values().flat_map(|f| &f.objects) {
            match object {
                Parsed::Service(def) => catalog.upsert_service(def.clone()),
                Parsed::Slice(def) => catalog.upsert_slice(def.clone()),
                _ => {}
            }
        }
        catalog
    }

    /// Namespaces, pods and policies; a later file's object replaces an earlier one's.
    pub fn policy_inputs(&self) -> Inputs {
        let mut inputs = Inputs::default();
        let mut pods = BTreeMap::new();
        let mut policies = BTreeMap::new();
        for object in self.files.values().flat_map(|f| &f.objects) {
            match object {
                Parsed::Namespace(def) => {
                    inputs.namespaces.insert(def.name.clone(), def.clone());
                }
                Parsed::Pod(def) => {
                    pods.insert(def.name.clone(), def.clone());
                }
                Parsed::Policy(def) => {
                    policies.insert(def.name.clone(), def.clone());
                }
                Parsed::Service(_) | Parsed::Slice(_) => {}
            }
        }
        inputs.pods = pods.into_values().collect();
        inputs.policies = policies.into_values().collect();
        inputs
    }
}

/// The manifest files of a directory, sorted: `*.yaml`, `*.yml`, `*.json`, dotfiles skipped
/// (editors' swap and backup files are dotfiles; kubelet skips them too). A directory that
/// does not exist (yet) has none.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other?.collect::<Result<Vec<_>, _>>()?,
    };
    let mut present: Vec<PathBuf> = entries
        .iter()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            !name.starts_with('.')
                && [".yaml", ".yml", ".json"]
                    .iter()
                    .any(|ext| name.ends_with(ext))
        })
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    present.sort();
    Ok(present)
}

fn digest(text: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Every object kaya reads from a multi-document file; other kinds are ignored.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Parsed>, ManifestError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let fail = |message: String| ManifestError::Document {
            path: path.to_owned(),
            document: index + 1,
            message,
        };
        let value = serde_yaml::Value::deserialize(document).map_err(|e| fail(e.to_string()))?;
        parse_value(value, &mut objects).map_err(fail)?;
    }
    Ok(objects)
}

use serde::Deserialize;

fn parse_value(value: serde_yaml::Value, out: &mut Vec<Parsed>) -> Result<(), String> {
    if value.is_null() {
        return Ok(());
    }
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
        return Err("apiVersion and kind are required".into());
    };
    match (api_version.as_str(), kind.as_str()) {
        ("v1", "Service") => {
            let service: Service =
                serde_yaml::from_value(value).map_err(|e| format!("Service: {e}"))?;
            let def = ServiceDef::from_k8s(&service).map_err(|e| e.to_string())?;
            out.push(Parsed::Service(def));
        }
        ("discovery.k8s.io/v1", "EndpointSlice") => {
            let slice: EndpointSlice =
                serde_yaml::from_value(value).map_err(|e| format!("EndpointSlice: {e}"))?;
            let def = SliceDef::from_k8s(&slice).map_err(|e| e.to_string())?;
            out.push(Parsed::Slice(def));
        }
        ("v1", "Namespace") => {
            let namespace: Namespace =
                serde_yaml::from_value(value).map_err(|e| format!("Namespace: {e}"))?;
            let def = NamespaceDef::from_k8s(&namespace).map_err(|e| e.to_string())?;
            out.push(Parsed::Namespace(def));
        }
        ("v1", "Pod") => {
            let pod: Pod = serde_yaml::from_value(value).map_err(|e| format!("Pod: {e}"))?;
            if let Some(def) = PodDef::from_k8s(&pod).map_err(|e| e.to_string())? {
                out.push(Parsed::Pod(def));
            }
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            let policy: NetworkPolicy =
                serde_yaml::from_value(value).map_err(|e| format!("NetworkPolicy: {e}"))?;
            let def = PolicyDef::from_k8s(&policy).map_err(|e| e.to_string())?;
            out.push(Parsed::Policy(def));
        }
        ("v1", "List") => {
            let items = value.get("items").and_then(|v| v.as_sequence()).cloned();
            for (index, item) in items.into_iter().flatten().enumerate() {
                parse_value(item, out).map_err(|e| format!("items[{index}]: {e}"))?;
            }
        }
        (_, "Service" | "EndpointSlice" | "Namespace" | "Pod" | "NetworkPolicy") => {
            return Err(format!("{kind}: unsupported apiVersion {api_version:?}"));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.1.2]}]
";

    #[test]
    fn policies_pods_and_namespaces_are_read_and_bad_ones_named() {
        let text = "
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {ns: x}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {containers: []}
status: {podIP: 10.244.1.2}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
";
        let objects = parse_file(Path::new("p.yaml"), text).unwrap();
        assert!(matches!(
            objects[..],
            [Parsed::Namespace(_), Parsed::Pod(_), Parsed::Policy(_)]
        ));
        let bad = text.replace(
            "spec: {podSelector: {}}",
            "spec: {podSelector: {}, policyTypes: [Up]}",
        );
        let err = parse_file(Path::new("p.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("document 3") && err.contains("spec.policyTypes[0]"),
            "{err}"
        );
        let bad = text.replace("networking.k8s.io/v1", "networking.k8s.io/v1beta1");
        let err = parse_file(Path::new("p.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported apiVersion"), "{err}");
    }

    #[test]
    fn multi_document_files_yield_services_and_slices_only() {
        let objects = parse_file(Path::new("web.yaml"), GOOD).unwrap();
        assert_eq!(objects.len(), 2);
        assert!(matches!(objects[0], Parsed::Service(_)));
        assert!(matches!(objects[1], Parsed::Slice(_)));
    }

    #[test]
    fn errors_name_the_file_document_and_field() {
        let bad = GOOD.replace("clusterIP: 10.96.0.10", "clusterIP: 10.96.0.999");
        let err = parse_file(Path::new("web.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("web.yaml: document 1"), "{err}");
        assert!(err.contains("spec.clusterIP"), "{err}");
        let bad = GOOD.replace("ports: [{port: 8080}]", "ports: [{port: 99999}]");
        let err = parse_file(Path::new("web.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("document 3") && err.contains("ports[0].port"),
            "{err}"
        );
        let bad = GOOD.replace("ports: [{port: 80}]", "ports: [{port: eighty}]");
        let err = parse_file(Path::new("web.yaml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("document 1") && err.contains("Service"),
            "{err}"
        );
        let err = parse_file(Path::new("x.yaml"), "kind: Service\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apiVersion"), "{err}");
    }

    #[test]
    fn a_rescan_names_which_consumers_changed() {
        let dir = tempfile::tempdir().unwrap();
        let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {podSelector: {}}\n";
        std::fs::write(dir.path().join("web.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("p.yaml"), policy).unwrap();
        let mut source = ManifestDir::new(dir.path());
        let scan = source.rescan().unwrap();
        assert!(scan.services && scan.policy);
        std::fs::write(
            dir.path().join("p.yaml"),
            policy.replace("name: p", "name: q"),
        )
        .unwrap();
        let scan = source.rescan().unwrap();
        assert!(
            scan.policy && !scan.services,
            "a policy edit leaves services alone"
        );
        std::fs::remove_file(dir.path().join("web.yaml")).unwrap();
        let scan = source.rescan().unwrap();
        assert!(
            scan.services && !scan.policy,
            "removed services are a services change"
        );
        std::fs::write(
            dir.path().join("cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        )
        .unwrap();
        assert!(
            !source.rescan().unwrap().changed(),
            "kinds nobody reads change nothing"
        );
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_objects_and_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, GOOD).unwrap();
        std::fs::write(dir.path().join(".web.yaml.swp"), "garbage: [").unwrap();
        let mut source = ManifestDir::new(dir.path());
        let scan = source.rescan().unwrap();
        assert!(scan.services && !scan.policy && scan.errors.is_empty());
        assert_eq!(source.catalog().services.len(), 1);

        std::fs::write(&file, "apiVersion: v1\nkind: Service\nspec: [").unwrap();
        let scan = source.rescan().unwrap();
        assert_eq!(scan.errors.len(), 1, "{:?}", scan.errors);
        assert_eq!(source.catalog().services.len(), 1, "last good service kept");
        assert!(source.rescan().unwrap().errors.is_empty(), "reported once");

        std::fs::remove_file(&file).unwrap();
        assert!(source.rescan().unwrap().changed());
        assert!(source.catalog().services.is_empty());
    }
}
