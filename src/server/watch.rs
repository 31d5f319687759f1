//! `server.watch` / `run --watch`: reload when the config file changes, debounced, watching its
//! directory (a file replaced by a rename is still seen).
//!
//! Must not: reload on reads of the file (a reload reads it), or block anything but its own
//! thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};

use super::StartError;
use crate::control::Control;

/// Reload when the config file changes, debounced (editors write files in several steps).
/// The directory is watched, not the file, so a file replaced by a rename is still seen. Only
/// writes, creations, renames and removals count: reading the file (as a reload does) must
/// not trigger another reload.
pub(super) fn watch_config(
    control: Arc<Control>,
    path: &std::path::Path,
) -> Result<(), StartError> {
    let watch_err = |reason: String| StartError::Watch {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::canonicalize(path).map_err(|e| watch_err(e.to_string()))?;
    let dir = file
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| watch_err("no parent directory".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx).map_err(|e| watch_err(e.to_string()))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| watch_err(e.to_string()))?;
    let changed = move |event: &notify::Result<notify::Event>| match event {
        Ok(e) => {
            matches!(
                e.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            ) && e.paths.iter().any(|p| p == &file)
        }
        Err(e) => {
            log::warn!("config watch: {e}");
            false
        }
    };
    thread::Builder::new()
        .name("runoff-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            while let Ok(event) = rx.recv() {
                if !changed(&event) {
                    continue;
                }
                // Debounce: wait until the directory has been quiet for a moment.
                loop {
                    match rx.recv_timeout(Duration::from_millis(300)) {
                        Ok(_) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                log::info!("the config file changed: reloading");
                // `reload` logs and counts its own outcome.
                let _ = control.reload();
            }
        })
        .map_err(StartError::Thread)?;
    Ok(())
}
