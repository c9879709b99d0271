//! The plugin manager: one slot per plugin in use, holding its current compiled version, and a
//! watcher on `plugins.dir` that compiles a new or changed file and swaps it into its slot.
//!
//! Routes hold slots, not versions: a swap is seen by the next request at once, while a
//! request that already started keeps the version it began with. A file that does not compile
//! or validate leaves the slot's version serving; a removed file empties the slot (calls then
//! count as `missing` and follow the plugin's failure policy). The registry passes from one
//! runtime snapshot to the next, so a configuration reload that does not change a plugin keeps
//! its slot, its compiled module and the workers' instances.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Weak},
    time::SystemTime,
};

use arc_swap::ArcSwapOption;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use serde::Serialize;

use super::engine::{self, CompiledPlugin};
use crate::config::{Config, ConfigIssue, PluginSettings};

/// What identifies a slot: the file, and the settings its compiled module depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SlotKey {
    file: PathBuf,
    max_memory: u64,
    config: Option<Arc<[u8]>>,
}

/// One plugin as routes use it: its current version, if any.
pub struct PluginSlot {
    /// The plugin's name.
    pub name: Arc<str>,
    key: SlotKey,
    current: ArcSwapOption<CompiledPlugin>,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    /// Why the last load failed (the previous version, if any, still serves).
    last_error: Option<String>,
    /// Size and modification time of the file last read.
    stamp: Option<(u64, SystemTime)>,
    /// Versions compiled into this slot.
    loads: u64,
}

impl std::fmt::Debug for PluginSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSlot").field("name", &self.name).field("file", &self.key.file).finish_non_exhaustive()
    }
}

fn stamp(file: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(file).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// What reading a slot's file found, before it is applied.
pub enum Prepared {
    /// The same bytes as the version serving (touched, not changed).
    Unchanged(Option<(u64, SystemTime)>),
    /// A new version, compiled and validated.
    New(Box<CompiledPlugin>, Option<(u64, SystemTime)>),
}

impl PluginSlot {
    /// The version new calls use (`None`: the file is missing).
    pub fn current(&self) -> Option<Arc<CompiledPlugin>> {
        self.current.load_full()
    }

    /// Reads and, if it changed, compiles the file, without touching what serves.
    fn prepare(&self) -> Result<Prepared, String> {
        let file = &self.key.file;
        let bytes = std::fs::read(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} does not exist", file.display()),
            _ => format!("cannot read {}: {e}", file.display()),
        })?;
        let stamp = stamp(file);
        if self.current.load().as_ref().is_some_and(|p| p.sha256 == engine::sha256(&bytes)) {
            return Ok(Prepared::Unchanged(stamp));
        }
        engine::compile(&self.name, &bytes, self.key.max_memory, self.key.config.clone())
            .map(|plugin| Prepared::New(Box::new(plugin), stamp))
            .map_err(|e| format!("{}: {e}", file.display()))
    }

    /// Makes a prepared version the one serving.
    fn apply(&self, prepared: Prepared) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.last_error = None;
        match prepared {
            Prepared::Unchanged(stamp) => state.stamp = stamp,
            Prepared::New(plugin, stamp) => {
                tracing::info!(
                    plugin = &*self.name,
                    file = %self.key.file.display(),
                    sha256 = plugin.sha256.as_str(),
                    size = plugin.size,
                    on_request = plugin.on_request,
                    on_response = plugin.on_response,
                    "plugin loaded"
                );
                self.current.store(Some(Arc::from(plugin)));
                state.stamp = stamp;
                state.loads += 1;
            }
        }
    }

    /// Records a refused change (logged; the version serving, if any, stays).
    fn refuse(&self, error: &str) {
        let serving = if self.current.load().is_some() { "the previous version keeps serving" } else { "no version" };
        tracing::error!(plugin = &*self.name, error, "plugin rejected; {serving}");
        self.state.lock().unwrap_or_else(|e| e.into_inner()).last_error = Some(error.to_owned());
    }

    /// Whether the file's size or modification time changed since it was read.
    fn stale(&self) -> bool {
        self.state.lock().map(|s| s.stamp != stamp(&self.key.file)).unwrap_or(true)
    }

    /// The watcher's (and an unchanged reload's) update: a changed file is compiled and swapped
    /// in, a refused one leaves the version serving, a removed one empties the slot.
    fn update(&self) {
        if !self.stale() {
            return;
        }
        if !self.key.file.exists() {
            if self.current.swap(None).is_some() {
                tracing::warn!(
                    plugin = &*self.name,
                    file = %self.key.file.display(),
                    "plugin file removed: routes running it follow its failure policy"
                );
            }
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.stamp = None;
            state.last_error = Some(format!("{} does not exist", self.key.file.display()));
            return;
        }
        match self.prepare() {
            Ok(prepared) => self.apply(prepared),
            Err(e) => self.refuse(&e),
        }
    }
}

/// A plugin's state for `GET /admin/plugins`.
#[derive(Debug, Serialize)]
pub struct PluginStatus {
    /// The plugin's name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// `loaded`, or `missing` (no version: routes naming it follow its failure policy).
    pub state: &'static str,
    /// The version in use: SHA-256 of the file.
    pub sha256: Option<String>,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// When it was compiled (RFC 3339).
    pub loaded_at: Option<String>,
    /// The hooks it exports.
    pub hooks: Vec<&'static str>,
    /// Versions compiled so far.
    pub loads: u64,
    /// Why the last change of the file was refused, if it was.
    pub last_error: Option<String>,
    /// Routes running it.
    pub routes: Vec<String>,
}

/// Every plugin slot in use, and the directory watchers.
#[derive(Default)]
pub struct PluginRegistry {
    slots: Mutex<HashMap<SlotKey, Arc<PluginSlot>>>,
    watchers: Mutex<HashMap<PathBuf, Debouncer<notify::RecommendedWatcher, RecommendedCache>>>,
}

impl std::fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginRegistry")
    }
}

/// The slots a configuration uses, by plugin name, before they are committed.
pub struct Resolved {
    /// By plugin name.
    pub slots: HashMap<String, Arc<PluginSlot>>,
    /// Versions compiled for this configuration, applied when it is committed.
    pending: Vec<(Arc<PluginSlot>, Prepared)>,
    watch: Option<PathBuf>,
}

impl PluginRegistry {
    /// The slot of each plugin `config` names: kept from the running configuration when its
    /// file and settings are the same (reloaded if the file changed meanwhile), else loaded now.
    /// A plugin that cannot be loaded now is a configuration issue.
    pub fn resolve(&self, config: &Config, issues: &mut Vec<ConfigIssue>) -> Resolved {
        // Plugins named without a `plugins:` section live in the default directory.
        let default_section = crate::config::PluginsConfig::default();
        let plugins = config.plugins.as_ref().unwrap_or(&default_section);
        let dir = PathBuf::from(&plugins.dir);
        let existing = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut slots = HashMap::new();
        let mut pending = Vec::new();
        let default_settings = PluginSettings::default();
        for name in config.routes.iter().flat_map(|r| config.route_plugins(r)) {
            if slots.contains_key(name) {
                continue;
            }
            let settings = plugins.settings.get(name).unwrap_or(&default_settings);
            let key = SlotKey {
                file: dir.join(format!("{name}.wasm")),
                max_memory: settings.max_memory.0,
                config: settings
                    .config
                    .as_ref()
                    .map(|c| serde_json::to_vec(c).expect("validated: the config converts to JSON").into()),
            };
            let (slot, fresh) = match existing.get(&key) {
                Some(slot) => (slot.clone(), false),
                None => {
                    let slot = Arc::new(PluginSlot {
                        name: name.as_str().into(),
                        key,
                        current: ArcSwapOption::empty(),
                        state: Mutex::new(SlotState::default()),
                    });
                    (slot, true)
                }
            };
            // A new slot loads now; a kept one only if its file changed meanwhile. Either way
            // nothing serves the result before the configuration is committed.
            if fresh || slot.stale() {
                match slot.prepare() {
                    Ok(prepared) => pending.push((slot.clone(), prepared)),
                    Err(e) => issues.push(ConfigIssue::at(format!("plugins.{name}"), format!("plugin {name:?}: {e}"))),
                }
            }
            slots.insert(name.clone(), slot);
        }
        // Nothing to watch for when no route runs a plugin.
        let watch = (plugins.watch && !slots.is_empty()).then_some(dir);
        Resolved { slots, pending, watch }
    }

    /// Makes `resolved` the registry's slots (dropping the others), swaps in the versions it
    /// compiled, and watches its directory.
    pub fn commit(self: &Arc<Self>, resolved: Resolved) {
        for (slot, prepared) in resolved.pending {
            slot.apply(prepared);
        }
        *self.slots.lock().unwrap_or_else(|e| e.into_inner()) =
            resolved.slots.values().map(|slot| (slot.key.clone(), slot.clone())).collect();
        let mut watchers = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        let wanted: HashSet<&PathBuf> = resolved.watch.iter().collect();
        watchers.retain(|dir, _| wanted.contains(dir));
        for dir in wanted {
            if watchers.contains_key(dir) {
                continue;
            }
            match watch(Arc::downgrade(self), dir) {
                Ok(debouncer) => {
                    watchers.insert(dir.clone(), debouncer);
                }
                Err(e) => tracing::warn!(dir = %dir.display(), error = e.as_str(), "plugin directory not watched"),
            }
        }
    }

    /// Each slot's state, with the routes that run it (`routes`: route name → plugin names).
    pub fn status(&self, routes: &[(&str, Vec<&str>)]) -> Vec<PluginStatus> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<PluginStatus> = slots
            .values()
            .map(|slot| {
                let state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                let current = slot.current();
                PluginStatus {
                    name: slot.name.to_string(),
                    file: slot.key.file.display().to_string(),
                    state: if current.is_some() { "loaded" } else { "missing" },
                    sha256: current.as_ref().map(|p| p.sha256.clone()),
                    size: current.as_ref().map(|p| p.size),
                    loaded_at: current.as_ref().map(|p| humantime::format_rfc3339_seconds(p.loaded_at).to_string()),
                    hooks: current
                        .as_ref()
                        .map(|p| {
                            [(p.on_request, "on_request"), (p.on_response, "on_response")]
                                .into_iter()
                                .filter_map(|(has, hook)| has.then_some(hook))
                                .collect()
                        })
                        .unwrap_or_default(),
                    loads: state.loads,
                    last_error: state.last_error.clone(),
                    routes: routes
                        .iter()
                        .filter(|(_, names)| names.contains(&&*slot.name))
                        .map(|(route, _)| (*route).to_owned())
                        .collect(),
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Updates every slot whose file changed (a new, changed, removed or re-linked file).
    pub fn update(&self) {
        let slots: Vec<Arc<PluginSlot>> =
            self.slots.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for slot in slots {
            slot.update();
        }
    }
}

/// How long file events must settle before a plugin is recompiled (a copy is several writes).
const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(300);

/// Watches `dir`; changed files are reloaded into their slots.
fn watch(
    registry: Weak<PluginRegistry>,
    dir: &Path,
) -> Result<Debouncer<notify::RecommendedWatcher, RecommendedCache>, String> {
    // Any event may concern a plugin: a `.wasm` written or renamed over, or a ConfigMap's
    // `..data` symlink swapped. Each slot compares its file's size and time, then its bytes.
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| match result {
        Ok(events) if events.is_empty() => {}
        Ok(_) => {
            if let Some(registry) = registry.upgrade() {
                registry.update();
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "plugin directory watch error");
            }
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    debouncer.watch(dir, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    tracing::info!(dir = %dir.display(), "watching the plugin directory for changes");
    Ok(debouncer)
}
