//! securityContext as containers get it: the user and group (pod and container level, else
//! the image's USER), the runAsNonRoot check, capabilities add/drop from the default set,
//! privileged, read-only root and no_new_privs.
use super::env::ConfigError;
use crate::runtime::plan::SecurityPlan;
use crate::runtime::spec::{ALL_CAPABILITIES, DEFAULT_CAPABILITIES};
use k8s_openapi::api::core::v1::{PodSecurityContext, SecurityContext};
use std::path::PathBuf;

fn capability(name: &str) -> String {
    if name.starts_with("CAP_") {
        name.to_string()
    } else {
        format!("CAP_{name}")
    }
}

pub fn security(context: Option<&SecurityContext>) -> SecurityPlan {
    let privileged = context.and_then(|c| c.privileged).unwrap_or(false);
    let mut capabilities: Vec<String> =
        DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if let Some(changes) = context.and_then(|c| c.capabilities.as_ref()) {
        for drop in changes.drop.iter().flatten() {
            if drop == "ALL" {
                capabilities.clear();
            } else {
                capabilities.retain(|c| c != &capability(drop));
            }
        }
        for add in changes.add.iter().flatten() {
            if add == "ALL" {
                capabilities = ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
            } else if !capabilities.contains(&capability(add)) {
                capabilities.push(capability(add));
            }
        }
    }
    SecurityPlan {
        privileged,
        read_only_root: context
            .and_then(|c| c.read_only_root_filesystem)
            .unwrap_or(false),
        no_new_privileges: !privileged
            && context.and_then(|c| c.allow_privilege_escalation) == Some(false),
        capabilities,
    }
}

/// The uid and gid the container runs as.
pub fn identity(
    pod: Option<&PodSecurityContext>,
    container: Option<&SecurityContext>,
    image_user: Option<&str>,
    layers: &[PathBuf],
    field_name: &str,
) -> Result<(u32, u32), ConfigError> {
    let run_as_user = container
        .and_then(|c| c.run_as_user)
        .or(pod.and_then(|p| p.run_as_user));
    let run_as_group = container
        .and_then(|c| c.run_as_group)
        .or(pod.and_then(|p| p.run_as_group));
    let non_root = container
        .and_then(|c| c.run_as_non_root)
        .or(pod.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    let (image_uid, image_gid) = image_identity(image_user.unwrap_or(""), layers)
        .map_err(|message| ConfigError::new(format!("{field_name}.image"), message))?;
    let uid = match run_as_user {
        Some(uid) => u32::try_from(uid).map_err(|_| {
            ConfigError::new(
                format!("{field_name}.securityContext.runAsUser"),
                format!("{uid} is out of range"),
            )
        })?,
        None => image_uid,
    };
    let gid = match run_as_group {
        Some(gid) => u32::try_from(gid).map_err(|_| {
            ConfigError::new(
                format!("{field_name}.securityContext.runAsGroup"),
                format!("{gid} is out of range"),
            )
        })?,
        None if run_as_user.is_some() => 0,
        None => image_gid,
    };
    if non_root && uid == 0 {
        return Err(ConfigError::new(
            format!("{field_name}.securityContext.runAsNonRoot"),
            "container has runAsNonRoot and image will run as root",
        ));
    }
    Ok((uid, gid))
}

/// An image USER (`uid`, `uid:gid`, `name`, `name:group`), names looked up in the image.
fn image_identity(user: &str, layers: &[PathBuf]) -> Result<(u32, u32), String> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (user, group) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = layers
            .iter()
            .rev()
            .find_map(|layer| std::fs::read_to_string(layer.join(file)).ok())?;
        text.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name)).then(|| {
                Some((
                    fields.get(2)?.parse().ok()?,
                    fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
                ))
            })?
        })
    };
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(uid) => (uid, lookup("etc/passwd", user).map_or(0, |(_, gid)| gid)),
        Err(_) => lookup("etc/passwd", user)
            .ok_or_else(|| format!("image user {user:?} is not in the image's /etc/passwd"))?,
    };
    let gid = match group {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("etc/group", group)
                .map(|(gid, _)| gid)
                .ok_or_else(|| format!("image group {group:?} is not in the image's /etc/group"))?,
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_add_and_drop_from_the_default_set() {
        let context: SecurityContext =
            serde_yaml::from_str("capabilities: {drop: [ALL], add: [NET_ADMIN, CAP_KILL]}\nallowPrivilegeEscalation: false\nreadOnlyRootFilesystem: true").unwrap();
        let plan = security(Some(&context));
        assert_eq!(plan.capabilities, ["CAP_NET_ADMIN", "CAP_KILL"]);
        assert!(plan.no_new_privileges && plan.read_only_root && !plan.privileged);
        let dropped: SecurityContext =
            serde_yaml::from_str("capabilities: {drop: [NET_RAW]}").unwrap();
        assert!(
            !security(Some(&dropped))
                .capabilities
                .contains(&"CAP_NET_RAW".to_string())
        );
        assert_eq!(
            security(None).capabilities.len(),
            DEFAULT_CAPABILITIES.len()
        );
    }

    #[test]
    fn users_come_from_the_context_or_the_image() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("etc")).unwrap();
        std::fs::write(
            layer.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(layer.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = [layer.path().to_path_buf()];
        assert_eq!(
            identity(None, None, Some("app"), &layers, "c").unwrap(),
            (1000, 1001)
        );
        assert_eq!(
            identity(None, None, Some("app:staff"), &layers, "c").unwrap(),
            (1000, 50)
        );
        assert_eq!(
            identity(None, None, Some("7:8"), &layers, "c").unwrap(),
            (7, 8)
        );
        let pod: PodSecurityContext =
            serde_yaml::from_str("runAsUser: 2000\nrunAsGroup: 3000").unwrap();
        let container: SecurityContext = serde_yaml::from_str("runAsUser: 4000").unwrap();
        assert_eq!(
            identity(Some(&pod), Some(&container), Some("app"), &layers, "c").unwrap(),
            (4000, 3000)
        );
        let non_root: SecurityContext = serde_yaml::from_str("runAsNonRoot: true").unwrap();
        let error =
            identity(None, Some(&non_root), None, &layers, "spec.containers[0]").unwrap_err();
        assert_eq!(
            error.field,
            "spec.containers[0].securityContext.runAsNonRoot"
        );
        assert!(identity(None, Some(&non_root), Some("app"), &layers, "c").is_ok());
        assert!(
            identity(None, None, Some("ghost"), &layers, "c")
                .unwrap_err()
                .message
                .contains("ghost")
        );
    }
}
