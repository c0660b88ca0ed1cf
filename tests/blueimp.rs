//! blueimp jQuery-File-Upload's chunked uploads, request by request, in-process and as CGI:
//! byte ranges appended where the stored bytes end (the store operation tus uses), the
//! `{"files":[…]}` answers with their `Range` header, the `GET ?file=` resume recipe, and every
//! chunk that does not fit refused without being appended anywhere.

mod common;
mod range_support;

use common::*;
use range_support::*;
use serde_json::Value;

fn files_entry(response: &TestResponse) -> Value {
    let body = response.json();
    assert!(body["files"].is_array(), "{body}");
    body["files"][0].clone()
}

/// A file in chunks of `chunk` bytes, each checked as it is answered; answers the last answer.
fn send_file(
    t: &dyn Target,
    name: &str,
    data: &[u8],
    chunk: usize,
    multipart: bool,
) -> TestResponse {
    send_part(t, name, data, data.len() as u64, chunk, multipart)
}

/// The first bytes of a file of `total` bytes, as [`send_file`] sends a whole one.
fn send_part(
    t: &dyn Target,
    name: &str,
    data: &[u8],
    total: u64,
    chunk: usize,
    multipart: bool,
) -> TestResponse {
    let mut last = None;
    for (i, bytes) in data.chunks(chunk).enumerate() {
        let start = (i * chunk) as u64;
        let response = t.call(&blueimp_chunk(name, start, bytes, total, multipart));
        assert_eq!(
            response.status,
            200,
            "chunk at {start}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let stored = start + bytes.len() as u64;
        assert_eq!(
            response.header("Range"),
            Some(format!("0-{}", stored - 1).as_str())
        );
        assert_eq!(files_entry(&response)["size"], stored);
        last = Some(response);
    }
    last.expect("data")
}

fn chunks_and_resume(t: &dyn Target) {
    // Several chunks, multipart (`files[]`) and raw, the last one shorter.
    for (name, multipart) in [("photo.jpg", true), ("raw.bin", false)] {
        let data = pseudo_random(2_500, name.len() as u64);
        let done = send_file(t, name, &data, 1_000, multipart);
        let entry = files_entry(&done);
        assert_eq!(
            (entry["complete"].clone(), entry["name"].clone()),
            (true.into(), name.into())
        );
        assert_eq!(
            std::fs::read(t.uploads().join(name)).unwrap(),
            data,
            "{name}"
        );
        let resume = t.call(&blueimp_resume(name));
        assert_eq!(
            resume.json()["file"]["size"],
            data.len(),
            "{name}: stored whole"
        );
        assert_eq!(resume.json()["file"]["complete"], true);
    }

    // Interrupted after two chunks; the recipe's GET says where to go on.
    let name = "日本語 report (draft).pdf";
    let data = pseudo_random(3_000, 5);
    send_part(t, name, &data[..2_000], 3_000, 1_000, true);
    let resume = t.call(&blueimp_resume(name));
    assert_eq!(resume.status, 200);
    assert_eq!(resume.header("Cache-Control"), Some("no-store"));
    assert_eq!(resume.json()["file"]["size"], 2_000);
    assert_eq!(resume.json()["file"]["name"], name);
    assert!(t.call(&blueimp_resume("never.bin")).json()["file"].is_null());

    // Chunks that do not start where the stored bytes end: refused, nothing appended.
    let total = data.len() as u64;
    let refusals: Vec<(&str, Req, u16)> = vec![
        (
            "a repeat",
            blueimp_chunk(name, 1_000, &data[1_000..2_000], total, true),
            409,
        ),
        (
            "a gap",
            blueimp_chunk(name, 2_500, &data[2_500..], total, true),
            409,
        ),
        (
            "another total",
            blueimp_chunk(name, 2_000, &data[2_000..], total + 1, true),
            409,
        ),
        (
            "a body shorter than its range",
            Req {
                body: data[2_000..2_500].to_vec(),
                ..blueimp_chunk(name, 2_000, &data[2_000..], total, false)
            },
            422,
        ),
        (
            "a range past the total",
            blueimp_chunk(name, 2_000, &data[2_000..], total, true)
                .header("Content-Range", "bytes 2000-3000/3000"),
            400,
        ),
        (
            "a range not in bytes",
            blueimp_chunk(name, 2_000, &data[2_000..], total, true)
                .header("Content-Range", "items 2000-2999/3000"),
            400,
        ),
        (
            "no file name",
            blueimp_chunk(name, 2_000, &data[2_000..], total, true).without("Content-Disposition"),
            400,
        ),
        (
            "a broken escape in the name",
            blueimp_chunk(name, 2_000, &data[2_000..], total, true)
                .header("Content-Disposition", "attachment; filename=\"%E6%9\""),
            400,
        ),
        (
            "a file over the maximum",
            blueimp_chunk("huge.bin", 0, &data[..10], 1 << 40, true),
            415,
        ),
    ];
    for (what, req, status) in refusals {
        expect_status(t, what, &req, status);
        assert_eq!(
            t.call(&blueimp_resume(name)).json()["file"]["size"],
            2_000,
            "{what}"
        );
    }
    assert!(t.call(&blueimp_resume("huge.bin")).json()["file"].is_null());

    // Resumed where the GET said: the file is whole.
    let done = t.call(&blueimp_chunk(name, 2_000, &data[2_000..], total, true));
    assert_eq!(done.status, 200);
    assert_eq!(done.header("Range"), Some("0-2999"));
    let published = files_entry(&done)["file"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read(t.uploads().join(&published)).unwrap(), data);

    // Byte 0 starts a file of that name over: a second upload gets the next free name.
    let again = send_file(t, name, &data, 3_000, false);
    assert_eq!(files_entry(&again)["name"], "日本語 report (draft) (1).pdf");
    let restarted = pseudo_random(1_500, 9);
    send_part(t, "restart.bin", &restarted[..1_000], 1_500, 500, true);
    let done = send_file(t, "restart.bin", &restarted, 1_000, true);
    assert_eq!(files_entry(&done)["name"], "restart.bin");
    assert_eq!(
        std::fs::read(t.uploads().join("restart.bin")).unwrap(),
        restarted
    );
}

#[test]
fn chunks_and_resume_in_process() {
    chunks_and_resume(&InProc::new(&[("RESUMABLE_MAX_FILE_SIZE", "1G")]));
}

#[test]
fn chunks_and_resume_over_cgi() {
    chunks_and_resume(&CgiTarget::new(&[("RESUMABLE_MAX_FILE_SIZE", "1G")]));
}

/// The name in Content-Disposition is only ever a published name after sanitising, and two
/// users' files of one name never share bytes.
#[test]
fn hostile_names_and_users() {
    let t = InProc::new(&[]);
    for (name, expected) in [
        ("../../etc/passwd", "passwd"),
        ("..", "unnamed"),
        (".htaccess", "_htaccess"),
        ("a\\..\\b.txt", "b.txt"),
    ] {
        let done = t.call(&blueimp_chunk(name, 0, b"abc", 3, true));
        assert_eq!(done.status, 200, "{name}");
        assert_eq!(files_entry(&done)["file"], expected, "{name}");
    }
    let alice = pseudo_random(20, 1);
    let bob = pseudo_random(20, 2);
    assert_eq!(
        t.call(&blueimp_chunk("same.txt", 0, &alice[..10], 20, true).user("alice"))
            .status,
        200
    );
    assert_eq!(
        t.call(&blueimp_chunk("same.txt", 0, &bob[..10], 20, true).user("bob"))
            .status,
        200
    );
    assert!(t.call(&blueimp_resume("same.txt")).json()["file"].is_null());
    assert_eq!(
        t.call(&blueimp_resume("same.txt").user("bob")).json()["file"]["size"],
        10
    );
    let a = t.call(&blueimp_chunk("same.txt", 10, &alice[10..], 20, true).user("alice"));
    let b = t.call(&blueimp_chunk("same.txt", 10, &bob[10..], 20, true).user("bob"));
    let read = |r: &TestResponse| {
        std::fs::read(t.uploads().join(files_entry(r)["file"].as_str().unwrap())).unwrap()
    };
    assert_eq!((read(&a), read(&b)), (alice, bob));
}
