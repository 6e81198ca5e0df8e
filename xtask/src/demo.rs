//! The demo: built after setup (it needs the eBPF toolchain), so it lives in the tests crate
//! as the `kaya-demo` binary and xtask only runs it.
use std::process::Command;

use crate::shell::exec;

pub fn run() -> anyhow::Result<()> {
    crate::build::binaries(false)?;
    exec(Command::new("cargo").args(["run", "--quiet", "-p", "kaya-tests", "--bin", "kaya-demo"]))
}
