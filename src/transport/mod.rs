//! Thin adapters between a way of being launched and the transport-neutral Request/Response.

pub mod cgi;
pub mod fastcgi;
pub mod serve;
pub mod shutdown;
