//! API semantics clients rely on, through raw HTTPS requests: paging with limit/continue,
//! optimistic concurrency, generateName, dry runs, watch bookmarks, selector transitions in
//! watches, and 410 Gone once history is compacted.
use std::time::{Duration, Instant};

use kaya_tests::api_client::ApiClient;
use kaya_tests::control_plane::ControlPlaneProcess;
use serde_json::{Value, json};

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

#[test]
fn paging_concurrency_generate_name_and_dry_run() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start(None)?;
    let client = ApiClient::new(&control_plane)?;
    for index in 0..5 {
        let (status, _) = client.request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&configmap(&format!("c{index}"), json!({}))),
        )?;
        assert_eq!(status, 201);
    }
    let mut names = Vec::new();
    let mut path = "/api/v1/namespaces/default/configmaps?limit=2".to_owned();
    loop {
        let (status, page) = client.request("GET", &path, None)?;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(items.len() <= 2);
        names.extend(
            items
                .iter()
                .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned)),
        );
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                path = format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}")
            }
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);

    let (_, current) = client.request("GET", "/api/v1/namespaces/default/configmaps/c0", None)?;
    let mut first = current.clone();
    first["data"]["k"] = json!("first");
    let (status, _) = client.request(
        "PUT",
        "/api/v1/namespaces/default/configmaps/c0",
        Some(&first),
    )?;
    assert_eq!(status, 200);
    let mut stale = current.clone();
    stale["data"]["k"] = json!("stale");
    let (status, body) = client.request(
        "PUT",
        "/api/v1/namespaces/default/configmaps/c0",
        Some(&stale),
    )?;
    assert_eq!(
        (status, body["reason"].as_str()),
        (409, Some("Conflict")),
        "{body}"
    );

    let generated = json!({"metadata": {"generateName": "gen-"}, "data": {}});
    let (status, created) = client.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&generated),
    )?;
    assert_eq!(status, 201);
    assert!(
        created["metadata"]["name"]
            .as_str()
            .is_some_and(|name| name.starts_with("gen-") && name.len() == 9),
        "{created}"
    );

    let (status, _) = client.request(
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        Some(&configmap("dry", json!({}))),
    )?;
    assert_eq!(status, 201);
    let (status, _) = client.request("GET", "/api/v1/namespaces/default/configmaps/dry", None)?;
    assert_eq!(status, 404, "a dry run wrote something");
    let (status, body) = client.request(
        "POST",
        "/api/v1/namespaces/missing/configmaps",
        Some(&configmap("x", json!({}))),
    )?;
    assert_eq!(
        (status, body["message"].as_str()),
        (404, Some("namespaces \"missing\" not found"))
    );
    Ok(())
}

#[test]
fn watches_carry_bookmarks_selector_transitions_and_410s() -> anyhow::Result<()> {
    let control_plane = ControlPlaneProcess::start_with(None, &["--compaction-interval", "1"])?;
    let client = ApiClient::new(&control_plane)?;
    let (_, list) = client.request("GET", "/api/v1/namespaces/default/configmaps", None)?;
    let start = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let watcher = {
        let client = client.clone();
        std::thread::spawn(move || -> anyhow::Result<Vec<(String, String)>> {
            let mut events = Vec::new();
            client.watch(&format!("/api/v1/namespaces/default/configmaps?watch=true&labelSelector=tier%3Dfront&allowWatchBookmarks=true&resourceVersion={start}&timeoutSeconds=20"), |event| {
                let kind = event["type"].as_str().unwrap_or("").to_owned();
                let name = event["object"]["metadata"]["name"].as_str().unwrap_or("").to_owned();
                events.push((kind.clone(), name));
                kind != "BOOKMARK"
            })?;
            Ok(events)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    client.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&configmap("a", json!({"tier": "front"}))),
    )?;
    let (_, mut moved) = client.request("GET", "/api/v1/namespaces/default/configmaps/a", None)?;
    moved["metadata"]["labels"]["tier"] = json!("back");
    client.request(
        "PUT",
        "/api/v1/namespaces/default/configmaps/a",
        Some(&moved),
    )?;
    client.request(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&configmap("b", json!({"tier": "back"}))),
    )?;
    let events = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    // "a" leaving the selection is a DELETED; "b" never matched; a bookmark follows.
    assert_eq!(kinds, ["ADDED", "DELETED", "BOOKMARK"], "{events:?}");

    // Compaction runs every second: history before it is gone, and a watch from it gets 410.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut error = None;
        client.watch(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=2",
            |event| {
                if event["type"] == "ERROR" {
                    error = Some(event["object"].clone());
                }
                false
            },
        )?;
        if let Some(status) = error {
            assert_eq!(
                (status["code"].as_i64(), status["reason"].as_str()),
                (Some(410), Some("Expired")),
                "{status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no 410 for a compacted revision");
        client.request(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(&json!({"metadata": {"generateName": "tick-"}})),
        )?;
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
