//! The Debian package (issue 16), end to end on this machine: `scripts/build-deb` builds it, its
//! file list, control data and maintainer scripts are checked, lintian must report no error, and
//! then it is installed with `dpkg -i`. With Apache's stock configuration plus only `a2enmod
//! cgid` and `a2enconf resumable-cgi`, resumable.js 1.1.0 and flow.js 2.14.1 upload from headless
//! Chromium to the packaged URL and the files must land byte-identical in
//! /var/lib/resumable-cgi/uploads. Then `dpkg -r` and `dpkg --purge`, checking what each leaves.
//!
//! The test changes the machine (a package, Apache's enabled modules and configurations, port 80,
//! /var/lib/resumable-cgi) and puts it back as it found it: a guard restores everything also when
//! an assertion fails, and the end of the test checks the restoration. A machine-wide lock file
//! keeps two runs (two worktrees) from overlapping. Skipped only where dpkg is absent; everything
//! else it needs comes from scripts/install-test-deps (apache2, lintian, cargo-deb, chromium,
//! node modules).

#[allow(dead_code)]
#[path = "e2e/cases.rs"]
mod cases;
mod common;
#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "e2e/servers.rs"]
mod servers;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use cases::*;
use common::scratch::{Scratch, WWW_DATA};
use harness::*;
use servers::{Kind, Stack};

const PKG: &str = "resumable-cgi";
const BASE: &str = "/var/lib/resumable-cgi";
/// The upload URL the packaged Apache configuration serves (and the nginx snippet).
const URL: &str = "/resumable-upload";
/// The same program through Apache's stock cgi-bin and the packaged symlink.
const CGI_BIN_URL: &str = "/cgi-bin/resumable-cgi";
/// Apache's stock `Listen 80`. Without the port: the browser drops a default port from its URLs.
const ORIGIN: &str = "http://127.0.0.1";
const APACHE_PIDFILE: &str = "/var/run/apache2/apache2.pid";

/// The standard browser cases (tests/e2e/cases.rs) sent through the stock Apache: both clients,
/// multipart and octet bodies, floor-mode last chunks, Unicode names, folders, big chunks.
const CASES: &[&str] = &[
    "flow-empty",
    "resumable-small",
    "flow-small-octet",
    "resumable-last2x",
    "flow-last2x-octet",
    "resumable-unicode-octet",
    "flow-unicode",
    "resumable-folder",
    "flow-folder-octet",
    "resumable-5m-chunks",
];
/// This one posts to CGI_BIN_URL instead of URL.
const CGI_BIN_CASE: &str = "resumable-small";

/// What the package must ship, exactly: (path, `ls -l` type and mode, symlink target).
const PACKAGE_FILES: &[(&str, &str, &str)] = &[
    ("./usr/bin/resumable-cgi", "-rwxr-xr-x", ""),
    (
        "./usr/lib/cgi-bin/resumable-cgi",
        "lrwxrwxrwx",
        "../../bin/resumable-cgi",
    ),
    ("./usr/share/man/man1/resumable-cgi.1.gz", "-rw-r--r--", ""),
    (
        "./etc/apache2/conf-available/resumable-cgi.conf",
        "-rw-r--r--",
        "",
    ),
    ("./etc/nginx/snippets/resumable-cgi.conf", "-rw-r--r--", ""),
    (
        "./usr/lib/systemd/system/resumable-cgi.socket",
        "-rw-r--r--",
        "",
    ),
    (
        "./usr/lib/systemd/system/resumable-cgi.service",
        "-rw-r--r--",
        "",
    ),
    ("./usr/share/doc/resumable-cgi/README.md", "-rw-r--r--", ""),
    ("./usr/share/doc/resumable-cgi/deploy.md", "-rw-r--r--", ""),
    ("./usr/share/doc/resumable-cgi/copyright", "-rw-r--r--", ""),
    (
        "./usr/share/doc/resumable-cgi/changelog.Debian.gz",
        "-rw-r--r--",
        "",
    ),
];

const CONFFILES: &[&str] = &[
    "/etc/apache2/conf-available/resumable-cgi.conf",
    "/etc/nginx/snippets/resumable-cgi.conf",
];

/// lintian warnings left on purpose (errors are never allowed):
/// - initial-upload-closes-no-bugs: the first changelog entry closes no ITP bug; the package is
///   built by this project, not uploaded to Debian.
const LINTIAN_ALLOWED: &[&str] = &["initial-upload-closes-no-bugs"];

// ------------------------------------------------------------------ the end-to-end test

#[test]
fn deb_builds_installs_serves_apache_cgi_bin_uploads_and_purges() {
    if Command::new("dpkg").arg("--version").output().is_err() {
        eprintln!(
            "deb SKIPPED: dpkg is not installed, so this is not a Debian-family system; \
             the package can be neither built nor installed here"
        );
        return;
    }
    let t0 = Instant::now();
    let _lock = machine_lock();
    let work = Scratch::new("deb");

    // ---- build
    let t = Instant::now();
    let out_dir = work.dir("out", false);
    let build = must(
        Command::new(repo().join("scripts/build-deb"))
            .arg("--output")
            .arg(&out_dir),
    );
    let deb = single_deb(&out_dir);
    let size = fs::metadata(&deb).unwrap().len();
    eprintln!(
        "deb: built {} ({} bytes) in {:.1} s\n{}",
        deb.display(),
        size,
        t.elapsed().as_secs_f64(),
        build.lines().last().unwrap_or("")
    );

    // ---- what is in it
    check_file_list(&deb);
    let control = work.dir("control", false);
    must(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    check_control(&control);
    check_maintainer_scripts(&control);
    let root = work.dir("root", false);
    must(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    check_man_page(&root.join("usr/share/man/man1/resumable-cgi.1.gz"));
    check_lintian(&deb);

    // ---- install
    let mut machine = Machine::take();
    let t = Instant::now();
    let text = dpkg(&["-i", deb.to_str().unwrap()]);
    eprintln!(
        "deb: dpkg -i in {:.1} s:\n{text}",
        t.elapsed().as_secs_f64()
    );
    check_installed();

    // ---- the stock Apache with only cgid and the packaged configuration enabled
    if !machine.cgid_enabled {
        // the configuration declares `# Depends: cgid`: a2enconf refuses it before a2enmod cgid
        let out = Command::new("a2enconf").args(["-q", PKG]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && text.contains("cgid"),
            "a2enconf without cgid: {text}"
        );
        assert!(!exists("/etc/apache2/conf-enabled/resumable-cgi.conf"));
    }
    must(Command::new("a2enmod").args(["-q", "cgid"]));
    must(Command::new("a2enconf").args(["-q", PKG]));
    machine.start_apache();
    for url in [URL, CGI_BIN_URL] {
        assert_eq!(probe(url), 204, "{url}: test request for a missing chunk");
    }
    // a body over the packaged LimitRequestBody is refused from its headers
    assert_eq!(
        common::http::announced_only(&format!("{ORIGIN}:80"), URL, 136_314_880 + 1),
        413
    );
    let t = Instant::now();
    browser_uploads();
    eprintln!(
        "deb: browser uploads through the stock Apache in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let log = read_lossy(Path::new("/var/log/apache2/error.log"));
    assert!(
        log.contains("completed"),
        "the program's log lines should be in Apache's error log:\n{log}"
    );
    let uploads = published(Path::new(BASE).join("uploads").as_path());
    machine.stop_apache();

    // ---- remove: the program goes, the configuration files stay, Apache's is disabled
    let text = dpkg(&["-r", PKG]);
    eprintln!("deb: dpkg -r:\n{text}");
    assert_eq!(status(), "deinstall ok config-files");
    for gone in [
        "/usr/bin/resumable-cgi",
        "/usr/lib/cgi-bin/resumable-cgi",
        "/usr/share/man/man1/resumable-cgi.1.gz",
        "/usr/lib/systemd/system/resumable-cgi.service",
        "/usr/lib/systemd/system/resumable-cgi.socket",
        "/etc/apache2/conf-enabled/resumable-cgi.conf",
    ] {
        assert!(!exists(gone), "{gone} left after dpkg -r");
    }
    for kept in CONFFILES {
        assert!(exists(kept), "conffile {kept} removed by dpkg -r");
    }
    assert_eq!(published(&Path::new(BASE).join("uploads")), uploads);

    // ---- purge: everything of the package goes, except the uploaded files, and it says so
    let text = dpkg(&["--purge", PKG]);
    eprintln!("deb: dpkg --purge:\n{text}");
    assert!(
        text.contains("/var/lib/resumable-cgi/uploads holds uploaded files; left in place"),
        "purge must say that it kept the uploads:\n{text}"
    );
    assert_eq!(status(), "not-installed");
    for gone in CONFFILES
        .iter()
        .copied()
        .chain(["/var/lib/resumable-cgi/temp"])
    {
        assert!(!exists(gone), "{gone} left after dpkg --purge");
    }
    assert!(
        !exists("/var/lib/resumable-cgi/uploads/.resumable-staging"),
        "the staging folder is the program's, not an upload"
    );
    assert_eq!(
        published(&Path::new(BASE).join("uploads")),
        uploads,
        "purge must keep every uploaded file, unchanged"
    );
    assert_eq!(
        dir_names(Path::new(BASE)),
        vec!["uploads".to_string()],
        "{BASE} after purge"
    );

    // ---- a second round: reinstall over an existing installation, then purge with no uploads
    fs::remove_dir_all(BASE).unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]);
    fs::write(Path::new(BASE).join("temp/in-flight-part"), b"x").unwrap();
    dpkg(&["-i", deb.to_str().unwrap()]); // reinstall: postinst configure <old version>
    assert!(
        exists("/var/lib/resumable-cgi/temp/in-flight-part"),
        "a reinstall must keep the temp dir"
    );
    let text = dpkg(&["--purge", PKG]);
    assert!(!text.contains("left in place"), "{text}");
    assert!(
        !exists(BASE),
        "{BASE} left after purging an empty installation"
    );
    for gone in CONFFILES {
        assert!(!exists(gone), "{gone} left after dpkg --purge");
    }

    // ---- the machine as it was found
    let problems = machine.restore();
    assert!(problems.is_empty(), "restoring the machine: {problems:#?}");
    eprintln!(
        "deb: package {} bytes; whole test {:.1} s",
        size,
        t0.elapsed().as_secs_f64()
    );
}

/// The packaged Apache, nginx and systemd files are the deploy/ templates (which tests/e2e.rs
/// runs against the real servers) with the package's paths filled in: the same directives, in
/// the same order, apart from the few lines listed here. Comments may differ.
#[test]
fn deb_configs_are_the_tested_deploy_templates() {
    let vars = vec![
        ("URL", URL.to_string()),
        ("BIN", "/usr/bin/resumable-cgi".to_string()),
        ("TEMP_DIR", format!("{BASE}/temp")),
        ("UPLOAD_DIR", format!("{BASE}/uploads")),
        ("SOCKET", "/run/resumable-cgi.sock".to_string()),
    ];
    // (packaged file, template, lines only in the package, template lines it replaces)
    let pairs: &[(&str, &str, &[&str], &[&str])] = &[
        (
            "debian/apache2/resumable-cgi.conf",
            "apache/cgi.conf",
            // the block only where a CGI module is loaded, for both URLs
            &[
                "<IfModule mod_cgid.c>",
                "Define RESUMABLE_CGI_CAN_RUN",
                "</IfModule>",
                "<IfModule mod_cgi.c>",
                "Define RESUMABLE_CGI_CAN_RUN",
                "</IfModule>",
                "<IfDefine RESUMABLE_CGI_CAN_RUN>",
                "<LocationMatch \"^/(resumable-upload|cgi-bin/resumable-cgi)(/|$)\">",
                "</LocationMatch>",
                "</IfDefine>",
            ],
            &["<Location \"/resumable-upload\">", "</Location>"],
        ),
        (
            "debian/nginx/resumable-cgi.conf",
            "nginx/fastcgi.conf",
            &[],
            &[],
        ),
        (
            "debian/systemd/resumable-cgi.socket",
            "systemd/resumable-cgi.socket",
            &["Documentation=man:resumable-cgi(1)"],
            &[],
        ),
        (
            "debian/systemd/resumable-cgi.service",
            "systemd/resumable-cgi.service",
            &["Documentation=man:resumable-cgi(1)"],
            &[],
        ),
    ];
    for (packaged, template, extra, replaced) in pairs {
        let path = repo().join("deploy").join(packaged);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{packaged}: {e}"));
        let ours: Vec<String> = directives(&text)
            .into_iter()
            .filter(|l| !extra.contains(&l.as_str()))
            .collect();
        let theirs: Vec<String> = directives(&render(template, &vars))
            .into_iter()
            .filter(|l| !replaced.contains(&l.as_str()))
            .collect();
        assert_eq!(
            ours, theirs,
            "deploy/{packaged} drifted from deploy/{template}: change both, or list the line here"
        );
    }
}

/// Non-empty, non-comment lines, trimmed.
fn directives(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

// ------------------------------------------------------------------ package checks

fn single_deb(dir: &Path) -> PathBuf {
    let debs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one .deb expected in {}", dir.display());
    debs.into_iter().next().unwrap()
}

/// `dpkg-deb -c`: exactly PACKAGE_FILES (plus their directories), all root-owned.
fn check_file_list(deb: &Path) {
    let listing = must(Command::new("dpkg-deb").arg("-c").arg(deb));
    let mut files = BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "dpkg-deb -c line: {line}");
        let (mode, owner, path) = (fields[0], fields[1], fields[5]);
        assert_eq!(owner, "0/0", "not root-owned: {line}");
        if mode.starts_with('d') {
            assert_eq!(mode, "drwxr-xr-x", "{line}");
            continue;
        }
        let target = if mode.starts_with('l') {
            fields.get(7).copied().unwrap_or("")
        } else {
            ""
        };
        files.insert(path.to_string(), (mode.to_string(), target.to_string()));
    }
    let expected: BTreeMap<String, (String, String)> = PACKAGE_FILES
        .iter()
        .map(|(p, m, t)| (p.to_string(), (m.to_string(), t.to_string())))
        .collect();
    assert_eq!(files, expected, "package file list:\n{listing}");
}

fn check_control(control: &Path) {
    let fields = read_lossy(&control.join("control"));
    for needed in [
        "Package: resumable-cgi\n",
        "Section: web\n",
        "Priority: optional\n",
        "Suggests: apache2 | nginx | httpd\n",
    ] {
        assert!(
            fields.contains(needed),
            "control lacks {needed:?}:\n{fields}"
        );
    }
    let depends = fields
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{fields}"));
    assert!(
        depends.contains("libc6") && !depends.contains("apache2"),
        "Depends: {depends}"
    );
    let conffiles: Vec<String> = read_lossy(&control.join("conffiles"))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(conffiles, CONFFILES, "conffiles");
}

/// The maintainer scripts: POSIX sh that parses, stops on errors, enables and starts nothing,
/// and leaves Apache to its helper (lintian checks the rest).
fn check_maintainer_scripts(control: &Path) {
    let mut present: Vec<String> = fs::read_dir(control)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| ["preinst", "postinst", "prerm", "postrm"].contains(&n.as_str()))
        .collect();
    present.sort();
    assert_eq!(present, ["postinst", "postrm"]);
    for name in &present {
        let path = control.join(name);
        let text = read_lossy(&path);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "{name} mode");
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: not a sh script");
        assert!(text.contains("\nset -e\n"), "{name}: no set -e");
        must(Command::new("sh").arg("-n").arg(&path));
        for forbidden in [
            "systemctl enable",
            "systemctl start",
            "deb-systemd-invoke",
            "a2enconf",
            "a2enmod",
            "invoke-rc.d",
        ] {
            assert!(
                !text.contains(forbidden),
                "{name} must not run {forbidden:?}"
            );
        }
    }
    let postrm = read_lossy(&control.join("postrm"));
    assert!(postrm.contains("apache2_invoke disconf resumable-cgi"));
}

/// The page renders without a groff warning and documents what the issue asks for.
fn check_man_page(page: &Path) {
    let out = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (man-db, scripts/install-test-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && warnings.trim().is_empty(),
        "man --warnings:\n{warnings}"
    );
    let mut needed: Vec<&str> = vec![
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "resumable-cgi serve",
        "resumable-cgi fastcgi",
        "resumable-cgi cleanup",
        "--listen",
        "--socket-mode",
        "--workers",
        "--older-than",
        "ENVIRONMENT",
        "EXIT STATUS",
        "FILES",
        "/etc/apache2/conf-available/resumable-cgi.conf",
    ];
    needed.extend(resumable_cgi::config::ALL_NAMES);
    for word in needed {
        assert!(text.contains(word), "man page lacks {word:?}:\n{text}");
    }
}

fn check_lintian(deb: &Path) {
    let t = Instant::now();
    let out = Command::new("lintian")
        .args(["--pedantic", "--display-info", "--tag-display-limit", "0"])
        .arg(deb)
        .output()
        .expect("lintian (scripts/install-test-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "deb: lintian in {:.1} s:\n{text}",
        t.elapsed().as_secs_f64()
    );
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E: ") || l.starts_with("W: "))
        .filter(|l| {
            l.starts_with("E: ")
                || !LINTIAN_ALLOWED
                    .iter()
                    .any(|tag| l.contains(&format!(": {tag}")))
        })
        .collect();
    assert!(bad.is_empty(), "lintian: {bad:#?}");
}

// ------------------------------------------------------------------ the installed package

fn check_installed() {
    assert_eq!(status(), "install ok installed");
    let bin = fs::metadata("/usr/bin/resumable-cgi").unwrap();
    assert_eq!(bin.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        fs::canonicalize("/usr/lib/cgi-bin/resumable-cgi").unwrap(),
        fs::canonicalize("/usr/bin/resumable-cgi").unwrap()
    );
    let base = fs::metadata(BASE).unwrap();
    assert_eq!(
        (base.uid(), base.gid(), base.mode() & 0o7777),
        (0, 0, 0o755),
        "{BASE}"
    );
    for dir in ["temp", "uploads"] {
        let meta = fs::metadata(Path::new(BASE).join(dir)).unwrap();
        assert!(meta.is_dir());
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (WWW_DATA, WWW_DATA, 0o750),
            "{BASE}/{dir}: owner, group, mode"
        );
    }
    // nothing is enabled or started by the package
    assert!(!exists("/etc/apache2/conf-enabled/resumable-cgi.conf"));
    let enabled_units = Command::new("sh")
        .args(["-c", "ls /etc/systemd/system/*/resumable-cgi.* 2>/dev/null"])
        .output()
        .unwrap();
    assert!(
        enabled_units.stdout.is_empty(),
        "units enabled by the package: {}",
        String::from_utf8_lossy(&enabled_units.stdout)
    );
    assert!(!exists("/run/resumable-cgi.sock"));

    // `man resumable-cgi` shows the installed page
    let man = Command::new("man")
        .arg(PKG)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        man.status.success() && page.contains("RESUMABLE-CGI(1)") && page.contains("EXIT STATUS"),
        "man resumable-cgi: {}{page}",
        String::from_utf8_lossy(&man.stderr)
    );

    // the installed units, where their ExecStart exists
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        common::assert_units_verify(
            Path::new("/usr/lib/systemd/system/resumable-cgi.socket"),
            Path::new("/usr/lib/systemd/system/resumable-cgi.service"),
            " on the packaged units",
        );
        eprintln!("deb: systemd-analyze verify on the installed units: clean");
    } else {
        panic!("systemd-analyze is missing (apt package systemd; scripts/install-test-deps)");
    }
}

/// The standard cases through the stock Apache at the packaged URL, in one browser session.
fn browser_uploads() {
    let stack = Stack {
        procs: Vec::new(),
        name: "deb-stock-apache".into(),
        port: 80,
        url: URL.into(),
        temp_dir: Path::new(BASE).join("temp"),
        upload_dir: Path::new(BASE).join("uploads"),
        access_log: "/var/log/apache2/access.log".into(),
        error_log: "/var/log/apache2/error.log".into(),
        bin: "/usr/bin/resumable-cgi".into(),
        kind: Kind::Apache,
        dir: Scratch::new("deb-browser"),
    };
    let cases: Vec<Case> = standard_cases()
        .into_iter()
        .filter(|c| CASES.contains(&c.id))
        .collect();
    assert_eq!(cases.len(), CASES.len());
    let mut expected = BTreeMap::new();
    let mut steps = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        expected.extend(c.prepare(&stack, 500 + i as u64));
        let mut step = c.step(&stack);
        if c.id == CGI_BIN_CASE {
            step["target"] = json!(CGI_BIN_URL);
        }
        steps.push(step);
    }
    let result = run_browser(&stack.dir, ORIGIN, Value::Array(steps));
    let mut failures = Vec::new();
    for c in &cases {
        let s = step_summary(&result, c.id);
        let st = &s["state"];
        let ok = s["failure"].is_null()
            && st["done"] == true
            && st["errors"].as_array().is_some_and(|e| e.is_empty())
            && st["successes"].as_array().map_or(0, |v| v.len()) == c.files.len();
        eprintln!(
            "deb: {:<26} {} files={} {} ms",
            c.id,
            if ok { "ok  " } else { "FAIL" },
            c.files.len(),
            s["ms"]
        );
        if !ok {
            failures.push(format!("{}: {s}", c.id));
        }
    }
    let stored = published(&stack.upload_dir);
    assert!(
        failures.is_empty() && stored == expected,
        "failures: {failures:#?}\nstored {stored:#?}\nexpected {expected:#?}\nerror log:\n{}",
        read_lossy(&stack.error_log)
    );
    // written by the CGI program as Apache's user
    for rel in stored.keys() {
        let meta = fs::metadata(stack.upload_dir.join(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (WWW_DATA, WWW_DATA), "{rel}");
    }
    let hits = access_log(&stack.access_log);
    assert!(
        hits.iter()
            .any(|h| h.method == "POST" && h.target.starts_with(CGI_BIN_URL) && h.status == 200),
        "no chunk went through {CGI_BIN_URL}"
    );
    eprintln!(
        "deb: {} cases, {} files byte-identical in {BASE}/uploads; browser launch {} ms, total {} ms",
        cases.len(),
        expected.len(),
        result["launchMs"],
        result["totalMs"]
    );
}

/// Published files (relative path -> sha256), without the program's own bookkeeping.
fn published(dir: &Path) -> BTreeMap<String, String> {
    tree(dir)
        .into_iter()
        .filter(|(k, _)| !k.split('/').any(|c| c.starts_with('.')))
        .collect()
}

fn probe(url: &str) -> u16 {
    let origin = ORIGIN.trim_start_matches("http://");
    common::http::request(
        &format!("{origin}:80"),
        "GET",
        &format!(
            "{url}?resumableChunkNumber=1&resumableChunkSize=1048576&resumableCurrentChunkSize=10&resumableTotalSize=10&resumableType=&resumableIdentifier=deb-probe&resumableFilename=probe.bin&resumableRelativePath=probe.bin&resumableTotalChunks=1"
        ),
        &[],
        &[],
        Duration::from_secs(10),
    )
    .status
}

// ------------------------------------------------------------------ the machine

/// Apache's state that a2enmod/a2enconf and the package's postrm change.
const APACHE_STATE: &[&str] = &[
    "/etc/apache2/mods-enabled",
    "/etc/apache2/conf-enabled",
    "/var/lib/apache2/module",
    "/var/lib/apache2/conf",
];
/// Created by apache2ctl when missing.
const APACHE_RUNTIME_DIRS: &[&str] = &["/var/run/apache2", "/var/lock/apache2"];
const APACHE_LOGS: &[&str] = &[
    "/var/log/apache2/access.log",
    "/var/log/apache2/error.log",
    "/var/log/apache2/other_vhosts_access.log",
];

/// What this test changes on the machine, as it was before, and the way back. Dropping it (also
/// on a failed assertion) restores the machine; `restore` reports what it could not.
struct Machine {
    state: BTreeSet<PathBuf>,
    cgid_enabled: bool,
    runtime_dirs: Vec<(PathBuf, bool)>,
    logs: Vec<(PathBuf, Option<u64>)>,
    apache_pid: Option<i32>,
    restored: bool,
}

impl Machine {
    /// Checks that the machine is one this test may use, and records what it will change.
    fn take() -> Machine {
        let status = status();
        assert!(
            status == "not-installed",
            "the package {PKG} is on this machine already ({status}); the test would replace and \
             purge it. Remove it first (dpkg --purge {PKG}) if it is a leftover."
        );
        assert!(
            !exists(BASE),
            "{BASE} exists (uploads kept by an earlier purge?); the test needs it absent. \
             Move it away first."
        );
        assert!(
            std::net::TcpStream::connect("127.0.0.1:80").is_err(),
            "something listens on port 80 (the system Apache?); the test starts the stock \
             Apache there and must not disturb a running server"
        );
        let machine = Machine {
            state: entries(APACHE_STATE),
            cgid_enabled: exists("/etc/apache2/mods-enabled/cgid.load"),
            runtime_dirs: APACHE_RUNTIME_DIRS
                .iter()
                .map(|d| (PathBuf::from(d), exists(d)))
                .collect(),
            logs: APACHE_LOGS
                .iter()
                .map(|l| (PathBuf::from(l), fs::metadata(l).ok().map(|m| m.len())))
                .collect(),
            apache_pid: None,
            restored: false,
        };
        assert!(
            !exists("/etc/apache2/conf-enabled/resumable-cgi.conf"),
            "a resumable-cgi configuration is enabled in Apache already"
        );
        machine
    }

    fn start_apache(&mut self) {
        must(Command::new("apache2ctl").arg("configtest"));
        must(Command::new("apache2ctl").arg("start"));
        let deadline = Instant::now() + Duration::from_secs(15);
        let pid = loop {
            if let Some(pid) = fs::read_to_string(APACHE_PIDFILE)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "apache2ctl start: no {APACHE_PIDFILE}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.apache_pid = Some(pid);
        wait_for_listener(
            "127.0.0.1:80",
            "apache2 (stock)",
            Path::new("/var/log/apache2/error.log"),
        );
        eprintln!("deb: stock Apache started (pid {pid})");
    }

    fn stop_apache(&mut self) {
        let Some(pid) = self.apache_pid.take() else {
            return;
        };
        let _ = Command::new("apache2ctl").arg("stop").output();
        let deadline = Instant::now() + Duration::from_secs(15);
        while common::process::alive(pid) {
            if Instant::now() > deadline {
                // by its PID, the one this test started
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .output();
                std::thread::sleep(Duration::from_millis(200));
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("deb: stock Apache stopped (pid {pid})");
    }

    /// Stops Apache, purges the package, disables cgid again if it was off, removes every state
    /// file and runtime directory that appeared, truncates Apache's logs back and removes
    /// /var/lib/resumable-cgi. Returns what is still not as it was.
    fn restore(&mut self) -> Vec<String> {
        self.restored = true;
        let mut problems = Vec::new();
        self.stop_apache();
        if status() != "not-installed" {
            let (ok, text) = dpkg_try(&["--purge", PKG]);
            if !ok {
                problems.push(format!("dpkg --purge {PKG}: {text}"));
            }
        }
        if !self.cgid_enabled && exists("/etc/apache2/mods-enabled/cgid.load") {
            let out = Command::new("a2dismod").args(["-q", "cgid"]).output();
            if !out.is_ok_and(|o| o.status.success()) {
                problems.push("a2dismod cgid failed".into());
            }
        }
        // a2enmod/a2dismod and the package's postrm leave state markers (and their folders)
        let now = entries(APACHE_STATE);
        let appeared: Vec<&PathBuf> = now.difference(&self.state).collect();
        // deepest first: a marker before its folder
        for path in appeared.into_iter().rev() {
            let meta = fs::symlink_metadata(path);
            let removed = match meta {
                Ok(m) if m.is_dir() => fs::remove_dir(path),
                Ok(_) => fs::remove_file(path),
                Err(_) => Ok(()),
            };
            if let Err(e) = removed {
                problems.push(format!("removing {}: {e}", path.display()));
            }
        }
        for path in self.state.difference(&entries(APACHE_STATE)) {
            problems.push(format!("{} is gone", path.display()));
        }
        for (dir, existed) in &self.runtime_dirs {
            if !existed && dir.exists() {
                if let Err(e) = fs::remove_dir_all(dir) {
                    problems.push(format!("removing {}: {e}", dir.display()));
                }
            }
        }
        for (log, len) in &self.logs {
            let result = match len {
                Some(len) => fs::OpenOptions::new()
                    .write(true)
                    .open(log)
                    .and_then(|f| f.set_len(*len)),
                None => fs::remove_file(log).or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                }),
            };
            if let Err(e) = result {
                problems.push(format!("restoring {}: {e}", log.display()));
            }
        }
        if exists(BASE) {
            if let Err(e) = fs::remove_dir_all(BASE) {
                problems.push(format!("removing {BASE}: {e}"));
            }
        }
        if exists("/etc/apache2/mods-enabled/cgid.load") != self.cgid_enabled {
            problems.push("cgid is not as it was".into());
        }
        problems
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if !self.restored {
            let problems = self.restore();
            if !problems.is_empty() {
                eprintln!("deb: the machine could not be fully restored: {problems:#?}");
            }
        }
    }
}

/// Every path under `roots` (not following symlinks), roots excluded.
fn entries(roots: &[&str]) -> BTreeSet<PathBuf> {
    fn walk(dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(list) = fs::read_dir(dir) else {
            return;
        };
        for e in list.flatten() {
            let path = e.path();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            out.insert(path.clone());
            if is_dir {
                walk(&path, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    for root in roots {
        walk(Path::new(root), &mut out);
    }
    out
}

/// One run at a time per machine (worktrees share the package name, port 80 and Apache).
fn machine_lock() -> fs::File {
    let file = fs::File::create("/tmp/resumable-cgi-deb-test.lock").unwrap();
    if file.try_lock().is_err() {
        eprintln!("deb: another run of this test holds the machine; waiting");
        file.lock().unwrap();
    }
    file
}

// ------------------------------------------------------------------ commands

/// dpkg's view of the package: "install ok installed", "deinstall ok config-files", or
/// "not-installed".
fn status() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", PKG])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || text.is_empty() || text.ends_with("not-installed") {
        "not-installed".into()
    } else {
        text
    }
}

/// dpkg with its output; waits (up to 5 min) while another dpkg or apt holds the lock.
fn dpkg_try(args: &[&str]) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let locked = text.contains("lock") && !out.status.success();
        if !locked || Instant::now() > deadline {
            return (out.status.success(), text);
        }
        eprintln!(
            "deb: dpkg is busy (another apt or dpkg), waiting: {}",
            text.trim()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn dpkg(args: &[&str]) -> String {
    let (ok, text) = dpkg_try(args);
    assert!(ok, "dpkg {args:?}:\n{text}");
    text
}

/// Runs the command, fails the test with its output unless it succeeds; answers stdout+stderr.
fn must(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-test-deps installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn exists(path: &str) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
