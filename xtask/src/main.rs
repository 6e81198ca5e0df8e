//! `cargo xtask`: one entry point for setting up a machine, testing, the demo and benchmarks.
mod demo;
mod setup;
mod shell;
mod test;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what builds and tests need (idempotent): Debian packages, nightly rust-src,
    /// bpf-linker against nightly's LLVM, bpffs.
    Setup,
    /// Setup, then formatting, clippy (warnings denied) and every test.
    Test {
        /// Extra arguments for the test binaries (e.g. a test name filter).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, then a two-node simulated cluster with pods talking across the overlay.
    Demo,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Setup => setup::run(),
        Task::Test { args } => {
            setup::run()?;
            test::run(&args)
        }
        Task::Demo => {
            setup::run()?;
            demo::run()
        }
    }
}
