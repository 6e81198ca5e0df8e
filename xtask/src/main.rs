//! `cargo xtask`: one entry point for setting up a machine, testing, the demo and benchmarks.
mod bench;
mod build;
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
    /// Setup, then a side-by-side benchmark suite (release build): `net`, `services`,
    /// `policy` or `pods`.
    Bench {
        suite: String,
        /// Smaller scales and fewer repetitions; still every case.
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Every task works from the workspace root, wherever cargo was invoked. `cargo run` says
    // where that is at run time; the path baked in at build time is only a fallback, since a
    // target directory shared by two checkouts can hand one of them the other's xtask binary.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    std::env::set_current_dir(std::path::Path::new(&manifest_dir).join(".."))?;
    // The cargo runs below must not inherit xtask's CARGO_MANIFEST_DIR: build scripts that
    // track it (ring's) would rerun, and rebuild their crates, whenever cargo was last run
    // from a shell instead.
    // SAFETY: xtask is single-threaded here; nothing reads the environment concurrently.
    unsafe { std::env::remove_var("CARGO_MANIFEST_DIR") };
    match cli.task {
        Task::Setup => setup::run(),
        Task::Test { args } => {
            setup::run()?;
            test::run(&args)
        }
        Task::Demo => {
            setup::run()?;
            demo::run()
        }
        Task::Bench { suite, quick } => {
            setup::run()?;
            bench::run(&suite, quick)
        }
    }
}
