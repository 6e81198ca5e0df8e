//! Waiting on a directory: inotify wakes a rescan loop at once when a manifest changes,
//! with a timeout so the loop still runs on its period.
use std::time::Duration;
/// Wakes a loop when a file in a directory is written, renamed in or removed.
pub struct DirectoryWatch {
    inotify: nix::sys::inotify::Inotify,
}

impl DirectoryWatch {
    pub fn new(dir: &std::path::Path) -> Option<Self> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        let events = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_CREATE;
        match inotify.add_watch(dir, events) {
            Ok(_) => Some(DirectoryWatch { inotify }),
            Err(err) => {
                tracing::info!(dir = %dir.display(), %err, "directory not watched; polling only");
                None
            }
        }
    }

    /// Returns after a change (events drained) or `timeout`.
    pub fn wait(&self, timeout: Duration) {
        use std::os::fd::AsFd;
        let fd = self.inotify.as_fd();
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        if let Ok(ready) = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(millis))
            && ready > 0
        {
            while self
                .inotify
                .read_events()
                .is_ok_and(|events| !events.is_empty())
            {}
        }
    }
}
