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

use crate::gateway::Gateway;

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

/// Starts watching `path`'s directory, and the directories of the key files the running
/// configuration's JWT policies read (`public_key_file`, `jwks_file`) and of the HTTPS
/// listener's certificate and key files; changes reload `gateway`
/// (held weakly: the watcher does not keep a stopped gateway alive). A reload compares the key
/// files' contents too, so a replaced key is applied like a changed configuration.
pub fn watch(gateway: &Arc<Gateway>, path: &Path) -> Result<ConfigWatcher, String> {
    let dir_of = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file = path.to_owned();
    // The JWT policies' key files, the HTTPS listener's certificates and keys and its client CA,
    // the upstreams' CA bundles and client certificates.
    let key_files = |gw: &Gateway| -> Vec<PathBuf> {
        let config = &gw.runtime.load().config;
        let jwt = config.auth.values().filter_map(|p| p.key_file()).map(PathBuf::from);
        let tls = config.server.tls.iter().flat_map(|t| {
            let pairs = t.certificates.iter().flat_map(|c| [c.cert_file.clone(), c.key_file.clone()]);
            pairs.chain(t.client_auth.ca_file.clone())
        });
        let upstream_tls = config
            .upstreams
            .values()
            .filter_map(|u| u.tls.as_ref())
            .flat_map(|t| [t.ca_file.clone(), t.cert_file.clone(), t.key_file.clone()].into_iter().flatten());
        jwt.chain(tls).chain(upstream_tls).collect()
    };
    let mut dirs = vec![dir_of(path)];
    for key in key_files(gateway) {
        let dir = dir_of(&key);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    let weak: Weak<Gateway> = Arc::downgrade(gateway);
    let read_all = move |files: &[PathBuf]| files.iter().map(|f| std::fs::read(f).ok()).collect::<Vec<_>>();
    let mut watched = vec![file.clone()];
    watched.extend(key_files(gateway));
    let mut last = read_all(&watched);
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
        Ok(events) if events.is_empty() => {}
        Ok(_) => {
            let Some(gateway) = weak.upgrade() else { return };
            // Any event in a watched directory may be one of these files' (a rename over it, a
            // ConfigMap's `..data` swap): compare the bytes, which also skips saves that
            // changed nothing. The key files are those of the configuration now running.
            let mut files = vec![file.clone()];
            files.extend(key_files(&gateway));
            let now = read_all(&files);
            if now.first().is_some_and(Option::is_none) || (files == watched && now == last) {
                return;
            }
            (watched, last) = (files, now);
            tracing::info!(file = %file.display(), "configuration or key file changed: reloading");
            // The outcome is logged and counted by the reload.
            let _ = gateway.reload_file();
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "configuration file watch error");
            }
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dirs[0].display()))?;
    for dir in &dirs {
        debouncer
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    }
    tracing::info!(dirs = ?dirs, "watching the configuration file's and key files' directories for changes");
    Ok(ConfigWatcher { _debouncer: debouncer })
}
