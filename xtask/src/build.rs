//! Builds the workspace's binaries for a profile, the per-pod shim and its runtime statically
//! linked.
use std::process::Command;

use crate::shell::exec;

/// `cargo build --bins`, then kaya-shim and kaya-runtime (skipped by that build: they need
/// the `static-shim` feature) with a static libc, into the same directory as the rest.
pub fn binaries(release: bool) -> anyhow::Result<()> {
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    exec(
        Command::new("cargo")
            .args(["build", "--bins"])
            .args(profile),
    )?;
    for binary in ["kaya-shim", "kaya-runtime"] {
        exec(
            Command::new("cargo")
                .args(["rustc", "-p", "kaya-agent", "--bin", binary])
                .args(["--features", "static-shim"])
                .args(profile)
                .args(["--", "-C", "target-feature=+crt-static"])
                // Not position-independent: a PIE relocates its vtables and constants on
                // every start, which dirties half a megabyte of each shim and slows each
                // runtime step (Go's shims are not PIE either).
                .args(["-C", "relocation-model=static"]),
        )?;
    }
    Ok(())
}
