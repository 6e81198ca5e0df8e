//! Builds the workspace's binaries for a profile, the per-pod shim statically linked.
use std::process::Command;

use crate::shell::exec;

/// `cargo build --bins`, then kaya-shim (skipped by that build: it needs the `static-shim`
/// feature) with a static libc, into the same directory as the rest.
pub fn binaries(release: bool) -> anyhow::Result<()> {
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    exec(
        Command::new("cargo")
            .args(["build", "--bins"])
            .args(profile),
    )?;
    exec(
        Command::new("cargo")
            .args(["rustc", "-p", "kaya-agent", "--bin", "kaya-shim"])
            .args(["--features", "static-shim"])
            .args(profile)
            .args(["--", "-C", "target-feature=+crt-static"])
            // Not position-independent: a PIE relocates its vtables and constants on every
            // start, which dirties half a megabyte of each shim (Go's shims are not PIE either).
            .args(["-C", "relocation-model=static"]),
    )
}
