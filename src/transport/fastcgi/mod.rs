//! FastCGI transport: the same service as CGI, served by a long-lived worker pool.
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

pub use launch::{
    run_inherited, run_listening, WorkerOptions, DEFAULT_WORKERS, EXIT_CONFIG, MAX_WORKERS,
};
use params::Params;

use crate::config::{self, process_env_lookup};
use crate::request::{Head, Request, Response};
use crate::service::Service;

/// One request. Params named exactly like a `RESUMABLE_*` variable override the worker's
/// settings for this request only; `HTTP_*` params (request headers) can never match such a
/// name.
pub fn respond(service: &Service, params: &Params, body: &mut (dyn Read + Send)) -> Response {
    // Same reading of the CGI variables as the CGI transport; invalid UTF-8 is replaced
    // instead of dropping the variable.
    let head = Head::from_cgi_vars(params.iter().map(|(name, value)| {
        (
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        )
    }));
    let mut body = body.take(head.content_length.unwrap_or(u64::MAX));
    let overrides = config::ALL_NAMES
        .iter()
        .any(|name| params.get(name).is_some());
    if !overrides {
        return service.handle(Request {
            head,
            body: &mut body,
        });
    }
    let lookup = |name: &str| -> Option<Vec<u8>> {
        if config::ALL_NAMES.contains(&name) {
            if let Some(value) = params.get(name) {
                return Some(value.to_vec());
            }
        }
        process_env_lookup(name)
    };
    match service.with_overrides(&lookup) {
        Ok(derived) => derived.handle(Request {
            head,
            body: &mut body,
        }),
        Err(e) => Service::refuse_misconfigured(&head.method, e),
    }
}
