//! The parameter parser: a query string (and form fields) from anyone, through Params,
//! ChunkRequest and the names the store derives from it. Must never panic, and whatever is
//! accepted must map to single safe path components.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resumable_cgi::protocol::{ChunkRequest, Params};
use resumable_cgi::store::layout;

fuzz_target!(|data: &[u8]| {
    // First half: a query string; after a NUL: form fields as `name=value` lines (as the
    // multipart intake pushes them, unescaped).
    let (query, form) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let mut params = Params::from_query(&String::from_utf8_lossy(query));
    for line in String::from_utf8_lossy(form).split('\n') {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        params.push(name.to_string(), value.to_string());
    }
    let Ok(chunk) = ChunkRequest::from_params(&params) else {
        return;
    };
    let g = chunk.geometry;
    assert!(g.number >= 1 && g.chunk_size >= 1);
    assert!(g
        .start
        .checked_add(g.size)
        .is_some_and(|end| end <= g.total_size));
    assert!(g.size == g.chunk_size || g.is_last());
    for name in [
        layout::upload_dir_name(&chunk.identifier),
        layout::part_name(&layout::file_key(&chunk.filename), g.number),
    ] {
        assert!(!name.is_empty() && name != "." && name != "..");
        assert!(!name.contains('/') && !name.contains('\0') && name.len() <= 255);
    }
    let (folders, file) = layout::published_path(&chunk.filename, chunk.relative_path.as_deref());
    for c in folders.iter().chain(std::iter::once(&file)) {
        assert!(!c.is_empty() && c != "." && c != ".." && !c.starts_with('.'));
        assert!(!c.contains('/') && !c.contains('\\') && !c.contains('\0'));
        assert!(c.len() <= 255);
    }
});
