//! Locates the workspace's built binaries (kaya-agent, kaya-cni) for tests to execute.
use std::path::PathBuf;

/// Path of a binary of this workspace in the same target profile directory as the test.
///
/// Tests run from `target/<profile>/deps/`, and `cargo test` builds the workspace's
/// binaries into `target/<profile>/` first.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe is readable");
    let mut dir = exe
        .parent()
        .expect("test binary has a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built: run the tests through `cargo xtask test` (or `cargo build --workspace` first)",
        path.display()
    );
    path
}
