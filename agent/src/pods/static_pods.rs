//! Static pods (kubelet's staticPodPath): Pods, ConfigMaps and Secrets read from a directory,
//! rescanned; dotfiles skipped; a file that stops parsing keeps its last good objects; each
//! pod's uid is a hash of its content and node, so an edit replaces the pod.
use super::objects::PodObjects;
use crate::manifests::manifest_files;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StaticPod {
    pub file: PathBuf,
    pub uid: String,
    pub pod: Pod,
}

#[derive(Debug, Clone, Default)]
struct FileObjects {
    text: String,
    pods: Vec<Pod>,
    config_maps: Vec<ConfigMap>,
    secrets: Vec<Secret>,
}

#[derive(Default)]
pub struct StaticPodDir {
    files: BTreeMap<PathBuf, FileObjects>,
}

/// What one scan found; `errors` are new problems, each reported once.
#[derive(Debug, Default)]
pub struct Scan {
    pub pods: Vec<StaticPod>,
    pub objects: PodObjects,
    pub errors: Vec<String>,
}

impl StaticPodDir {
    pub fn scan(&mut self, dir: &Path, node_name: &str) -> Scan {
        let mut scan = Scan::default();
        let present = manifest_files(dir).unwrap_or_default();
        self.files.retain(|path, _| present.contains(path));
        for path in present {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if self
                .files
                .get(&path)
                .is_some_and(|known| known.text == text)
            {
                continue;
            }
            match parse(&text) {
                Ok(mut objects) => {
                    objects.text = text;
                    self.files.insert(path, objects);
                }
                Err(message) => {
                    scan.errors.push(format!("{}: {message}", path.display()));
                    // Keep the last good objects but remember this text, so the error is
                    // reported once.
                    let known = self.files.entry(path).or_default();
                    known.text = text;
                }
            }
        }
        for (path, objects) in &self.files {
            for pod in &objects.pods {
                scan.pods.push(StaticPod {
                    file: path.clone(),
                    uid: uid(pod, node_name),
                    pod: pod.clone(),
                });
            }
            for map in &objects.config_maps {
                let key = (
                    map.metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    map.metadata.name.clone().unwrap_or_default(),
                );
                scan.objects.config_maps.insert(key, map.clone());
            }
            for secret in &objects.secrets {
                let key = (
                    secret
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    secret.metadata.name.clone().unwrap_or_default(),
                );
                scan.objects.secrets.insert(key, secret.clone());
            }
        }
        scan
    }
}

/// A pod's uid: its content and node, hashed (FNV-1a), as kubelet derives static pod uids.
pub fn uid(pod: &Pod, node_name: &str) -> String {
    let text = serde_json::to_string(pod).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node_name.bytes().chain([0]).chain(text.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn parse(text: &str) -> Result<FileObjects, String> {
    let mut objects = FileObjects::default();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let fail = |message: String| format!("document {}: {message}", index + 1);
        let mut value =
            serde_yaml::Value::deserialize(document).map_err(|e| fail(e.to_string()))?;
        if value.is_null() {
            continue;
        }
        octal_modes(&mut value);
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        match (field("apiVersion").as_deref(), field("kind").as_deref()) {
            (Some("v1"), Some("Pod")) => objects
                .pods
                .push(serde_yaml::from_value(value).map_err(|e| fail(format!("Pod: {e}")))?),
            (Some("v1"), Some("ConfigMap")) => objects
                .config_maps
                .push(serde_yaml::from_value(value).map_err(|e| fail(format!("ConfigMap: {e}")))?),
            (Some("v1"), Some("Secret")) => objects
                .secrets
                .push(serde_yaml::from_value(value).map_err(|e| fail(format!("Secret: {e}")))?),
            (None, _) | (_, None) => return Err(fail("apiVersion and kind are required".into())),
            (Some(api_version), Some(kind)) => {
                return Err(fail(format!(
                    "{api_version} {kind} is not a static pod object (Pod, ConfigMap, Secret)"
                )));
            }
        }
    }
    Ok(objects)
}

/// File modes written the YAML 1.1 way (`0644`, as kubectl accepts) arrive as strings from
/// a YAML 1.2 parser; they become the numbers they mean.
fn octal_modes(value: &mut serde_yaml::Value) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                if matches!(key.as_str(), Some("mode" | "defaultMode"))
                    && let Some(text) = item.as_str()
                    && text.len() > 1
                    && text.starts_with('0')
                    && let Ok(number) = u32::from_str_radix(&text[1..], 8)
                {
                    *item = serde_yaml::Value::Number(number.into());
                } else {
                    octal_modes(item);
                }
            }
        }
        serde_yaml::Value::Sequence(items) => items.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: busybox}]\n  volumes: [{name: c, configMap: {name: cfg, defaultMode: 0400}}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n";

    #[test]
    fn scans_pods_and_objects_and_reads_octal_modes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), POD).unwrap();
        std::fs::write(dir.path().join(".web.yaml.swp"), "garbage").unwrap();
        let mut pods = StaticPodDir::default();
        let scan = pods.scan(dir.path(), "n1");
        assert!(scan.errors.is_empty(), "{:?}", scan.errors);
        assert_eq!(scan.pods.len(), 1);
        let volume = &scan.pods[0]
            .pod
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            volume.config_map.as_ref().unwrap().default_mode,
            Some(0o400)
        );
        assert!(
            scan.objects
                .config_maps
                .contains_key(&("default".to_string(), "cfg".to_string()))
        );
    }

    #[test]
    fn edits_change_the_uid_and_broken_edits_keep_the_last_good_pod() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, POD).unwrap();
        let mut pods = StaticPodDir::default();
        let first = pods.scan(dir.path(), "n1").pods[0].uid.clone();
        assert_eq!(
            pods.scan(dir.path(), "n1").pods[0].uid,
            first,
            "same content, same uid"
        );
        std::fs::write(&file, POD.replace("busybox", "busybox:1.36")).unwrap();
        let edited = pods.scan(dir.path(), "n1").pods[0].uid.clone();
        assert_ne!(edited, first);
        std::fs::write(&file, "apiVersion: v1\nkind: Pod\nspec: [not, a, map]").unwrap();
        let broken = pods.scan(dir.path(), "n1");
        assert_eq!(broken.errors.len(), 1);
        assert!(
            broken.errors[0].contains("web.yaml: document 1: Pod"),
            "{:?}",
            broken.errors
        );
        assert_eq!(broken.pods[0].uid, edited, "the last good pod stays");
        assert!(
            pods.scan(dir.path(), "n1").errors.is_empty(),
            "reported once"
        );
        std::fs::remove_file(&file).unwrap();
        assert!(pods.scan(dir.path(), "n1").pods.is_empty());
    }
}
