//! The test command CI runs: formatting, clippy with warnings denied, then every test.
use std::process::Command;

use crate::shell::exec;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    exec(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    exec(Command::new("cargo").args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    // Tests of the tests crate spawn the workspace's binaries: build them first.
    exec(Command::new("cargo").args(["build", "--bins"]))?;
    exec(
        Command::new("cargo")
            .args(["test", "--", "--test-threads=2"])
            .args(extra),
    )
}
