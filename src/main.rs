//! Picks the mode the program was launched in and hands off to that transport.

use std::process::ExitCode;

use resumable_cgi::{config, store, transport};

const USAGE: &str = "\
resumable-cgi: receives resumable.js / flow.js chunked uploads.

Run by a web server as a CGI program (GATEWAY_INTERFACE set), or:
  resumable-cgi serve [--listen 127.0.0.1:8080]   development server with a demo page
  resumable-cgi fastcgi --listen ADDR             FastCGI worker on HOST:PORT or a unix socket
  resumable-cgi cleanup [--older-than 48h]        remove uploads abandoned for that long (cron)

Settings come from RESUMABLE_* environment variables; see the README.
";

fn main() -> ExitCode {
    config::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
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
    // spawn-fcgi, mod_fcgid, systemd: a listening socket on fd 0 or fd 3 means FastCGI.
    if let Some(code) = transport::fastcgi::run_inherited(&args) {
        return code;
    }
    match args.first().map(String::as_str) {
        Some("-h") | Some("--help") | Some("help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("serve") => {
            let options = match transport::serve::parse_args(&args[1..]) {
                Ok(options) => options,
                Err(e) => {
                    eprint!("resumable-cgi serve: {e}\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            };
            match transport::serve::run(&options) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("resumable-cgi serve: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("fastcgi") => transport::fastcgi::run_command(&args[1..]),
        Some("cleanup") => cleanup(&args[1..]),
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// `resumable-cgi cleanup [--older-than AGE]`: one pass over the configured dirs, for cron.
fn cleanup(args: &[String]) -> ExitCode {
    let age = match args {
        [] => Some("48h"),
        [flag, age] if flag == "--older-than" => Some(age.as_str()),
        _ => None,
    }
    .and_then(store::cleanup::parse_age);
    let Some(age) = age else {
        eprint!("resumable-cgi cleanup: expected [--older-than AGE] such as 48h or 7d\n\n{USAGE}");
        return ExitCode::from(2);
    };
    let config = match config::Config::from_process_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match store::Store::new(&config.temp_dir, &config.upload_dir).remove_abandoned(age) {
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
