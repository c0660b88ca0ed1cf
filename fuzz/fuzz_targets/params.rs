//! The parameter parser: a query string (and form fields) from anyone, through Params, the
//! request's Intent (every dialect) and the names the store derives from it. Must never panic, and whatever is
//! accepted must map to single safe path components.
#![no_main]

use libfuzzer_sys::fuzz_target;
use resumable_cgi::protocol::{Intent, Params};
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
    let Ok(intent) = Intent::from_params(&params) else {
        return;
    };
    let number = match &intent {
        Intent::Chunk(chunk) => {
            let g = chunk.geometry;
            assert!(g.number >= 1 && g.chunk_size >= 1);
            assert!(g
                .start
                .checked_add(g.size)
                .is_some_and(|end| end <= g.total_size));
            assert!(g.size == g.chunk_size || g.is_last());
            g.number
        }
        Intent::Counted(chunk) => {
            assert!(chunk.number >= 1 && chunk.number <= chunk.count);
            chunk.number
        }
        Intent::Finish(_) => u64::MAX,
    };
    let (identifier, filename) = intent.names();
    for name in [
        layout::upload_dir_name(identifier),
        layout::part_name(&layout::file_key(filename), number),
    ] {
        assert!(!name.is_empty() && name != "." && name != "..");
        assert!(!name.contains('/') && !name.contains('\0') && name.len() <= 255);
    }
    let relative_path = match &intent {
        Intent::Chunk(chunk) => chunk.relative_path.as_deref(),
        _ => None,
    };
    let (folders, file) = layout::published_path(filename, relative_path);
    for c in folders.iter().chain(std::iter::once(&file)) {
        assert!(!c.is_empty() && c != "." && c != ".." && !c.starts_with('.'));
        assert!(!c.contains('/') && !c.contains('\\') && !c.contains('\0'));
        assert!(c.len() <= 255);
    }
});
