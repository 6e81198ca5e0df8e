//! Discovery: `/version`, `/api`, `/apis` and the resource lists kubectl and client
//! libraries read to map kinds to URLs, verbs and short names.
use serde_json::{Value, json};

use super::resources::{self, GROUPS};

/// The Kubernetes version whose API this server follows (kubectl 1.20 is the reference client).
pub const KUBERNETES_MINOR: &str = "20";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-kaya.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group(name: &str, version: &str) -> Value {
    let group_version = format!("{name}/{version}");
    json!({
        "name": name,
        "versions": [{"groupVersion": group_version, "version": version}],
        "preferredVersion": {"groupVersion": group_version, "version": version},
    })
}

pub fn groups() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": GROUPS.iter().map(|(name, version)| group(name, version)).collect::<Vec<_>>(),
    })
}

pub fn api_group(name: &str) -> Option<Value> {
    GROUPS
        .iter()
        .find(|(group_name, _)| *group_name == name)
        .map(|(name, version)| {
            let mut value = group(name, version);
            value["kind"] = json!("APIGroup");
            value["apiVersion"] = json!("v1");
            value
        })
}

pub fn resource_list(group: &str, version: &str) -> Value {
    let mut entries = Vec::new();
    for resource in resources::in_group_version(group, version) {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs,
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        if !resource.categories.is_empty() {
            entry["categories"] = json!(resource.categories);
        }
        entries.push(entry);
        for subresource in resource.subresources {
            let (kind, sub_group, sub_version, verbs) = subresource.discovery(resource.kind);
            let mut entry = json!({
                "name": format!("{}/{}", resource.plural, subresource.name()),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !sub_group.is_empty() {
                entry["group"] = json!(sub_group);
                entry["version"] = json!(sub_version);
            }
            entries.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_carry_verbs_short_names_and_subresources() {
        let core = resource_list("", "v1");
        let resources = core["resources"].as_array().unwrap();
        let pods = resources
            .iter()
            .find(|entry| entry["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
        assert!(resources.iter().any(|entry| entry["name"] == "pods/binding" && entry["verbs"] == json!(["create"])));
        let apps = resource_list("apps", "v1");
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(
            (scale["group"].as_str(), scale["kind"].as_str()),
            (Some("autoscaling"), Some("Scale"))
        );
        assert_eq!(groups()["groups"].as_array().unwrap().len(), GROUPS.len());
        assert!(api_group("apps").is_some() && api_group("batch").is_none());
    }
}
