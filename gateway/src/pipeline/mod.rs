//! The request pipeline, protocol-neutral: [`driver::serve`] takes a request head and a body
//! stream from a front end and returns the response to send, running the route's filters'
//! phases ([`filter`]) around forwarding ([`attempts`]). See the driver for the order of
//! things, and `docs/architecture.md` for how a filter or a front end plugs in.

mod attempts;
pub mod body;
pub mod ctx;
pub mod driver;
pub mod filter;
pub mod message;
pub mod session;
