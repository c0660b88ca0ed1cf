//! Keeps `bench/run` and `bench/render` from rotting: the quick mode must run end to end against
//! the binary under test, write its JSON and a table, and the renderer alone must turn that JSON
//! into the same table. No timing is asserted (CI machines are shared and noisy); only that the
//! scripts exit 0, wrote to the paths they were given, and left BENCHMARKS.md alone.

mod common;

use std::path::Path;
use std::process::Command;

use common::Scratch;

#[test]
fn bench_run_quick_writes_a_table() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = Scratch::for_this_test();
    let out = dir.path().join("quick.md");
    let committed = std::fs::read(repo.join("BENCHMARKS.md")).ok();
    let run = Command::new("python3")
        .arg(repo.join("bench/run"))
        .arg("--quick")
        // Tools the test-dependency installer does not provide leave their rows "not
        // measured" instead of failing the suite; the script names them and their install command.
        .arg("--skip-missing")
        .arg("--bin")
        .arg(env!("CARGO_BIN_EXE_resumable-cgi"))
        .arg("--out")
        .arg(&out)
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("python3 runs bench/run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench/run --quick failed:\n{stderr}");
    let report = std::fs::read_to_string(&out).expect("bench/run wrote its report");
    assert!(report.contains("## Goals at a glance"), "{report}");
    assert!(report.contains("| # | goal | result | met? |"), "{report}");
    for section in [
        "## 1. CGI request cost",
        "## 2. Ingest",
        "## 3. FastCGI behind nginx",
        "## 4. Assembly",
        "## 5. Memory",
    ] {
        assert!(report.contains(section), "missing {section:?}:\n{report}");
    }
    // Without --skip-missing triggering, every measurement produced figures.
    if !stderr.contains("skipped") {
        assert!(!report.contains("Not measured"), "{report}");
    }
    // The measurements went beside the report, and rendering them again gives the same report.
    let json = dir.path().join("quick.json");
    assert!(json.is_file(), "bench/run wrote no {}", json.display());
    let again = dir.path().join("again.md");
    let render = Command::new("python3")
        .arg(repo.join("bench/render"))
        .arg(&json)
        .arg("--out")
        .arg(&again)
        .output()
        .expect("python3 runs bench/render");
    let render_err = String::from_utf8_lossy(&render.stderr);
    assert!(
        render.status.success(),
        "bench/render failed:\n{render_err}"
    );
    assert_eq!(std::fs::read_to_string(&again).unwrap(), report);
    assert_eq!(
        std::fs::read(repo.join("BENCHMARKS.md")).ok(),
        committed,
        "a quick run must not touch the committed BENCHMARKS.md"
    );
}
