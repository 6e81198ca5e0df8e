//! The real kubectl (Debian's kubernetes-client 1.20, default flags) and the official Python
//! client against kaya-control-plane: apply, re-apply with strategic merge, get in every
//! output form, selectors, watch, describe, scale, delete; bad requests rejected by name.
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use kaya_tests::control_plane::{ControlPlaneProcess, PYTHON};
use serde_json::Value;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
        - containerPort: 8080
        env:
        - name: A
          value: "1"
        - name: B
          value: "2"
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: demo
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
  labels: {app: web}
data:
  mode: fast
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-ingress
  namespace: demo
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
  - from:
    - podSelector: {}
    ports:
    - port: 80
"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}):\n{text}"))
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn kubectl_applies_gets_watches_scales_and_deletes() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;

    let applied = control_plane.kubectl_stdin(&["apply", "-f", "-"], MANIFEST)?;
    let out = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success(),
        "apply failed: {out}{}",
        stderr(&applied)
    );
    for line in [
        "namespace/demo created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/settings created",
        "networkpolicy.networking.k8s.io/web-ingress created",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }

    // Re-apply with a container port and an env var removed: kubectl sends a strategic
    // merge patch with $setElementOrder and $patch: delete directives.
    let edited = MANIFEST
        .replace("        - containerPort: 8080\n", "")
        .replace("        - name: B\n          value: \"2\"\n", "");
    let reapplied = control_plane.kubectl_stdin(&["apply", "-f", "-"], &edited)?;
    let out = String::from_utf8_lossy(&reapplied.stdout);
    assert!(
        reapplied.status.success(),
        "re-apply failed: {out}{}",
        stderr(&reapplied)
    );
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let deployment = json(&control_plane.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "demo",
        "-o",
        "json",
    ])?);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["ports"].as_array().map(Vec::len),
        Some(1),
        "{container}"
    );
    assert_eq!(container["ports"][0]["containerPort"], 80);
    assert_eq!(
        container["env"],
        serde_json::json!([{"name": "A", "value": "1"}])
    );
    assert_eq!(deployment["metadata"]["generation"], 2);

    // Tables with the usual columns, wide, yaml, selectors.
    let table = control_plane.kubectl_ok(&["get", "deployments", "-n", "demo"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with("web ")),
        "{table}"
    );
    let wide = control_plane.kubectl_ok(&["get", "deploy", "-n", "demo", "-o", "wide"])?;
    assert!(
        wide.lines()
            .next()
            .is_some_and(|header| header.contains("CONTAINERS") && header.contains("SELECTOR")),
        "{wide}"
    );
    assert!(
        wide.contains("nginx:1.25") && wide.contains("app=web"),
        "{wide}"
    );
    let services = control_plane.kubectl_ok(&["get", "svc", "-n", "demo"])?;
    assert!(
        services
            .lines()
            .next()
            .is_some_and(|header| header.split_whitespace().collect::<Vec<_>>()
                == [
                    "NAME",
                    "TYPE",
                    "CLUSTER-IP",
                    "EXTERNAL-IP",
                    "PORT(S)",
                    "AGE"
                ]),
        "{services}"
    );
    let service =
        json(&control_plane.kubectl_ok(&["get", "svc", "web", "-n", "demo", "-o", "json"])?);
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap_or("");
    assert!(cluster_ip.starts_with("10."), "no cluster IP: {service}");
    assert!(
        services.contains(cluster_ip) && services.contains("80/TCP"),
        "{services}"
    );
    let yaml =
        control_plane.kubectl_ok(&["get", "configmap", "settings", "-n", "demo", "-o", "yaml"])?;
    assert!(
        yaml.contains("mode: fast") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let selected = control_plane.kubectl_ok(&[
        "get",
        "cm,deploy",
        "-n",
        "demo",
        "-l",
        "app=web",
        "-o",
        "name",
    ])?;
    assert_eq!(
        selected.lines().collect::<Vec<_>>(),
        ["configmap/settings", "deployment.apps/web"],
        "{selected}"
    );
    let none = control_plane.kubectl(&["get", "cm", "-n", "demo", "-l", "app=other"])?;
    assert!(
        stderr(&none).contains("No resources found in demo namespace."),
        "{}",
        stderr(&none)
    );
    let policies = control_plane.kubectl_ok(&["get", "netpol", "-n", "demo"])?;
    assert!(
        policies.contains("web-ingress") && policies.contains("app=web"),
        "{policies}"
    );

    // get -w prints the existing row, then one per change.
    let mut watcher = control_plane
        .kubectl_command()
        .args(["get", "configmaps", "-n", "demo", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut lines = BufReader::new(watcher.stdout.take().expect("piped")).lines();
    let first = lines.next().transpose()?.unwrap_or_default();
    assert!(first.starts_with("NAME"), "{first}");
    let existing = lines.next().transpose()?.unwrap_or_default();
    assert!(existing.starts_with("settings "), "{existing}");
    control_plane.kubectl_ok(&[
        "create",
        "configmap",
        "extra",
        "-n",
        "demo",
        "--from-literal=a=b",
    ])?;
    let added = lines.next().transpose()?.unwrap_or_default();
    assert!(added.starts_with("extra "), "{added}");
    watcher.kill()?;
    watcher.wait()?;

    let described = control_plane.kubectl_ok(&["describe", "deployment", "web", "-n", "demo"])?;
    for (field, value) in [
        ("Name:", "web"),
        ("Namespace:", "demo"),
        ("Selector:", "app=web"),
        ("Image:", "nginx:1.25"),
        ("Port:", "80/TCP"),
    ] {
        assert!(
            described
                .lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>() == [field, value]),
            "missing {field} {value} in:\n{described}"
        );
    }

    let scaled =
        control_plane.kubectl_ok(&["scale", "deployment", "web", "-n", "demo", "--replicas=5"])?;
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    let replicas = control_plane.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.replicas}",
    ])?;
    assert_eq!(replicas, "5");

    let deleted = control_plane.kubectl_ok(&["delete", "configmap", "extra", "-n", "demo"])?;
    assert!(deleted.contains("configmap \"extra\" deleted"), "{deleted}");
    let gone = control_plane.kubectl(&["get", "configmap", "extra", "-n", "demo"])?;
    assert!(
        stderr(&gone).contains("configmaps \"extra\" not found"),
        "{}",
        stderr(&gone)
    );
    Ok(())
}

#[test]
fn bad_requests_name_the_problem_and_change_nothing() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let dir = tempfile::tempdir()?;
    let cases: &[(&str, &str, &str)] = &[
        (
            "malformed.json",
            "{\"kind\": \"ConfigMap\", ",
            "not valid JSON",
        ),
        (
            "unknown-field.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"dta":{"x":"y"}}"#,
            "unknown field \"dta\"",
        ),
        (
            "wrong-kind.json",
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"b"}}"#,
            "does not match the endpoint's kind",
        ),
        (
            "bad-name.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
            "metadata.name: Invalid value",
        ),
        (
            "wrong-type.json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"x":1}}"#,
            "data[x]: expected string, got integer",
        ),
    ];
    for (file, body, expected) in cases {
        let path = dir.path().join(file);
        std::fs::write(&path, body)?;
        let output = control_plane.kubectl(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            path.to_str().unwrap_or_default(),
        ])?;
        assert!(!output.status.success(), "{file} was accepted");
        assert!(
            stderr(&output).contains(expected),
            "{file}: expected {expected:?} in {}",
            stderr(&output)
        );
    }
    let oversized = dir.path().join("oversized.json");
    let filler = "x".repeat(4 * 1024 * 1024);
    std::fs::write(
        &oversized,
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"x":"{filler}"}}}}"#
        ),
    )?;
    let output = control_plane.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        oversized.to_str().unwrap_or_default(),
    ])?;
    assert!(stderr(&output).contains("too large"), "{}", stderr(&output));
    // kubectl's own client-side validation (the served OpenAPI) also names unknown fields.
    let invalid = control_plane.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\ndatta:\n  a: b\n",
    )?;
    assert!(!invalid.status.success());
    assert!(
        stderr(&invalid).contains("unknown field \"datta\""),
        "{}",
        stderr(&invalid)
    );
    let listed = control_plane.kubectl_ok(&["get", "configmaps", "-n", "default", "-o", "name"])?;
    assert_eq!(
        listed.trim(),
        "",
        "a rejected request left something behind: {listed}"
    );
    Ok(())
}

#[test]
fn the_python_client_lists_and_watches_pods() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    control_plane.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: first\n  namespace: default\nspec:\n  containers:\n  - name: a\n    image: busybox\n")?;
    let script = format!(
        r#"
import sys, threading, subprocess
from kubernetes import client, config, watch
config.load_kube_config(config_file="{kubeconfig}")
v1 = client.CoreV1Api()
names = [pod.metadata.name for pod in v1.list_namespaced_pod("default").items]
print("listed", ",".join(names), flush=True)
w = watch.Watch()
seen = []
for event in w.stream(v1.list_namespaced_pod, "default", timeout_seconds=20):
    seen.append((event["type"], event["object"].metadata.name))
    print("event", event["type"], event["object"].metadata.name, flush=True)
    if event["object"].metadata.name == "second":
        w.stop()
"#,
        kubeconfig = control_plane.kubeconfig.display()
    );
    let mut python = std::process::Command::new(PYTHON)
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(python.stdout.take().expect("piped")).lines();
    assert_eq!(
        lines.next().transpose()?.unwrap_or_default(),
        "listed first"
    );
    assert_eq!(
        lines.next().transpose()?.unwrap_or_default(),
        "event ADDED first"
    );
    control_plane.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: Pod\nmetadata:\n  name: second\n  namespace: default\nspec:\n  containers:\n  - name: a\n    image: busybox\n")?;
    assert_eq!(
        lines.next().transpose()?.unwrap_or_default(),
        "event ADDED second"
    );
    let status = python.wait_timeout_or_kill(Duration::from_secs(30))?;
    assert!(status, "the python client did not finish");
    Ok(())
}

trait WaitTimeout {
    fn wait_timeout_or_kill(&mut self, timeout: Duration) -> anyhow::Result<bool>;
}

impl WaitTimeout for std::process::Child {
    fn wait_timeout_or_kill(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill()?;
        self.wait()?;
        Ok(false)
    }
}
