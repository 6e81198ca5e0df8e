//! Names and paths of everything host-global one agent instance owns, derived from its name.
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    state_dir: PathBuf,
    bpf_dir: PathBuf,
}

impl Instance {
    pub fn new(name: &str, state_root: &Path, bpffs: &Path) -> Self {
        Instance {
            name: name.to_owned(),
            state_dir: state_root.join(name),
            bpf_dir: bpffs.join("kaya").join(name),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    /// bpffs directory holding this instance's pinned maps and links.
    pub fn bpf_dir(&self) -> &Path {
        &self.bpf_dir
    }
    pub fn links_dir(&self) -> PathBuf {
        self.bpf_dir.join("links")
    }
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join(kaya_agent_api::SOCKET_NAME)
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.state_dir.join("net.d")
    }
    pub fn ipam_dir(&self) -> PathBuf {
        self.state_dir.join("ipam")
    }
    pub fn registry_path(&self) -> PathBuf {
        self.state_dir.join("endpoints.json")
    }
    /// The collect_md VXLAN device.
    pub fn overlay_device(&self) -> String {
        format!("kyvx{}", self.name)
    }
    /// Prefix of host-side pod veths (kaya-cni appends 8 hex digits: at most 15 bytes).
    pub fn host_veth_prefix(&self) -> String {
        format!("ky{}", self.name)
    }
    pub fn nft_table(&self) -> String {
        format!("kaya_{}", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_kernel_limits() {
        let instance = Instance::new("abcde", Path::new("/run/kaya"), Path::new("/sys/fs/bpf"));
        assert!(instance.overlay_device().len() <= 15);
        assert!(instance.host_veth_prefix().len() + 8 <= 15);
        assert_eq!(instance.bpf_dir(), Path::new("/sys/fs/bpf/kaya/abcde"));
        assert_eq!(
            instance.socket_path(),
            Path::new("/run/kaya/abcde/agent.sock")
        );
    }
}
