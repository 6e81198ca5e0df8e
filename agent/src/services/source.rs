//! The standalone feed: rescans the manifest directory and applies each change to the
//! datapath; a failed apply (a full map) is retried on the next round.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::manifests::ManifestDir;
use super::sync::ServiceSync;

/// One round: rescan, and apply if anything changed or the last apply failed. Returns
/// whether the datapath now matches the directory.
pub fn scan_and_apply(source: &mut ManifestDir, sync: &Mutex<ServiceSync>, pending: bool) -> bool {
    let rescan = match source.rescan() {
        Ok(rescan) => rescan,
        Err(err) => {
            tracing::warn!(%err, "manifest directory unreadable; services unchanged");
            return !pending;
        }
    };
    for err in &rescan.errors {
        tracing::error!(%err, "manifest rejected; its last good objects stay");
    }
    if !rescan.changed && !pending {
        return true;
    }
    let catalog = source.catalog();
    let mut sync = sync.lock().unwrap_or_else(|poison| poison.into_inner());
    match sync.apply(&catalog) {
        Ok(()) => true,
        Err(err) => {
            tracing::error!(%err, "services not fully programmed; retrying");
            false
        }
    }
}

/// Runs rounds every `poll` on a thread of its own (map writes are blocking syscalls).
pub fn spawn(
    mut source: ManifestDir,
    sync: Arc<Mutex<ServiceSync>>,
    poll: Duration,
    mut in_sync: bool,
) {
    std::thread::Builder::new()
        .name("services".into())
        .spawn(move || {
            loop {
                std::thread::sleep(poll);
                in_sync = scan_and_apply(&mut source, &sync, !in_sync);
            }
        })
        .expect("spawning the services thread");
}
