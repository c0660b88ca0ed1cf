//! Arbitrary bytes as a FastCGI connection: the record and name-value parsers and the whole
//! connection state machine must never panic, hang or write a malformed record.
#![no_main]

use std::io::{Cursor, Read};

use libfuzzer_sys::fuzz_target;
use resumable_cgi::request::Response;
use resumable_cgi::transport::fastcgi::connection::{Connection, Limits};
use resumable_cgi::transport::fastcgi::params::{parse_pairs, Params};
use resumable_cgi::transport::fastcgi::record::split_records;

fn app(params: &Params, body: &mut (dyn Read + Send)) -> Response {
    let mut buffer = [0u8; 1000];
    let mut total = 0usize;
    loop {
        match body.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    let mut response = Response::new(200);
    response.body = format!("{} params, {total} bytes", params.len()).into_bytes();
    // Big enough now and then to need several STDOUT records.
    if params.get("BIG").is_some() {
        response.body.resize(200_000, b'x');
    }
    response
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_pairs(data);
    let _ = split_records(data);
    let ready = || true;
    let limits = Limits {
        max_conns: 4,
        max_reqs: 4,
    };
    let mut output = Vec::new();
    let _ = Connection::new(Cursor::new(data), &mut output, limits, &ready).serve(&app);
    // Whatever was written back must be well-framed version-1 records.
    for record in split_records(&output) {
        assert!(record.is_ok());
    }
    let framed: usize = split_records(&output)
        .iter()
        .map(|r| r.as_ref().map(|(h, _)| 8 + h.content_length as usize + h.padding_length as usize).unwrap_or(0))
        .sum();
    assert_eq!(framed, output.len());
});
