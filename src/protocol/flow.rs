//! flow.js: the resumable.js fields under a `flow` prefix (`flowChunkNumber`, ...); its test
//! request may also come as a multipart POST with no file part (`testMethod: 'POST'`).

use super::named_fields::PrefixedFields;

pub static FLOW: PrefixedFields = PrefixedFields {
    dialect: "flow",
    prefix: "flow",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::params::Params;
    use crate::protocol::ChunkDialect;
    use crate::request::Head;

    #[test]
    fn flow_names() {
        let q = "flowChunkNumber=1&flowChunkSize=10&flowCurrentChunkSize=4&flowTotalSize=4&flowIdentifier=4-a&flowFilename=a.txt&flowRelativePath=d%2Fa.txt&flowTotalChunks=1";
        let params = Params::from_query(q);
        assert!(FLOW.recognizes(&params, &Head::default()));
        let chunk = FLOW.chunk(&params, &Head::default()).unwrap();
        assert_eq!(chunk.relative_path.as_deref(), Some("d/a.txt"));
        assert!(chunk.geometry.is_last());
    }
}
