//! Upstream pools: the backends of an upstream, and the choice of one per attempt among those
//! in rotation (see [`health`]). Round robin follows a schedule precomputed at compile time
//! (smooth weighted round robin, as NGINX does it), so a pick is one atomic increment and
//! weights interleave instead of bursting; least connections compares two backends drawn at
//! random (power of two choices); `ip_hash` / `header_hash` walk a consistent-hash ring built
//! at compile time ([`ring`]).

pub mod health;
mod pool;
pub mod retry;
pub mod ring;
mod select;

pub use pool::{Backend, Dial, UpstreamPool, smooth_weighted_schedule};
pub use select::SelectionKey;
