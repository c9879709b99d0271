//! Compiling a plugin (once, off the request path) and calling its instances.
//!
//! Each module gets its own engine: cranelift with the metering middleware (a `Metering` serves
//! one module only) and [`MemoryCap`] tunables. A module is validated against ABI v1 when it is
//! compiled (imports, exports, `rg_abi_version() == 1`, one trial instantiation), so a bad file
//! is refused before any request reaches it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use sha2::Digest;
use wasmer::{
    Engine, ExternType, FunctionEnv, Global, Instance, Module, Store, Type, TypedFunction, Value,
    sys::{CompilerConfig, Cranelift, EngineBuilder, NativeEngineExt},
    wasmparser::Operator,
};
use wasmer_middlewares::Metering;

use super::{
    exchange::{Exchange, Hook},
    host::{self, HostEnv},
    memory_cap::MemoryCap,
};

/// The ABI version this gateway implements (`rg_abi_version` must return it).
pub const ABI_VERSION: i32 = 1;

/// The metering globals the middleware adds to every instance.
const POINTS_LEFT: &str = "wasmer_metering_remaining_points";
const POINTS_EXHAUSTED: &str = "wasmer_metering_points_exhausted";

/// What a bulk memory or table operation costs: it counts as one operator but may touch
/// megabytes. With the default budget a call can run at most 1,000 of them.
pub const BULK_OPERATION_COST: u64 = 1_000;

/// Every operator costs one point (the budget counts executed WebAssembly operators), except
/// the bulk ones, whose work grows with a length only known at run time.
fn operator_cost(op: &Operator<'_>) -> u64 {
    match op {
        Operator::MemoryFill { .. }
        | Operator::MemoryCopy { .. }
        | Operator::MemoryInit { .. }
        | Operator::MemoryGrow { .. }
        | Operator::TableFill { .. }
        | Operator::TableCopy { .. }
        | Operator::TableInit { .. }
        | Operator::TableGrow { .. } => BULK_OPERATION_COST,
        _ => 1,
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One compiled version of a plugin file.
pub struct CompiledPlugin {
    /// Unique per compilation: the key of the per-worker instance pools.
    pub id: u64,
    /// The plugin's name.
    pub name: Arc<str>,
    engine: Engine,
    module: Module,
    /// The module exports `on_request`.
    pub on_request: bool,
    /// The module exports `on_response`.
    pub on_response: bool,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
    /// When this version was compiled.
    pub loaded_at: SystemTime,
    /// The plugin's `config` as JSON, given to each instance.
    config: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin").field("name", &self.name).field("id", &self.id).finish_non_exhaustive()
    }
}

/// Compiles and validates a plugin module. The error says what is wrong, for the log and
/// `GET /admin/plugins`.
pub fn compile(name: &str, bytes: &[u8], max_memory: u64, config: Option<Arc<[u8]>>) -> Result<CompiledPlugin, String> {
    if !bytes.starts_with(b"\0asm") {
        return Err("not a WebAssembly binary (no \\0asm header)".into());
    }
    let mut compiler = Cranelift::default();
    // The initial points are what a start function gets at instantiation; calls are refuelled.
    compiler.push_middleware(Arc::new(Metering::new(crate::config::DEFAULT_PLUGIN_FUEL, operator_cost)));
    // No threads: a shared memory's `memory.atomic.wait` would park the worker thread, beyond
    // the reach of the budget.
    let mut features = wasmer::sys::Features::new();
    features.threads(false);
    let mut engine: Engine = EngineBuilder::new(compiler).set_features(Some(features)).into();
    engine.set_tunables(MemoryCap::new(max_memory));
    let module = Module::new(&engine, bytes).map_err(|e| format!("does not compile: {e}"))?;
    for import in module.imports() {
        let known = import.module() == host::MODULE && host::IMPORTS.contains(&import.name());
        if !known {
            return Err(format!(
                "imports {}.{}, which ABI v{ABI_VERSION} does not provide (only `{}` functions: {})",
                import.module(),
                import.name(),
                host::MODULE,
                host::IMPORTS.join(", ")
            ));
        }
    }
    let export = |name: &str| module.exports().find(|e| e.name() == name).map(|e| e.ty().clone());
    let action_fn = |name: &str| -> Result<bool, String> {
        match export(name) {
            None => Ok(false),
            Some(ExternType::Function(f)) if f.params().is_empty() && f.results() == [Type::I32] => Ok(true),
            Some(other) => Err(format!("export `{name}` must be a function () -> i32, not {other:?}")),
        }
    };
    if !matches!(export("memory"), Some(ExternType::Memory(_))) {
        return Err("does not export its linear memory as `memory`".into());
    }
    if !action_fn("rg_abi_version")? {
        return Err("does not export `rg_abi_version`".into());
    }
    let (on_request, on_response) = (action_fn("on_request")?, action_fn("on_response")?);
    if !on_request && !on_response {
        return Err("exports neither `on_request` nor `on_response`".into());
    }
    let plugin = CompiledPlugin {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        name: name.into(),
        engine,
        module,
        on_request,
        on_response,
        size: bytes.len() as u64,
        sha256: sha256(bytes),
        loaded_at: SystemTime::now(),
        config,
    };
    // A trial instance: memory within the cap, a start function that returns, the right ABI.
    let mut trial = plugin.instantiate()?;
    trial.refuel(crate::config::DEFAULT_PLUGIN_FUEL)?;
    match trial.abi_version.call(&mut trial.store) {
        Ok(ABI_VERSION) => Ok(plugin),
        Ok(v) => Err(format!("rg_abi_version() returned {v}; this gateway implements ABI v{ABI_VERSION}")),
        Err(e) => Err(format!("rg_abi_version() failed: {}", e.message())),
    }
}

/// The SHA-256 of a module's bytes, hex: a version's identity.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// One instance with its own store; used by one worker thread at a time.
pub struct PluginInstance {
    store: Store,
    env: FunctionEnv<HostEnv>,
    abi_version: TypedFunction<(), i32>,
    on_request: Option<TypedFunction<(), i32>>,
    on_response: Option<TypedFunction<(), i32>>,
    points_left: Global,
    points_exhausted: Global,
}

/// How one call ended.
#[derive(Debug)]
pub enum CallOutcome {
    /// Action 0.
    Continue,
    /// Action 1, with an answer set by `rg_respond`.
    Respond,
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, a failed grow...).
    Trap(String),
    /// The call used up its budget and was stopped.
    BudgetExhausted,
    /// An action other than 0 and 1, or 1 without `rg_respond`.
    InvalidAction(i32),
}

/// The `outcome` labels of `rustygate_plugin_calls_total`: a call's, by [`CallOutcome::index`],
/// then `missing` (no version to call).
pub const OUTCOMES: [&str; 6] = ["continue", "respond", "trap", "budget_exhausted", "invalid_action", "missing"];

/// [`OUTCOMES`]' index of `missing`.
pub const MISSING: usize = 5;

impl CallOutcome {
    /// Its position in [`OUTCOMES`] (the metric series are resolved once, in that order).
    pub fn index(&self) -> usize {
        match self {
            Self::Continue => 0,
            Self::Respond => 1,
            Self::Trap(_) => 2,
            Self::BudgetExhausted => 3,
            Self::InvalidAction(_) => 4,
        }
    }

    /// Whether the instance may serve another call (a guest stopped mid-way may have left its
    /// memory inconsistent).
    pub fn instance_reusable(&self) -> bool {
        matches!(self, Self::Continue | Self::Respond | Self::InvalidAction(_))
    }
}

impl CompiledPlugin {
    /// A fresh instance (about 30 µs; the pools keep them).
    pub fn instantiate(&self) -> Result<PluginInstance, String> {
        let mut store = Store::new(self.engine.clone());
        let env = FunctionEnv::new(
            &mut store,
            HostEnv {
                plugin: self.name.clone(),
                config: self.config.clone(),
                memory: None,
                exchange: None,
                bytes_left: host::HOST_BYTES_PER_CALL,
            },
        );
        let imports = host::imports(&mut store, &env);
        let instance =
            Instance::new(&mut store, &self.module, &imports).map_err(|e| format!("cannot be instantiated: {e}"))?;
        let exports = &instance.exports;
        let memory = exports.get_memory("memory").map_err(|e| e.to_string())?.clone();
        env.as_mut(&mut store).memory = Some(memory);
        let function = |name: &str| exports.get_typed_function::<(), i32>(&store, name).ok();
        let global = |name: &str| exports.get_global(name).cloned().map_err(|e| format!("metering: {e}"));
        Ok(PluginInstance {
            abi_version: function("rg_abi_version").ok_or("no rg_abi_version")?,
            on_request: function("on_request"),
            on_response: function("on_response"),
            points_left: global(POINTS_LEFT)?,
            points_exhausted: global(POINTS_EXHAUSTED)?,
            env,
            store,
        })
    }
}

impl PluginInstance {
    /// Gives the next call a budget of `fuel` points (an i64 global of the metering
    /// middleware; its exhausted flag is set when they run out).
    fn refuel(&mut self, fuel: u64) -> Result<(), String> {
        let budget = Value::I64(i64::try_from(fuel).unwrap_or(i64::MAX));
        self.points_left
            .set(&mut self.store, budget)
            .and_then(|()| self.points_exhausted.set(&mut self.store, Value::I32(0)))
            .map_err(|e| format!("the metering globals cannot be set: {e}"))
    }

    /// Runs `hook` on `exchange` with a budget of `fuel` points. The exchange is moved into
    /// the instance for the call and back out, whatever the outcome.
    pub fn call(&mut self, hook: Hook, fuel: u64, exchange: &mut Exchange) -> CallOutcome {
        let function = match hook {
            Hook::Request => self.on_request.as_ref(),
            Hook::Response => self.on_response.as_ref(),
        };
        let Some(function) = function.cloned() else { return CallOutcome::Continue };
        if let Err(e) = self.refuel(fuel) {
            return CallOutcome::Trap(e);
        }
        let store = &mut self.store;
        exchange.hook = hook;
        exchange.respond = None;
        let env = self.env.as_mut(store);
        env.bytes_left = host::HOST_BYTES_PER_CALL;
        env.exchange = Some(std::mem::take(exchange));
        let result = function.call(store);
        *exchange = self.env.as_mut(store).exchange.take().unwrap_or_default();
        match result {
            Ok(0) => CallOutcome::Continue,
            Ok(1) if exchange.respond.is_some() => CallOutcome::Respond,
            Ok(action) => CallOutcome::InvalidAction(action),
            Err(_) if self.points_exhausted.get(store) == Value::I32(1) => CallOutcome::BudgetExhausted,
            Err(e) => CallOutcome::Trap(e.message()),
        }
    }
}
