//! resumable-cgi: receives browser uploads, chunked and resumable or plain, as a CGI program,
//! a FastCGI worker or a development server.
//!
//! transport (cgi | fastcgi | serve) -> Request -> protocol -> Service -> store -> Response

pub mod buffer;
pub mod cli;
pub mod config;
pub mod error;
pub mod escape;
pub mod hook;
pub mod interrupt;
pub mod protocol;
pub mod request;
pub mod service;
pub mod store;
pub mod transport;
