//! Writes the manual page resumable-cgi(1) to stdout, rendered by clap_mangen from the program's
//! clap `Command` (the definitions `--help` prints), plus the sections clap does not model:
//! ENVIRONMENT (every `RESUMABLE_*` variable), EXIT STATUS, FILES and SEE ALSO.
//!
//!     cargo run --release --example gen_manpage > resumable-cgi.1
//!
//! `scripts/build-deb` runs it and packages the page as /usr/share/man/man1/resumable-cgi.1.gz.
//! The command line, the settings and the exit statuses come from the same definitions as
//! `--help` (`cli::command()`, `config::DOCUMENTED`, `cli::EXIT_STATUSES`); only the packaged
//! FILES are described here.

use std::io::Write;

use clap::Command;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

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

fn main() {
    let cmd = resumable_cgi::cli::command();

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
    for (name, default, meaning) in resumable_cgi::config::DOCUMENTED {
        r.control("TP", []);
        r.text([bold(*name)]);
        r.text([
            roman(format!("{meaning} Default: ")),
            italic(*default),
            roman("."),
        ]);
    }
    r.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in resumable_cgi::cli::EXIT_STATUSES {
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
