//! Idempotent machine setup: each step checks first and only acts when something is missing,
//! so running it on every `cargo xtask test` costs a few hundred milliseconds.
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::shell::{exec, output};

/// Debian packages the builds, tests, demo and benchmarks use.
pub const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "iptables",
    "bpftool",
    "libseccomp-dev",
    "libc6-dev", // libc.a: kaya-shim and kaya-runtime are linked statically
    "protobuf-compiler",
    "libprotobuf-dev", // google/protobuf/*.proto, imported by etcd-client's protos
    "containernetworking-plugins",
    "busybox-static",
    "docker-registry",
    "runc",
    "crun",
    "apache2-utils",
    "iperf3",
    "sockperf",
    "tcpdump",
    "util-linux",
    "etcd-server", // the control plane's etcd store is tested against a real etcd
    "python3-kubernetes", // the official Python client, in the control plane's API tests
];

/// Debian's kubernetes-client (kubectl 1.20), unpacked beside the system rather than
/// installed: its /usr/bin/kubectl would clash with other kubectl packages.
pub const KUBECTL_DIR: &str = "/opt/kaya/kubernetes-client";
const KUBECTL_PACKAGE: &str = "kubernetes-client";

pub fn run() -> anyhow::Result<()> {
    debian_packages()?;
    kubectl()?;
    nightly_rust_src()?;
    bpf_linker()?;
    bpffs()?;
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| {
            output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
                .is_none_or(|status| !status.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn kubectl() -> anyhow::Result<()> {
    let binary = Path::new(KUBECTL_DIR).join("usr/bin/kubectl");
    let version = output(Command::new(&binary).args(["version", "--client", "--short"]));
    if version.is_some_and(|version| version.contains("v1.20.")) {
        return Ok(());
    }
    let download = tempfile_dir()?;
    let fetched = Command::new("apt-get")
        .args(["download", "-qq", KUBECTL_PACKAGE])
        .current_dir(&download)
        .status()
        .is_ok_and(|status| status.success());
    if !fetched {
        // A fresh machine may not have package lists yet.
        exec(Command::new("apt-get").args(["update", "-qq"]))?;
        exec(
            Command::new("apt-get")
                .args(["download", "-qq", KUBECTL_PACKAGE])
                .current_dir(&download),
        )?;
    }
    let package = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "deb"))
        .context("apt-get download kubernetes-client left no .deb")?;
    std::fs::create_dir_all(KUBECTL_DIR)?;
    exec(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&package)
            .arg(KUBECTL_DIR),
    )?;
    std::fs::remove_dir_all(&download)?;
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kaya-setup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // apt downloads as its own user, which must be able to write here.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
    Ok(dir)
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the `nightly` toolchain is needed for eBPF programs (rustup toolchain list)")?;
    if installed.lines().any(|line| line.starts_with("rust-src")) {
        return Ok(());
    }
    exec(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// LLVM major version of nightly rustc; bpf-linker must be built against the same.
fn nightly_llvm_major() -> anyhow::Result<String> {
    let version = output(Command::new("rustc").args(["+nightly", "-vV"]))
        .context("running rustc +nightly -vV")?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .context("rustc +nightly -vV printed no LLVM version")
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

fn bpf_linker() -> anyhow::Result<()> {
    let major = nightly_llvm_major()?;
    // The stamp records which LLVM the installed bpf-linker was built against.
    let stamp = cargo_home().join("kaya-bpf-linker-llvm");
    let linker = cargo_home().join("bin").join("bpf-linker");
    if linker.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(major.as_str()) {
        return Ok(());
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("rustc +nightly --print sysroot")?;
    let lib_dir = Path::new(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("libLLVM.so."))
        })
        .with_context(|| format!("no libLLVM.so.* in {}", lib_dir.display()))?;
    let prefix = cargo_home().join("kaya-llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib").join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)?;
    exec(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--force",
                "--no-default-features",
                "--features",
            ])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix),
    )?;
    std::fs::write(&stamp, &major)?;
    Ok(())
}

fn bpffs() -> anyhow::Result<()> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    if mounts
        .lines()
        .any(|line| line.split_whitespace().nth(1) == Some("/sys/fs/bpf") && line.contains(" bpf "))
    {
        return Ok(());
    }
    std::fs::create_dir_all("/sys/fs/bpf").ok();
    exec(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    if !Path::new("/sys/fs/bpf").exists() {
        bail!("bpffs did not mount at /sys/fs/bpf");
    }
    Ok(())
}
