//! Names to paths: the PHP script's layout for plain names, a deterministic hash for the rest,
//! and the sanitised path a finished file is published under.

use sha2::{Digest, Sha256};

/// Longest plain identifier or file name used as-is; longer ones are hashed so that
/// `<name>.part<N>` always fits NAME_MAX (255).
const MAX_PLAIN_NAME: usize = 200;
/// Published paths: at most this many folders deep, each component at most NAME_MAX bytes.
const MAX_DEPTH: usize = 16;
const NAME_MAX: usize = 255;

/// Letters, digits, `.`, `_`, `-`, not starting with a dot: safe as one path component, and
/// exactly what the PHP script would have used unchanged.
pub fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PLAIN_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn hex_digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // Length-prefixed so that ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The directory under the temp dir that holds one identifier's parts. Hashed names start with
/// `~`, which no plain name can, so the two never collide.
pub fn upload_dir_name(identifier: &str) -> String {
    if is_plain(identifier) {
        identifier.to_string()
    } else {
        format!("~id-{}", hex_digest(&[identifier]))
    }
}

/// Uploads of an authenticated user live in their own folder of the temp dir, so two users'
/// identical default identifiers (`<size>-<name>`) never meet.
pub fn user_dir_name(user: &str) -> String {
    format!("~user-{}", hex_digest(&[user]))
}

/// The stem of the part files: `<filename>` when plain (PHP layout), a hash otherwise.
pub fn file_key(filename: &str) -> String {
    if is_plain(filename) {
        filename.to_string()
    } else {
        format!("~name-{}", hex_digest(&[filename]))
    }
}

pub fn part_name(file_key: &str, number: u64) -> String {
    format!("{file_key}.part{number}")
}

/// The completion record beside the parts; `.complete` never ends a part name.
pub fn record_name(file_key: &str) -> String {
    format!("{file_key}.complete")
}

/// The chunk geometry the parts were stored with; `.geometry` never ends a part name.
pub fn geometry_name(file_key: &str) -> String {
    format!("{file_key}.geometry")
}

/// A name for the staging file of one upload in the upload dir's staging folder.
pub fn staging_name(scope: &[&str]) -> String {
    format!("{}.assembling", hex_digest(scope))
}

/// The temp folder of a tus upload: its id is 32 hex digits (checked by the caller and again
/// here), and `~tus-` can start no plain name and no other hashed one.
pub fn tus_dir_name(id: &str) -> Option<String> {
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| format!("~tus-{id}"))
}

/// The temp folder of a byte-range upload named only by its file name (blueimp).
pub fn named_range_dir_name(filename: &str) -> String {
    format!("~range-{}", hex_digest(&[filename]))
}

/// The staging file of a byte-range upload; the `range-` prefix keeps it apart from every
/// chunked upload's staging name.
pub fn range_staging_name(user: Option<&str>, dir_name: &str) -> String {
    format!(
        "range-{}.assembling",
        hex_digest(&[user.unwrap_or(""), dir_name])
    )
}

/// The folders and file name a finished upload is published under, relative to the upload dir.
/// Folders come from the relative path (all but its last component), the name from the file
/// name. Nothing that comes out can climb out, hide itself, or contain a control character.
pub fn published_path(filename: &str, relative_path: Option<&str>) -> (Vec<String>, String) {
    let mut folders: Vec<String> = Vec::new();
    if let Some(path) = relative_path {
        let components: Vec<&str> = path.split(['/', '\\']).collect();
        for component in &components[..components.len().saturating_sub(1)] {
            if let Some(clean) = sanitize_component(component) {
                folders.push(clean);
            }
        }
    }
    folders.truncate(MAX_DEPTH);
    let last = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let name = sanitize_component(last).unwrap_or_else(|| "unnamed".to_string());
    (folders, name)
}

/// One path component made safe, or `None` when nothing usable is left (`..`, `.`, empty).
pub fn sanitize_component(raw: &str) -> Option<String> {
    let cleaned: String = raw.chars().filter(|c| !c.is_control()).collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || trimmed.chars().all(|c| c == '.') {
        return None;
    }
    let mut name = trimmed.to_string();
    // No hidden files: a `.htaccess` uploaded into a web-served folder would configure it.
    if name.starts_with('.') {
        name.replace_range(0..1, "_");
    }
    // Windows reserved device names, for upload dirs shared over SMB.
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        name.insert(0, '_');
    }
    Some(truncate_keeping_extension(&name, NAME_MAX - 16))
}

/// Shortens a name to at most `max` bytes on a character boundary, keeping a short extension,
/// leaving room for a ` (12)` clash suffix.
fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let extension = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => &name[dot..],
        _ => "",
    };
    let mut stem_end = max - extension.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{}", &name[..stem_end], extension)
}

/// `name`, then `name (1).ext`, `name (2).ext`, ...: the n-th name tried when earlier ones exist.
pub fn clash_candidate(name: &str, attempt: u32) -> String {
    if attempt == 0 {
        return name.to_string();
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({attempt}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({attempt})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_names_keep_the_php_layout() {
        assert_eq!(upload_dir_name("25-myfile1txt"), "25-myfile1txt");
        assert_eq!(part_name(&file_key("photo.jpg"), 3), "photo.jpg.part3");
        for hostile in ["..", ".", "", "a/b", ".hidden", "a b", "é", "a\0b", "..%2f"] {
            assert!(!is_plain(hostile), "{hostile:?}");
            assert!(upload_dir_name(hostile).starts_with("~id-"));
        }
        assert_ne!(upload_dir_name("a b"), upload_dir_name("a_b"));
        assert!(upload_dir_name(&"x".repeat(300)).starts_with("~id-"));
    }

    #[test]
    fn published_paths_stay_inside() {
        assert_eq!(
            published_path("file.txt", Some("dir/sub/file.txt")),
            (vec!["dir".into(), "sub".into()], "file.txt".into())
        );
        assert_eq!(
            published_path("passwd", Some("../../etc/passwd")),
            (vec!["etc".into()], "passwd".into())
        );
        assert_eq!(published_path("..", None), (vec![], "unnamed".into()));
        assert_eq!(published_path(".htaccess", None).1, "_htaccess");
        assert_eq!(published_path("a\\..\\b.txt", None).1, "b.txt");
        assert_eq!(published_path("CON.txt", None).1, "_CON.txt");
        assert_eq!(published_path("x\0y\n.txt", None).1, "xy.txt");
        assert_eq!(
            published_path("日本語 ファイル.txt", None).1,
            "日本語 ファイル.txt"
        );
        let long = format!("{}.txt", "é".repeat(300));
        let name = published_path(&long, None).1;
        assert!(name.len() <= 255 - 16 && name.ends_with(".txt"));
    }

    #[test]
    fn clash_names() {
        assert_eq!(clash_candidate("a.txt", 0), "a.txt");
        assert_eq!(clash_candidate("a.txt", 2), "a (2).txt");
        assert_eq!(clash_candidate("README", 1), "README (1)");
        assert_eq!(clash_candidate(".x", 1), ".x (1)");
    }

    proptest! {
        #[test]
        fn no_published_component_can_escape(name in "\\PC{0,40}", path in "[a-z./\\\\\\x00-\\x1f]{0,60}") {
            let (folders, file) = published_path(&name, Some(&path));
            for c in folders.iter().chain(std::iter::once(&file)) {
                prop_assert!(!c.is_empty() && c != "." && c != "..");
                prop_assert!(!c.starts_with('.'));
                prop_assert!(!c.contains('/') && !c.contains('\\') && !c.contains('\0'));
                prop_assert!(c.len() <= 255);
            }
        }

        #[test]
        fn temp_names_are_single_safe_components(id in "\\PC{0,300}") {
            let dir = upload_dir_name(&id);
            prop_assert!(!dir.contains('/') && dir != ".." && dir != "." && !dir.is_empty());
            prop_assert!(part_name(&file_key(&id), u64::MAX).len() <= 255);
        }
    }
}
