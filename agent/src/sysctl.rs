//! Kernel settings the node's networking needs, written to /proc/sys of the agent's netns.
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("writing sysctl {path}: {source}")]
pub struct SysctlError {
    path: PathBuf,
    source: std::io::Error,
}

/// (path under /proc/sys, value): forwarding for masqueraded pod traffic; loose reverse-path
/// filtering because pod replies to remote nodes leave by the uplink, not the overlay.
pub fn node_settings(overlay_device: &str) -> Vec<(String, &'static str)> {
    vec![
        ("net/ipv4/ip_forward".into(), "1"),
        ("net/ipv4/conf/all/rp_filter".into(), "2"),
        ("net/ipv4/conf/default/rp_filter".into(), "2"),
        (format!("net/ipv4/conf/{overlay_device}/rp_filter"), "0"),
        (format!("net/ipv6/conf/{overlay_device}/disable_ipv6"), "1"),
    ]
}

pub fn write(root: &Path, key: &str, value: &str) -> Result<(), SysctlError> {
    let path = root.join(key);
    std::fs::write(&path, value).map_err(|source| SysctlError { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_under_the_given_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net/ipv4")).unwrap();
        write(dir.path(), "net/ipv4/ip_forward", "1").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        let err = write(dir.path(), "net/missing/x", "1").unwrap_err();
        assert!(err.to_string().contains("net/missing/x"), "{err}");
    }

    #[test]
    fn overlay_device_gets_its_own_settings() {
        let settings = node_settings("kyvxn1");
        assert!(
            settings
                .iter()
                .any(|(k, v)| k == "net/ipv4/conf/kyvxn1/rp_filter" && *v == "0")
        );
    }
}
