//! Turns a validated Pod into the plan its shim runs: images resolved to layers, command and
//! args per Kubernetes' entrypoint rules, env, user, limits, mounts, probes and hooks.
use super::downward::PodFacts;
use super::env::{ConfigError, resolve};
use super::objects::PodObjects;
use super::probe::{Kind, ProbeTiming};
use super::resources::{ContainerResources, QosClass, container_limits, pod_limits};
use super::security::{identity, security};
use super::validate::ValidPod;
use super::volumes::Materialized;
use crate::images::manifest::RunConfig;
use crate::images::store::ImageRecord;
use crate::runtime::plan::{
    ActionPlan, ContainerPlan, LifecyclePlan, MountPlan, NetworkPlan, PodPlan, ProbePlan,
    ProbesPlan,
};
use k8s_openapi::api::core::v1::{Container, ContainerPort, LifecycleHandler, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_GRACE_SECS: u64 = 30;

/// An image ready for a container: its record, config and layer directories.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    pub record: ImageRecord,
    pub config: RunConfig,
    pub layers: Vec<PathBuf>,
}

pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub ip: &'a str,
    pub network: Option<NetworkPlan>,
    pub log_root: &'a Path,
}

/// Everything a plan is made from besides the pod itself.
pub struct PlanInputs<'a> {
    pub uid: &'a str,
    pub node: &'a NodeFacts<'a>,
    /// By container name.
    pub images: &'a BTreeMap<String, PreparedImage>,
    pub volumes: &'a Materialized,
    pub objects: &'a PodObjects,
}

pub fn plan(pod: &Pod, valid: &ValidPod, inputs: &PlanInputs<'_>) -> Result<PodPlan, ConfigError> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| ConfigError::new("spec", "required"))?;
    let host_network = spec.host_network.unwrap_or(false);
    let facts = PodFacts {
        uid: inputs.uid,
        node_name: inputs.node.name,
        host_ip: inputs.node.ip,
    };
    let container_plans =
        |list: &[Container], prefix: &str| -> Result<Vec<ContainerPlan>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(index, container)| {
                    container_plan(
                        pod,
                        &facts,
                        inputs,
                        container,
                        &format!("{prefix}[{index}]"),
                    )
                })
                .collect()
        };
    let qos_dir = match valid.qos {
        QosClass::Guaranteed => String::new(),
        other => format!("{}/", other.name().to_lowercase()),
    };
    let namespace = &valid.name.namespace;
    Ok(PodPlan {
        uid: inputs.uid.to_string(),
        namespace: namespace.clone(),
        name: valid.name.name.clone(),
        hostname: if host_network {
            inputs.node.name.to_string()
        } else {
            spec.hostname
                .clone()
                .unwrap_or_else(|| valid.name.name.clone())
        },
        host_network,
        restart_policy: valid.restart_policy,
        termination_grace_secs: spec
            .termination_grace_period_seconds
            .map_or(DEFAULT_GRACE_SECS, |s| s.max(0) as u64),
        cgroup: format!("kubepods/{qos_dir}pod{}", inputs.uid),
        pod_limits: pod_limits(&valid.resources),
        network: if host_network {
            None
        } else {
            inputs.node.network.clone()
        },
        log_dir: inputs
            .node
            .log_root
            .join(format!("{namespace}_{}_{}", valid.name.name, inputs.uid)),
        init_containers: container_plans(
            spec.init_containers.as_deref().unwrap_or_default(),
            "spec.initContainers",
        )?,
        containers: container_plans(&spec.containers, "spec.containers")?,
    })
}

fn container_plan(
    pod: &Pod,
    facts: &PodFacts<'_>,
    inputs: &PlanInputs<'_>,
    container: &Container,
    field_name: &str,
) -> Result<ContainerPlan, ConfigError> {
    let image = inputs
        .images
        .get(&container.name)
        .ok_or_else(|| ConfigError::new(format!("{field_name}.image"), "image is not present"))?;
    let mut env = resolve(
        pod,
        facts,
        inputs.objects,
        container,
        field_name,
        image.config.env.as_deref().unwrap_or_default(),
    )?;
    if !env.vars.iter().any(|(name, _)| name == "PATH") {
        env.vars.insert(
            0,
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
        );
    }
    let expand = |list: &[String]| list.iter().map(|item| env.expand(item)).collect::<Vec<_>>();
    let entrypoint = image.config.entrypoint.clone().unwrap_or_default();
    let args = match (&container.command, &container.args) {
        (Some(command), args) => {
            [expand(command), expand(args.as_deref().unwrap_or_default())].concat()
        }
        (None, Some(args)) => [entrypoint, expand(args)].concat(),
        (None, None) => [entrypoint, image.config.cmd.clone().unwrap_or_default()].concat(),
    };
    if args.is_empty() {
        return Err(ConfigError::new(
            format!("{field_name}.command"),
            "no command specified and the image has none",
        ));
    }
    let pod_context = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.security_context.as_ref());
    let (uid, gid) = identity(
        pod_context,
        container.security_context.as_ref(),
        image.config.user.as_deref(),
        &image.layers,
        field_name,
    )?;
    let resources = ContainerResources::from_container(container, field_name)
        .map_err(|error| ConfigError::new(error.field, error.source.to_string()))?;
    let mut mounts = Vec::new();
    for (index, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let mount_field = format!("{field_name}.volumeMounts[{index}]");
        let (source, volume_read_only) =
            inputs.volumes.paths.get(&mount.name).ok_or_else(|| {
                ConfigError::new(
                    &mount_field,
                    format!("volume {:?} is not prepared", mount.name),
                )
            })?;
        let source = match mount.sub_path.as_deref().filter(|path| !path.is_empty()) {
            // Like kubelet, a missing subPath of a writable volume is created.
            Some(sub_path) => {
                let path = source.join(sub_path);
                if !path.exists() && !volume_read_only {
                    std::fs::create_dir_all(&path).map_err(|error| {
                        ConfigError::new(
                            format!("{mount_field}.subPath"),
                            format!("{}: {error}", path.display()),
                        )
                    })?;
                }
                path
            }
            None => source.clone(),
        };
        mounts.push(MountPlan {
            source,
            destination: mount.mount_path.clone(),
            read_only: mount.read_only.unwrap_or(false) || *volume_read_only,
            tmpfs_size: None,
        });
    }
    let ports = container.ports.as_deref().unwrap_or_default();
    let probe =
        |probe: Option<&Probe>, kind: Kind, name: &str| -> Result<Option<ProbePlan>, ConfigError> {
            let Some(probe) = probe else { return Ok(None) };
            let probe_field = format!("{field_name}.{name}");
            let timing = ProbeTiming::from_k8s(probe, kind, &probe_field)
                .map_err(|e| ConfigError::new(e.field, e.message))?;
            let handler = LifecycleHandler {
                exec: probe.exec.clone(),
                http_get: probe.http_get.clone(),
                tcp_socket: probe.tcp_socket.clone(),
                sleep: None,
            };
            Ok(Some(ProbePlan {
                action: action(&handler, ports, &probe_field)?,
                initial_delay_ms: timing.initial_delay.as_millis() as u64,
                period_ms: timing.period.as_millis() as u64,
                timeout_ms: timing.timeout.as_millis() as u64,
                success_threshold: timing.success_threshold,
                failure_threshold: timing.failure_threshold,
            }))
        };
    let lifecycle = container.lifecycle.as_ref();
    let hook = |handler: Option<&LifecycleHandler>,
                name: &str|
     -> Result<Option<ActionPlan>, ConfigError> {
        handler
            .map(|handler| action(handler, ports, &format!("{field_name}.lifecycle.{name}")))
            .transpose()
    };
    Ok(ContainerPlan {
        name: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        image_id: image.record.image_id(),
        layers: image.layers.clone(),
        args,
        env: env.lines(),
        pod_ip_env: env.pod_ip_vars.clone(),
        working_dir: container
            .working_dir
            .clone()
            .or_else(|| image.config.working_dir.clone())
            .filter(|dir| !dir.is_empty())
            .unwrap_or_else(|| "/".into()),
        uid,
        gid,
        limits: container_limits(&resources),
        security: security(container.security_context.as_ref()),
        mounts,
        probes: ProbesPlan {
            startup: probe(
                container.startup_probe.as_ref(),
                Kind::Startup,
                "startupProbe",
            )?,
            liveness: probe(
                container.liveness_probe.as_ref(),
                Kind::Liveness,
                "livenessProbe",
            )?,
            readiness: probe(
                container.readiness_probe.as_ref(),
                Kind::Readiness,
                "readinessProbe",
            )?,
        },
        lifecycle: LifecyclePlan {
            post_start: hook(lifecycle.and_then(|l| l.post_start.as_ref()), "postStart")?,
            pre_stop: hook(lifecycle.and_then(|l| l.pre_stop.as_ref()), "preStop")?,
        },
    })
}

/// A port number, or a name looked up among the container's ports.
fn port(
    value: &IntOrString,
    ports: &[ContainerPort],
    field_name: &str,
) -> Result<u16, ConfigError> {
    match value {
        IntOrString::Int(number) => u16::try_from(*number)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| ConfigError::new(field_name, format!("port {number} is out of range"))),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(number) if number > 0 => Ok(number),
            _ => ports
                .iter()
                .find(|port| port.name.as_deref() == Some(name))
                .map(|port| port.container_port as u16)
                .ok_or_else(|| {
                    ConfigError::new(field_name, format!("no container port named {name:?}"))
                }),
        },
    }
}

fn action(
    handler: &LifecycleHandler,
    ports: &[ContainerPort],
    field_name: &str,
) -> Result<ActionPlan, ConfigError> {
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(ConfigError::new(
                format!("{field_name}.exec.command"),
                "required",
            ));
        }
        return Ok(ActionPlan::Exec { command });
    }
    if let Some(http) = &handler.http_get {
        return Ok(ActionPlan::HttpGet {
            host: http.host.clone().filter(|h| !h.is_empty()),
            port: port(&http.port, ports, &format!("{field_name}.httpGet.port"))?,
            path: http
                .path
                .clone()
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into()),
            scheme: http.scheme.clone().unwrap_or_else(|| "HTTP".into()),
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        });
    }
    if let Some(tcp) = &handler.tcp_socket {
        return Ok(ActionPlan::TcpSocket {
            host: tcp.host.clone().filter(|h| !h.is_empty()),
            port: port(&tcp.port, ports, &format!("{field_name}.tcpSocket.port"))?,
        });
    }
    if let Some(sleep) = &handler.sleep {
        return Ok(ActionPlan::Exec {
            command: vec!["sleep".into(), sleep.seconds.to_string()],
        });
    }
    Err(ConfigError::new(
        field_name,
        "needs exec, httpGet or tcpSocket",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::validate::validate;

    fn planned(yaml: &str, config: RunConfig) -> Result<PodPlan, ConfigError> {
        let pod: Pod = serde_yaml::from_str(yaml).unwrap();
        let valid = validate(&pod).unwrap();
        let record = ImageRecord {
            name: "r/app:v1".into(),
            manifest: "sha256:aa".into(),
            config: "sha256:bb".into(),
            layers: vec![],
            size: 0,
        };
        let image = PreparedImage {
            record,
            config,
            layers: vec![PathBuf::from("/layers/1")],
        };
        let images: BTreeMap<String, PreparedImage> = pod
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .chain(pod.spec.as_ref().unwrap().init_containers.iter().flatten())
            .map(|c| (c.name.clone(), image.clone()))
            .collect();
        let node = NodeFacts {
            name: "n1",
            ip: "10.0.0.1",
            network: None,
            log_root: Path::new("/var/log/pods"),
        };
        let volumes = Materialized::default();
        let objects = PodObjects::default();
        let inputs = PlanInputs {
            uid: "uid1",
            node: &node,
            images: &images,
            volumes: &volumes,
            objects: &objects,
        };
        plan(&pod, &valid, &inputs)
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
        let list = |items: &[&str]| {
            (!items.is_empty()).then(|| items.iter().map(|s| s.to_string()).collect())
        };
        RunConfig {
            entrypoint: list(entrypoint),
            cmd: list(cmd),
            ..RunConfig::default()
        }
    }

    #[test]
    fn command_and_args_follow_the_entrypoint_rules() {
        let args = |container: &str, config| {
            let yaml = format!(
                "metadata: {{name: p}}\nspec:\n  containers:\n  - {{name: app, image: r/app:v1, {container}}}"
            );
            planned(&yaml, config).unwrap().containers[0].args.clone()
        };
        assert_eq!(args("env: []", image(&["/ep"], &["c1"])), ["/ep", "c1"]);
        assert_eq!(args("args: [a1]", image(&["/ep"], &["c1"])), ["/ep", "a1"]);
        assert_eq!(args("command: [/cmd]", image(&["/ep"], &["c1"])), ["/cmd"]);
        assert_eq!(
            args("command: [/cmd], args: [a1]", image(&["/ep"], &["c1"])),
            ["/cmd", "a1"]
        );
        assert_eq!(
            args(
                "command: [echo, '$(GREETING)'], env: [{name: GREETING, value: hi}]",
                image(&[], &[])
            ),
            ["echo", "hi"]
        );
        let yaml = "metadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: r/app:v1}";
        assert_eq!(
            planned(yaml, image(&[], &[])).unwrap_err().field,
            "spec.containers[0].command"
        );
    }

    #[test]
    fn pod_level_settings() {
        let yaml = "metadata: {name: p, namespace: ns}\nspec:\n  terminationGracePeriodSeconds: 7\n  restartPolicy: OnFailure\n  containers:\n  - name: app\n    image: r/app:v1\n    resources: {limits: {cpu: 500m, memory: 64Mi}}\n    ports: [{name: http, containerPort: 8080}]\n    readinessProbe: {httpGet: {port: http, path: /ready}, periodSeconds: 2}\n    lifecycle: {preStop: {exec: {command: [sh, -c, 'sleep 1']}}}";
        let plan = planned(yaml, image(&[], &["sh"])).unwrap();
        assert_eq!(
            plan.cgroup, "kubepods/poduid1",
            "limits equal requests: Guaranteed"
        );
        assert_eq!(plan.termination_grace_secs, 7);
        assert_eq!(plan.log_dir, Path::new("/var/log/pods/ns_p_uid1"));
        let app = &plan.containers[0];
        assert_eq!(app.limits.cpu_quota_us, Some(50_000));
        assert_eq!(app.limits.memory_limit, Some(64 << 20));
        let readiness = app.probes.readiness.as_ref().unwrap();
        assert_eq!(readiness.period_ms, 2_000);
        assert!(
            matches!(&readiness.action, ActionPlan::HttpGet { port: 8080, path, .. } if path == "/ready")
        );
        assert!(app.lifecycle.pre_stop.is_some());
        assert!(app.env.iter().any(|line| line.starts_with("PATH=")));

        let bad_port = "metadata: {name: p}\nspec:\n  containers:\n  - {name: app, image: r/app:v1, livenessProbe: {tcpSocket: {port: nope}}}";
        let error = planned(bad_port, image(&[], &["sh"])).unwrap_err();
        assert_eq!(
            error.field,
            "spec.containers[0].livenessProbe.tcpSocket.port"
        );
    }
}
