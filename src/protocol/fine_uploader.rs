//! Fine Uploader 5.16, traditional endpoint: `qquuid`, `qqfilename`, `qqtotalfilesize` on every
//! request; a part adds `qqpartindex` (0-based), `qqpartbyteoffset`, `qqchunksize` (this part's
//! own length), `qqtotalparts`, and `qqresume=true` on the first request of a resumed upload;
//! the file part is `qqfile` (named `blob` for a part). A file of one part comes unchunked: the
//! three fields and the file. The chunking success request (`chunking.success.endpoint`, sent
//! here too) is a url-encoded POST of `qquuid`, `qqfilename`, `qqtotalfilesize`,
//! `qqtotalparts` and no file.
//!
//! Fine Uploader reads every answer as JSON and needs `"success": true` (the common answer has
//! it); errors carry `"error"` and `"preventRetry"`, and `"reset": true` makes it send the file
//! again from part 0 — the answer when its parts are gone.

use serde_json::json;

use super::geometry::Geometry;
use super::params::{ParamError, Params};
use super::{ChunkDialect, ChunkRequest, FinishRequest, GeometryError, Intent};
use crate::error::Error;
use crate::request::{Head, Response};

pub struct FineUploader;

pub static FINE_UPLOADER: FineUploader = FineUploader;

impl ChunkDialect for FineUploader {
    fn name(&self) -> &'static str {
        "fineuploader"
    }

    fn recognizes(&self, params: &Params, _head: &Head) -> bool {
        params.contains("qquuid")
    }

    fn intent(&self, params: &Params, _head: &Head) -> Result<Intent, ParamError> {
        let number = |name: &str| params.number(name, true).map(Option::unwrap_or_default);
        let identifier = params.text("qquuid", true)?.unwrap_or_default();
        let filename = match params.text("qqfilename", false)? {
            Some(name) => name,
            None => params
                .file_name()
                .ok_or_else(|| ParamError::Missing("qqfilename".into()))?
                .to_string(),
        };
        let total_size = number("qqtotalfilesize")?;
        let geometry = if params.contains("qqpartindex") {
            part_geometry(params, total_size)?
        } else if params.contains("qqtotalparts") {
            return Ok(Intent::Finish(FinishRequest {
                dialect: self.name(),
                identifier,
                filename,
                total_size,
                total_chunks: number("qqtotalparts")?,
            }));
        } else {
            // Unchunked: the whole file in one request.
            Geometry::check(1, total_size.max(1), total_size, total_size, Some(1))
                .map_err(ParamError::Geometry)?
        };
        Ok(Intent::Chunk(ChunkRequest {
            dialect: self.name(),
            identifier,
            filename,
            relative_path: None,
            total_chunks: Some(geometry.total_size.div_ceil(geometry.chunk_size).max(1)),
            geometry,
            resumed: params.get("qqresume")? == Some("true"),
        }))
    }

    fn refuse(&self, error: &Error) -> Response {
        let Error::StartOver { missing, .. } = error else {
            return error.to_response();
        };
        let mut body = json!({
            "success": false,
            "error": error.public_reason(),
            "preventRetry": false,
            "reset": true,
        });
        if !missing.is_empty() {
            // In the client's numbering: qqpartindex.
            body["missingParts"] = missing.iter().map(|n| n.saturating_sub(1)).collect();
        }
        Response::json(error.status(), &body).with_header("Cache-Control", "no-store")
    }
}

/// A part's place: Fine Uploader sends no chunk size, but the first part of several is one, and
/// part i (i > 0) starts at i times it.
fn part_geometry(params: &Params, total_size: u64) -> Result<Geometry, ParamError> {
    let number = |name: &str| params.number(name, true).map(Option::unwrap_or_default);
    let index = number("qqpartindex")?;
    let offset = number("qqpartbyteoffset")?;
    let size = number("qqchunksize")?;
    let count = number("qqtotalparts")?;
    let chunk_size = match index {
        0 if count == 1 => size.max(1),
        0 => size,
        _ if offset % index != 0 => {
            return Err(ParamError::Geometry(GeometryError::OffsetContradicts {
                offset,
                number: index.saturating_add(1),
            }))
        }
        _ => offset / index,
    };
    let geometry =
        Geometry::check_ceil(index.saturating_add(1), chunk_size, size, total_size, count)
            .map_err(ParamError::Geometry)?;
    geometry
        .check_offset(offset)
        .map_err(ParamError::Geometry)?;
    Ok(geometry)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The middle part of a 5,000,000-byte file in parts of 2,000,000.
    const PART: &str = "qqpartindex=1&qqpartbyteoffset=2000000&qqchunksize=2000000&qqtotalparts=3&qqtotalfilesize=5000000&qqfilename=r%C3%A9sum%C3%A9.pdf&qquuid=d9a0c7a6-3b1e-4c55-8a9e-2b1f0c3d4e5f";

    fn read(query: &str) -> Result<Intent, ParamError> {
        FINE_UPLOADER.intent(&Params::from_query(query), &Head::default())
    }

    fn chunk(query: &str) -> ChunkRequest {
        match read(query) {
            Ok(Intent::Chunk(chunk)) => chunk,
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn parts_first_middle_and_last() {
        let middle = chunk(PART);
        assert_eq!(middle.filename, "résumé.pdf");
        assert_eq!(middle.geometry.number, 2);
        assert_eq!(middle.geometry.chunk_size, 2_000_000);
        assert_eq!(middle.geometry.start, 2_000_000);
        assert!(!middle.resumed);
        let first = chunk(&PART.replace("qqpartindex=1", "qqpartindex=0").replace(
            "qqpartbyteoffset=2000000",
            "qqpartbyteoffset=0&qqresume=true",
        ));
        assert_eq!(first.geometry.chunk_size, 2_000_000);
        assert!(first.resumed);
        let last = chunk(
            &PART
                .replace("qqpartindex=1", "qqpartindex=2")
                .replace("qqpartbyteoffset=2000000", "qqpartbyteoffset=4000000")
                .replace("qqchunksize=2000000", "qqchunksize=1000000"),
        );
        assert_eq!(last.geometry.chunk_size, 2_000_000);
        assert!(last.geometry.is_last());
    }

    #[test]
    fn unchunked_files_and_the_success_request() {
        let whole = chunk("qquuid=u&qqfilename=a.txt&qqtotalfilesize=12");
        assert_eq!(whole.geometry.size, 12);
        assert!(whole.geometry.is_last());
        let empty = chunk("qquuid=u&qqfilename=e.txt&qqtotalfilesize=0");
        assert_eq!((empty.geometry.size, empty.geometry.chunk_size), (0, 1));
        let done = read("qquuid=u&qqfilename=a.txt&qqtotalfilesize=12&qqtotalparts=3").unwrap();
        assert_eq!(
            done,
            Intent::Finish(FinishRequest {
                dialect: "fineuploader",
                identifier: "u".into(),
                filename: "a.txt".into(),
                total_size: 12,
                total_chunks: 3,
            })
        );
    }

    #[test]
    fn lies_are_refused() {
        for (from, to) in [
            ("qqpartbyteoffset=2000000", "qqpartbyteoffset=2000001"),
            ("qqchunksize=2000000", "qqchunksize=1999999"),
            ("qqtotalparts=3", "qqtotalparts=4"),
            ("qqtotalparts=3", "qqtotalparts=2"),
            ("qqtotalfilesize=5000000", "qqtotalfilesize=3000000"),
            ("qqpartindex=1", "qqpartindex=18446744073709551615"),
            ("qqpartindex=1", "qqpartindex=3"),
            ("qquuid=d9a0c7a6-3b1e-4c55-8a9e-2b1f0c3d4e5f", "qquuid="),
            ("qqfilename=r%C3%A9sum%C3%A9.pdf&", ""),
        ] {
            let query = PART.replace(from, to);
            assert!(read(&query).is_err(), "{query}");
        }
    }

    #[test]
    fn a_lost_upload_is_answered_with_reset_and_the_missing_part_indexes() {
        let response = FINE_UPLOADER.refuse(&Error::StartOver {
            reason: "parts are missing".into(),
            missing: vec![1, 3],
        });
        assert_eq!(response.status, 409);
        let body: serde_json::Value = serde_json::from_slice(response.bytes()).unwrap();
        assert_eq!(body["reset"], true);
        assert_eq!(body["success"], false);
        assert_eq!(body["missingParts"], json!([0, 2]));
    }
}
