//! CGI (RFC 3875): one request from the environment and stdin, the response on stdout.

use std::io::{self, Read, Write};

use crate::config::process_env_lookup;
use crate::handler;
use crate::request::{Method, Request};

/// Handles the one request this process was started for. Returns once a response was written;
/// errors in the request are reported in that response, never as a failing exit.
pub fn run() -> io::Result<()> {
    // Lossy: a stray non-UTF-8 byte must not make a whole variable (say QUERY_STRING) vanish.
    let env = |name: &str| {
        std::env::var_os(name)
            .map(|v| v.to_string_lossy().into_owned())
            .filter(|v| !v.is_empty())
    };
    let method = Method::parse(env("REQUEST_METHOD").as_deref().unwrap_or("GET"));
    let content_length = match env("CONTENT_LENGTH") {
        None => Some(0),
        // A malformed length is treated as "unknown": the handler then bounds the body itself.
        Some(text) => text.trim().parse::<u64>().ok(),
    };
    // RFC 3875 4.2: the body is exactly CONTENT_LENGTH bytes; never read past it.
    let mut body = io::stdin().take(content_length.unwrap_or(u64::MAX));
    let request = Request {
        method,
        query: env("QUERY_STRING").unwrap_or_default(),
        content_type: env("CONTENT_TYPE"),
        content_length,
        remote_user: env("REMOTE_USER"),
        body: &mut body,
    };
    let response = handler::handle(&process_env_lookup, request);
    let stdout = io::stdout();
    let mut out = stdout.lock();
    response.write_cgi(&mut out)?;
    out.flush()
}
