//! The runtime: a validated configuration compiled into an immutable snapshot ([`Runtime`],
//! [`snapshot`]) by [`compile`], with what a reload carries over or retires decided once by a
//! [`Plan`] ([`plan`]).

mod compile;
pub mod plan;
pub mod snapshot;

pub use plan::Plan;
pub use snapshot::{LimitGroup, Runtime};
