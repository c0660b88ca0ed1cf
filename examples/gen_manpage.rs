//! Writes the manual page resumable-cgi(1) to stdout, rendered by clap_mangen from the program's
//! clap `Command` (the definitions `--help` prints), plus the sections clap does not model:
//! ENVIRONMENT (every `RESUMABLE_*` variable), EXIT STATUS, FILES and SEE ALSO.
//!
//!     cargo run --release --example gen_manpage > resumable-cgi.1
//!
//! `scripts/build-deb` runs it and packages the page as /usr/share/man/man1/resumable-cgi.1.gz.
//!
//! STAND-IN: the program does not define its command line with clap yet. Until it does, the
//! command comes from `stand_in_command()` below, written to match today's hand-written parser
//! (src/main.rs, src/transport/serve.rs, src/transport/fastcgi/launch.rs). When
//! `resumable_cgi::cli::command()` exists, replace the one call marked `STAND-IN` in `main()`
//! with it and delete `stand_in_command()`; everything else stays.

use std::io::Write;

use clap::{Arg, Command};
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// Every setting the program reads, as (name, default, meaning). `main()` checks that this is
/// exactly `resumable_cgi::config::ALL_NAMES`, so a new variable cannot be left out of the page.
const ENVIRONMENT: &[(&str, &str, &str)] = &[
    (
        "RESUMABLE_TEMP_DIR",
        "temp",
        "Where the parts of an upload are kept until the file is complete, relative to the \
         working directory unless absolute. Must exist and be writable.",
    ),
    (
        "RESUMABLE_UPLOAD_DIR",
        "uploads",
        "Where finished files are published (the folders of the client's relative path are \
         kept). Must exist and be writable. Files are assembled in its .resumable-staging/ \
         folder and then linked to their name; an existing file is never replaced \
         (\"name (1).ext\" is used instead).",
    ),
    (
        "RESUMABLE_MAX_FILE_SIZE",
        "10G",
        "Largest declared file size; larger files are refused with 415. Bytes, or with a K, M, \
         G or T suffix (binary multiples).",
    ),
    (
        "RESUMABLE_MAX_CHUNK_SIZE",
        "64M",
        "Largest nominal chunk size (the client's chunkSize). One request body may carry up to \
         twice that (the last chunk) plus 1 MiB of multipart framing; a larger body is refused \
         with 415 before it is read. Web server body limits must allow as much.",
    ),
    (
        "RESUMABLE_MISSING_CHUNK_STATUS",
        "204",
        "What a test request answers for a chunk that is not stored: 204 works with every \
         client; 404 reproduces the classic PHP script (and makes flow.js 2.8 and later fail \
         the file).",
    ),
    (
        "RESUMABLE_LOG",
        "info",
        "Log level on standard error: off, error, warn, info (one line per request), debug or \
         trace. Read from the process environment only.",
    ),
];

/// (status, meaning)
const EXIT_STATUS: &[(&str, &str)] = &[
    (
        "0",
        "CGI: a response was written, whatever its HTTP status (a refused chunk is an answer, \
         not a failure). fastcgi and serve: stopped by SIGTERM or SIGINT after the requests in \
         flight finished. cleanup: the pass completed. --help.",
    ),
    (
        "1",
        "CGI: the response could not be written (the web server hung up). fastcgi and serve: \
         the socket could not be bound or the server failed. cleanup: invalid settings or a \
         file system error. serve: a second SIGINT stopped it without waiting.",
    ),
    (
        "2",
        "Usage error: an unknown subcommand or option, a missing or invalid option value, \
         --listen given while a listening socket was inherited, or no subcommand outside CGI.",
    ),
];

const FILES: &[(&str, &str)] = &[
    (
        "/usr/lib/cgi-bin/resumable-cgi",
        "The program in Apache's stock CGI directory (a symbolic link to /usr/bin/resumable-cgi).",
    ),
    (
        "/etc/apache2/conf-available/resumable-cgi.conf",
        "Apache configuration serving the program as CGI at /resumable-upload (and \
         /cgi-bin/resumable-cgi). Enable with a2enmod cgid; a2enconf resumable-cgi.",
    ),
    (
        "/etc/nginx/snippets/resumable-cgi.conf",
        "nginx location for /resumable-upload, passing requests to the FastCGI worker; include \
         it in a server block.",
    ),
    (
        "/usr/lib/systemd/system/resumable-cgi.socket, /usr/lib/systemd/system/resumable-cgi.service",
        "Socket-activated FastCGI worker on /run/resumable-cgi.sock, running as www-data. \
         Installed but not enabled: systemctl enable --now resumable-cgi.socket.",
    ),
    (
        "/var/lib/resumable-cgi/temp, /var/lib/resumable-cgi/uploads",
        "The temp and upload directories the shipped configurations use, owned by www-data.",
    ),
];

/// STAND-IN for `resumable_cgi::cli::command()`; see the header of this file.
fn stand_in_command() -> Command {
    let listen_help = "Address to listen on: HOST:PORT, or a unix socket path (anything with a \
                       slash, or unix:PATH)";
    Command::new("resumable-cgi")
        .about(
            "receive resumable.js and flow.js chunked uploads (CGI, FastCGI, development server)",
        )
        .long_about(
            "Receives chunked, resumable browser uploads (resumable.js, flow.js, \
             simple-uploader) and puts each finished file, byte-identical, in a directory. \
             Chunks may arrive in any order, repeatedly and concurrently; a file is assembled \
             exactly once, aside, and given its name only when complete.\n\
             \n\
             The mode comes from how the program is started: with GATEWAY_INTERFACE set it \
             answers one request as a CGI program; started with a listening socket on file \
             descriptor 0 (spawn-fcgi, mod_fcgid, systemd StandardInput=socket) or passed by \
             systemd socket activation (LISTEN_FDS, descriptor 3) it is a FastCGI worker; \
             otherwise the subcommand decides.\n\
             \n\
             Settings are read from RESUMABLE_* environment variables (see ENVIRONMENT): \
             SetEnv in Apache, fastcgi_param in nginx (a FastCGI parameter of the same name \
             overrides the worker's environment per request), or the shell. An invalid value \
             makes every request answer 500 with a log line naming the variable.",
        )
        .subcommand_required(false)
        .subcommand(
            Command::new("serve")
                .about("Development server with a demo upload page (not for production)")
                .long_about(
                    "Development server with a demo upload page, like php -S; not for \
                     production. Creates the temp and upload directories if missing, logs \
                     every request, lists finished files at /files/.",
                )
                .arg(
                    Arg::new("listen")
                        .short('l')
                        .long("listen")
                        .value_name("HOST:PORT")
                        .default_value("127.0.0.1:8080")
                        .help("Address to listen on"),
                ),
        )
        .subcommand(
            Command::new("fastcgi")
                .about("FastCGI worker on a socket it binds itself")
                .long_about(
                    "FastCGI worker on a socket it binds itself (when no listening socket was \
                     inherited). A stale unix socket file is replaced, a live one refused, and \
                     the file is removed on exit. SIGTERM or SIGINT stops accepting and lets \
                     requests in flight finish (up to 30 s).",
                )
                .arg(
                    Arg::new("listen")
                        .long("listen")
                        .value_name("ADDR")
                        .required(true)
                        .help(listen_help),
                )
                .arg(
                    Arg::new("socket-mode")
                        .long("socket-mode")
                        .value_name("MODE")
                        .default_value("0660")
                        .help("Permissions of a unix socket, in octal"),
                )
                .arg(
                    Arg::new("workers")
                        .long("workers")
                        .value_name("N")
                        .default_value("16")
                        .help(
                            "Connections served at once (1 to 4096); more wait in the listen \
                             backlog",
                        ),
                ),
        )
        .subcommand(
            Command::new("cleanup")
                .about("Remove uploads abandoned for a while (run it from cron)")
                .long_about(
                    "Removes upload folders in the temp directory in which nothing changed for \
                     AGE, and stale staging files, leaving alone any upload a request holds the \
                     lock of. Run it from cron with the same RESUMABLE_* settings as the web \
                     server.",
                )
                .arg(
                    Arg::new("older-than")
                        .long("older-than")
                        .value_name("AGE")
                        .default_value("48h")
                        .help("Seconds, or with an s, m, h or d suffix"),
                ),
        )
}

fn main() {
    // STAND-IN: becomes `resumable_cgi::cli::command()`.
    let cmd = stand_in_command();

    let documented: Vec<&str> = ENVIRONMENT.iter().map(|(name, _, _)| *name).collect();
    let mut read = resumable_cgi::config::ALL_NAMES.to_vec();
    let mut listed = documented.clone();
    read.sort_unstable();
    listed.sort_unstable();
    assert_eq!(
        listed, read,
        "ENVIRONMENT in examples/gen_manpage.rs must list exactly config::ALL_NAMES"
    );

    // the date in the page footer: `--date YYYY-MM-DD` (scripts/build-deb passes the date of
    // the newest deploy/debian/changelog entry, so the same sources give the same page)
    let args: Vec<String> = std::env::args().skip(1).collect();
    let date = match args.as_slice() {
        [] => String::new(),
        [flag, date] if flag == "--date" => date.clone(),
        _ => {
            eprintln!("usage: gen_manpage [--date YYYY-MM-DD] > resumable-cgi.1");
            std::process::exit(2);
        }
    };
    let page = render(cmd, &date).expect("rendering the manual page");
    std::io::stdout().write_all(&page).expect("writing stdout");
}

fn render(cmd: Command, date: &str) -> std::io::Result<Vec<u8>> {
    // one page: no `help` subcommand entry (as clap_mangen::generate_to does)
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("RESUMABLE-CGI")
        .section("1")
        .date(date)
        .source(format!("resumable-cgi {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    // the synopsis clap gives covers the top-level flags; each subcommand's line follows
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.extend(b".br\n");
        out.extend(section_body(&Man::new(sub.clone()), "SYNOPSIS")?);
    }
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;

    // One page for the whole program: each subcommand with its own options (clap_mangen's
    // SUBCOMMANDS section would only point at per-subcommand pages, which are not shipped).
    let mut heading = Roff::new();
    heading.control("SH", ["COMMANDS"]);
    heading.to_writer(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_bin_name().unwrap_or(sub.get_name()).to_string();
        let mut r = Roff::new();
        r.control("SS", [name.as_str()]);
        r.to_writer(&mut out)?;
        let sub_man = Man::new(sub.clone());
        out.extend(section_body(&sub_man, "DESCRIPTION")?);
        out.extend(section_body(&sub_man, "OPTIONS")?);
    }

    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    for (name, default, meaning) in ENVIRONMENT {
        r.control("TP", []);
        r.text([bold(*name)]);
        r.text([
            roman(format!("{meaning} Default: ")),
            italic(*default),
            roman("."),
        ]);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in EXIT_STATUS {
        r.control("TP", []);
        r.text([bold(*status)]);
        r.text([roman(*meaning)]);
    }
    r.control("SH", ["FILES"]);
    for (path, meaning) in FILES {
        r.control("TP", []);
        r.text([italic(*path)]);
        r.text([roman(*meaning)]);
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("apache2"),
        roman("(8), "),
        bold("a2enconf"),
        roman("(8), "),
        bold("nginx"),
        roman("(8), "),
        bold("spawn-fcgi"),
        roman("(1), "),
        bold("systemd.socket"),
        roman("(5), "),
        italic("/usr/share/doc/resumable-cgi/README.md"),
        roman(", https://github.com/23/resumable.js, https://github.com/flowjs/flow.js"),
    ]);
    r.to_writer(&mut out)?;
    Ok(single_preamble(&out))
}

/// Each clap_mangen and roff render starts with the same two-line apostrophe preamble; the page
/// needs it once, at the top.
fn single_preamble(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut lines: Vec<&str> = text.lines().collect();
    let preamble = [lines[0], lines[1]];
    assert!(preamble[0].starts_with(".ie ") && preamble[1].starts_with(".el "));
    let mut kept = preamble.to_vec();
    lines.drain(..2);
    kept.extend(lines.into_iter().filter(|l| !preamble.contains(l)));
    let mut out = kept.join("\n");
    out.push('\n');
    out.into_bytes()
}

/// One section of a clap_mangen page without its `.SH` heading and the roff preamble, to nest it
/// under a subcommand's `.SS`.
fn section_body(man: &Man, section: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match section {
        "SYNOPSIS" => man.render_synopsis_section(&mut buf)?,
        "DESCRIPTION" => man.render_description_section(&mut buf)?,
        _ => man.render_options_section(&mut buf)?,
    }
    let text = String::from_utf8(buf).expect("clap_mangen writes UTF-8");
    let heading = format!(".SH {section}");
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with(".SH"))
        .filter(|l| *l != heading)
        .map(|l| format!("{l}\n"))
        .collect();
    Ok(body.into_bytes())
}
