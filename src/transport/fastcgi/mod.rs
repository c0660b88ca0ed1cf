//! FastCGI transport: the same handler as CGI, served by a long-lived worker pool.
//!
//! Written in-tree from the FastCGI 1.0 specification because the `fastcgi` crate panics on
//! dropped connections and malformed records, loses params with non-UTF-8 bytes, exits on accept
//! errors and spawns unbounded threads (see the README).

pub mod connection;
mod launch;
pub mod params;
pub mod record;
pub mod server;

use std::io::Read;

pub use launch::{discard, run_command, run_inherited, DEFAULT_WORKERS};
use params::Params;

use crate::config::{self, process_env_lookup};
use crate::handler;
use crate::request::{Method, Request, Response};

/// One request: settings from params named exactly like a `RESUMABLE_*` variable, else from
/// the process environment. `HTTP_*` params (request headers) can never match such a name.
pub fn respond(params: &Params, body: &mut (dyn Read + Send)) -> Response {
    let lookup = |name: &str| -> Option<Vec<u8>> {
        if config::ALL_NAMES.contains(&name) {
            if let Some(value) = params.get(name) {
                return Some(value.to_vec());
            }
        }
        process_env_lookup(name)
    };
    // Same reading of the CGI variables as the CGI transport, except that invalid UTF-8 is
    // replaced instead of dropping the variable.
    let text = |name: &str| params.text(name).filter(|v| !v.is_empty());
    let content_length = match text("CONTENT_LENGTH") {
        None => Some(0),
        Some(value) => value.trim().parse::<u64>().ok(),
    };
    let mut body = body.take(content_length.unwrap_or(u64::MAX));
    let request = Request {
        method: Method::parse(text("REQUEST_METHOD").as_deref().unwrap_or("GET")),
        query: text("QUERY_STRING").unwrap_or_default(),
        content_type: text("CONTENT_TYPE"),
        content_length,
        remote_user: text("REMOTE_USER"),
        body: &mut body,
    };
    handler::handle(&lookup, request)
}
