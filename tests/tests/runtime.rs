//! Containers through kaya-shim and libcontainer, as root, on this host's cgroups: logs,
//! exit codes, exec, graceful stop.
use kaya_agent::runtime::protocol::ShimResponse;
use kaya_agent::runtime::status::{ContainerState, Phase};
use kaya_tests::pod_runtime::{RunningPod, TestNode, exec_output, exec_probe, running, shared_dir};
use std::time::Duration;

#[test]
fn runs_a_container_with_logs_exec_and_graceful_stop() {
    let node = TestNode::new().unwrap();
    let app = node.container("app", &["sh", "-c", "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"]);
    let mut pod = node.start(node.pod("hello", vec![app])).unwrap();
    let status = pod
        .wait_for("app running", Duration::from_secs(20), |s| {
            s.phase == Phase::Running
        })
        .unwrap();
    let app = RunningPod::container(&status, "app");
    assert!(
        running(&app.state),
        "{status:#?}\nshim log: {}",
        pod.shim_log()
    );
    assert!(app.ready && app.started);
    assert!(app.container_id.as_deref().unwrap().starts_with("kaya://"));

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pod.logs("app", 0).contains("oops") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pod.logs("app", 0), "hello\noops\n");

    match pod.exec("app", &["cat", "/etc/hostname"]).unwrap() {
        ShimResponse::Exec {
            exit_code, stdout, ..
        } => assert_eq!((exit_code, stdout.as_str()), (0, "hello\n")),
        other => panic!("exec: {other:?}"),
    }
    match pod.exec("app", &["sh", "-c", "exit 3"]).unwrap() {
        ShimResponse::Exec { exit_code, .. } => assert_eq!(exit_code, 3),
        other => panic!("exec: {other:?}"),
    }

    let last = pod.stop(None, Duration::from_secs(20)).unwrap();
    assert!(last.finished);
    match &RunningPod::container(&last, "app").state {
        ContainerState::Terminated { exit_code, .. } => {
            assert_eq!(*exit_code, 0, "the TERM trap ran")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        pod.logs("app", 0).starts_with("hello\noops\nbye\n"),
        "{}",
        pod.logs("app", 0)
    );
    assert!(!pod.dir.runtime_root().exists(), "runtime state removed");
}

fn terminated(state: &ContainerState) -> (i32, String) {
    match state {
        ContainerState::Terminated {
            exit_code, reason, ..
        } => (*exit_code, reason.clone()),
        other => panic!("not terminated: {other:?}"),
    }
}

#[test]
fn a_memory_hog_is_oom_killed_and_restarted_with_backoff() {
    let node = TestNode::new().unwrap();
    let mut hog = node.container("hog", &["sh", "-c", "head -c 200m /dev/zero | tail"]);
    hog.limits.memory_limit = Some(32 << 20);
    let pod = node.start(node.pod("hog", vec![hog])).unwrap();
    // The first restart is immediate, the second waits 10 s: restartCount 2 means back-off.
    let status = pod
        .wait_for("two OOM kills", Duration::from_secs(30), |s| {
            let hog = RunningPod::container(s, "hog");
            hog.restart_count >= 2 && matches!(hog.state, ContainerState::Waiting { .. })
        })
        .unwrap();
    let hog = RunningPod::container(&status, "hog");
    assert_eq!(
        terminated(hog.last_state.as_ref().unwrap()),
        (137, "OOMKilled".to_string())
    );
    match &hog.state {
        ContainerState::Waiting { reason, message } => {
            assert_eq!(reason, "CrashLoopBackOff");
            assert!(
                message.starts_with("back-off 10s restarting failed container=hog"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_cpu_limit_is_enforced() {
    let node = TestNode::new().unwrap();
    let mut spin = node.container("spin", &["sh", "-c", "while :; do :; done"]);
    spin.limits.cpu_quota_us = Some(20_000); // 200m
    let pod = node.start(node.pod("spin", vec![spin])).unwrap();
    let status = pod
        .wait_for("spinning", Duration::from_secs(20), |s| {
            s.phase == Phase::Running
        })
        .unwrap();
    let id = RunningPod::container(&status, "spin")
        .container_id
        .clone()
        .unwrap();
    let cgroup = format!(
        "/sys/fs/cgroup/cpuacct/{}/{}/cpuacct.usage",
        pod.plan.cgroup,
        id.trim_start_matches("kaya://")
    );
    let usage = || {
        std::fs::read_to_string(&cgroup)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    let (before, start) = (usage(), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (usage() - before) as f64 / start.elapsed().as_nanos() as f64;
    assert!(
        (0.12..=0.26).contains(&share),
        "a 200m limit gave {share:.3} of a CPU"
    );
}

#[test]
fn a_failing_liveness_probe_restarts_with_backoff() {
    let node = TestNode::new().unwrap();
    let mut app = node.container("app", &["sleep", "3600"]);
    app.probes.liveness = Some(exec_probe(&["test", "-f", "/tmp/healthy"], 500, 2));
    let mut plan = node.pod("live", vec![app]);
    plan.termination_grace_secs = 1;
    let pod = node.start(plan).unwrap();
    let first = pod
        .wait_for("first restart", Duration::from_secs(20), |s| {
            RunningPod::container(s, "app").restart_count == 1
        })
        .unwrap();
    let killed = RunningPod::container(&first, "app");
    match killed.last_state.as_ref().unwrap() {
        ContainerState::Terminated {
            message, exit_code, ..
        } => {
            assert!(message.contains("liveness probe"), "{message}");
            assert_eq!(
                *exit_code, 137,
                "sleep as pid 1 ignores SIGTERM; the grace period ends in SIGKILL"
            );
        }
        other => panic!("{other:?}"),
    }
    let at_first = std::time::Instant::now();
    let second = pod
        .wait_for("second restart", Duration::from_secs(40), |s| {
            let app = RunningPod::container(s, "app");
            app.restart_count == 2 && running(&app.state)
        })
        .unwrap();
    let waited = at_first.elapsed();
    assert!(
        waited >= Duration::from_secs(10),
        "second restart after {waited:?}: {second:#?}"
    );
    assert!(
        waited < Duration::from_secs(16),
        "second restart after {waited:?}"
    );
}

#[test]
fn readiness_flips_both_ways_and_startup_holds_liveness_back() {
    let node = TestNode::new().unwrap();
    let mut app = node.container("app", &["sleep", "3600"]);
    app.probes.startup = Some(exec_probe(&["test", "-f", "/tmp/started"], 300, 100));
    app.probes.liveness = Some(exec_probe(&["test", "-f", "/tmp/alive"], 300, 1));
    app.probes.readiness = Some(exec_probe(&["test", "-f", "/tmp/ready"], 300, 1));
    let pod = node.start(node.pod("ready", vec![app])).unwrap();
    pod.wait_for("running", Duration::from_secs(20), |s| {
        s.phase == Phase::Running
    })
    .unwrap();
    // Liveness would fail at once, but the startup probe has not passed: nothing restarts.
    std::thread::sleep(Duration::from_secs(3));
    let held = pod.status().unwrap();
    let app = RunningPod::container(&held, "app");
    assert_eq!(
        (app.restart_count, app.started, app.ready),
        (0, false, false),
        "{held:#?}"
    );

    assert_eq!(
        exec_output(
            pod.exec("app", &["touch", "/tmp/started", "/tmp/alive"])
                .unwrap()
        )
        .0,
        0
    );
    pod.wait_for("started", Duration::from_secs(5), |s| {
        RunningPod::container(s, "app").started
    })
    .unwrap();
    assert_eq!(
        exec_output(pod.exec("app", &["touch", "/tmp/ready"]).unwrap()).0,
        0
    );
    pod.wait_for("ready", Duration::from_secs(5), |s| {
        RunningPod::container(s, "app").ready
    })
    .unwrap();
    assert_eq!(
        exec_output(pod.exec("app", &["rm", "/tmp/ready"]).unwrap()).0,
        0
    );
    let unready = pod
        .wait_for("not ready", Duration::from_secs(5), |s| {
            !RunningPod::container(s, "app").ready
        })
        .unwrap();
    assert_eq!(
        RunningPod::container(&unready, "app").restart_count,
        0,
        "readiness never restarts"
    );
    assert_eq!(
        exec_output(pod.exec("app", &["touch", "/tmp/ready"]).unwrap()).0,
        0
    );
    pod.wait_for("ready again", Duration::from_secs(5), |s| {
        RunningPod::container(s, "app").ready
    })
    .unwrap();
    // Between probes the shim sleeps: probes held back or finished must not keep it busy.
    let cpu_ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pod.child.id())).unwrap();
        let fields: Vec<u64> = stat
            .rsplit_once(") ")
            .unwrap()
            .1
            .split(' ')
            .skip(11)
            .take(2)
            .map(|f| f.parse().unwrap())
            .collect();
        fields[0] + fields[1]
    };
    let before = cpu_ticks();
    std::thread::sleep(Duration::from_secs(2));
    let busy = cpu_ticks() - before;
    assert!(
        busy < 50,
        "the shim used {busy} clock ticks of CPU in 2 s while idle"
    );
    // Now liveness is live: removing its file restarts the container.
    assert_eq!(
        exec_output(pod.exec("app", &["rm", "/tmp/alive"]).unwrap()).0,
        0
    );
    pod.wait_for("liveness restart", Duration::from_secs(15), |s| {
        RunningPod::container(s, "app").restart_count == 1
    })
    .unwrap();
}

#[test]
fn init_containers_run_in_order_and_a_failing_one_blocks_the_app() {
    let node = TestNode::new().unwrap();
    let shared = shared_dir(&node, "order", "/work");
    let mut first = node.container("first", &["sh", "-c", "echo one >> /work/order"]);
    let mut second = node.container("second", &["sh", "-c", "echo two >> /work/order"]);
    let mut app = node.container("app", &["sh", "-c", "cat /work/order; sleep 3600"]);
    for container in [&mut first, &mut second, &mut app] {
        container.mounts.push(shared.clone());
    }
    let mut plan = node.pod("init", vec![app]);
    plan.init_containers = vec![first, second];
    let pod = node.start(plan).unwrap();
    let status = pod
        .wait_for("app running", Duration::from_secs(20), |s| {
            s.phase == Phase::Running
        })
        .unwrap();
    assert!(status.initialized);
    for name in ["first", "second"] {
        assert_eq!(
            terminated(&RunningPod::container(&status, name).state),
            (0, "Completed".to_string())
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while pod.logs("app", 0).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(pod.logs("app", 0), "one\ntwo\n");

    let failing = node.container("failing", &["sh", "-c", "exit 3"]);
    let mut blocked = node.pod("blocked", vec![node.container("app", &["sleep", "3600"])]);
    blocked.init_containers = vec![failing];
    blocked.restart_policy = kaya_agent::pods::restart::RestartPolicy::Never;
    let pod = node.start(blocked).unwrap();
    let status = pod
        .wait_for("pod failed", Duration::from_secs(20), |s| {
            s.phase == Phase::Failed
        })
        .unwrap();
    assert_eq!(
        terminated(&RunningPod::container(&status, "failing").state),
        (3, "Error".to_string())
    );
    let app = RunningPod::container(&status, "app");
    assert!(app.container_id.is_none(), "the app never started: {app:?}");
    assert!(!status.initialized);
}

#[test]
fn pre_stop_runs_before_sigterm_and_the_grace_period_ends_in_sigkill() {
    let node = TestNode::new().unwrap();
    let shared = shared_dir(&node, "hooks", "/hooks");
    let mut app = node.container(
        "app",
        &[
            "sh",
            "-c",
            "trap 'echo term >> /hooks/order' TERM; while :; do sleep 0.1; done",
        ],
    );
    app.mounts.push(shared.clone());
    app.lifecycle.pre_stop = Some(kaya_agent::runtime::plan::ActionPlan::Exec {
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo prestop >> /hooks/order".into(),
        ],
    });
    let mut plan = node.pod("grace", vec![app]);
    plan.termination_grace_secs = 2;
    let mut pod = node.start(plan).unwrap();
    pod.wait_for("running", Duration::from_secs(20), |s| {
        s.phase == Phase::Running
    })
    .unwrap();
    let started = std::time::Instant::now();
    let last = pod.stop(None, Duration::from_secs(20)).unwrap();
    let took = started.elapsed();
    // The trap handles TERM and keeps looping, so only SIGKILL ends it, after the grace period.
    assert_eq!(
        terminated(&RunningPod::container(&last, "app").state).0,
        137
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "stop took {took:?}"
    );
    let order = std::fs::read_to_string(shared.source.join("order")).unwrap();
    assert_eq!(order, "prestop\nterm\n");
}

#[test]
fn two_containers_share_an_empty_dir_and_localhost() {
    let node = TestNode::new().unwrap();
    let shared = shared_dir(&node, "www", "/www");
    let mut server = node.container(
        "server",
        &[
            "sh",
            "-c",
            "echo served > /www/index.html; httpd -f -p 8080 -h /www",
        ],
    );
    let mut client = node.container("client", &["sleep", "3600"]);
    server.mounts.push(shared.clone());
    client.mounts.push(shared);
    let mut plan = node.pod("pair", vec![server, client]);
    plan.host_network = false;
    let pod = node.start(plan).unwrap();
    pod.wait_for("both running", Duration::from_secs(20), |s| {
        s.containers.iter().all(|c| running(&c.state))
    })
    .unwrap();
    assert_eq!(
        exec_output(pod.exec("client", &["cat", "/www/index.html"]).unwrap()),
        (0, "served\n".to_string())
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = exec_output(
            pod.exec("client", &["wget", "-qO-", "http://127.0.0.1:8080/"])
                .unwrap(),
        );
        if code == 0 {
            assert_eq!(body, "served\n");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "client never reached the server on localhost"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        exec_output(pod.exec("client", &["hostname"]).unwrap()).1,
        "pair\n",
        "the pod's own UTS namespace"
    );
}

#[test]
fn a_nonexistent_command_waits_with_a_clear_message() {
    let node = TestNode::new().unwrap();
    let pod = node
        .start(node.pod("nocmd", vec![node.container("app", &["no-such-command"])]))
        .unwrap();
    let status = pod
        .wait_for("start error", Duration::from_secs(20), |s| {
            matches!(RunningPod::container(s, "app").state, ContainerState::Waiting { ref reason, .. } if reason != "ContainerCreating")
        })
        .unwrap();
    match &RunningPod::container(&status, "app").state {
        ContainerState::Waiting { message, .. } => {
            assert!(
                message.contains("executable 'no-such-command' not found in $PATH"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_runtime_refuses_a_malformed_step_request_by_name() {
    use kaya_agent::runtime::shim::step::{RUNTIME_BINARY, StepOutput};
    let output = std::process::Command::new(kaya_tests::binaries::workspace_binary(RUNTIME_BINARY))
        .arg(r#"{"Launch":{"rocket":1}}"#)
        .output()
        .unwrap();
    let answer: Result<StepOutput, String> = serde_json::from_slice(&output.stdout).unwrap();
    let error = answer.unwrap_err();
    assert!(
        error.starts_with("bad step request: unknown variant `Launch`"),
        "{error}"
    );
    let silent = std::process::Command::new(kaya_tests::binaries::workspace_binary(RUNTIME_BINARY))
        .output()
        .unwrap();
    assert_eq!(
        silent.status.code(),
        Some(2),
        "usage error without a request"
    );
}
