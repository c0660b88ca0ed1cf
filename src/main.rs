//! Picks the mode the program was launched in and hands off to that transport.

use std::process::ExitCode;

use clap::Parser;

use resumable_cgi::cli::{Cli, Command};
use resumable_cgi::config::{self, Config};
use resumable_cgi::store::FsStore;
use resumable_cgi::transport;

fn main() -> ExitCode {
    config::init_logging();
    if std::env::var_os("GATEWAY_INTERFACE").is_some() {
        return match transport::cgi::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                // Nothing more can be done once stdout is gone (the web server hung up).
                log::error!("could not write the CGI response: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    match cli.command {
        // spawn-fcgi, mod_fcgid, systemd: a listening socket on fd 0 or fd 3 means FastCGI.
        None => match transport::fastcgi::run_inherited(&cli.pool.worker_options(), None) {
            Some(code) => code,
            None => {
                // A usage error: the help goes to stderr, as clap sends its own errors.
                eprint!("{}", resumable_cgi::cli::command().render_long_help());
                ExitCode::from(2)
            }
        },
        Some(Command::Fastcgi(args)) => {
            let options = args.pool.worker_options();
            let listen = args.listen.as_deref();
            match (listen, transport::fastcgi::run_inherited(&options, listen)) {
                (_, Some(code)) => code,
                (Some(listen), None) => transport::fastcgi::run_listening(listen, &options),
                (None, None) => {
                    eprintln!(
                        "resumable-cgi fastcgi: --listen HOST:PORT or --listen /path/to.sock is \
                         required (or start it with a listening socket on fd 0 or systemd's fd 3)"
                    );
                    ExitCode::from(2)
                }
            }
        }
        Some(Command::Serve { listen }) => transport::serve::run(&listen),
        Some(Command::Cleanup { older_than }) => cleanup(older_than),
        Some(Command::List { json, older_than }) => list(json, older_than),
    }
}

/// `resumable-cgi list [--json]`: the uploads in the temp dir, read without locking.
fn list(json: bool, age: std::time::Duration) -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("resumable-cgi list: {e}");
            return ExitCode::from(transport::fastcgi::EXIT_CONFIG);
        }
    };
    let entries = match resumable_cgi::store::listing::list(&config.temp_dir, age) {
        Ok(mut entries) => {
            resumable_cgi::store::listing::add_staged(&mut entries, &config.upload_dir);
            entries
        }
        Err(e) => {
            eprintln!(
                "resumable-cgi list: cannot read the temp dir {}: {e}",
                config.temp_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let mut lines = Vec::new();
    if !json {
        lines.push(resumable_cgi::store::listing::header());
    }
    for entry in &entries {
        lines.push(if json {
            serde_json::to_string(entry).unwrap_or_default()
        } else {
            resumable_cgi::store::listing::render_line(entry)
        });
    }
    use std::io::Write;
    match lines.iter().try_for_each(|line| writeln!(out, "{line}")) {
        Ok(()) => ExitCode::SUCCESS,
        // stdout closed (`| head`): nothing more to say.
        Err(_) => ExitCode::SUCCESS,
    }
}

/// `resumable-cgi cleanup [--older-than AGE]`: one pass over the configured dirs, for cron. By
/// default the age is RESUMABLE_EXPIRE_AFTER, the one tus clients are told in `Upload-Expires`.
fn cleanup(age: Option<std::time::Duration>) -> ExitCode {
    let config = match Config::from_process_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("resumable-cgi cleanup: {e}");
            return ExitCode::from(transport::fastcgi::EXIT_CONFIG);
        }
    };
    let age = age.unwrap_or(config.expire_after);
    match FsStore::new(&config.temp_dir, &config.upload_dir).remove_abandoned(age) {
        Ok(report) => {
            log::info!(
                "cleanup: removed {} abandoned uploads and {} staging files; kept {} recent and {} busy",
                report.uploads_removed,
                report.staging_removed,
                report.uploads_recent,
                report.uploads_busy
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log::error!("cleanup: {e}");
            ExitCode::FAILURE
        }
    }
}
