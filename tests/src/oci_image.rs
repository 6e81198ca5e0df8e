//! Test images built here from the host's `busybox-static` (nothing is downloaded): a layer
//! with /bin/busybox and its applet links, an OCI config and manifest, pushed to a registry
//! over the distribution API or written as an OCI-layout tarball.
use anyhow::{Context, bail};
use kaya_agent::images::digest::Digest;
use std::io::Write;
use std::path::Path;
use std::process::Command;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn digest(&self) -> Digest {
        Digest::of(&self.bytes)
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest().to_string(), "size": self.bytes.len()})
    }
}

/// One image: its blobs (config, layers) and manifest.
pub struct TestImage {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
}

/// The busybox layer as a tar: /bin/busybox, a link per applet, and the usual directories.
pub fn busybox_layer() -> anyhow::Result<Vec<u8>> {
    let busybox = std::fs::read("/bin/busybox").context("reading /bin/busybox (busybox-static)")?;
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .context("busybox --list")?;
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "root/", "var/", "home/",
    ] {
        let mut header = tar_header(
            tar::EntryType::Directory,
            0,
            if dir == "tmp/" { 0o1777 } else { 0o755 },
        );
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    let mut header = tar_header(tar::EntryType::Regular, busybox.len() as u64, 0o755);
    tar.append_data(&mut header, "bin/busybox", busybox.as_slice())?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" || applet.is_empty() {
            continue;
        }
        let mut header = tar_header(tar::EntryType::Symlink, 0, 0o777);
        tar.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
    }
    for (path, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
    ] {
        let mut header = tar_header(tar::EntryType::Regular, text.len() as u64, 0o644);
        tar.append_data(&mut header, path, text.as_bytes())?;
    }
    Ok(tar.into_inner()?)
}

/// A small extra layer (for images that must differ from the base by content).
pub fn file_layer(path: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar_header(tar::EntryType::Regular, text.len() as u64, 0o644);
    tar.append_data(&mut header, path, text.as_bytes())?;
    Ok(tar.into_inner()?)
}

/// A layer that deletes `path` from the layers below (an OCI `.wh.` whiteout).
pub fn whiteout_layer(path: &str) -> anyhow::Result<Vec<u8>> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let entry = if dir.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{dir}/.wh.{name}")
    };
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar_header(tar::EntryType::Regular, 0, 0o644);
    tar.append_data(&mut header, entry, std::io::empty())?;
    Ok(tar.into_inner()?)
}

fn tar_header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_700_000_000);
    header
}

pub fn compress(tar: &[u8], compression: LayerCompression) -> anyhow::Result<Blob> {
    Ok(match compression {
        LayerCompression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(tar)?;
            Blob {
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                bytes: encoder.finish()?,
            }
        }
        LayerCompression::Zstd => Blob {
            media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
            bytes: ruzstd::encoding::compress_to_vec(
                tar,
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        },
    })
}

impl TestImage {
    /// An image from tar layers (lowest first) with `cmd` as its default command.
    pub fn new(
        layers: &[Vec<u8>],
        compression: LayerCompression,
        cmd: &[&str],
    ) -> anyhow::Result<TestImage> {
        let compressed: Vec<Blob> = layers
            .iter()
            .map(|tar| compress(tar, compression))
            .collect::<Result<_, _>>()?;
        let diff_ids: Vec<String> = layers
            .iter()
            .map(|tar| Digest::of(tar).to_string())
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = Blob {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            bytes: serde_json::to_vec(&config)?,
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": compressed.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        let manifest = Blob {
            media_type: OCI_MANIFEST.into(),
            bytes: serde_json::to_vec(&manifest)?,
        };
        Ok(TestImage {
            config,
            layers: compressed,
            manifest,
        })
    }

    pub fn busybox(compression: LayerCompression) -> anyhow::Result<TestImage> {
        TestImage::new(&[busybox_layer()?], compression, &["sh"])
    }

    /// Pushes blobs and manifest to `registry` as `repository:tag`.
    pub fn push(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
        auth: Option<(&str, &str)>,
    ) -> anyhow::Result<()> {
        let pusher = Pusher::new(registry, repository, auth);
        for blob in std::iter::once(&self.config).chain(&self.layers) {
            pusher.blob(blob)?;
        }
        pusher.manifest(tag, &self.manifest)
    }

    /// Writes an OCI image layout tarball naming the image `ref_name`.
    pub fn write_layout(&self, path: &Path, ref_name: &str) -> anyhow::Result<()> {
        let mut tar = tar::Builder::new(std::fs::File::create(path)?);
        let mut add = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
            let mut header = tar_header(tar::EntryType::Regular, bytes.len() as u64, 0o644);
            tar.append_data(&mut header, name, bytes)?;
            Ok(())
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut descriptor = self.manifest.descriptor();
        descriptor["annotations"] =
            serde_json::json!({"org.opencontainers.image.ref.name": ref_name});
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [descriptor]});
        add("index.json", &serde_json::to_vec(&index)?)?;
        for blob in std::iter::once(&self.config)
            .chain(&self.layers)
            .chain(std::iter::once(&self.manifest))
        {
            add(
                &format!("blobs/sha256/{}", blob.digest().hex()),
                &blob.bytes,
            )?;
        }
        tar.finish()?;
        Ok(())
    }
}

/// An image index over per-platform manifests (already pushed by digest).
pub fn index(entries: &[(&Blob, &str)]) -> anyhow::Result<Blob> {
    let manifests: Vec<serde_json::Value> = entries
        .iter()
        .map(|(manifest, arch)| {
            let mut descriptor = manifest.descriptor();
            descriptor["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
            descriptor
        })
        .collect();
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    Ok(Blob {
        media_type: OCI_INDEX.into(),
        bytes: serde_json::to_vec(&index)?,
    })
}

/// The push half of the distribution API (monolithic uploads), which the node never needs.
pub struct Pusher {
    agent: ureq::Agent,
    base: String,
    authorization: Option<String>,
}

impl Pusher {
    pub fn new(registry: &str, repository: &str, auth: Option<(&str, &str)>) -> Pusher {
        use base64::Engine;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Pusher {
            agent,
            base: format!("http://{registry}/v2/{repository}"),
            authorization: auth.map(|(user, password)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )
            }),
        }
    }

    fn with_auth<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    pub fn blob(&self, blob: &Blob) -> anyhow::Result<()> {
        let response = self
            .with_auth(self.agent.post(format!("{}/blobs/uploads/", self.base)))
            .send_empty()?;
        if response.status() != 202 {
            bail!("starting upload: status {}", response.status());
        }
        let location = response
            .headers()
            .get("location")
            .context("upload has no Location")?
            .to_str()?
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!(
                "{}{}",
                self.base.split("/v2/").next().unwrap_or_default(),
                location
            )
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", blob.digest());
        let response = self
            .with_auth(self.agent.put(&url))
            .header("Content-Type", "application/octet-stream")
            .send(&blob.bytes[..])?;
        if response.status() != 201 {
            bail!("uploading {}: status {}", blob.digest(), response.status());
        }
        Ok(())
    }

    pub fn manifest(&self, reference: &str, manifest: &Blob) -> anyhow::Result<()> {
        let response = self
            .with_auth(
                self.agent
                    .put(format!("{}/manifests/{reference}", self.base)),
            )
            .header("Content-Type", &manifest.media_type)
            .send(&manifest.bytes[..])?;
        if response.status() != 201 {
            bail!("putting manifest {reference}: status {}", response.status());
        }
        Ok(())
    }
}
