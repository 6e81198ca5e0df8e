//! A pod's volumes made real on the node under its directory: emptyDir (disk, or tmpfs for
//! medium Memory with its sizeLimit), hostPath with its type checks, and configMap, secret,
//! downwardAPI and projected volumes written as files with their modes.
use super::downward::{FieldValue, PodFacts, field};
use super::env::ConfigError;
use super::objects::{PodObjects, Source};
use super::quantity::bytes as parse_bytes;
use k8s_openapi::api::core::v1::{KeyToPath, Pod, Volume};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const DEFAULT_MODE: u32 = 0o644;

/// Each volume's host path, and whether containers must see it read-only.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Materialized {
    pub paths: BTreeMap<String, (PathBuf, bool)>,
}

pub fn materialize(
    pod: &Pod,
    facts: &PodFacts<'_>,
    objects: &PodObjects,
    root: &Path,
) -> Result<Materialized, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut made = Materialized::default();
    let volumes = pod.spec.as_ref().and_then(|spec| spec.volumes.as_ref());
    for (index, volume) in volumes.into_iter().flatten().enumerate() {
        let field_name = format!("spec.volumes[{index}]");
        let io = |path: &Path, error: std::io::Error| {
            ConfigError::new(&field_name, format!("{}: {error}", path.display()))
        };
        let dir = root.join(&volume.name);
        let entry = if let Some(host) = &volume.host_path {
            (
                host_path(&host.path, host.type_.as_deref().unwrap_or(""), &field_name)?,
                false,
            )
        } else if let Some(empty) = &volume.empty_dir {
            fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            if empty.medium.as_deref() == Some("Memory") {
                let size = match &empty.size_limit {
                    Some(quantity) => Some(parse_bytes(&quantity.0).map_err(|e| {
                        ConfigError::new(format!("{field_name}.emptyDir.sizeLimit"), e.to_string())
                    })?),
                    None => None,
                };
                mount_tmpfs(&dir, size).map_err(|e| {
                    ConfigError::new(&field_name, format!("tmpfs on {}: {e}", dir.display()))
                })?;
            }
            (dir, false)
        } else {
            fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let files = projected_files(pod, facts, objects, namespace, volume, &field_name)?;
            for (path, (bytes, mode)) in files {
                let target = dir.join(&path);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
                }
                fs::write(&target, bytes).map_err(|e| io(&target, e))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                    .map_err(|e| io(&target, e))?;
            }
            (dir, true)
        };
        made.paths.insert(volume.name.clone(), entry);
    }
    Ok(made)
}

/// Unmounts tmpfs volumes and deletes what was written for the pod.
pub fn release(root: &Path) {
    if let Ok(entries) = fs::read_dir(root) {
        for entry in entries.flatten() {
            let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = fs::remove_dir_all(root);
}

fn mount_tmpfs(dir: &Path, size: Option<u64>) -> nix::Result<()> {
    use nix::mount::{MsFlags, mount};
    let options = size.map(|size| format!("size={size}")).unwrap_or_default();
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
}

fn host_path(path: &str, kind: &str, field_name: &str) -> Result<PathBuf, ConfigError> {
    fn fail<T>(field_name: &str, message: String) -> Result<T, ConfigError> {
        Err(ConfigError::new(format!("{field_name}.hostPath"), message))
    }
    let path = PathBuf::from(path);
    let metadata = fs::metadata(&path);
    let file_type = metadata.as_ref().ok().map(fs::Metadata::file_type);
    match kind {
        "" => {}
        "DirectoryOrCreate" if file_type.is_none() => {
            fs::create_dir_all(&path).or_else(|e| {
                fail(
                    field_name,
                    format!("creating directory {}: {e}", path.display()),
                )
            })?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).ok();
        }
        "DirectoryOrCreate" | "Directory" if !file_type.is_some_and(|t| t.is_dir()) => {
            return fail(field_name, format!("{} is not a directory", path.display()));
        }
        "FileOrCreate" if file_type.is_none() => {
            fs::write(&path, b"")
                .or_else(|e| fail(field_name, format!("creating file {}: {e}", path.display())))?;
        }
        "FileOrCreate" | "File" if !file_type.is_some_and(|t| t.is_file()) => {
            return fail(field_name, format!("{} is not a file", path.display()));
        }
        "Socket" if !file_type.is_some_and(|t| t.is_socket()) => {
            return fail(field_name, format!("{} is not a socket", path.display()));
        }
        "CharDevice" if !file_type.is_some_and(|t| t.is_char_device()) => {
            return fail(
                field_name,
                format!("{} is not a character device", path.display()),
            );
        }
        "BlockDevice" if !file_type.is_some_and(|t| t.is_block_device()) => {
            return fail(
                field_name,
                format!("{} is not a block device", path.display()),
            );
        }
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" | "DirectoryOrCreate"
        | "FileOrCreate" => {}
        other => return fail(field_name, format!("unknown hostPath type {other:?}")),
    }
    Ok(path)
}

type Files = BTreeMap<PathBuf, (Vec<u8>, u32)>;

fn safe_path(path: &str, field_name: &str) -> Result<PathBuf, ConfigError> {
    let relative = Path::new(path);
    if path.is_empty()
        || !relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(ConfigError::new(
            field_name,
            format!("path {path:?} must be relative without '..'"),
        ));
    }
    Ok(relative.to_path_buf())
}

/// A configMap or secret a volume (or a projected source) takes files from.
struct KeySource<'a> {
    source: Source,
    name: &'a str,
    items: Option<&'a Vec<KeyToPath>>,
    optional: Option<bool>,
}

/// Files of a configMap or secret source: every key, or only `items` with their paths.
fn key_files(
    objects: &PodObjects,
    namespace: &str,
    from: KeySource<'_>,
    default_mode: u32,
    field_name: &str,
    files: &mut Files,
) -> Result<(), ConfigError> {
    let KeySource {
        source,
        name,
        items,
        optional,
    } = from;
    let optional = optional.unwrap_or(false);
    let Some(data) = objects.data(source, namespace, name) else {
        if optional {
            return Ok(());
        }
        return Err(ConfigError::new(
            field_name,
            format!("{} {namespace}/{name} not found", source.kind()),
        ));
    };
    match items {
        None => {
            for (key, bytes) in data {
                files.insert(safe_path(&key, field_name)?, (bytes, default_mode));
            }
        }
        Some(items) => {
            for (index, item) in items.iter().enumerate() {
                let item_field = format!("{field_name}.items[{index}]");
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(ConfigError::new(
                        item_field,
                        format!(
                            "key {:?} not found in {} {namespace}/{name}",
                            item.key,
                            source.kind()
                        ),
                    ));
                };
                let mode = item.mode.map_or(default_mode, |mode| mode as u32 & 0o777);
                files.insert(safe_path(&item.path, &item_field)?, (bytes.clone(), mode));
            }
        }
    }
    Ok(())
}

fn downward_files(
    pod: &Pod,
    facts: &PodFacts<'_>,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: u32,
    field_name: &str,
    files: &mut Files,
) -> Result<(), ConfigError> {
    for (index, item) in items.iter().enumerate() {
        let item_field = format!("{field_name}.items[{index}]");
        let Some(selector) = &item.field_ref else {
            return Err(ConfigError::new(item_field, "only fieldRef is supported"));
        };
        let value = match field(pod, facts, &selector.field_path)
            .map_err(|m| ConfigError::new(&item_field, m))?
        {
            FieldValue::Now(value) => value,
            FieldValue::PodIp => {
                return Err(ConfigError::new(
                    item_field,
                    "status.podIP is not available in volumes",
                ));
            }
        };
        let mode = item.mode.map_or(default_mode, |mode| mode as u32 & 0o777);
        files.insert(
            safe_path(&item.path, &item_field)?,
            (value.into_bytes(), mode),
        );
    }
    Ok(())
}

fn projected_files(
    pod: &Pod,
    facts: &PodFacts<'_>,
    objects: &PodObjects,
    namespace: &str,
    volume: &Volume,
    field_name: &str,
) -> Result<Files, ConfigError> {
    let mode = |mode: Option<i32>| mode.map_or(DEFAULT_MODE, |mode| mode as u32 & 0o777);
    let mut files = Files::new();
    if let Some(map) = &volume.config_map {
        let from = KeySource {
            source: Source::ConfigMap,
            name: &map.name,
            items: map.items.as_ref(),
            optional: map.optional,
        };
        key_files(
            objects,
            namespace,
            from,
            mode(map.default_mode),
            &format!("{field_name}.configMap"),
            &mut files,
        )?;
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.as_deref().unwrap_or_default();
        let from = KeySource {
            source: Source::Secret,
            name,
            items: secret.items.as_ref(),
            optional: secret.optional,
        };
        key_files(
            objects,
            namespace,
            from,
            mode(secret.default_mode),
            &format!("{field_name}.secret"),
            &mut files,
        )?;
    } else if let Some(downward) = &volume.downward_api {
        let items = downward.items.as_deref().unwrap_or_default();
        downward_files(
            pod,
            facts,
            items,
            mode(downward.default_mode),
            &format!("{field_name}.downwardAPI"),
            &mut files,
        )?;
    } else if let Some(projected) = &volume.projected {
        let default_mode = mode(projected.default_mode);
        for (index, source) in projected.sources.iter().flatten().enumerate() {
            let field_name = format!("{field_name}.projected.sources[{index}]");
            if let Some(map) = &source.config_map {
                let from = KeySource {
                    source: Source::ConfigMap,
                    name: &map.name,
                    items: map.items.as_ref(),
                    optional: map.optional,
                };
                key_files(
                    objects,
                    namespace,
                    from,
                    default_mode,
                    &field_name,
                    &mut files,
                )?;
            } else if let Some(secret) = &source.secret {
                let from = KeySource {
                    source: Source::Secret,
                    name: &secret.name,
                    items: secret.items.as_ref(),
                    optional: secret.optional,
                };
                key_files(
                    objects,
                    namespace,
                    from,
                    default_mode,
                    &field_name,
                    &mut files,
                )?;
            } else if let Some(downward) = &source.downward_api {
                let items = downward.items.as_deref().unwrap_or_default();
                downward_files(pod, facts, items, default_mode, &field_name, &mut files)?;
            } else {
                return Err(ConfigError::new(
                    field_name,
                    "only configMap, secret and downwardAPI sources are supported",
                ));
            }
        }
    } else {
        return Err(ConfigError::new(
            field_name,
            "unsupported volume type (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)",
        ));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use std::os::unix::fs::MetadataExt;

    fn setup(volumes: &str) -> (tempfile::TempDir, Result<Materialized, ConfigError>) {
        let mut objects = PodObjects::default();
        let map: ConfigMap = serde_yaml::from_str(
            "metadata: {name: cfg, namespace: default}\ndata: {a.conf: alpha, b.conf: beta}",
        )
        .unwrap();
        let secret: Secret =
            serde_yaml::from_str("metadata: {name: sec, namespace: default}\ndata: {token: dG9r}")
                .unwrap();
        objects
            .config_maps
            .insert(("default".into(), "cfg".into()), map);
        objects
            .secrets
            .insert(("default".into(), "sec".into()), secret);
        let pod: Pod = serde_yaml::from_str(&format!(
            "metadata: {{name: web, namespace: default, labels: {{app: web}}}}\nspec:\n  containers: []\n  volumes:\n{volumes}"
        ))
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let facts = PodFacts {
            uid: "u",
            node_name: "n",
            host_ip: "10.0.0.1",
        };
        let made = materialize(&pod, &facts, &objects, root.path());
        (root, made)
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn config_maps_and_secrets_become_files_with_modes() {
        let (root, made) = setup(
            "  - {name: all, configMap: {name: cfg}}\n  - {name: some, configMap: {name: cfg, defaultMode: 0o400, items: [{key: b.conf, path: sub/b}, {key: a.conf, path: a, mode: 0o600}]}}\n  - {name: sec, secret: {secretName: sec, defaultMode: 0o440}}\n  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}",
        );
        let made = made.unwrap();
        let all = root.path().join("all");
        assert_eq!(fs::read_to_string(all.join("a.conf")).unwrap(), "alpha");
        assert_eq!(mode(&all.join("b.conf")), 0o644);
        let some = root.path().join("some");
        assert_eq!(fs::read_to_string(some.join("sub/b")).unwrap(), "beta");
        assert_eq!(
            (mode(&some.join("sub/b")), mode(&some.join("a"))),
            (0o400, 0o600)
        );
        assert!(!some.join("b.conf").exists(), "items select keys");
        assert_eq!(
            fs::read_to_string(root.path().join("sec/token")).unwrap(),
            "tok"
        );
        assert_eq!(mode(&root.path().join("sec/token")), 0o440);
        assert_eq!(
            fs::read_to_string(root.path().join("info/labels")).unwrap(),
            "app=\"web\"\n"
        );
        assert!(made.paths["all"].1, "configMap volumes are read-only");
    }

    #[test]
    fn problems_name_the_volume_field() {
        let (_root, made) = setup("  - {name: x, configMap: {name: absent}}");
        assert_eq!(made.unwrap_err().field, "spec.volumes[0].configMap");
        let (_root, made) =
            setup("  - {name: x, configMap: {name: cfg, items: [{key: nope, path: n}]}}");
        assert!(made.unwrap_err().message.contains("key \"nope\""));
        let (_root, made) =
            setup("  - {name: x, configMap: {name: cfg, items: [{key: a.conf, path: ../escape}]}}");
        assert!(made.unwrap_err().message.contains("'..'"));
        let (_root, made) =
            setup("  - {name: x, hostPath: {path: /nonexistent/kaya, type: Directory}}");
        assert!(made.unwrap_err().message.contains("not a directory"));
        let (_root, made) = setup("  - {name: x, configMap: {name: absent, optional: true}}");
        assert!(made.is_ok());
    }

    #[test]
    fn host_paths_are_created_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("made");
        host_path(path.to_str().unwrap(), "DirectoryOrCreate", "f").unwrap();
        assert!(path.is_dir());
        let file = dir.path().join("file");
        host_path(file.to_str().unwrap(), "FileOrCreate", "f").unwrap();
        assert!(file.is_file());
        assert!(host_path(file.to_str().unwrap(), "Directory", "f").is_err());
        assert!(
            host_path(file.to_str().unwrap(), "Bogus", "f")
                .unwrap_err()
                .message
                .contains("Bogus")
        );
    }
}
