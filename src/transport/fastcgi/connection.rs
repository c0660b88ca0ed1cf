//! One FastCGI connection: requests one after another, STDIN streamed to the application as
//! `Read`, STDOUT framed into records, and every protocol fault confined to this connection.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::time::Duration;

use super::params::{self, PairsError, Params, MAX_PARAMS_BYTES};
use super::record::{self, BeginRequest, Header, RecordError, HEADER_LEN, MAX_CONTENT};
use crate::request::Response;

/// The application: params and a streamed body in, a response out.
pub type App<'a> = dyn Fn(&Params, &mut (dyn Read + Send)) -> Response + Sync + 'a;

/// What GET_VALUES answers: the real capacity of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_conns: usize,
    pub max_reqs: usize,
}

/// Why a connection was closed. Each ends only this connection.
#[derive(Debug)]
pub enum ConnError {
    Io(io::Error),
    Record(RecordError),
    Pairs(PairsError),
    /// The peer closed the connection in the middle of a record or a request.
    Eof,
    ParamsTooLarge,
    Protocol(&'static str),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "i/o error: {e}"),
            ConnError::Record(e) => write!(f, "bad record: {e}"),
            ConnError::Pairs(e) => write!(f, "bad params: {e}"),
            ConnError::Eof => write!(f, "connection closed mid-request"),
            ConnError::ParamsTooLarge => {
                write!(f, "params exceed {MAX_PARAMS_BYTES} bytes")
            }
            ConnError::Protocol(what) => write!(f, "protocol violation: {what}"),
        }
    }
}

impl std::error::Error for ConnError {}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> ConnError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ConnError::Eof
        } else {
            ConnError::Io(e)
        }
    }
}

impl From<RecordError> for ConnError {
    fn from(e: RecordError) -> ConnError {
        ConnError::Record(e)
    }
}

impl From<PairsError> for ConnError {
    fn from(e: PairsError) -> ConnError {
        ConnError::Pairs(e)
    }
}

/// How a connection's service ended without a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The peer closed, or the last request asked for no keep-alive, or the stop hook said so.
    Done,
    /// A request was answered before its body was all read: the caller closes its side and
    /// discards what still comes in, a lingering close, so the peer reads the whole answer.
    BodyLeft,
}

/// Where STDIN of the active request stands.
#[derive(Default)]
struct Stdin {
    request_id: u16,
    /// Content bytes left in the current STDIN record, then its padding.
    left: usize,
    padding: u8,
    /// The current record's padding is still to be skipped (its content was all returned).
    skip_padding: bool,
    done: bool,
    aborted: bool,
    /// Set when the connection failed under the handler's read; the handler only saw an
    /// `io::Error`, the connection loop needs the cause.
    broken: Option<ConnError>,
}

pub struct Connection<'a, R: Read, W: Write> {
    input: BufReader<R>,
    output: W,
    limits: Limits,
    /// Called before waiting for the next request; false means stop (shutdown or idle too long).
    ready_for_next: &'a (dyn Fn() -> bool + Sync),
    /// Whether input arrives within the given time; `None`: reads never wait on a peer (input
    /// held in memory).
    input_within: Option<&'a (dyn Fn(Duration) -> bool + Sync)>,
    stdin: Stdin,
}

/// How long the rest of a body answered early may pause before the connection is given up
/// rather than read to the end of that body.
const DRAIN_PAUSE: Duration = Duration::from_millis(100);

/// Records to the application are read through a buffer of this size. nginx sends STDIN in
/// records of 8 KiB or less, so one `recv` into this buffer brings in dozens of them, and
/// [`Connection::read_stdin`] hands the handler all that arrived in one call: a chunk is
/// written to disk in 256 KiB writes instead of one per record (BENCHMARKS.md, FastCGI).
const INPUT_BUFFER: usize = 256 * 1024;

impl<'a, R: Read + Send, W: Write + Send> Connection<'a, R, W> {
    pub fn new(
        input: R,
        output: W,
        limits: Limits,
        ready_for_next: &'a (dyn Fn() -> bool + Sync),
    ) -> Self {
        Connection {
            input: BufReader::with_capacity(INPUT_BUFFER, input),
            output,
            limits,
            ready_for_next,
            input_within: None,
            stdin: Stdin::default(),
        }
    }

    /// Tells the connection how to learn whether the peer's input arrives within a time, so
    /// that a body answered early is not waited for when the peer stopped sending it.
    pub fn with_input_within(
        mut self,
        input_within: &'a (dyn Fn(Duration) -> bool + Sync),
    ) -> Self {
        self.input_within = Some(input_within);
        self
    }

    /// Serves requests until the peer closes, a request without keep-conn ends, the stop hook
    /// says so, an answer leaves its body unread, or a fault closes the connection (returned as
    /// the error).
    pub fn serve(&mut self, app: &App<'_>) -> Result<Ending, ConnError> {
        loop {
            if self.input.buffer().is_empty() && !(self.ready_for_next)() {
                return Ok(Ending::Done);
            }
            let Some(header) = self.read_header()? else {
                return Ok(Ending::Done);
            };
            if header.is_management() {
                let content = self.read_content(&header)?;
                self.management(&header, &content)?;
                continue;
            }
            if header.kind != record::BEGIN_REQUEST {
                // Spec 3.3: records for a request that is not active are ignored (this also
                // skips what is left of an aborted request).
                self.skip_content(&header)?;
                continue;
            }
            let content = self.read_content(&header)?;
            let begin = BeginRequest::parse(&content)?;
            let id = header.request_id;
            if begin.role != record::ROLE_RESPONDER {
                self.end_request(id, 0, record::UNKNOWN_ROLE)?;
            } else if self.request(id, app)? == Ending::BodyLeft {
                return Ok(Ending::BodyLeft);
            }
            if !begin.keep_conn {
                return Ok(Ending::Done);
            }
        }
    }

    fn request(&mut self, id: u16, app: &App<'_>) -> Result<Ending, ConnError> {
        let mut params_bytes = Vec::new();
        loop {
            let header = self.read_header()?.ok_or(ConnError::Eof)?;
            if header.is_management() {
                let content = self.read_content(&header)?;
                self.management(&header, &content)?;
                continue;
            }
            if header.request_id != id {
                self.other_request(&header)?;
                continue;
            }
            match header.kind {
                record::PARAMS if header.content_length == 0 => {
                    self.skip_content(&header)?;
                    break;
                }
                record::PARAMS => {
                    if params_bytes.len() + usize::from(header.content_length) > MAX_PARAMS_BYTES {
                        return Err(ConnError::ParamsTooLarge);
                    }
                    let content = self.read_content(&header)?;
                    params_bytes.extend_from_slice(&content);
                }
                record::ABORT_REQUEST => {
                    self.skip_content(&header)?;
                    self.end_request(id, 0, record::REQUEST_COMPLETE)?;
                    return Ok(Ending::Done);
                }
                record::BEGIN_REQUEST => {
                    return Err(ConnError::Protocol(
                        "BEGIN_REQUEST for the active request id",
                    ))
                }
                record::STDIN => return Err(ConnError::Protocol("STDIN before the end of PARAMS")),
                _ => self.skip_content(&header)?,
            }
        }
        let params = Params::parse(&params_bytes)?;
        drop(params_bytes);

        self.stdin = Stdin {
            request_id: id,
            ..Stdin::default()
        };
        let response = app(&params, &mut StdinReader { conn: self });
        if let Some(error) = self.stdin.broken.take() {
            return Err(error);
        }
        if self.stdin.aborted {
            // The server no longer wants the output; END_REQUEST is all it waits for.
            self.end_request(id, 1, record::REQUEST_COMPLETE)?;
            return Ok(Ending::Done);
        }
        self.write_response(id, response)?;
        // The next BEGIN_REQUEST sits behind what the handler left unread, which is skipped
        // while it keeps coming. A web server that streams bodies (nginx with
        // fastcgi_request_buffering off) stops sending one that was answered early and waits
        // for the connection to end: waiting for the rest would hold both until a timeout, so
        // when it pauses the caller ends the connection instead.
        let mut sink = [0u8; 8192];
        while !self.stdin.done {
            if self.input.buffer().is_empty()
                && self
                    .input_within
                    .is_some_and(|arrives| !arrives(DRAIN_PAUSE))
            {
                return Ok(Ending::BodyLeft);
            }
            self.read_stdin(&mut sink)?;
        }
        Ok(Ending::Done)
    }

    /// A record for another request id while one is active: a new request is refused with
    /// CANT_MPX_CONN, anything else is ignored.
    fn other_request(&mut self, header: &Header) -> Result<(), ConnError> {
        self.skip_content(header)?;
        if header.kind == record::BEGIN_REQUEST {
            self.end_request(header.request_id, 0, record::CANT_MPX_CONN)?;
        }
        Ok(())
    }

    fn management(&mut self, header: &Header, content: &[u8]) -> Result<(), ConnError> {
        let mut out = Vec::new();
        if header.kind == record::GET_VALUES {
            // A malformed query gets an empty answer rather than a closed connection.
            let asked = params::parse_pairs(content).unwrap_or_default();
            let mut body = Vec::new();
            for (name, _) in asked {
                let value = match name.as_slice() {
                    b"FCGI_MAX_CONNS" => self.limits.max_conns.to_string(),
                    b"FCGI_MAX_REQS" => self.limits.max_reqs.to_string(),
                    b"FCGI_MPXS_CONNS" => "0".to_string(),
                    _ => continue,
                };
                params::push_pair(&mut body, &name, value.as_bytes());
            }
            record::push_record(&mut out, record::GET_VALUES_RESULT, 0, &body);
        } else {
            record::push_unknown_type(&mut out, header.kind);
        }
        self.output.write_all(&out)?;
        self.output.flush()?;
        Ok(())
    }

    fn end_request(&mut self, id: u16, app_status: u32, status: u8) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(16);
        record::push_end_request(&mut out, id, app_status, status);
        self.output.write_all(&out)?;
        self.output.flush()?;
        Ok(())
    }

    fn write_response(&mut self, id: u16, response: Response) -> Result<(), ConnError> {
        let mut stdout = StdoutWriter {
            id,
            output: &mut self.output,
            content: Vec::with_capacity(4096),
            wire: Vec::with_capacity(4096),
        };
        response.write_cgi(&mut stdout)?;
        stdout.finish()?;
        Ok(())
    }

    /// Reads one header; `None` on a clean end of stream before its first byte.
    fn read_header(&mut self) -> Result<Option<Header>, ConnError> {
        let mut bytes = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match self.input.read(&mut bytes[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(ConnError::Eof),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(Header::parse(&bytes)?))
    }

    /// Reads a record's content (at most 64 KiB) and skips its padding.
    fn read_content(&mut self, header: &Header) -> Result<Vec<u8>, ConnError> {
        let mut content = vec![0u8; usize::from(header.content_length)];
        self.input.read_exact(&mut content)?;
        self.skip(usize::from(header.padding_length))?;
        Ok(content)
    }

    fn skip_content(&mut self, header: &Header) -> Result<(), ConnError> {
        self.skip(usize::from(header.content_length) + usize::from(header.padding_length))
    }

    fn skip(&mut self, mut count: usize) -> Result<(), ConnError> {
        while count > 0 {
            let available = match self.input.fill_buf() {
                Ok([]) => return Err(ConnError::Eof),
                Ok(buffer) => buffer.len(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            let n = available.min(count);
            self.input.consume(n);
            count -= n;
        }
        Ok(())
    }

    /// The body of the active request, as the handler reads. Fills `buf` with the content of
    /// as many STDIN records as it can without blocking once it holds some bytes: it waits
    /// (one socket read) only while it has nothing to return.
    fn read_stdin(&mut self, buf: &mut [u8]) -> Result<usize, ConnError> {
        let mut filled = 0;
        loop {
            if self.stdin.done || filled == buf.len() {
                return Ok(filled);
            }
            if self.stdin.left > 0 {
                if filled > 0 && self.input.buffer().is_empty() {
                    return Ok(filled);
                }
                let want = (buf.len() - filled).min(self.stdin.left);
                let n = match self.input.read(&mut buf[filled..filled + want]) {
                    Ok(0) => return Err(ConnError::Eof),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                filled += n;
                self.stdin.left -= n;
                if self.stdin.left == 0 && usize::from(self.stdin.padding) > 0 {
                    if filled > 0 && self.input.buffer().len() < usize::from(self.stdin.padding) {
                        // Skipped on the next call rather than waiting for it now.
                        self.stdin.skip_padding = true;
                        return Ok(filled);
                    }
                    self.skip(usize::from(self.stdin.padding))?;
                }
                continue;
            }
            if self.stdin.skip_padding {
                self.stdin.skip_padding = false;
                self.skip(usize::from(self.stdin.padding))?;
                continue;
            }
            // The next header: read it only when it is already here, or when there is nothing
            // to return yet.
            if filled > 0 && self.input.buffer().len() < HEADER_LEN {
                return Ok(filled);
            }
            let header = self.read_header()?.ok_or(ConnError::Eof)?;
            if header.is_management() {
                let content = self.read_content(&header)?;
                self.management(&header, &content)?;
                continue;
            }
            if header.request_id != self.stdin.request_id {
                self.other_request(&header)?;
                continue;
            }
            match header.kind {
                record::STDIN if header.content_length == 0 => {
                    self.skip(usize::from(header.padding_length))?;
                    self.stdin.done = true;
                }
                record::STDIN => {
                    self.stdin.left = usize::from(header.content_length);
                    self.stdin.padding = header.padding_length;
                }
                record::ABORT_REQUEST => {
                    self.skip_content(&header)?;
                    self.stdin.aborted = true;
                    self.stdin.done = true;
                }
                record::BEGIN_REQUEST => {
                    return Err(ConnError::Protocol(
                        "BEGIN_REQUEST for the active request id",
                    ))
                }
                _ => self.skip_content(&header)?,
            }
        }
    }
}

/// The handler's view of STDIN. A fault is kept on the connection and reported to the handler
/// as an `io::Error`, which makes the store discard the partial chunk.
struct StdinReader<'c, 'a, R: Read, W: Write> {
    conn: &'c mut Connection<'a, R, W>,
}

impl<R: Read + Send, W: Write + Send> Read for StdinReader<'_, '_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(error) = &self.conn.stdin.broken {
            return Err(io::Error::other(error.to_string()));
        }
        if self.conn.stdin.aborted {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "FastCGI ABORT_REQUEST",
            ));
        }
        match self.conn.read_stdin(buf) {
            Ok(n) if n == 0 && self.conn.stdin.aborted => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "FastCGI ABORT_REQUEST",
            )),
            Ok(n) => Ok(n),
            Err(error) => {
                let reported = match &error {
                    ConnError::Eof => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "FastCGI connection closed mid-body",
                    ),
                    other => io::Error::other(other.to_string()),
                };
                self.conn.stdin.broken = Some(error);
                Err(reported)
            }
        }
    }
}

/// STDOUT as records of at most 64 KiB, written in as few `write` calls as possible: a small
/// response, its end-of-stream record and END_REQUEST leave in one.
struct StdoutWriter<'o, W: Write> {
    id: u16,
    output: &'o mut W,
    content: Vec<u8>,
    wire: Vec<u8>,
}

impl<W: Write> StdoutWriter<'_, W> {
    fn seal(&mut self) {
        if !self.content.is_empty() {
            record::push_record(&mut self.wire, record::STDOUT, self.id, &self.content);
            self.content.clear();
        }
    }

    fn finish(mut self) -> io::Result<()> {
        self.seal();
        record::push_record(&mut self.wire, record::STDOUT, self.id, &[]);
        record::push_end_request(&mut self.wire, self.id, 0, record::REQUEST_COMPLETE);
        self.output.write_all(&self.wire)?;
        self.output.flush()
    }
}

impl<W: Write> Write for StdoutWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX_CONTENT - self.content.len();
        let n = buf.len().min(room);
        self.content.extend_from_slice(&buf[..n]);
        if self.content.len() == MAX_CONTENT {
            self.seal();
            if self.wire.len() >= MAX_CONTENT {
                self.output.write_all(&self.wire)?;
                self.wire.clear();
            }
        }
        Ok(n)
    }

    /// Records leave at `finish`; flushing earlier would only split the response into more
    /// writes.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::fastcgi::params::push_pair;
    use crate::transport::fastcgi::record::{push_record, split_records};
    use proptest::prelude::*;
    use std::io::Cursor;

    fn echo(params: &Params, body: &mut (dyn Read + Send)) -> Response {
        let mut received = Vec::new();
        let outcome = body.read_to_end(&mut received);
        received.extend_from_slice(params.get("QUERY_STRING").unwrap_or(b""));
        Response::new(if outcome.is_ok() { 200 } else { 400 }).with_bytes(received)
    }

    fn run(input: &[u8]) -> (Result<Ending, ConnError>, Vec<u8>) {
        let ready = || true;
        let limits = Limits {
            max_conns: 2,
            max_reqs: 2,
        };
        let mut output = Vec::new();
        let result = Connection::new(Cursor::new(input), &mut output, limits, &ready).serve(&echo);
        (result, output)
    }

    fn request(id: u16, body: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        push_record(
            &mut wire,
            record::BEGIN_REQUEST,
            id,
            &[0, 1, 1, 0, 0, 0, 0, 0],
        );
        let mut pairs = Vec::new();
        push_pair(&mut pairs, b"QUERY_STRING", b"q");
        push_record(&mut wire, record::PARAMS, id, &pairs);
        push_record(&mut wire, record::PARAMS, id, &[]);
        for piece in body.chunks(1000) {
            push_record(&mut wire, record::STDIN, id, piece);
        }
        push_record(&mut wire, record::STDIN, id, &[]);
        wire
    }

    fn refuse_unread(_: &Params, _: &mut (dyn Read + Send)) -> Response {
        Response::new(415).with_bytes(b"refused".to_vec())
    }

    /// A body answered before it was read is skipped while it keeps coming (the next request
    /// is behind it), and given up when the peer pauses: the caller then closes the connection.
    #[test]
    fn a_body_answered_early_is_skipped_while_it_comes_and_given_up_when_it_pauses() {
        let limits = Limits {
            max_conns: 1,
            max_reqs: 1,
        };
        let ready = || true;
        let mut wire = request(1, &[b'a'; 5000]);
        wire.extend(request(2, b"second"));
        let mut output = Vec::new();
        let ending =
            Connection::new(Cursor::new(&wire), &mut output, limits, &ready).serve(&refuse_unread);
        assert_eq!(ending.unwrap(), Ending::Done);
        let answered = |output: &[u8]| {
            split_records(output)
                .iter()
                .filter(|r| matches!(r, Ok((header, _)) if header.kind == record::END_REQUEST))
                .count()
        };
        assert_eq!(answered(&output), 2, "both requests answered");

        let paused = |_: Duration| false;
        let mut output = Vec::new();
        // Only the first records of the body arrived; the peer waits for the answer.
        let partial = &wire[..wire.len() / 4];
        let ending = Connection::new(Cursor::new(partial), &mut output, limits, &ready)
            .with_input_within(&paused)
            .serve(&refuse_unread);
        assert_eq!(ending.unwrap(), Ending::BodyLeft);
        assert_eq!(answered(&output), 1, "the answer went out before giving up");
    }

    #[test]
    fn two_requests_on_one_connection() {
        let mut wire = request(1, &[b'a'; 2500]);
        wire.extend(request(2, b"second"));
        let (result, output) = run(&wire);
        assert!(result.is_ok());
        let records: Vec<_> = split_records(&output)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let stdout = |id: u16| -> Vec<u8> {
            records
                .iter()
                .filter(|(h, _)| h.kind == record::STDOUT && h.request_id == id)
                .flat_map(|(_, c)| c.to_vec())
                .collect()
        };
        assert!(stdout(1).ends_with(&[&[b'a'; 2500][..], b"q"].concat()));
        assert!(stdout(2).ends_with(b"secondq"));
        let ends = records
            .iter()
            .filter(|(h, _)| h.kind == record::END_REQUEST)
            .count();
        assert_eq!(ends, 2);
    }

    #[test]
    fn a_response_over_64_kib_is_split_into_records() {
        let (result, output) = run(&request(1, &[7u8; 150_000]));
        assert!(result.is_ok());
        let sizes: Vec<usize> = split_records(&output)
            .into_iter()
            .map(Result::unwrap)
            .filter(|(h, _)| h.kind == record::STDOUT)
            .map(|(_, c)| c.len())
            .collect();
        assert!(sizes.iter().all(|&n| n <= MAX_CONTENT));
        assert_eq!(sizes.last(), Some(&0));
        assert!(sizes.len() >= 4, "{sizes:?}");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics_and_output_is_well_framed(
            input in proptest::collection::vec(any::<u8>(), 0..4096),
            prefix in any::<bool>(),
        ) {
            // Half the cases start with a valid request so the fuzzing reaches deeper states.
            let mut wire = if prefix { request(1, b"body") } else { Vec::new() };
            wire.extend(input);
            let (_, output) = run(&wire);
            let framed: usize = split_records(&output)
                .iter()
                .map(|r| match r {
                    Ok((h, _)) => 8 + usize::from(h.content_length) + usize::from(h.padding_length),
                    Err(_) => usize::MAX,
                })
                .sum();
            prop_assert_eq!(framed, output.len());
        }
    }
}
