//! What is in flight in the temp dir, for `resumable-cgi list`: one entry per upload, read
//! without taking any lock a request waits on. Requests keep working while it reads, so an
//! entry can change or vanish meanwhile; it is then shown as it was seen, or left out.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{self as rfs, AtFlags, FileType};
use serde::Serialize;
use serde_json::Value;

use super::complete::Completion;
use super::fsutil;
use super::shape::Shape;

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Chunks are arriving (or may still arrive: it is younger than the cleanup age).
    Receiving,
    /// Every chunk is stored but the file is not published yet: its completion failed (a full
    /// disk, a completion hook that did not decide) and the client's next request retries it.
    Unpublished,
    /// Published; the completion record waits for the cleanup.
    Complete,
    /// Untouched for longer than the cleanup age: `resumable-cgi cleanup` removes it.
    Abandoned,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Receiving => "receiving",
            State::Unpublished => "unpublished",
            State::Complete => "complete",
            State::Abandoned => "abandoned",
        }
    }
}

/// One upload in the temp dir. Fields the layout does not record (uploads stored by the PHP
/// script, or before this program recorded them) are `None`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    pub state: State,
    pub client: Option<String>,
    pub identifier: String,
    pub user: Option<String>,
    pub file: String,
    pub relative_path: Option<String>,
    /// Bytes in stored parts, and in the staging file once [`add_staged`] counted it.
    pub stored: u64,
    pub total: Option<u64>,
    pub chunk_size: Option<u64>,
    pub parts: u64,
    /// Chunks being received right now (their temporary files).
    pub arriving: u64,
    /// The newest change to any of its files, in seconds since the epoch.
    #[serde(skip)]
    pub last_activity: i64,
    /// The same, as RFC 3339 UTC.
    #[serde(rename = "lastActivity")]
    pub last_activity_text: String,
    /// Where it was published, once complete.
    pub published: Option<String>,
    /// The temp folder it is in, relative to the temp dir.
    pub folder: String,
}

/// What one upload's files said.
#[derive(Default)]
struct Gathered {
    parts: BTreeMap<u64, u64>,
    arriving: u64,
    newest: i64,
    shape: Option<Shape>,
    about: Option<Value>,
    record: Option<Completion>,
}

/// Every upload under `temp_dir`, oldest activity first. `max_age` is the cleanup age that
/// makes an upload abandoned.
pub fn list(temp_dir: &Path, max_age: Duration) -> io::Result<Vec<InFlight>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let cutoff = now.saturating_sub(max_age.as_secs() as i64);
    let root = fsutil::open_root(temp_dir)?;
    let mut found = Vec::new();
    for name in fsutil::list(root.as_fd())? {
        if name.starts_with("~user-") {
            let Some(scope) = open_dir(root.as_fd(), &name)? else {
                continue;
            };
            for upload in fsutil::list(scope.as_fd())? {
                let folder = format!("{name}/{upload}");
                read_upload(scope.as_fd(), &upload, &folder, cutoff, &mut found)?;
            }
        } else {
            read_upload(root.as_fd(), &name, &name, cutoff, &mut found)?;
        }
    }
    found.sort_by(|a, b| {
        (a.last_activity, &a.folder, &a.file).cmp(&(b.last_activity, &b.folder, &b.file))
    });
    Ok(found)
}

/// Counts what each chunked upload's staging file in `upload_dir` holds: its parts are
/// appended there as they arrive, and removed (src/store/incremental.rs). Best effort: an
/// upload dir that cannot be read adds nothing.
pub fn add_staged(entries: &mut [InFlight], upload_dir: &Path) {
    let Ok(root) = fsutil::open_root(upload_dir) else {
        return;
    };
    let Ok(folder) = fsutil::open_dir(root.as_fd(), super::complete::STAGING_DIR) else {
        return;
    };
    for entry in entries.iter_mut() {
        if entry.client.is_none() || entry.state == State::Complete {
            continue;
        }
        let user = entry.user.as_deref().unwrap_or("");
        let name = super::layout::staging_name(&[user, &entry.identifier, &entry.file]);
        let Ok(Some(found)) = fsutil::identity(folder.as_fd(), &name) else {
            continue;
        };
        entry.stored = entry.stored.saturating_add(found.size);
        if let Some(chunk) = entry.chunk_size.filter(|&chunk| chunk > 0) {
            entry.parts += found.size / chunk;
        }
        if entry.state == State::Receiving && entry.total == Some(entry.stored) {
            entry.state = State::Unpublished;
        }
    }
}

/// A real directory (not a symlink) that still exists, opened.
fn open_dir(parent: BorrowedFd<'_>, name: &str) -> io::Result<Option<std::os::fd::OwnedFd>> {
    match fsutil::open_dir(parent, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(
                    rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP
                )
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// (mtime, size, type) of an entry, `None` once it is gone.
fn stat(dir: BorrowedFd<'_>, name: &str) -> io::Result<Option<(i64, u64, FileType)>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some((
            st.st_mtime,
            st.st_size as u64,
            FileType::from_raw_mode(st.st_mode),
        ))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads a small file; `None` once it is gone.
fn read_small(dir: BorrowedFd<'_>, name: &str, limit: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let file = match fsutil::open_read(dir, name) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// `<key>.part<N>` as (key, N).
fn part_of(name: &str) -> Option<(&str, u64)> {
    let (key, digits) = name.rsplit_once(".part")?;
    let number = crate::protocol::params::parse_decimal(digits)?;
    (!key.is_empty()).then_some((key, number))
}

fn read_upload(
    parent: BorrowedFd<'_>,
    name: &str,
    folder: &str,
    cutoff: i64,
    found: &mut Vec<InFlight>,
) -> io::Result<()> {
    let Some(dir) = open_dir(parent, name)? else {
        return Ok(());
    };
    let dir_mtime = stat(parent, name)?.map_or(0, |(t, _, _)| t);
    let entries = match fsutil::list(dir.as_fd()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for (prefix, client) in [("~tus-", "tus"), ("~range-", "blueimp")] {
        if let Some(id) = name.strip_prefix(prefix) {
            let range = read_range(dir.as_fd(), &entries, client, id, folder, cutoff)?;
            found.extend(range);
            return Ok(());
        }
    }
    let mut uploads: BTreeMap<String, Gathered> = BTreeMap::new();
    for entry in entries {
        let Some((mtime, size, FileType::RegularFile)) = stat(dir.as_fd(), &entry)? else {
            continue;
        };
        fn gather<'a>(
            uploads: &'a mut BTreeMap<String, Gathered>,
            key: &str,
            mtime: i64,
        ) -> &'a mut Gathered {
            let gathered = uploads.entry(key.to_string()).or_default();
            gathered.newest = gathered.newest.max(mtime);
            gathered
        }
        if let Some(hidden) = entry.strip_prefix('.') {
            // `.<key>.part<N>.<pid>-<seq>.tmp`: a chunk arriving now. Other hidden files are
            // records being written.
            let chunk = hidden
                .strip_suffix(".tmp")
                .and_then(|rest| rest.rsplit_once('.'))
                .and_then(|(part, _tag)| part_of(part));
            if let Some((key, _)) = chunk {
                gather(&mut uploads, key, mtime).arriving += 1;
            }
        } else if let Some(key) = entry.strip_suffix(".geometry") {
            let text = read_small(dir.as_fd(), &entry, 64 * 1024)?.unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let mut lines = text.lines();
            let gathered = gather(&mut uploads, key, mtime);
            gathered.shape = lines.next().and_then(Shape::parse);
            gathered.about = lines.next().and_then(|l| serde_json::from_str(l).ok());
        } else if let Some(key) = entry.strip_suffix(".complete") {
            let text = read_small(dir.as_fd(), &entry, 64 * 1024)?.unwrap_or_default();
            gather(&mut uploads, key, mtime).record = serde_json::from_slice(&text).ok();
        } else if let Some((key, number)) = part_of(&entry) {
            gather(&mut uploads, key, mtime).parts.insert(number, size);
        }
    }
    for (key, gathered) in uploads {
        found.push(describe(name, folder, &key, gathered, dir_mtime, cutoff));
    }
    Ok(())
}

/// A byte-range upload's folder (range.rs): its state, its data file (whose size is the bytes
/// stored), its completion record, and bodies held aside while they arrive. `None` without a
/// readable state (being created, or removed meanwhile).
fn read_range(
    dir: BorrowedFd<'_>,
    entries: &[String],
    client: &str,
    id: &str,
    folder: &str,
    cutoff: i64,
) -> io::Result<Option<InFlight>> {
    let Some(text) = read_small(dir, "state", 64 * 1024)? else {
        return Ok(None);
    };
    let Ok(state) = serde_json::from_slice::<Value>(&text) else {
        return Ok(None);
    };
    let mut newest = 0;
    let mut data = None;
    let mut arriving = 0;
    for entry in entries {
        let Some((mtime, size, FileType::RegularFile)) = stat(dir, entry)? else {
            continue;
        };
        newest = newest.max(mtime);
        match entry.as_str() {
            "data" => data = Some(size),
            _ if entry.starts_with(".stage.") => arriving += 1,
            _ => {}
        }
    }
    let record: Option<Completion> =
        read_small(dir, "complete", 64 * 1024)?.and_then(|text| serde_json::from_slice(&text).ok());
    let text = |field: &str| state.get(field).and_then(Value::as_str).map(str::to_string);
    let total = state.get("length").and_then(Value::as_u64);
    let file = text("filename").unwrap_or_default();
    let stored = record.as_ref().map(|r| r.size).or(data).unwrap_or(0);
    let state_now = if record.is_some() {
        State::Complete
    } else if newest < cutoff {
        State::Abandoned
    } else if Some(stored) == total {
        State::Unpublished
    } else {
        State::Receiving
    };
    Ok(Some(InFlight {
        state: state_now,
        client: Some(client.to_string()),
        // blueimp names an upload only by its file name; the folder holds a hash of it.
        identifier: match client {
            "tus" => id.to_string(),
            _ => file.clone(),
        },
        user: text("user"),
        file,
        relative_path: text("relative_path"),
        stored,
        total,
        chunk_size: None,
        parts: u64::from(data.is_some()),
        arriving,
        last_activity: newest,
        last_activity_text: rfc3339(newest),
        published: record.map(|r| r.file),
        folder: folder.to_string(),
    }))
}

fn describe(
    dir_name: &str,
    folder: &str,
    key: &str,
    gathered: Gathered,
    dir_mtime: i64,
    cutoff: i64,
) -> InFlight {
    let about = |field: &str| {
        gathered
            .about
            .as_ref()
            .and_then(|a| a.get(field))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let newest = gathered.newest.max(dir_mtime);
    let total = gathered
        .shape
        .and_then(|s| s.total_size)
        .or(gathered.record.as_ref().map(|r| r.size));
    let state = if gathered.record.is_some() {
        State::Complete
    } else if newest < cutoff {
        State::Abandoned
    } else if gathered
        .shape
        .is_some_and(|shape| covered(&gathered.parts, shape))
    {
        State::Unpublished
    } else {
        State::Receiving
    };
    InFlight {
        state,
        client: about("client"),
        identifier: about("identifier").unwrap_or_else(|| dir_name.to_string()),
        user: about("user"),
        // A plain name is its own key (the PHP script's layout); a hashed one says nothing.
        file: about("filename").unwrap_or_else(|| key.to_string()),
        relative_path: about("relativePath"),
        stored: gathered.parts.values().sum(),
        total,
        chunk_size: gathered.shape.map(|s| s.chunk_size),
        parts: gathered.parts.len() as u64,
        arriving: gathered.arriving,
        last_activity: newest,
        last_activity_text: rfc3339(newest),
        published: gathered.record.map(|r| r.file),
        folder: folder.to_string(),
    }
}

/// Parts 1..=n cover exactly the total, every part but the last a whole chunk.
fn covered(parts: &BTreeMap<u64, u64>, shape: Shape) -> bool {
    let mut offset = 0u64;
    for (expected, (&number, &size)) in (1u64..).zip(parts.iter()) {
        if number != expected {
            return false;
        }
        offset = offset.saturating_add(size);
        if Some(offset) == shape.total_size {
            return true;
        }
        if size != shape.chunk_size {
            return false;
        }
    }
    shape.total_size == Some(0) && parts.contains_key(&1)
}

fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| seconds.to_string())
}

/// One line per upload for a terminal: control characters in names are escaped, so a
/// hostile file name cannot drive the terminal.
pub fn render_line(entry: &InFlight) -> String {
    let total = entry.total.map_or("?".into(), |t| t.to_string());
    let show = |text: &str| -> String {
        text.chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect()
    };
    columns([
        entry.state.as_str(),
        entry.client.as_deref().unwrap_or("?"),
        &entry.stored.to_string(),
        &total,
        &entry.parts.to_string(),
        &entry.arriving.to_string(),
        &entry.last_activity_text,
        &show(entry.user.as_deref().unwrap_or("-")),
        &show(&entry.identifier),
        &show(entry.relative_path.as_deref().unwrap_or(&entry.file)),
    ])
}

/// The header above [`render_line`]'s lines.
pub fn header() -> String {
    columns([
        "STATE",
        "CLIENT",
        "STORED",
        "TOTAL",
        "PARTS",
        "NOW",
        "LAST ACTIVITY",
        "USER",
        "IDENTIFIER",
        "FILE",
    ])
}

fn columns(c: [&str; 10]) -> String {
    format!(
        "{:<11} {:<10} {:>12}/{:<12} {:>5} {:>3} {:<20} {:<12} {} {}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn coverage() {
        let shape = Shape {
            chunk_size: 10,
            total_size: Some(25),
        };
        let parts = |sizes: &[(u64, u64)]| sizes.iter().copied().collect::<BTreeMap<_, _>>();
        assert!(covered(&parts(&[(1, 10), (2, 15)]), shape));
        assert!(!covered(&parts(&[(1, 10)]), shape));
        assert!(!covered(&parts(&[(2, 15), (3, 10)]), shape));
        assert!(!covered(&parts(&[(1, 9), (2, 16)]), shape));
    }

    #[test]
    fn byte_range_uploads_say_what_they_are() {
        let root = tempfile::tempdir().unwrap();
        let temp = root.path();
        let tus = temp.join(format!("~tus-{}", "a".repeat(32)));
        fs::create_dir(&tus).unwrap();
        fs::write(
            tus.join("state"),
            r#"{"length":10,"filename":"t.bin","relative_path":null,"metadata":"filename dC5iaW4=","user":"ann"}"#,
        )
        .unwrap();
        fs::write(tus.join("data"), [0u8; 4]).unwrap();
        fs::write(tus.join(".stage.1-2.tmp"), [0u8; 1]).unwrap();
        let blueimp = temp.join("~user-x").join("~range-0123");
        fs::create_dir_all(&blueimp).unwrap();
        fs::write(
            blueimp.join("state"),
            r#"{"length":3,"filename":"b.txt","relative_path":null,"metadata":null,"user":null}"#,
        )
        .unwrap();
        fs::write(blueimp.join("data"), [0u8; 3]).unwrap();
        let all = list(temp, Duration::from_secs(3600)).unwrap();
        let t = all.iter().find(|e| e.file == "t.bin").unwrap();
        assert_eq!(
            (
                t.state,
                t.client.as_deref(),
                t.user.as_deref(),
                t.stored,
                t.total
            ),
            (State::Receiving, Some("tus"), Some("ann"), 4, Some(10))
        );
        assert_eq!((t.identifier.len(), t.arriving), (32, 1));
        let b = all.iter().find(|e| e.file == "b.txt").unwrap();
        assert_eq!(
            (b.state, b.client.as_deref(), b.identifier.as_str()),
            (State::Unpublished, Some("blueimp"), "b.txt")
        );
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn every_state_and_the_php_layout() {
        let root = tempfile::tempdir().unwrap();
        let temp = root.path();
        // receiving, recorded by this program
        let dir = temp.join("25-atxt");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("a.txt.part1"), [0u8; 10]).unwrap();
        fs::write(dir.join(".a.txt.part2.77-1.tmp"), [0u8; 3]).unwrap();
        fs::write(
            dir.join("a.txt.geometry"),
            "10 25\n{\"client\":\"flow\",\"identifier\":\"25-atxt\",\"filename\":\"a.txt\",\"relativePath\":\"d/a.txt\",\"user\":null}\n",
        )
        .unwrap();
        // the PHP script's parts: no geometry
        let php = temp.join("5-btxt");
        fs::create_dir(&php).unwrap();
        fs::write(php.join("b.txt.part1"), [0u8; 5]).unwrap();
        // complete, with the parts gone
        let done = temp.join("~user-abc").join("~id-123");
        fs::create_dir_all(&done).unwrap();
        fs::write(
            done.join("~name-9.complete"),
            "{\"file\":\"c (1).txt\",\"size\":4}",
        )
        .unwrap();
        // unpublished: all parts, no record
        let stuck = temp.join("20-dtxt");
        fs::create_dir(&stuck).unwrap();
        fs::write(stuck.join("d.txt.part1"), [0u8; 20]).unwrap();
        fs::write(stuck.join("d.txt.geometry"), "10 20\n").unwrap();

        let all = list(temp, Duration::from_secs(3600)).unwrap();
        let by_file = |file: &str| all.iter().find(|e| e.file == file).unwrap().clone();
        let a = by_file("a.txt");
        assert_eq!(
            (
                a.state,
                a.client.as_deref(),
                a.stored,
                a.total,
                a.parts,
                a.arriving
            ),
            (State::Receiving, Some("flow"), 10, Some(25), 1, 1)
        );
        assert_eq!(a.relative_path.as_deref(), Some("d/a.txt"));
        let b = by_file("b.txt");
        assert_eq!(
            (b.state, b.client.clone(), b.total),
            (State::Receiving, None, None)
        );
        let c = by_file("~name-9");
        assert_eq!(c.state, State::Complete);
        assert_eq!(c.published.as_deref(), Some("c (1).txt"));
        assert_eq!(c.folder, "~user-abc/~id-123");
        assert_eq!(by_file("d.txt").state, State::Unpublished);
        assert!(render_line(&a).starts_with("receiving   flow"));

        // everything is old once the cleanup age is zero, except what is complete
        let old = list(temp, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let old_again = list(temp, Duration::ZERO).unwrap();
        assert!(old_again
            .iter()
            .all(|e| e.state == State::Abandoned || e.state == State::Complete));
        assert_eq!(old.len(), 4);
    }
}
