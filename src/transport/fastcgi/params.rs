//! FastCGI name-value pairs (PARAMS, GET_VALUES): 1- and 4-byte lengths, names and values kept
//! as bytes so one non-UTF-8 value never costs any other param.

use std::fmt;

/// The most PARAMS bytes one request may send. Real servers send a few KiB; the cap keeps a
/// hostile stream from growing memory without end.
pub const MAX_PARAMS_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairsError {
    /// A length, or the name or value it announces, runs past the end of the stream.
    Truncated { offset: usize },
}

impl fmt::Display for PairsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairsError::Truncated { offset } => {
                write!(f, "name-value pair truncated at byte {offset}")
            }
        }
    }
}

impl std::error::Error for PairsError {}

/// The params of one request, in the order they were sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<Pair>,
}

impl Params {
    pub fn parse(bytes: &[u8]) -> Result<Params, PairsError> {
        Ok(Params {
            pairs: parse_pairs(bytes)?,
        })
    }

    /// The value of an exactly named param (the last one if a name repeats, as nginx's later
    /// `fastcgi_param` lines override earlier ones in a PHP backend).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// A param as text; invalid UTF-8 is replaced rather than dropping the param.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
    }
}

fn read_length(bytes: &[u8], at: &mut usize) -> Result<usize, PairsError> {
    let first = *bytes
        .get(*at)
        .ok_or(PairsError::Truncated { offset: *at })?;
    if first & 0x80 == 0 {
        *at += 1;
        return Ok(usize::from(first));
    }
    let four = bytes
        .get(*at..*at + 4)
        .ok_or(PairsError::Truncated { offset: *at })?;
    *at += 4;
    let length = u32::from_be_bytes([four[0] & 0x7f, four[1], four[2], four[3]]);
    Ok(length as usize)
}

/// A decoded name-value pair, bytes as sent.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Decodes a complete name-value stream. Lengths are checked against the bytes present before
/// anything is allocated, so a 2 GiB length in a short record costs nothing.
pub fn parse_pairs(bytes: &[u8]) -> Result<Vec<Pair>, PairsError> {
    let mut pairs = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let start = at;
        let name_len = read_length(bytes, &mut at)?;
        let value_len = read_length(bytes, &mut at)?;
        let name_end = at
            .checked_add(name_len)
            .filter(|&end| end <= bytes.len())
            .ok_or(PairsError::Truncated { offset: start })?;
        let value_end = name_end
            .checked_add(value_len)
            .filter(|&end| end <= bytes.len())
            .ok_or(PairsError::Truncated { offset: start })?;
        pairs.push((
            bytes[at..name_end].to_vec(),
            bytes[name_end..value_end].to_vec(),
        ));
        at = value_end;
    }
    Ok(pairs)
}

fn push_length(out: &mut Vec<u8>, length: usize) {
    if length < 0x80 {
        out.push(length as u8);
    } else {
        // 31 bits is the protocol's limit; longer input is a caller bug and is clamped.
        let length = length.min(0x7fff_ffff) as u32;
        out.extend_from_slice(&(length | 0x8000_0000).to_be_bytes());
    }
}

/// Encodes one pair (used for GET_VALUES_RESULT, and by tests to build PARAMS).
pub fn push_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_length(out, name.len());
    push_length(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_and_four_byte_lengths() {
        let mut wire = Vec::new();
        push_pair(&mut wire, b"QUERY_STRING", &[b'a'; 200]);
        assert_eq!(wire[0], 12);
        assert_eq!(&wire[1..5], &[0x80, 0, 0, 200]);
        let pairs = parse_pairs(&wire).unwrap();
        assert_eq!(pairs, vec![(b"QUERY_STRING".to_vec(), vec![b'a'; 200])]);
    }

    #[test]
    fn non_utf8_value_keeps_the_others() {
        let mut wire = Vec::new();
        push_pair(&mut wire, b"REQUEST_URI", b"/close\xffx");
        push_pair(&mut wire, b"QUERY_STRING", b"a=1");
        let params = Params::parse(&wire).unwrap();
        assert_eq!(params.len(), 2);
        assert_eq!(params.get("QUERY_STRING"), Some(&b"a=1"[..]));
        assert_eq!(params.get("REQUEST_URI"), Some(&b"/close\xffx"[..]));
    }

    #[test]
    fn oversized_length_is_an_error_not_an_allocation() {
        let wire = [0xff, 0xff, 0xff, 0xff, 0x01, b'x'];
        assert!(parse_pairs(&wire).is_err());
        assert!(parse_pairs(&[0x85]).is_err());
        assert!(parse_pairs(&[3, 0, b'a']).is_err());
    }

    proptest! {
        #[test]
        fn pairs_round_trip(pairs in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..300),
             proptest::collection::vec(any::<u8>(), 0..300)),
            0..10,
        )) {
            let mut wire = Vec::new();
            for (n, v) in &pairs {
                push_pair(&mut wire, n, v);
            }
            prop_assert_eq!(parse_pairs(&wire), Ok(pairs));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            if let Ok(pairs) = parse_pairs(&bytes) {
                // Whatever parsed must re-encode to at most the input (4-byte lengths may have
                // been used for short values).
                let mut wire = Vec::new();
                for (n, v) in &pairs {
                    push_pair(&mut wire, n, v);
                }
                prop_assert!(wire.len() <= bytes.len());
            }
        }

        #[test]
        fn truncating_a_stream_is_an_error_or_fewer_pairs(
            pairs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 1..200),
                 proptest::collection::vec(any::<u8>(), 0..200)),
                1..5,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = Vec::new();
            for (n, v) in &pairs {
                push_pair(&mut wire, n, v);
            }
            let cut = cut.index(wire.len());
            if let Ok(parsed) = parse_pairs(&wire[..cut]) {
                prop_assert!(parsed.len() < pairs.len());
                prop_assert_eq!(&parsed[..], &pairs[..parsed.len()]);
            }
        }
    }
}
