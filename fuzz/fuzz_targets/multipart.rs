//! The multipart intake: a Content-Type line and a body from anyone. The consumer reads the
//! file part to its end, as the store does. Must never panic nor hand on more than was sent.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use resumable_cgi::protocol::multipart::read_multipart;
use resumable_cgi::protocol::Params;

fuzz_target!(|data: &[u8]| {
    // First line: the Content-Type (a fixed boundary when the line is empty, so that the
    // fuzzer reaches the body parser quickly); the rest: the body.
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let content_type = if head.is_empty() {
        "multipart/form-data; boundary=X".to_string()
    } else {
        String::from_utf8_lossy(head).into_owned()
    };
    let mut params = Params::default();
    let mut reader = Cursor::new(body.to_vec());
    let result = read_multipart(
        &mut reader,
        &content_type,
        1 << 16,
        &mut params,
        |_, file| {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map(|_| bytes)
        },
    );
    if let Ok(Some(bytes)) = result {
        assert!(bytes.len() <= body.len());
    }
});
