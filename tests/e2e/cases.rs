//! The browser cases: what each uploads, with which client and options, and how the outcome is
//! checked (sha256 of every stored file against its source, nothing else stored, the server's
//! access log for resume).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::sha256_file;
use crate::harness::*;
use crate::servers::Stack;

pub const MIB: usize = 1 << 20;
pub const CHUNK: usize = MIB;

/// One browser case: its files are written under src/<id>/ and must arrive in the upload dir
/// under `stored` (relative path).
pub struct Case {
    pub id: &'static str,
    pub lib: &'static str,
    pub opts: Value,
    /// (path relative to the case's source dir, size). With `dir`, the first component is the
    /// folder picked in the browser and the whole relative path is expected in the upload dir.
    pub files: Vec<(&'static str, usize)>,
    pub dir: bool,
    pub mode: &'static str,
    pub at_chunks: usize,
}

fn case(
    id: &'static str,
    lib: &'static str,
    opts: Value,
    files: Vec<(&'static str, usize)>,
) -> Case {
    Case {
        id,
        lib,
        opts,
        files,
        dir: false,
        mode: "upload",
        at_chunks: 0,
    }
}

/// Every case the issue asks for, for one server stack.
pub fn standard_cases() -> Vec<Case> {
    let c = CHUNK;
    let multipart = |extra: Value| merge(json!({"chunkSize": c, "method": "multipart"}), extra);
    let octet = |extra: Value| merge(json!({"chunkSize": c, "method": "octet"}), extra);
    let mut v = vec![
        case(
            "flow-empty",
            "flow",
            multipart(json!({})),
            vec![("empty.bin", 0)],
        ),
        case(
            "resumable-small",
            "resumable",
            multipart(json!({})),
            vec![("small-r.txt", 100_000)],
        ),
        case(
            "flow-small-octet",
            "flow",
            octet(json!({})),
            vec![("small-f.bin", 1000)],
        ),
        // floor mode: 4 MiB - 1 is 3 chunks, the last one 2 MiB - 1 bytes
        case(
            "resumable-last2x",
            "resumable",
            multipart(json!({})),
            vec![("last2x-r.bin", 4 * c - 1)],
        ),
        case(
            "flow-last2x-octet",
            "flow",
            octet(json!({})),
            vec![("last2x-f.bin", 3 * c - 1)],
        ),
        case(
            "resumable-unicode-octet",
            "resumable",
            octet(json!({})),
            vec![("Grüße – 日本語 ✓.bin", c + c / 2)],
        ),
        case(
            "flow-unicode",
            "flow",
            multipart(json!({})),
            vec![("Zoë’s café (draft) ☕.txt", 2 * c + 12345)],
        ),
        case(
            "resumable-many",
            "resumable",
            multipart(json!({"simultaneousUploads": 3})),
            vec![
                ("many-r-1.bin", 2 * c + c / 2),
                ("many-r-2.bin", c),
                ("many-r-3.bin", 300_000),
                ("many-r-4.bin", 3 * c + 1),
            ],
        ),
        case(
            "flow-many-octet",
            "flow",
            octet(json!({"simultaneousUploads": 3})),
            vec![
                ("many-f-1.bin", 3 * c + 17),
                ("many-f-2.bin", 5000),
                ("many-f-3.bin", 2 * c),
            ],
        ),
        case(
            "resumable-prio-octet",
            "resumable",
            octet(json!({"prioritizeFirstAndLastChunk": true, "simultaneousUploads": 3})),
            vec![("prio-r.bin", 6 * c + c / 2)],
        ),
        case(
            "flow-prio",
            "flow",
            multipart(json!({"prioritizeFirstAndLastChunk": true})),
            vec![("prio-f.bin", 5 * c + 99)],
        ),
        // sites raise chunkSize to cut request counts: 5 MiB chunks, a last chunk of 8 MiB - 3
        case(
            "resumable-5m-chunks",
            "resumable",
            json!({"chunkSize": 5 * c, "method": "multipart"}),
            vec![("big-chunks-r.bin", 13 * c - 3)],
        ),
        case(
            "flow-4m-chunks",
            "flow",
            json!({"chunkSize": 4 * c, "method": "multipart"}),
            vec![("big-chunks-f.bin", 11 * c + 5)],
        ),
    ];
    v.push(Case {
        dir: true,
        ..case(
            "resumable-folder",
            "resumable",
            multipart(json!({"simultaneousUploads": 3})),
            vec![
                ("album-r/2024/a.bin", c + 200_000),
                ("album-r/2024/b c.bin", 10_000),
                ("album-r/cover.bin", 2 * c + 3),
            ],
        )
    });
    v.push(Case {
        dir: true,
        ..case(
            "flow-folder-octet",
            "flow",
            octet(json!({})),
            vec![
                ("album-f/x/y/deep.bin", c / 3),
                ("album-f/top.bin", 2 * c + 1),
            ],
        )
    });
    v.push(Case {
        mode: "pause-resume",
        at_chunks: 2,
        ..case(
            "resumable-pause",
            "resumable",
            multipart(json!({"simultaneousUploads": 3})),
            vec![("pause-r.bin", 8 * c + 5)],
        )
    });
    v.push(Case {
        mode: "pause-resume",
        at_chunks: 2,
        ..case(
            "flow-pause-octet",
            "flow",
            octet(json!({})),
            vec![("pause-f.bin", 6 * c + 77)],
        )
    });
    v
}

pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

impl Case {
    pub fn src_dir(&self, stack: &Stack) -> PathBuf {
        stack.dir.path().join("src").join(self.id)
    }

    /// Writes the source files; returns (stored relative path, sha256) for each.
    pub fn prepare(&self, stack: &Stack, seed: u64) -> Vec<(String, String)> {
        let root = self.src_dir(stack);
        self.files
            .iter()
            .enumerate()
            .map(|(i, (rel, size))| {
                let p = root.join(rel);
                make_file(&p, *size, seed * 1000 + i as u64);
                let stored = if self.dir {
                    rel.to_string()
                } else {
                    rel.rsplit('/').next().unwrap().to_string()
                };
                (stored, sha256_file(&p))
            })
            .collect()
    }

    pub fn step(&self, stack: &Stack) -> Value {
        let root = self.src_dir(stack);
        let mut step = json!({
            "id": self.id, "lib": self.lib, "target": stack.url, "opts": self.opts,
            "mode": self.mode, "atChunks": self.at_chunks,
        });
        if self.dir {
            let top = self.files[0].0.split('/').next().unwrap();
            step["dir"] = json!(root.join(top));
        } else {
            step["files"] = json!(self
                .files
                .iter()
                .map(|(r, _)| root.join(r))
                .collect::<Vec<_>>());
        }
        step
    }
}

/// The outcome of one case, for the report line.
pub fn step_summary(result: &Value, id: &str) -> Value {
    result["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no browser result for {id}"))
}

/// Runs the standard cases through `stack` in one browser session and checks every stored file.
pub fn run_standard(stack: &Stack) {
    run_cases(stack, standard_cases());
}

/// Runs some of the standard cases (by id).
pub fn run_some(stack: &Stack, ids: &[&str]) {
    let cases: Vec<Case> = standard_cases()
        .into_iter()
        .filter(|c| ids.contains(&c.id))
        .collect();
    assert_eq!(cases.len(), ids.len(), "unknown case id in {ids:?}");
    run_cases(stack, cases);
}

pub fn run_cases(stack: &Stack, cases: Vec<Case>) {
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        for (stored, sha) in c.prepare(stack, i as u64 + 1) {
            assert!(
                expected.insert(stored.clone(), sha).is_none(),
                "duplicate {stored}"
            );
        }
    }
    let steps: Vec<Value> = cases.iter().map(|c| c.step(stack)).collect();
    let result = run_browser(&stack.dir, &stack.origin(), json!(steps));
    let mut failures = Vec::new();
    for c in &cases {
        let s = step_summary(&result, c.id);
        let state = &s["state"];
        let ok = s["failure"].is_null()
            && state["done"] == true
            && state["errors"].as_array().is_some_and(|e| e.is_empty())
            && state["successes"].as_array().map_or(0, |v| v.len()) == c.files.len();
        eprintln!(
            "e2e {} {:<26} {} files={} {} ms {}",
            stack.name,
            c.id,
            if ok { "ok  " } else { "FAIL" },
            c.files.len(),
            s["ms"],
            if ok { String::new() } else { format!("{s}") }
        );
        if !ok {
            failures.push(c.id);
        }
        if c.mode == "pause-resume" {
            let ev = &s["events"][0];
            assert_eq!(ev["paused"], true, "{}: {s}", c.id);
            assert_eq!(
                ev["doneWhilePaused"], false,
                "{}: finished before the pause: {s}",
                c.id
            );
            // nothing completes while paused (in-flight chunks are aborted by pause())
            assert_eq!(
                ev["chunksAtPause"], ev["chunksAfterWait"],
                "{}: chunks went on while paused",
                c.id
            );
        }
    }
    let stored = tree(&stack.upload_dir);
    let stored: BTreeMap<String, String> = stored
        .into_iter()
        .filter(|(k, _)| !is_internal(k))
        .collect();
    for (rel, sha) in &expected {
        match stored.get(rel) {
            Some(got) if got == sha => {}
            Some(got) => failures.push(leak(format!("{rel}: sha256 {got} != source {sha}"))),
            None => failures.push(leak(format!("{rel}: not stored"))),
        }
    }
    let extra: BTreeSet<&String> = stored
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        failures.is_empty() && extra.is_empty(),
        "{}: failures {failures:?}, unexpected files {extra:?}\nupload dir: {stored:#?}\nbrowser console: {}\nerror log:\n{}",
        stack.name,
        result["console"],
        read_lossy(&stack.error_log)
    );
    eprintln!(
        "e2e {}: {} cases, {} files stored, sha256 equal; browser launch {} ms, total {} ms",
        stack.name,
        cases.len(),
        expected.len(),
        result["launchMs"],
        result["totalMs"]
    );
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Bookkeeping the program may keep inside the upload dir (staging), not published files.
fn is_internal(rel: &str) -> bool {
    rel.split('/')
        .any(|c| c.starts_with('.') || c.starts_with('~'))
}

/// Chunk numbers of requests in `hits` that carry `name_param=filename` and `e2ephase=phase`.
pub fn chunks(
    hits: &[Hit],
    method: &str,
    prefix: &str,
    filename: &str,
    phase: &str,
    status: Option<u16>,
) -> Vec<u64> {
    let mut v: Vec<u64> = hits
        .iter()
        .filter(|h| h.method == method)
        .filter(|h| h.param(&format!("{prefix}Filename")).as_deref() == Some(filename))
        .filter(|h| h.param("e2ephase").as_deref() == Some(phase))
        .filter(|h| status.is_none_or(|s| h.status == s))
        .filter_map(|h| h.param(&format!("{prefix}ChunkNumber"))?.parse().ok())
        .collect();
    v.sort();
    v
}
