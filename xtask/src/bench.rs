//! Benchmarks: built in release (CNI latency and the agent depend on it) and run through the
//! `kaya-bench` binary of the tests crate, which owns the topologies.
use std::process::Command;

use crate::shell::exec;

pub fn run(suite: &str, quick: bool) -> anyhow::Result<()> {
    crate::build::binaries(true)?;
    let mut bench = Command::new("target/release/kaya-bench");
    bench.arg(suite);
    if quick {
        bench.arg("--quick");
    }
    exec(&mut bench)
}
