//! kaya-shim: one per pod, started by the agent with the pod directory as its argument.
//! Single-threaded on purpose: libcontainer forks, and so does the sandbox set-up.
use kaya_agent::runtime::plan::PodDir;
use kaya_agent::runtime::shim::Shim;
use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: kaya-shim <pod-directory>");
        std::process::exit(2);
    };
    let dir = PodDir { root: dir };
    // libcontainer reports its failures through tracing. They go to the pod's shim.log by
    // its own descriptor, not fd 2: a container's init process logs after its stderr has
    // become the container's, and those lines must not end up in the container log.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.shim_log());
    if let Ok(log) = log {
        // A plain level, not an EnvFilter: its regex engine would cost the shim megabytes.
        let level = std::env::var("KAYA_SHIM_LOG")
            .ok()
            .and_then(|level| level.parse().ok())
            .unwrap_or(tracing::Level::WARN);
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::sync::Mutex::new(log))
            .with_ansi(false)
            .init();
    }
    if let Err(error) = std::fs::write(dir.pid(), std::process::id().to_string()) {
        eprintln!("kaya-shim: writing {:?}: {error}", dir.pid());
        std::process::exit(1);
    }
    match Shim::open(dir) {
        Ok(shim) => shim.run(),
        Err(error) => {
            eprintln!("kaya-shim: {error}");
            std::process::exit(1);
        }
    }
}
