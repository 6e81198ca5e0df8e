//! Images end to end against a real registry (Debian's docker-registry on loopback) with test
//! images built from busybox-static: pulls by tag, digest and index, gzip and zstd layers,
//! basic auth, pull policies, OCI-layout import, whiteouts through overlayfs, and GC.
use kaya_agent::images::digest::Digest;
use kaya_agent::images::distribution::Credentials;
use kaya_agent::images::oci_layout;
use kaya_agent::images::pull::{PullPolicy, ensure_image};
use kaya_agent::images::store::ImageStore;
use kaya_tests::oci_image::{
    LayerCompression, TestImage, busybox_layer, file_layer, index, whiteout_layer,
};
use kaya_tests::registry::{BasicAuth, TestRegistry};
use std::collections::BTreeSet;
use std::path::Path;

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn pulls_by_tag_and_digest_with_verified_content() {
    let registry = TestRegistry::start(None).unwrap();
    let image = TestImage::busybox(LayerCompression::Gzip).unwrap();
    image
        .push(&registry.address, "kaya/busybox", "v1", None)
        .unwrap();
    let (_dir, store) = store();

    let name = format!("{}/kaya/busybox:v1", registry.address);
    let record = ensure_image(&store, &name, PullPolicy::IfNotPresent, None).unwrap();
    assert_eq!(
        record.manifest,
        image.manifest.digest().to_string(),
        "manifest digest is the registry's"
    );
    assert_eq!(record.layers, vec![image.layers[0].digest().to_string()]);
    assert_eq!(
        record.image_id(),
        format!(
            "{}/kaya/busybox@{}",
            registry.address,
            image.manifest.digest()
        )
    );
    let layer = store.layer_path(&image.layers[0].digest());
    let busybox = std::fs::read(layer.join("bin/busybox")).unwrap();
    assert_eq!(busybox, std::fs::read("/bin/busybox").unwrap());
    assert_eq!(
        std::fs::read_link(layer.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        store.run_config(&record).unwrap().cmd,
        Some(vec!["sh".to_string()])
    );

    let pinned = format!(
        "{}/kaya/busybox@{}",
        registry.address,
        image.manifest.digest()
    );
    let by_digest = ensure_image(&store, &pinned, PullPolicy::Always, None).unwrap();
    assert_eq!(by_digest.manifest, record.manifest);
}

#[test]
fn index_resolves_to_linux_amd64_and_zstd_layers_unpack() {
    let registry = TestRegistry::start(None).unwrap();
    let amd64 = TestImage::busybox(LayerCompression::Zstd).unwrap();
    let arm64 = TestImage::new(
        &[file_layer("arch", "arm64").unwrap()],
        LayerCompression::Gzip,
        &["arm"],
    )
    .unwrap();
    amd64
        .push(
            &registry.address,
            "kaya/multi",
            &amd64.manifest.digest().to_string(),
            None,
        )
        .unwrap();
    arm64
        .push(
            &registry.address,
            "kaya/multi",
            &arm64.manifest.digest().to_string(),
            None,
        )
        .unwrap();
    let list = index(&[(&arm64.manifest, "arm64"), (&amd64.manifest, "amd64")]).unwrap();
    kaya_tests::oci_image::Pusher::new(&registry.address, "kaya/multi", None)
        .manifest("v1", &list)
        .unwrap();

    let (_dir, store) = store();
    let record = ensure_image(
        &store,
        &format!("{}/kaya/multi:v1", registry.address),
        PullPolicy::Always,
        None,
    )
    .unwrap();
    assert_eq!(record.manifest, amd64.manifest.digest().to_string());
    assert!(
        store
            .layer_path(&amd64.layers[0].digest())
            .join("bin/busybox")
            .exists()
    );
    assert!(
        !store.has_blob(&arm64.layers[0].digest()),
        "the arm64 layer must not be fetched"
    );
}

#[test]
fn missing_images_and_refused_credentials_say_why() {
    let registry = TestRegistry::start(Some(BasicAuth {
        username: "kaya",
        password: "s3cret",
    }))
    .unwrap();
    let image = TestImage::busybox(LayerCompression::Gzip).unwrap();
    image
        .push(
            &registry.address,
            "private/busybox",
            "v1",
            Some(("kaya", "s3cret")),
        )
        .unwrap();
    let (_dir, store) = store();
    let name = format!("{}/private/busybox:v1", registry.address);

    let anonymous = ensure_image(&store, &name, PullPolicy::IfNotPresent, None).unwrap_err();
    assert_eq!(anonymous.reason(), "ErrImagePull");
    assert!(
        anonymous
            .to_string()
            .contains("wants a username and password"),
        "{anonymous}"
    );
    let wrong = Credentials {
        username: "kaya".into(),
        password: "wrong".into(),
    };
    let refused = ensure_image(&store, &name, PullPolicy::IfNotPresent, Some(wrong)).unwrap_err();
    assert!(
        refused.to_string().contains("credentials were refused"),
        "{refused}"
    );
    assert!(
        store.images().unwrap().is_empty(),
        "failed pulls record nothing"
    );

    let good = Credentials {
        username: "kaya".into(),
        password: "s3cret".into(),
    };
    let record = ensure_image(&store, &name, PullPolicy::IfNotPresent, Some(good.clone())).unwrap();
    assert_eq!(record.manifest, image.manifest.digest().to_string());

    let missing = format!("{}/private/busybox:nope", registry.address);
    let error = ensure_image(&store, &missing, PullPolicy::IfNotPresent, Some(good)).unwrap_err();
    assert!(error.to_string().contains("MANIFEST_UNKNOWN"), "{error}");
    assert!(error.to_string().contains(&missing), "{error}");
}

#[test]
fn pull_policy_always_follows_a_moved_tag_and_if_not_present_does_not() {
    let registry = TestRegistry::start(None).unwrap();
    let first = TestImage::busybox(LayerCompression::Gzip).unwrap();
    let base = busybox_layer().unwrap();
    let second = TestImage::new(
        &[base, file_layer("etc/version", "2\n").unwrap()],
        LayerCompression::Gzip,
        &["sh"],
    )
    .unwrap();
    first
        .push(&registry.address, "kaya/moving", "stable", None)
        .unwrap();
    let (_dir, store) = store();
    let name = format!("{}/kaya/moving:stable", registry.address);
    ensure_image(&store, &name, PullPolicy::IfNotPresent, None).unwrap();

    second
        .push(&registry.address, "kaya/moving", "stable", None)
        .unwrap();
    let kept = ensure_image(&store, &name, PullPolicy::IfNotPresent, None).unwrap();
    assert_eq!(kept.manifest, first.manifest.digest().to_string());
    let moved = ensure_image(&store, &name, PullPolicy::Always, None).unwrap();
    assert_eq!(moved.manifest, second.manifest.digest().to_string());
    // The busybox layer is shared: one directory serves both manifests.
    assert_eq!(first.layers[0].digest(), second.layers[0].digest());
    assert_eq!(
        std::fs::read_dir(
            store
                .layer_path(&first.layers[0].digest())
                .parent()
                .unwrap()
        )
        .unwrap()
        .count(),
        2
    );

    let report = store.collect_garbage(&BTreeSet::new()).unwrap();
    assert_eq!((report.images, report.layers), (1, 2));
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn oci_layout_import_and_whiteouts_through_overlayfs() {
    let deleting = whiteout_layer("etc/group").unwrap();
    let image = TestImage::new(
        &[busybox_layer().unwrap(), deleting],
        LayerCompression::Gzip,
        &["sh"],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("image.tar");
    image
        .write_layout(&tarball, "kaya.local/imported:v1")
        .unwrap();
    let (_store_dir, store) = store();
    let records = oci_layout::import(&store, &tarball, None).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, "kaya.local/imported:v1");
    assert_eq!(records[0].manifest, image.manifest.digest().to_string());

    // Stack the layers the way containers get them and check the whiteout hides the file.
    let lower: Vec<String> = records[0]
        .layers
        .iter()
        .rev()
        .map(|layer| {
            store
                .layer_path(&Digest::parse(layer).unwrap())
                .display()
                .to_string()
        })
        .collect();
    let merged = dir.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={}", lower.join(":")).as_str()),
    )
    .unwrap();
    let passwd = merged.join("etc/passwd").exists();
    let group = merged.join("etc/group").exists();
    nix::mount::umount(&merged).unwrap();
    assert!(passwd, "files of the lower layer show through");
    assert!(!group, "a whiteout in the upper layer hides the file");

    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, b"not a tarball at all").unwrap();
    let error = oci_layout::import(&store, &bad, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("bad.tar"), "{error}");
}
