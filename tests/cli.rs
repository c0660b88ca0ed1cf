//! The command line as a user meets it: help and version, usage errors (exit 2), and the
//! long-running modes refusing to start on an invalid setting (exit 78, one line naming it).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::binary;

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let output = Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn help_and_version_for_every_command() {
    let (code, out, _, _) = run(&["--version"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("resumable-cgi "), "{out}");
    for command in ["serve", "fastcgi", "cleanup"] {
        let (code, out, _, _) = run(&[command, "--help"], &[]);
        assert_eq!(code, Some(0), "{command}");
        assert!(out.contains("Usage: resumable-cgi"), "{command}: {out}");
    }
    let (_, out, _, _) = run(&["--help"], &[]);
    assert!(out.contains("RESUMABLE_MAX_FILE_SIZE"));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["serve", "--port", "1"][..],
        &["fastcgi", "--workers", "0"],
        &["cleanup", "--older-than", "soon"],
        &["frobnicate"],
    ] {
        let (code, out, err, _) = run(args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(!err.is_empty(), "{args:?}");
    }
}

#[test]
fn an_invalid_setting_stops_the_worker_and_the_dev_server_at_once() {
    for args in [
        &["fastcgi", "--listen", "127.0.0.1:0"][..],
        &["serve", "--listen", "127.0.0.1:0"],
        &["cleanup"],
    ] {
        let (code, _, err, took) = run(args, &[("RESUMABLE_MAX_FILE_SIZE", "12Q")]);
        assert_eq!(code, Some(78), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].contains("RESUMABLE_MAX_FILE_SIZE") && lines[0].contains("12Q"),
            "{err}"
        );
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
    }
}
