//! Counted chunks (Dropzone, Plupload): chunks known by their place among the file's chunks,
//! whose sizes are the bodies' own. Under the upload lock each is checked against the shape
//! the upload's earlier chunks recorded (chunk size, and the total once the last chunk came),
//! so that chunks stored by different processes always fit together.

use super::complete::{self, Completion};
use super::incremental::{self, Geometry};
use super::lock::UploadLock;
use super::shape::{self, Shape};
use super::FsStore;
use super::{
    layout, Approve, PendingChunk, Place, Progress, Result, StoreError, UploadDir, UploadKey,
};

/// Counts a counted chunk and completes the upload when it was the last one missing.
pub(super) fn commit(
    store: &FsStore,
    key: &UploadKey,
    pending: PendingChunk,
    place: Place,
    approve: &Approve<'_>,
) -> Result<Progress> {
    let dir = pending
        .dir
        .try_clone()
        .map_err(StoreError::io("reopening the upload's temp directory"))?;
    let lock = UploadLock::acquire(&dir).map_err(StoreError::io("locking the upload"))?;
    let upload = UploadDir {
        dir,
        file_key: layout::file_key(&key.filename),
    };
    let size = pending.received;
    let begins = place.first_begins && place.number == 1;
    if let Some(done) = complete::load_record(&upload)? {
        if !begins || repeats(&done, place, size) {
            // A late duplicate: nothing is recreated, and a cleanup a crash interrupted is
            // finished.
            drop(pending);
            complete::clean_finished(store, &upload, key)?;
            return Ok(Progress::AlreadyComplete(done));
        }
    }
    let mut recorded = shape::recorded(&upload)?;
    let changed_chunk_size = matches!(
        (place.chunk_size, recorded),
        (Some(declared), Some(shape)) if declared != shape.chunk_size
    );
    if begins || changed_chunk_size {
        // A new upload under this key, or the site now chunks this file differently: parts
        // stored before cannot be combined with this one.
        complete::discard(store, &upload, key)?;
        recorded = None;
    }
    let shape = resolve(place, size, recorded)?;
    pending.publish()?;
    if recorded != Some(shape) {
        shape::record_shape(&upload, key, &shape)?;
    }
    let Some(total_size) = shape.total_size else {
        // The parts whose place is known so far join the staging file now.
        let geometry = Geometry {
            chunk_size: shape.chunk_size,
            total_size: None,
        };
        let staging = complete::staging_name(key);
        incremental::advance(store, &upload, &lock, &staging, geometry, None)?;
        return Ok(Progress::Incomplete);
    };
    let key = UploadKey {
        total_size,
        chunk_size: shape.chunk_size,
        ..key.clone()
    };
    complete::complete_locked(store, &upload, &key, approve, &lock, None)
}

/// Whether chunk 1 of a client whose first chunk begins a new upload is the retry of a
/// single-chunk file already completed (its answer was lost), not a new file: same size.
fn repeats(done: &Completion, place: Place, size: u64) -> bool {
    place.count == 1 && done.size == size
}

/// The upload's shape with this chunk in it, or why the chunk does not fit.
fn resolve(place: Place, size: u64, recorded: Option<Shape>) -> Result<Shape> {
    let Place { number, count, .. } = place;
    let last = number == count;
    if place.first_begins && number > 1 && recorded.is_none() {
        // Chunk 1 would set it aside when it comes: refused now rather than lost then.
        return Err(StoreError::Contradicts(format!(
            "chunk {number} of {count} arrived before the file's first chunk (chunks must be \
             sent in order from the first)"
        )));
    }
    let chunk_size = match place.chunk_size.or(recorded.map(|s| s.chunk_size)) {
        Some(chunk_size) => chunk_size,
        // Every chunk before the last is exactly the chunk size.
        None if !last => size,
        None if count == 1 => size.max(1),
        None => {
            return Err(StoreError::Contradicts(format!(
                "chunk {number} of {count} is the last, but no earlier chunk of the file is \
                 stored to tell its chunk size"
            )))
        }
    };
    if !last && (size != chunk_size || size == 0) {
        return Err(StoreError::Contradicts(format!(
            "chunk {number} of {count} carries {size} bytes, but every chunk before the last \
             carries the chunk size, {chunk_size}"
        )));
    }
    if last && (size > chunk_size || (size == 0 && count > 1)) {
        return Err(StoreError::Contradicts(format!(
            "the last chunk ({number} of {count}) carries {size} bytes: it must carry 1 to \
             {chunk_size}"
        )));
    }
    let before_last = (count - 1).checked_mul(chunk_size);
    let recorded_total = recorded.and_then(|s| s.total_size);
    let total_size = if last {
        let total = before_last
            .and_then(|bytes| bytes.checked_add(size))
            .ok_or_else(|| {
                StoreError::OverLimit(format!("{count} chunks of {chunk_size} bytes overflow"))
            })?;
        if recorded_total.is_some_and(|recorded| recorded != total) {
            return Err(StoreError::Contradicts(format!(
                "the last chunk makes a file of {total} bytes, but a last chunk of another \
                 size was stored before"
            )));
        }
        Some(total)
    } else {
        recorded_total
    };
    // The smallest file these chunks can make must be allowed.
    let smallest = total_size.or(before_last.map(|bytes| bytes.saturating_add(1)));
    match smallest {
        Some(bytes) if bytes <= place.max_total => {}
        _ => {
            return Err(StoreError::OverLimit(format!(
                "{count} chunks of {chunk_size} bytes make a file larger than the maximum of {} \
                 bytes",
                place.max_total
            )))
        }
    }
    Ok(Shape {
        chunk_size,
        total_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(number: u64, count: u64, chunk_size: Option<u64>) -> Place {
        Place {
            number,
            count,
            chunk_size,
            first_begins: chunk_size.is_none(),
            max_total: 1000,
        }
    }

    fn shape(chunk_size: u64, total_size: Option<u64>) -> Option<Shape> {
        Some(Shape {
            chunk_size,
            total_size,
        })
    }

    #[test]
    fn the_first_chunk_tells_the_chunk_size_and_the_last_the_total() {
        assert_eq!(resolve(place(1, 3, None), 10, None).ok(), shape(10, None));
        assert_eq!(
            resolve(place(2, 3, None), 10, shape(10, None)).ok(),
            shape(10, None)
        );
        assert_eq!(
            resolve(place(3, 3, None), 4, shape(10, None)).ok(),
            shape(10, Some(24))
        );
        // A single chunk is the whole file, an empty one included.
        assert_eq!(resolve(place(1, 1, None), 7, None).ok(), shape(7, Some(7)));
        assert_eq!(resolve(place(1, 1, None), 0, None).ok(), shape(1, Some(0)));
        // Declared: any order.
        assert_eq!(
            resolve(place(3, 3, Some(10)), 10, None).ok(),
            shape(10, Some(30))
        );
    }

    #[test]
    fn chunks_that_do_not_fit_are_refused() {
        let refused = |p: Place, size: u64, recorded: Option<Shape>| {
            assert!(
                matches!(resolve(p, size, recorded), Err(StoreError::Contradicts(_))),
                "{p:?} {size} {recorded:?}"
            )
        };
        refused(place(2, 3, None), 9, shape(10, None));
        refused(place(3, 3, None), 11, shape(10, None));
        refused(place(3, 3, None), 0, shape(10, None));
        refused(place(3, 3, None), 5, None);
        refused(place(2, 3, None), 10, None);
        refused(place(1, 3, None), 0, None);
        refused(place(3, 3, None), 5, shape(10, Some(24)));
        refused(place(1, 1, Some(10)), 11, None);
    }

    #[test]
    fn files_over_the_limit_are_refused_as_soon_as_they_must_be() {
        let over = |p: Place, size: u64, recorded: Option<Shape>| {
            matches!(resolve(p, size, recorded), Err(StoreError::OverLimit(_)))
        };
        // 101 chunks of 10 bytes: at least 1001 bytes.
        assert!(over(place(1, 101, None), 10, None));
        assert!(!over(place(1, 100, None), 10, None));
        assert!(over(place(3, 3, Some(u64::MAX)), 1, None));
        assert!(over(place(2, u64::MAX, Some(2)), 2, None));
        assert!(over(place(1, 1, None), 1001, None));
    }
}
