//! The command line: subcommands, their options and help, defined once for `--help`, the
//! parser and the man page.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::transport::fastcgi::{WorkerOptions, DEFAULT_WORKERS, MAX_WORKERS};

/// What `--help` and the man page say after the options.
fn settings_help() -> String {
    let mut text = String::from(
        "Examples:\n  resumable-cgi serve                     development server on 127.0.0.1:8080\n  \
         resumable-cgi fastcgi --listen /run/resumable-cgi.sock\n  \
         resumable-cgi cleanup --older-than 48h    from cron\n  \
         resumable-cgi list --json                what is in flight\n\n\
         Run by a web server as a CGI program (GATEWAY_INTERFACE set) it handles one request. \
         Started with a listening socket on fd 0 (spawn-fcgi, mod_fcgid) or systemd's fd 3 it \
         is a FastCGI worker.\n\nSettings (environment variables; FastCGI params of the same \
         name override them per request):\n",
    );
    for (name, default, meaning) in config::DOCUMENTED {
        text.push_str(&format!("  {name} (default {default}): {meaning}\n"));
    }
    text.push_str(
        "\nExit status: 0 success; 1 a failure at run time (cannot listen, a directory cannot \
         be read); 2 a usage error; 78 an invalid setting (the worker and the development \
         server refuse to start).",
    );
    text
}

#[derive(Debug, Parser)]
#[command(
    name = "resumable-cgi",
    version,
    about = "Receives browser uploads (resumable.js, flow.js and more) as CGI, FastCGI or a development server",
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
    /// Development server with a demo page, the upload endpoint at /upload and the files at /files/
    Serve {
        /// Address to listen on
        #[arg(long, short = 'l', default_value = crate::transport::serve::DEFAULT_LISTEN)]
        listen: String,
    },
    /// FastCGI worker on HOST:PORT or a unix socket (or on an inherited listening socket)
    Fastcgi(FastcgiArgs),
    /// Removes uploads abandoned for longer than AGE (run it from cron with the same settings)
    Cleanup {
        /// 48h, 7d, 30m, 90s or plain seconds
        #[arg(long, default_value = "48h", value_parser = parse_age)]
        older_than: Duration,
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
