//! Per-worker instance pools. Each actix worker thread keeps its own instances of each
//! compiled plugin: an instance never crosses threads, and none is created per request. A call
//! is synchronous and a worker runs one at a time, so a pool holds one instance per plugin
//! version in practice; an instance stopped mid-call is dropped and the next call makes a
//! fresh one from the module.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{Arc, Weak},
};

use super::engine::{CompiledPlugin, PluginInstance};

/// Idle instances by plugin version id, with the version (weakly) so that the instances of a
/// replaced version can be dropped.
type Idle = HashMap<u64, (Weak<CompiledPlugin>, Vec<PluginInstance>)>;

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::new(HashMap::new());
}

/// Runs `f` on an instance of `plugin` from this thread's pool (instantiating one if the pool
/// is empty); the instance goes back to the pool if `f` says it may be reused.
pub fn with_instance<R>(
    plugin: &Arc<CompiledPlugin>,
    f: impl FnOnce(&mut PluginInstance) -> (R, bool),
) -> Result<R, String> {
    let idle = IDLE.with_borrow_mut(|pools| pools.get_mut(&plugin.id).and_then(|(_, list)| list.pop()));
    let mut instance = match idle {
        Some(instance) => instance,
        None => plugin.instantiate()?,
    };
    let (result, reusable) = f(&mut instance);
    if reusable {
        IDLE.with_borrow_mut(|pools| {
            // Drop the instances of versions nobody holds any more (replaced or removed
            // plugins); the map has a few entries.
            pools.retain(|_, (version, _)| version.strong_count() > 0);
            pools.entry(plugin.id).or_insert_with(|| (Arc::downgrade(plugin), Vec::new())).1.push(instance);
        });
    }
    Ok(result)
}
