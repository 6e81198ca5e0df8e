//! Executes a CNI conflist as a container runtime does (libcni's behaviour): ADD runs the
//! plugins in order, each getting the previous result as `prevResult`; CHECK runs them in order
//! with the cached result; DEL runs them in reverse. `runtimeConfig` is passed to a plugin only
//! for the capabilities it declares.
use anyhow::Context;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use crate::cni_invoke::{Invocation, invoke};

pub struct Conflist {
    pub list: Value,
    /// Directories searched for plugin binaries, in order (CNI_PATH).
    pub plugin_dirs: Vec<PathBuf>,
}

pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub pod_netns: &'a Path,
    pub ifname: &'a str,
    /// Runtime-provided values by capability name (e.g. "portMappings").
    pub runtime_config: Value,
}

impl Conflist {
    fn plugin_path(&self, plugin_type: &str) -> anyhow::Result<PathBuf> {
        self.plugin_dirs
            .iter()
            .map(|dir| dir.join(plugin_type))
            .find(|path| path.exists())
            .with_context(|| format!("plugin {plugin_type} not found in {:?}", self.plugin_dirs))
    }

    fn plugin_conf(
        &self,
        plugin: &Value,
        attachment: &Attachment<'_>,
        prev: Option<&Value>,
    ) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = self.list["name"].clone();
        conf["cniVersion"] = self.list["cniVersion"].clone();
        if let Some(capabilities) = plugin["capabilities"].as_object() {
            let mut runtime = json!({});
            for (capability, enabled) in capabilities {
                if enabled == &json!(true) && attachment.runtime_config.get(capability).is_some() {
                    runtime[capability] = attachment.runtime_config[capability].clone();
                }
            }
            conf["runtimeConfig"] = runtime;
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    fn run(
        &self,
        node_netns: &Path,
        command: &str,
        plugin: &Value,
        attachment: &Attachment<'_>,
        prev: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let plugin_type = plugin["type"].as_str().context("plugin without type")?;
        let path = self.plugin_path(plugin_type)?;
        let cni_path = std::env::join_paths(&self.plugin_dirs)?;
        let call = Invocation {
            plugin: &path,
            cni_path: Path::new(&cni_path),
            command,
            container_id: attachment.container_id,
            pod_netns: attachment.pod_netns,
            ifname: attachment.ifname,
        };
        invoke(
            node_netns,
            &call,
            &self.plugin_conf(plugin, attachment, prev),
        )
        .with_context(|| format!("{command} {plugin_type}"))
    }

    fn plugins(&self) -> anyhow::Result<&Vec<Value>> {
        self.list["plugins"]
            .as_array()
            .context("conflist without plugins")
    }

    /// ADD through every plugin; returns the final result (cache it for CHECK and DEL).
    pub fn add(&self, node_netns: &Path, attachment: &Attachment<'_>) -> anyhow::Result<Value> {
        let mut result: Option<Value> = None;
        for plugin in self.plugins()? {
            let next = self.run(node_netns, "ADD", plugin, attachment, result.as_ref())?;
            result = Some(next);
        }
        result.context("conflist produced no result")
    }

    pub fn check(
        &self,
        node_netns: &Path,
        attachment: &Attachment<'_>,
        cached: &Value,
    ) -> anyhow::Result<()> {
        for plugin in self.plugins()? {
            self.run(node_netns, "CHECK", plugin, attachment, Some(cached))?;
        }
        Ok(())
    }

    pub fn del(
        &self,
        node_netns: &Path,
        attachment: &Attachment<'_>,
        cached: Option<&Value>,
    ) -> anyhow::Result<()> {
        for plugin in self.plugins()?.iter().rev() {
            self.run(node_netns, "DEL", plugin, attachment, cached)?;
        }
        Ok(())
    }
}
