//! resumable.js: `resumableChunkNumber` (1-based), `resumableIdentifier`, ... in the query
//! string (test GET and octet POST) or as multipart fields beside the `file` part.

use super::named_fields::PrefixedFields;

pub static RESUMABLE: PrefixedFields = PrefixedFields {
    dialect: "resumable",
    prefix: "resumable",
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::params::{ParamError, Params};
    use crate::protocol::{ChunkDialect, ChunkRequest};
    use crate::request::Head;

    const QUERY: &str = "resumableChunkNumber=2&resumableChunkSize=10&resumableCurrentChunkSize=15&resumableTotalSize=25&resumableType=text%2Fplain&resumableIdentifier=25-myfile1txt&resumableFilename=my%20file%20(1).txt&resumableRelativePath=my%20file%20(1).txt&resumableTotalChunks=2";

    fn read(query: &str) -> Result<ChunkRequest, ParamError> {
        RESUMABLE.chunk(&Params::from_query(query), &Head::default())
    }

    #[test]
    fn the_documented_query() {
        let r = read(QUERY).unwrap();
        assert_eq!(r.identifier, "25-myfile1txt");
        assert_eq!(r.filename, "my file (1).txt");
        assert_eq!(r.geometry.start, 10);
        assert_eq!(r.geometry.size, 15);
        assert_eq!(r.total_chunks, Some(2));
    }

    #[test]
    fn numbers_are_strict() {
        for bad in crate::protocol::params::NOT_DECIMAL {
            let q = QUERY.replace(
                "resumableTotalSize=25",
                &format!("resumableTotalSize={bad}"),
            );
            assert!(
                matches!(read(&q), Err(ParamError::NotANumber { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_empty_and_conflicting_values() {
        let q = QUERY.replace("&resumableFilename=my%20file%20(1).txt", "");
        assert_eq!(
            read(&q).unwrap_err(),
            ParamError::Missing("resumableFilename".into())
        );
        let q = QUERY.replace("resumableIdentifier=25-myfile1txt", "resumableIdentifier=");
        assert_eq!(
            read(&q).unwrap_err(),
            ParamError::Empty("resumableIdentifier".into())
        );
        let mut params = Params::from_query(QUERY);
        params.push("resumableChunkNumber".into(), "2".into());
        assert!(RESUMABLE.chunk(&params, &Head::default()).is_ok());
        params.push("resumableChunkNumber".into(), "1".into());
        assert!(matches!(
            RESUMABLE.chunk(&params, &Head::default()),
            Err(ParamError::Conflicting { .. })
        ));
    }
}
