//! The test command CI runs: formatting, clippy with warnings denied, then every test, with a
//! closing tally of all test binaries (cargo's own last line is often an empty doc-test run).
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::shell::exec;

pub fn run(extra: &[String]) -> anyhow::Result<()> {
    exec(Command::new("cargo").args(["fmt", "--all", "--check"]))?;
    exec(Command::new("cargo").args([
        "clippy",
        "--all-targets",
        "--features",
        "kaya-agent/static-shim",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Tests of the tests crate spawn the workspace's binaries: build them first.
    crate::build::binaries(false)?;
    eprintln!("xtask: cargo test -- --test-threads=2");
    let mut child = Command::new("cargo")
        .args(["test", "--", "--test-threads=2"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning cargo test")?;
    let mut tally = Tally::default();
    for line in BufReader::new(child.stdout.take().context("cargo test stdout")?).lines() {
        let line = line?;
        println!("{line}");
        tally.add(&line);
    }
    let status = child.wait()?;
    println!("tests: {} passed, {} failed", tally.passed, tally.failed);
    if !status.success() || tally.failed > 0 {
        bail!("cargo test failed with {status}");
    }
    if tally.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
}

impl Tally {
    /// Adds a libtest summary line: `test result: ok. 15 passed; 0 failed; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match kind {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_libtest_summaries() {
        let mut tally = Tally::default();
        tally.add("test result: ok. 15 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.90s");
        tally.add("test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out");
        tally.add("running 3 tests");
        assert_eq!(
            tally,
            Tally {
                passed: 22,
                failed: 2
            }
        );
    }
}
