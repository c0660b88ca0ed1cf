//! FastCGI 1.0 record framing: the 8-byte header, content, padding, and the fixed-size bodies.

use std::fmt;

pub const VERSION_1: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// The most content one record can carry (a 16-bit length).
pub const MAX_CONTENT: usize = u16::MAX as usize;

pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

pub const ROLE_RESPONDER: u16 = 1;
pub const FLAG_KEEP_CONN: u8 = 1;

pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const OVERLOADED: u8 = 2;
pub const UNKNOWN_ROLE: u8 = 3;

/// A decoded record header. Content and padding follow it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

/// Why a header or record body cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Anything but version 1: the rest of the stream cannot be trusted to be framed the same way.
    Version(u8),
    /// A fixed-size body (BEGIN_REQUEST) shorter than the specification requires.
    ShortBody { kind: u8, length: usize },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Version(v) => write!(f, "unsupported FastCGI version {v}"),
            RecordError::ShortBody { kind, length } => {
                write!(f, "record type {kind} has a {length}-byte body, too short")
            }
        }
    }
}

impl std::error::Error for RecordError {}

impl Header {
    pub fn new(kind: u8, request_id: u16, content_length: u16, padding_length: u8) -> Header {
        Header {
            kind,
            request_id,
            content_length,
            padding_length,
        }
    }

    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, RecordError> {
        if bytes[0] != VERSION_1 {
            return Err(RecordError::Version(bytes[0]));
        }
        Ok(Header {
            kind: bytes[1],
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_length: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_length: bytes[6],
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [
            VERSION_1,
            self.kind,
            id[0],
            id[1],
            len[0],
            len[1],
            self.padding_length,
            0,
        ]
    }

    /// Management records (GET_VALUES and future types) carry request id 0.
    pub fn is_management(&self) -> bool {
        self.request_id == 0
    }
}

/// Padding that brings `content` up to a multiple of 8, as the specification recommends.
pub fn padding_for(content: usize) -> u8 {
    ((8 - content % 8) % 8) as u8
}

/// Appends one complete record (header, content, padding) to `out`.
/// `content` longer than a record can carry is a caller bug; it is cut to MAX_CONTENT rather
/// than allowed to corrupt the framing.
pub fn push_record(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let content = &content[..content.len().min(MAX_CONTENT)];
    let padding = padding_for(content.len());
    out.extend_from_slice(&Header::new(kind, request_id, content.len() as u16, padding).encode());
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0u8, usize::from(padding)));
}

/// The BEGIN_REQUEST body: which role, and whether the server keeps the connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginRequest {
    pub role: u16,
    pub keep_conn: bool,
}

impl BeginRequest {
    pub fn parse(content: &[u8]) -> Result<BeginRequest, RecordError> {
        // The body is 8 bytes; only the first 3 carry meaning, but a shorter body means the
        // sender does not speak this protocol.
        if content.len() < 8 {
            return Err(RecordError::ShortBody {
                kind: BEGIN_REQUEST,
                length: content.len(),
            });
        }
        Ok(BeginRequest {
            role: u16::from_be_bytes([content[0], content[1]]),
            keep_conn: content[2] & FLAG_KEEP_CONN != 0,
        })
    }

    pub fn encode(&self) -> [u8; 8] {
        let role = self.role.to_be_bytes();
        [role[0], role[1], u8::from(self.keep_conn), 0, 0, 0, 0, 0]
    }
}

/// Appends an END_REQUEST record.
pub fn push_end_request(out: &mut Vec<u8>, request_id: u16, app_status: u32, protocol_status: u8) {
    let status = app_status.to_be_bytes();
    let body = [
        status[0],
        status[1],
        status[2],
        status[3],
        protocol_status,
        0,
        0,
        0,
    ];
    push_record(out, END_REQUEST, request_id, &body);
}

/// Appends an UNKNOWN_TYPE record naming the type this side does not understand.
pub fn push_unknown_type(out: &mut Vec<u8>, kind: u8) {
    push_record(out, UNKNOWN_TYPE, 0, &[kind, 0, 0, 0, 0, 0, 0, 0]);
}

/// Splits a byte string into the records a sender would write, for tests and the fuzz target:
/// each item is a header and its content, or the error that stops the stream.
pub fn split_records(mut bytes: &[u8]) -> Vec<Result<(Header, &[u8]), RecordError>> {
    let mut records = Vec::new();
    while bytes.len() >= HEADER_LEN {
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&bytes[..HEADER_LEN]);
        let header = match Header::parse(&head) {
            Ok(header) => header,
            Err(e) => {
                records.push(Err(e));
                break;
            }
        };
        let content_end = HEADER_LEN + usize::from(header.content_length);
        let record_end = content_end + usize::from(header.padding_length);
        if bytes.len() < record_end {
            break;
        }
        records.push(Ok((header, &bytes[HEADER_LEN..content_end])));
        bytes = &bytes[record_end..];
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_are_padded_to_eight() {
        let mut out = Vec::new();
        push_record(&mut out, STDOUT, 1, b"hello");
        assert_eq!(out.len(), 16);
        assert_eq!(&out[..8], &[1, STDOUT, 0, 1, 0, 5, 3, 0]);
        assert_eq!(&out[8..13], b"hello");
    }

    #[test]
    fn bad_version_and_short_begin_are_errors() {
        assert_eq!(
            Header::parse(&[2, 1, 0, 1, 0, 8, 0, 0]),
            Err(RecordError::Version(2))
        );
        assert!(matches!(
            BeginRequest::parse(&[0, 1]),
            Err(RecordError::ShortBody { length: 2, .. })
        ));
    }

    proptest! {
        #[test]
        fn header_round_trips(kind: u8, id: u16, len: u16, pad: u8) {
            let header = Header::new(kind, id, len, pad);
            prop_assert_eq!(Header::parse(&header.encode()), Ok(header));
        }

        #[test]
        fn any_header_bytes_parse_or_fail_cleanly(bytes: [u8; 8]) {
            match Header::parse(&bytes) {
                Ok(h) => prop_assert_eq!(&h.encode()[..7], &bytes[..7]),
                Err(RecordError::Version(v)) => prop_assert_eq!(v, bytes[0]),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }

        #[test]
        fn pushed_records_split_back(
            contents in proptest::collection::vec(
                (any::<u8>(), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..300)),
                0..8,
            )
        ) {
            let mut wire = Vec::new();
            for (kind, id, content) in &contents {
                push_record(&mut wire, *kind, *id, content);
            }
            prop_assert_eq!(wire.len() % 8, 0);
            let split = split_records(&wire);
            prop_assert_eq!(split.len(), contents.len());
            for (got, (kind, id, content)) in split.into_iter().zip(&contents) {
                let (header, body) = got.expect("valid record");
                prop_assert_eq!(header.kind, *kind);
                prop_assert_eq!(header.request_id, *id);
                prop_assert_eq!(body, &content[..]);
            }
        }

        #[test]
        fn split_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = split_records(&bytes);
        }

        #[test]
        fn begin_request_round_trips(role: u16, keep_conn: bool) {
            let begin = BeginRequest { role, keep_conn };
            prop_assert_eq!(BeginRequest::parse(&begin.encode()), Ok(begin));
        }
    }
}
