//! The command line: subcommands, their options and help, defined once for `--help`, the
//! parser and the man page.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::transport::fastcgi::{WorkerOptions, DEFAULT_WORKERS, MAX_WORKERS};

/// Every exit status the program uses, with its meaning, for `--help` and the man page.
pub const EXIT_STATUSES: &[(&str, &str)] = &[
    (
        "0",
        "CGI: a response was written, whatever its HTTP status (a refused chunk is an answer, \
         not a failure). fastcgi and serve: stopped by SIGTERM or SIGINT after the requests in \
         flight finished. cleanup: the pass completed. --help, --version.",
    ),
    (
        "1",
        "CGI: the response could not be written (the web server hung up). fastcgi and serve: \
         the socket could not be bound or the server failed; a second SIGINT stopped it \
         without waiting. cleanup: a file system error.",
    ),
    (
        "2",
        "Usage error: an unknown subcommand or option, a missing or invalid option value, \
         --listen given while a listening socket was inherited, or no subcommand outside CGI.",
    ),
    (
        "78",
        "An invalid RESUMABLE_* setting (EX_CONFIG): fastcgi, serve and cleanup refuse to \
         start and print one line naming the variable and its value. (A CGI request with an \
         invalid setting is answered 500 with that line in the web server's error log.)",
    ),
];

/// What `--help` says after the options.
fn settings_help() -> String {
    let mut text = String::from(
        "Examples:\n  resumable-cgi serve                     development server on 127.0.0.1:8080\n  \
         resumable-cgi fastcgi --listen /run/resumable-cgi.sock\n  \
         resumable-cgi cleanup --older-than 48h    from cron\n  \
         resumable-cgi list --json                what is in flight\n\n\
         Settings (environment variables; FastCGI params of the same name override them per \
         request):\n",
    );
    for (name, default, _) in config::DOCUMENTED {
        text.push_str(&format!("  {name} (default {default})\n"));
    }
    text.push_str("\nExit status:\n");
    for (status, meaning) in EXIT_STATUSES {
        let first = meaning.split(". ").next().unwrap_or(meaning);
        text.push_str(&format!("  {status}  {first}\n"));
    }
    text.push_str("\nThe manual page resumable-cgi(1) and the README say more.");
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "resumable-cgi",
    version,
    about = "Receives browser uploads (resumable.js, flow.js and more) as CGI, FastCGI or a development server",
    long_about = "Receives chunked, resumable browser uploads (resumable.js, flow.js, \
        simple-uploader) and puts each finished file, byte-identical, in a directory. Chunks \
        may arrive in any order, repeatedly and concurrently; a file is assembled exactly once, \
        aside, and given its name only when complete.\n\n\
        The mode comes from how the program is started: with GATEWAY_INTERFACE set it answers \
        one request as a CGI program; started with a listening socket on file descriptor 0 \
        (spawn-fcgi, mod_fcgid, systemd StandardInput=socket) or passed by systemd socket \
        activation (LISTEN_FDS, descriptor 3) it is a FastCGI worker; otherwise the subcommand \
        decides.\n\n\
        Settings are read from RESUMABLE_* environment variables: SetEnv in Apache, \
        fastcgi_param in nginx (a FastCGI parameter of the same name overrides the worker's \
        environment for that request), or the shell.",
    after_help = settings_help(),
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command: the pool of a worker started on an inherited socket by spawn-fcgi,
    /// mod_fcgid or systemd.
    #[command(flatten)]
    pub pool: PoolArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Development server with a demo page, the upload endpoint at /upload and the files at
    /// /files/ (not for production)
    ///
    /// Like php -S. Creates the temp and upload directories if missing, logs every request,
    /// lists finished files at /files/. SIGINT stops it after the requests in flight.
    Serve {
        /// Address to listen on
        #[arg(long, short = 'l', default_value = crate::transport::serve::DEFAULT_LISTEN)]
        listen: String,
    },
    /// FastCGI worker on HOST:PORT or a unix socket (or on an inherited listening socket)
    ///
    /// A stale unix socket file is replaced, a live one refused, and the file is removed on
    /// exit. SIGTERM or SIGINT stops accepting and lets requests in flight finish (up to 30 s).
    Fastcgi(FastcgiArgs),
    /// Removes uploads abandoned for longer than AGE (run it from cron with the same settings)
    ///
    /// Removes upload folders in the temp directory in which nothing changed for AGE, and
    /// stale staging files, leaving alone any upload a request holds the lock of.
    Cleanup {
        /// 48h, 7d, 30m, 90s or plain seconds [default: RESUMABLE_EXPIRE_AFTER, 48h]
        #[arg(long, value_parser = parse_age)]
        older_than: Option<Duration>,
    },
    /// Lists the uploads in the temp dir (state, client, user, bytes, last activity); reads
    /// without taking any lock, safe while uploads arrive
    List {
        /// One JSON object per line instead of columns
        #[arg(long)]
        json: bool,
        /// The cleanup age: uploads untouched for longer are shown as abandoned
        #[arg(long, default_value = "48h", value_parser = parse_age)]
        older_than: Duration,
    },
}

#[derive(Debug, Args)]
pub struct FastcgiArgs {
    /// HOST:PORT, or a unix socket path (`unix:/path`, or any path with a slash); not needed
    /// when a listening socket is inherited
    #[arg(long)]
    pub listen: Option<String>,
    #[command(flatten)]
    pub pool: PoolArgs,
}

/// How a FastCGI worker's pool is set up.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Permissions of a unix socket the worker binds (octal)
    #[arg(long, default_value = "0660", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Requests served at once
    #[arg(long, default_value_t = DEFAULT_WORKERS, value_parser = parse_workers)]
    pub workers: usize,
}

impl PoolArgs {
    pub fn worker_options(&self) -> WorkerOptions {
        WorkerOptions {
            socket_mode: self.socket_mode,
            workers: self.workers,
        }
    }
}

/// The whole command-line definition, for the man page.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// `48h`, `2d`, `30m`, `90s` or plain seconds.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((i, 's')) => (&trimmed[..i], 1),
        Some((i, 'm')) => (&trimmed[..i], 60),
        Some((i, 'h')) => (&trimmed[..i], 3600),
        Some((i, 'd')) => (&trimmed[..i], 86_400),
        _ => (trimmed, 1),
    };
    crate::protocol::params::parse_decimal(digits)
        .and_then(|value| value.checked_mul(unit))
        .map(Duration::from_secs)
        .ok_or(format!("{text:?} is not an age such as 48h, 7d, 30m or 90"))
}

fn parse_workers(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_WORKERS).contains(n))
        .ok_or(format!("{text:?}: expected 1 to {MAX_WORKERS}"))
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or(format!("{text:?}: expected octal such as 0660"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("resumable-cgi").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("48h"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_age("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_age("90"), Ok(Duration::from_secs(90)));
        assert!(parse_age("-1h").is_err());
        assert!(parse_age("h").is_err());
    }

    #[test]
    fn subcommands_and_their_options() {
        match parse(&["serve", "--listen", "0.0.0.0:9"]).unwrap().command {
            Some(Command::Serve { listen }) => assert_eq!(listen, "0.0.0.0:9"),
            other => panic!("{other:?}"),
        }
        match parse(&["serve"]).unwrap().command {
            Some(Command::Serve { listen }) => assert_eq!(listen, "127.0.0.1:8080"),
            other => panic!("{other:?}"),
        }
        match parse(&[
            "fastcgi",
            "--listen=/run/x.sock",
            "--socket-mode",
            "0600",
            "--workers",
            "4",
        ])
        .unwrap()
        .command
        {
            Some(Command::Fastcgi(args)) => {
                assert_eq!(args.listen.as_deref(), Some("/run/x.sock"));
                assert_eq!(args.pool.socket_mode, 0o600);
                assert_eq!(args.pool.workers, 4);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            &["serve", "--port", "1"][..],
            &["serve", "--listen"],
            &["fastcgi", "--workers", "0"],
            &["fastcgi", "--workers", "5000"],
            &["fastcgi", "--socket-mode", "999"],
            &["cleanup", "--older-than", "soon"],
            &["list", "--older-than", "soon"],
            &["list", "--jsonl"],
            &["frobnicate"],
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{bad:?}");
        }
        match parse(&["list", "--json"]).unwrap().command {
            Some(Command::List { json, older_than }) => {
                assert!(json);
                assert_eq!(older_than, Duration::from_secs(172_800));
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&[]).unwrap().command.is_none());
        // spawn-fcgi and systemd start the worker with pool options and no command.
        let inherited = parse(&["--workers", "2"]).unwrap();
        assert!(inherited.command.is_none());
        assert_eq!(inherited.pool.workers, 2);
    }

    #[test]
    fn help_names_every_setting() {
        let help = command().render_long_help().to_string();
        for (name, _, _) in config::DOCUMENTED {
            assert!(help.contains(name), "{name}");
        }
        assert!(help.contains("78"));
    }
}
