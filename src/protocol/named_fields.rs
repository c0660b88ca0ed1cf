//! The field set the resumable.js family shares (identifier, file name, relative path, chunk
//! number, chunk size, this chunk's size, total size, chunk count) under one prefix, read into a
//! [`ChunkRequest`]. resumable.js, flow.js and simple-uploader differ only in the prefix.

use super::geometry::Geometry;
use super::params::{ParamError, Params};
use super::{ChunkDialect, ChunkRequest};
use crate::request::Head;

/// A dialect whose fields are `<prefix>ChunkNumber`, `<prefix>Identifier`, ... (or
/// `chunkNumber`, `identifier`, ... with an empty prefix).
pub struct PrefixedFields {
    pub dialect: &'static str,
    pub prefix: &'static str,
}

impl PrefixedFields {
    /// The wire name of a field: `resumable` + `ChunkNumber`, or `chunkNumber` unprefixed.
    pub fn field(&self, field: &str) -> String {
        if !self.prefix.is_empty() {
            return format!("{}{field}", self.prefix);
        }
        let mut chars = field.chars();
        match chars.next() {
            Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
            None => String::new(),
        }
    }
}

impl ChunkDialect for PrefixedFields {
    fn name(&self) -> &'static str {
        self.dialect
    }

    fn recognizes(&self, params: &Params, _head: &Head) -> bool {
        params.contains(&self.field("Identifier"))
    }

    fn chunk(&self, params: &Params, _head: &Head) -> Result<ChunkRequest, ParamError> {
        let text = |field: &str, required: bool| params.text(&self.field(field), required);
        let number = |field: &str, required: bool| params.number(&self.field(field), required);
        let identifier = text("Identifier", true)?.unwrap_or_default();
        let filename = text("Filename", true)?.unwrap_or_default();
        let relative_path = text("RelativePath", false)?;
        let chunk_number = number("ChunkNumber", true)?.unwrap_or_default();
        let chunk_size = number("ChunkSize", true)?.unwrap_or_default();
        let current = number("CurrentChunkSize", true)?.unwrap_or_default();
        let total_size = number("TotalSize", true)?.unwrap_or_default();
        let total_chunks = number("TotalChunks", false)?;
        let geometry = Geometry::check(chunk_number, chunk_size, current, total_size, total_chunks)
            .map_err(ParamError::Geometry)?;
        Ok(ChunkRequest {
            dialect: self.dialect,
            identifier,
            filename,
            relative_path,
            geometry,
            total_chunks,
            resumed: false,
        })
    }
}
