//! The gateway's background runtime: one small tokio runtime on its own thread for work that is
//! not a request — JWKS refreshes, rate-limiter key eviction — so it never competes with the
//! actix workers' event loops and keeps running between requests. Tasks hold only weak
//! references to the runtime objects they serve and end when those are dropped (a reload
//! replacing them, or the gateway stopping).

use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// Owns the background runtime; dropping it stops every background task.
pub struct Background {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Background {
    /// Starts the runtime's thread.
    pub fn start() -> io::Result<Self> {
        let runtime =
            Builder::new_multi_thread().worker_threads(1).thread_name("rustygate-background").enable_all().build()?;
        let handle = runtime.handle().clone();
        Ok(Self { runtime: Some(runtime), handle })
    }

    /// Where background tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // The last reference to the gateway may be dropped on an async thread, where a blocking
        // runtime shutdown would panic; background tasks hold nothing that needs a clean stop.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Background")
    }
}

/// The background tasks of one runtime object (a pool's health checks, a policy's JWKS refresh
/// or eviction timer). They stop when [`TaskSet::stop`] is called — a reload retiring the
/// object does — or when the set is dropped, never later.
#[derive(Default)]
pub struct TaskSet(std::sync::Mutex<Vec<tokio::task::AbortHandle>>);

impl TaskSet {
    /// Runs `task` on `background` until the set stops.
    pub fn spawn(&self, background: &Handle, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = background.spawn(task).abort_handle();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(handle);
    }

    /// Stops every task (a task that is mid-step ends at its next await).
    pub fn stop(&self) {
        for handle in self.0.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            handle.abort();
        }
    }

    /// How many tasks were started and not stopped.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no task runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for TaskSet {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskSet({})", self.len())
    }
}
