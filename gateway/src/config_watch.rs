//! Reload on file change: the configuration file's **directory** is watched (not the file's
//! inode), so the reload follows editors that save by writing a temporary file and renaming it
//! over the old one, and Kubernetes ConfigMap volumes, whose files are symlinks swapped through
//! a `..data` link. Events are debounced (an editor's save is several events) and the file is
//! re-read only when its bytes changed since the last read; then it goes through
//! [`Gateway::reload_file`] like `POST /admin/reload`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::Duration,
};

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::server::Gateway;

/// How long events must settle before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A running watcher; dropping it stops watching.
pub struct ConfigWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConfigWatcher")
    }
}

/// Starts watching `path`'s directory; changes reload `gateway` (held weakly: the watcher does
/// not keep a stopped gateway alive).
pub fn watch(gateway: &Arc<Gateway>, path: &Path) -> Result<ConfigWatcher, String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file = path.to_owned();
    let gateway: Weak<Gateway> = Arc::downgrade(gateway);
    let mut last = std::fs::read(&file).ok();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
        Ok(events) if events.is_empty() => {}
        Ok(_) => {
            // Any event in the directory may be this file's (a rename over it, a ConfigMap's
            // `..data` swap): compare the bytes, which also skips saves that changed nothing.
            let now = std::fs::read(&file).ok();
            if now.is_none() || now == last {
                return;
            }
            last = now;
            let Some(gateway) = gateway.upgrade() else { return };
            tracing::info!(file = %file.display(), "configuration file changed: reloading");
            // The outcome is logged and counted by the reload.
            let _ = gateway.reload_file();
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "configuration file watch error");
            }
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "watching the configuration file's directory for changes");
    Ok(ConfigWatcher { _debouncer: debouncer })
}
