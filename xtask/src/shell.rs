//! Running commands with their output shown, failing with the command named.
use anyhow::{Context, bail};
use std::process::Command;

/// Runs `command` with inherited output; fails unless it exits 0.
pub fn exec(command: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("spawning {}", describe(command)))?;
    if !status.success() {
        bail!("{} failed with {status}", describe(command));
    }
    Ok(())
}

/// Runs `command` quietly and returns its stdout, or None when it fails or is missing.
pub fn output(command: &mut Command) -> Option<String> {
    let output = command.output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}
