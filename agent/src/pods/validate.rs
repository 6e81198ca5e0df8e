//! Pod specs checked before anything runs: every problem is an error naming the field, as
//! the API server would word it, so a bad manifest never half-starts a pod.
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use std::collections::BTreeSet;

use super::probe::{Kind, ProbeTiming};
use super::resources::{ContainerResources, QosClass, qos_class};
use super::restart::RestartPolicy;
use crate::objects::{Checker, InvalidObject, ObjectName};

/// What the rest of the kubelet needs from a valid pod spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidPod {
    pub name: ObjectName,
    pub restart_policy: RestartPolicy,
    pub qos: QosClass,
    /// App containers' resources, in spec order.
    pub resources: Vec<ContainerResources>,
}

/// A DNS-1123 label: lower-case alphanumerics and '-', alphanumeric at both ends, ≤ 63.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn check_container(
    check: &Checker,
    field: &str,
    container: &Container,
    names: &mut BTreeSet<String>,
    volumes: &BTreeSet<String>,
    init: bool,
) -> Result<ContainerResources, InvalidObject> {
    if !is_dns_label(&container.name) {
        return check.fail(
            format!("{field}.name"),
            format!("{:?} is not a DNS-1123 label", container.name),
        );
    }
    if !names.insert(container.name.clone()) {
        return check.fail(
            format!("{field}.name"),
            format!("duplicate container name {:?}", container.name),
        );
    }
    if container.image.as_deref().is_none_or(str::is_empty) {
        return check.fail(format!("{field}.image"), "required");
    }
    for (index, port) in container.ports.iter().flatten().enumerate() {
        check.port(
            format!("{field}.ports[{index}].containerPort"),
            port.container_port,
        )?;
        check.protocol(
            format!("{field}.ports[{index}].protocol"),
            port.protocol.as_deref(),
        )?;
    }
    for (index, env) in container.env.iter().flatten().enumerate() {
        if env.name.is_empty() || env.name.contains('=') {
            return check.fail(
                format!("{field}.env[{index}].name"),
                format!("{:?} is not a variable name", env.name),
            );
        }
    }
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(&mount.name) {
            return check.fail(
                format!("{field}.volumeMounts[{index}].name"),
                format!("no volume named {:?}", mount.name),
            );
        }
        if !mount.mount_path.starts_with('/') {
            return check.fail(
                format!("{field}.volumeMounts[{index}].mountPath"),
                format!("{:?} is not absolute", mount.mount_path),
            );
        }
        if mount
            .sub_path
            .as_deref()
            .is_some_and(|p| p.starts_with('/') || p.split('/').any(|c| c == ".."))
        {
            return check.fail(
                format!("{field}.volumeMounts[{index}].subPath"),
                "must be a relative path without '..'",
            );
        }
    }
    let probes: [(&str, Option<&Probe>, Kind); 3] = [
        (
            "livenessProbe",
            container.liveness_probe.as_ref(),
            Kind::Liveness,
        ),
        (
            "readinessProbe",
            container.readiness_probe.as_ref(),
            Kind::Readiness,
        ),
        (
            "startupProbe",
            container.startup_probe.as_ref(),
            Kind::Startup,
        ),
    ];
    for (name, probe, kind) in probes {
        let Some(probe) = probe else { continue };
        if init {
            return check.fail(
                format!("{field}.{name}"),
                "init containers may not have probes",
            );
        }
        let handlers = [
            probe.exec.is_some(),
            probe.http_get.is_some(),
            probe.tcp_socket.is_some(),
            probe.grpc.is_some(),
        ];
        if handlers.iter().filter(|h| **h).count() != 1 {
            return check.fail(
                format!("{field}.{name}"),
                "needs exactly one of exec, httpGet, tcpSocket, grpc",
            );
        }
        ProbeTiming::from_k8s(probe, kind, &format!("{field}.{name}"))
            .or_else(|err| check.fail(err.field, err.message))?;
    }
    ContainerResources::from_container(container, field)
        .or_else(|err| check.fail(err.field, err.source.to_string()))
}

pub fn validate(pod: &Pod) -> Result<ValidPod, InvalidObject> {
    let check = Checker::new("Pod", &pod.metadata);
    let name = check.name(&pod.metadata)?;
    let Some(spec) = &pod.spec else {
        return check.fail("spec", "required");
    };
    let restart_policy = RestartPolicy::parse(spec.restart_policy.as_deref()).map_or_else(
        || {
            check.fail(
                "spec.restartPolicy",
                format!(
                    "{:?} is not Always, OnFailure or Never",
                    spec.restart_policy.as_deref().unwrap_or_default()
                ),
            )
        },
        Ok,
    )?;
    if spec.containers.is_empty() {
        return check.fail("spec.containers", "at least one container is required");
    }
    let mut volumes = BTreeSet::new();
    for (index, volume) in spec.volumes.iter().flatten().enumerate() {
        if !is_dns_label(&volume.name) || !volumes.insert(volume.name.clone()) {
            return check.fail(
                format!("spec.volumes[{index}].name"),
                format!("{:?} is not a unique DNS-1123 label", volume.name),
            );
        }
    }
    let mut names = BTreeSet::new();
    let mut all = Vec::new();
    for (index, container) in spec.init_containers.iter().flatten().enumerate() {
        let field = format!("spec.initContainers[{index}]");
        all.push(check_container(
            &check, &field, container, &mut names, &volumes, true,
        )?);
    }
    let mut resources = Vec::new();
    for (index, container) in spec.containers.iter().enumerate() {
        let field = format!("spec.containers[{index}]");
        resources.push(check_container(
            &check, &field, container, &mut names, &volumes, false,
        )?);
    }
    all.extend(&resources);
    if let Some(grace) = spec.termination_grace_period_seconds
        && grace < 0
    {
        return check.fail(
            "spec.terminationGracePeriodSeconds",
            format!("{grace} is negative"),
        );
    }
    Ok(ValidPod {
        name,
        restart_policy,
        qos: qos_class(&all),
        resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: &str) -> Result<ValidPod, InvalidObject> {
        validate(
            &serde_yaml::from_str(&format!(
                "metadata: {{name: web, namespace: shop}}\nspec:\n{spec}"
            ))
            .unwrap(),
        )
    }

    #[test]
    fn a_valid_pod_gives_its_restart_policy_and_qos() {
        let valid = pod("  restartPolicy: OnFailure
  volumes: [{name: data, emptyDir: {}}]
  initContainers: [{name: init, image: busybox, resources: {requests: {cpu: 100m}}}]
  containers:
    - name: app
      image: busybox
      ports: [{containerPort: 8080}]
      volumeMounts: [{name: data, mountPath: /data, subPath: app}]
      livenessProbe: {tcpSocket: {port: 8080}}
      resources: {limits: {cpu: 500m, memory: 64Mi}}")
        .unwrap();
        assert_eq!(valid.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(
            valid.qos,
            QosClass::Burstable,
            "the init container has a request only"
        );
        assert_eq!(valid.resources[0].memory_limit, Some(64 << 20));
    }

    #[test]
    fn invalid_fields_are_named() {
        let cases = [
            ("  containers: []", "spec.containers"),
            (
                "  restartPolicy: Sometimes\n  containers: [{name: a, image: b}]",
                "spec.restartPolicy",
            ),
            (
                "  containers: [{name: App, image: b}]",
                "spec.containers[0].name",
            ),
            (
                "  containers: [{name: a, image: b}, {name: a, image: c}]",
                "spec.containers[1].name",
            ),
            ("  containers: [{name: a}]", "spec.containers[0].image"),
            (
                "  containers: [{name: a, image: b, ports: [{containerPort: 70000}]}]",
                "spec.containers[0].ports[0].containerPort",
            ),
            (
                "  containers: [{name: a, image: b, volumeMounts: [{name: nope, mountPath: /x}]}]",
                "spec.containers[0].volumeMounts[0].name",
            ),
            (
                "  volumes: [{name: v, emptyDir: {}}]\n  containers: [{name: a, image: b, volumeMounts: [{name: v, mountPath: /x, subPath: ../etc}]}]",
                "subPath",
            ),
            (
                "  containers: [{name: a, image: b, livenessProbe: {periodSeconds: 5}}]",
                "spec.containers[0].livenessProbe",
            ),
            (
                "  containers: [{name: a, image: b, readinessProbe: {exec: {command: [x]}, timeoutSeconds: 0}}]",
                "spec.containers[0].readinessProbe.timeoutSeconds",
            ),
            (
                "  initContainers: [{name: i, image: b, startupProbe: {exec: {command: [x]}}}]\n  containers: [{name: a, image: b}]",
                "spec.initContainers[0].startupProbe",
            ),
            (
                "  containers: [{name: a, image: b, resources: {limits: {memory: lots}}}]",
                "spec.containers[0].resources.limits.memory",
            ),
            (
                "  containers: [{name: a, image: b, env: [{name: 'A=B'}]}]",
                "spec.containers[0].env[0].name",
            ),
            (
                "  terminationGracePeriodSeconds: -1\n  containers: [{name: a, image: b}]",
                "spec.terminationGracePeriodSeconds",
            ),
        ];
        for (spec, field) in cases {
            let err = pod(spec).unwrap_err().to_string();
            assert!(
                err.contains("Pod shop/web") && err.contains(field),
                "{spec}\n{err}"
            );
        }
    }
}
