//! `kaya pods`: the node's pods as kubectl shows them (NAME, READY, STATUS, RESTARTS, IP).
use serde_json::Value;

/// kubectl's STATUS column: a waiting or terminated container's reason wins over the phase.
pub fn status_column(pod: &Value) -> String {
    let status = &pod["status"];
    if let Some(reason) = status["reason"].as_str() {
        return reason.to_string();
    }
    let containers = status["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (true, c));
    let containers = containers.chain(
        status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (false, c)),
    );
    for (init, container) in containers {
        let state = &container["state"];
        let reason = state["waiting"]["reason"]
            .as_str()
            .or(state["terminated"]["reason"].as_str());
        let done = state["terminated"]["exitCode"] == 0;
        match reason {
            Some("ContainerCreating") | None => {}
            Some(_) if init && done => {}
            Some(reason) => {
                return if init {
                    format!("Init:{reason}")
                } else {
                    reason.to_string()
                };
            }
        }
    }
    status["phase"].as_str().unwrap_or("Unknown").to_string()
}

pub fn table(pods: &[Value]) -> String {
    let mut rows = vec![
        ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "IP"]
            .map(String::from)
            .to_vec(),
    ];
    for pod in pods {
        let statuses = pod["status"]["containerStatuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ready = statuses.iter().filter(|c| c["ready"] == true).count();
        let restarts: u64 = statuses
            .iter()
            .filter_map(|c| c["restartCount"].as_u64())
            .sum();
        rows.push(vec![
            pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
            format!("{ready}/{}", statuses.len()),
            status_column(pod),
            restarts.to_string(),
            pod["status"]["podIP"]
                .as_str()
                .unwrap_or("<none>")
                .to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            cells.join("   ").trim_end().to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_reasons_like_kubectl() {
        let running = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {"phase": "Running", "podIP": "10.1.0.2",
            "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let backoff = json!({"metadata": {"name": "bad"}, "status": {"phase": "Pending",
            "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        let init = json!({"metadata": {"name": "i"}, "status": {"phase": "Pending",
            "initContainerStatuses": [{"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}], "containerStatuses": []}});
        assert_eq!(status_column(&backoff), "ImagePullBackOff");
        assert_eq!(status_column(&init), "Init:Error");
        let text = table(&[running, backoff]);
        assert!(
            text.contains("default     web    1/1     Running            2          10.1.0.2\n"),
            "{text}"
        );
        assert!(text.contains("ImagePullBackOff"), "{text}");
    }
}
