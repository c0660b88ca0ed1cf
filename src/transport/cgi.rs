//! CGI (RFC 3875): one request from the environment and stdin, the response on stdout.

use std::io::{self, Read, Write};

use crate::config::Config;
use crate::request::{Head, Request};
use crate::service::Service;

/// Handles the one request this process was started for. Returns once a response was written;
/// errors in the request (or in the settings) are reported in that response, never as a
/// failing exit.
pub fn run() -> io::Result<()> {
    // A web server that gives up on the request (mod_cgid on a broken client body) sends
    // SIGTERM: remove the half-written chunk rather than leave it for the cleanup.
    if let Err(e) = crate::interrupt::install_for_cgi() {
        log::warn!("cannot catch SIGTERM; a killed request leaves its temporary chunk: {e}");
    }
    // Lossy: a stray non-UTF-8 byte must not make a whole variable (say QUERY_STRING) vanish.
    let head = Head::from_cgi_vars(std::env::vars_os().map(|(name, value)| {
        (
            name.to_string_lossy().into_owned(),
            value.to_string_lossy().into_owned(),
        )
    }));
    // RFC 3875 4.2: the body is exactly CONTENT_LENGTH bytes; never read past it.
    let mut body = io::stdin().take(head.content_length.unwrap_or(u64::MAX));
    let response = match Config::from_process_env() {
        Ok(config) => Service::new(config).handle(Request {
            head,
            body: &mut body,
        }),
        Err(e) => Service::refuse_misconfigured(&head.method, e),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    response.write_cgi(&mut out)?;
    out.flush()
}
