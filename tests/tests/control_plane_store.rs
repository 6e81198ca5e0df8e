//! The control plane over its stores: SIGKILLed and restarted on SQLite it has lost
//! nothing; on a three-member etcd, losing the leader interrupts no write made through
//! kubectl.
use std::collections::BTreeMap;

use kaya_tests::control_plane::ControlPlaneProcess;
use kaya_tests::etcd::EtcdCluster;
use serde_json::Value;

const KINDS: &str =
    "namespaces,deployments,replicasets,services,configmaps,secrets,networkpolicies,endpoints";

/// Every object's (kind/namespace/name) → (uid, resourceVersion).
fn state(
    control_plane: &ControlPlaneProcess,
) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let list: Value =
        serde_json::from_str(&control_plane.kubectl_ok(&["get", KINDS, "-A", "-o", "json"])?)?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| {
            let key = format!(
                "{}/{}/{}",
                item["kind"].as_str().unwrap_or(""),
                item["metadata"]["namespace"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            );
            let value = (
                item["metadata"]["uid"].as_str().unwrap_or("").to_owned(),
                item["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            );
            (key, value)
        })
        .collect())
}

fn manifest(namespace: &str, count: usize) -> String {
    let mut text = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n");
    for n in 0..count {
        text += &format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c{n}, namespace: {namespace}}}\ndata: {{n: \"{n}\"}}\n"
        );
    }
    text + &format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: {namespace}}}\nstringData: {{password: hunter2}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {namespace}}}\nspec:\n  type: NodePort\n  ports: [{{port: 80}}]\n"
    )
}

#[test]
fn a_killed_control_plane_restarts_with_everything() -> anyhow::Result<()> {
    let mut control_plane = ControlPlaneProcess::start(None)?;
    let applied = control_plane.kubectl_stdin(&["apply", "-f", "-"], &manifest("keep", 20))?;
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    // Let the controllers settle so nothing changes between the two readings.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = state(&control_plane)?;
    assert!(before.len() > 25, "{before:?}");
    control_plane.restart()?;
    let after = state(&control_plane)?;
    assert_eq!(before, after);
    let secret = control_plane.kubectl_ok(&[
        "get",
        "secret",
        "s",
        "-n",
        "keep",
        "-o",
        "jsonpath={.data.password}",
    ])?;
    assert_eq!(secret, "aHVudGVyMg==");
    // Writes continue where they left off: the next resourceVersion is higher.
    let highest: u64 = after
        .values()
        .filter_map(|(_, version)| version.parse().ok())
        .max()
        .unwrap_or(0);
    control_plane.kubectl_ok(&["create", "configmap", "later", "-n", "keep"])?;
    let version: u64 = control_plane
        .kubectl_ok(&[
            "get",
            "configmap",
            "later",
            "-n",
            "keep",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])?
        .parse()?;
    assert!(version > highest);
    Ok(())
}

#[test]
fn on_three_etcd_members_losing_the_leader_interrupts_no_write() -> anyhow::Result<()> {
    let mut etcd = EtcdCluster::start(3)?;
    let store = format!("etcd:{}", etcd.endpoints().join(","));
    let mut control_plane = ControlPlaneProcess::start(Some(&store))?;
    let applied = control_plane.kubectl_stdin(&["apply", "-f", "-"], &manifest("before", 10))?;
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let leader = etcd.leader()?;
    etcd.kill(leader);
    for n in 0..20 {
        let name = format!("after-{n}");
        control_plane.kubectl_ok(&[
            "create",
            "configmap",
            &name,
            "-n",
            "before",
            "--from-literal=n=1",
        ])?;
    }
    let listed = control_plane.kubectl_ok(&["get", "configmaps", "-n", "before", "-o", "name"])?;
    assert_eq!(
        listed
            .lines()
            .filter(|line| line.starts_with("configmap/after-"))
            .count(),
        20
    );
    let before = state(&control_plane)?;
    control_plane.restart()?;
    assert_eq!(state(&control_plane)?, before);
    Ok(())
}
