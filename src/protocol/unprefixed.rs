//! simple-uploader.js (a flow.js fork) and other clients that send the resumable.js fields
//! with no prefix: `chunkNumber`, `identifier`, ...

use super::named_fields::PrefixedFields;

pub static UNPREFIXED: PrefixedFields = PrefixedFields {
    dialect: "unprefixed",
    prefix: "",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::params::Params;
    use crate::protocol::ChunkDialect;
    use crate::request::Head;

    #[test]
    fn an_empty_relative_path_is_absent() {
        let q = "chunkNumber=1&chunkSize=10&currentChunkSize=5&totalSize=5&identifier=x&filename=a.txt&relativePath=&totalChunks=1";
        let chunk = UNPREFIXED
            .chunk(&Params::from_query(q), &Head::default())
            .unwrap();
        assert_eq!(chunk.relative_path, None);
    }
}
