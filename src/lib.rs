//! resumable-cgi: the server side of the resumable.js / flow.js chunk protocol.
//!
//! transport (cgi | fastcgi | serve) -> Request -> protocol -> store -> Response

pub mod config;
pub mod error;
pub mod handler;
pub mod protocol;
pub mod request;
pub mod store;
pub mod transport;
