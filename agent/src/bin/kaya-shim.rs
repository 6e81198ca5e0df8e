//! kaya-shim: one per pod, started by the agent with the pod directory as its argument.
//! Single-threaded on purpose: it forks a short-lived step for everything libcontainer,
//! CNI and mounts do (runtime::shim::forked), and stays small while the pod runs.
use kaya_agent::runtime::plan::PodDir;
use kaya_agent::runtime::shim::Shim;
use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: kaya-shim <pod-directory>");
        std::process::exit(2);
    };
    let dir = PodDir { root: dir };
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
