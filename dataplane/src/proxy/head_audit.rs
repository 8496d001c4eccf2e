//! What hyper hides from [`super::framing`]: a request with both `Transfer-Encoding` and
//! `Content-Length` (hyper drops the length) and identical duplicate `Content-Length`s (hyper
//! keeps one). Both must be refused (400, connection closed) like any ambiguous framing, so
//! [`HeadAudit`] wraps each downstream connection below hyper and reads the request heads in the
//! bytes hyper reads.
//!
//! It follows HTTP/1.1 message boundaries (head up to the empty line, then a `Content-Length`
//! body skipped in O(1) or a chunked body by its chunk-size lines, then the next pipelined
//! request) and looks only at line starts found with `memchr`; it never copies the payload, only
//! up to [`CARRY`] bytes of a line split across reads. The first request to refuse is noted in
//! the connection's [`AuditVerdict`], which the service consults as hyper hands it requests in
//! order. Auditing stops for good (one branch per read after that) on HTTP/2 (its preface), once
//! a request was refused (the connection closes after it), once the service switched protocols
//! (a tunnel's bytes are not HTTP), and when the bytes stop making sense as HTTP/1.1: hyper then
//! refuses them itself.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes of a line kept across reads: enough for any sane `Content-Length` or
/// `Transfer-Encoding` line, and for the names of all others.
const CARRY: usize = 128;

/// Why the auditor refuses a request (what hyper would have hidden from `framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Refusal {
    SeveralLengths = 1,
    LengthAndChunked = 2,
    /// A framing header's line split across reads and longer than [`CARRY`]: it cannot be
    /// checked, and no client sends one.
    FramingLineTooLong = 3,
}

impl Refusal {
    /// The reason in the 400's body and the log line; the first two say what `framing` says.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::SeveralLengths => "more than one Content-Length",
            Refusal::LengthAndChunked => "both Transfer-Encoding and Content-Length",
            Refusal::FramingLineTooLong => "a Content-Length or Transfer-Encoding line too long",
        }
    }

    fn from_u8(code: u8) -> Option<Refusal> {
        match code {
            1 => Some(Refusal::SeveralLengths),
            2 => Some(Refusal::LengthAndChunked),
            3 => Some(Refusal::FramingLineTooLong),
            _ => None,
        }
    }
}

/// What the auditor of one connection found, shared with that connection's service.
///
/// Reads and service calls of one connection run in its one task, so relaxed atomics suffice
/// (they only make the state `Sync` for hyper's bounds).
#[derive(Debug, Default)]
pub struct AuditVerdict {
    /// Requests the service was given on this connection.
    served: AtomicU64,
    /// The 1-based number of the first refused request; 0 while none is.
    refused: AtomicU64,
    reason: AtomicU8,
    /// The service switched protocols: what follows is a tunnel, not HTTP.
    tunnelled: AtomicBool,
    /// The connection started with the HTTP/2 preface.
    http2: AtomicBool,
}

impl AuditVerdict {
    /// Counts one HTTP/1.1 request handed to the service (call them in hyper's order) and says
    /// whether it must be refused. Two loads and a store: no read-modify-write needed, the
    /// service is the only writer of the count.
    pub fn next_request(&self) -> Option<&'static str> {
        let number = self.served.load(Ordering::Relaxed) + 1;
        self.served.store(number, Ordering::Relaxed);
        if self.refused.load(Ordering::Relaxed) != number {
            return None;
        }
        Refusal::from_u8(self.reason.load(Ordering::Relaxed)).map(Refusal::reason)
    }

    /// The connection now carries a tunnel (101, or a successful CONNECT): stop auditing.
    pub fn tunnelled(&self) {
        self.tunnelled.store(true, Ordering::Relaxed);
    }

    /// The connection speaks HTTP/2 (known from its first bytes).
    pub fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Relaxed)
    }

    /// The service was given an HTTP/1.1 request: the connection is HTTP/1.1 for good.
    pub fn is_http1(&self) -> bool {
        self.served.load(Ordering::Relaxed) > 0
    }

    fn refuse(&self, number: u64, refusal: Refusal) {
        self.reason.store(refusal as u8, Ordering::Relaxed);
        self.refused.store(number, Ordering::Relaxed);
    }
}

/// A downstream connection whose reads are audited; writes pass through untouched.
pub struct HeadAudit<I> {
    io: I,
    scanner: Scanner,
    verdict: Arc<AuditVerdict>,
}

impl<I> HeadAudit<I> {
    pub fn new(io: I, verdict: Arc<AuditVerdict>) -> HeadAudit<I> {
        HeadAudit {
            io,
            scanner: Scanner::default(),
            verdict,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for HeadAudit<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if this.scanner.is_auditing() {
            if this.verdict.tunnelled.load(Ordering::Relaxed) {
                this.scanner.stop();
            } else if let Some((number, refusal)) = this.scanner.feed(&buf.filled()[before..]) {
                this.verdict.refuse(number, refusal);
            } else if this.scanner.machine.http2 {
                this.verdict.http2.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for HeadAudit<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where the scanner is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line (empty lines before it are skipped, as httparse does).
    RequestLine,
    Headers,
    /// Bytes of a `Content-Length` body still to come.
    Body(u64),
    ChunkSize,
    /// Bytes of a chunk still to come, then the CRLF ending it.
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    /// Not auditing any more.
    Off,
}

/// The framing headers of the head being read.
#[derive(Debug, Default, Clone, Copy)]
struct Head {
    lengths: u8,
    /// The value of the (last) `Content-Length`, if it was digits.
    length: Option<u64>,
    transfer_encodings: u8,
    /// The last `Transfer-Encoding` line was exactly `chunked`.
    chunked: bool,
    /// A framing header's line too long to read whole.
    too_long: bool,
    upgrade: bool,
}

/// The part of a line that arrived in an earlier read.
#[derive(Debug)]
struct Carry {
    bytes: [u8; CARRY],
    len: usize,
    /// The line was longer than [`CARRY`]: only its start is kept.
    truncated: bool,
}

impl Default for Carry {
    fn default() -> Self {
        Carry {
            bytes: [0; CARRY],
            len: 0,
            truncated: false,
        }
    }
}

impl Carry {
    fn push(&mut self, bytes: &[u8]) {
        let room = CARRY - self.len;
        if bytes.len() > room {
            self.truncated = true;
        }
        let taken = bytes.len().min(room);
        self.bytes[self.len..self.len + taken].copy_from_slice(&bytes[..taken]);
        self.len += taken;
    }

    fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

/// The HTTP/1.1 request stream of one connection, read incrementally.
#[derive(Debug, Default)]
pub struct Scanner {
    machine: Machine,
    carry: Carry,
}

#[derive(Debug)]
struct Machine {
    state: State,
    /// Request heads seen so far, the one being read included.
    requests: u64,
    head: Head,
    /// The connection started with the HTTP/2 preface.
    http2: bool,
}

impl Default for Machine {
    fn default() -> Self {
        Machine {
            state: State::RequestLine,
            requests: 0,
            head: Head::default(),
            http2: false,
        }
    }
}

impl Scanner {
    pub fn is_auditing(&self) -> bool {
        self.machine.state != State::Off
    }

    pub fn stop(&mut self) {
        self.machine.state = State::Off;
    }

    /// Reads the next bytes of the connection; returns the number of the request to refuse
    /// (1-based) and why, the first time one must be. After that the scanner is off.
    pub fn feed(&mut self, mut input: &[u8]) -> Option<(u64, Refusal)> {
        while !input.is_empty() {
            let machine = &mut self.machine;
            match machine.state {
                State::Off => return None,
                State::Body(left) | State::ChunkData(left) => {
                    // Payload is skipped whole, never looked at.
                    let skipped = usize::try_from(left).map_or(input.len(), |l| l.min(input.len()));
                    input = &input[skipped..];
                    let left = left - skipped as u64;
                    machine.state = match machine.state {
                        State::Body(_) if left == 0 => State::RequestLine,
                        State::Body(_) => State::Body(left),
                        _ if left == 0 => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                State::Headers
                    if self.carry.len == 0
                        && !matches!(
                            input[0],
                            b'c' | b'C' | b't' | b'T' | b'u' | b'U' | b' ' | b'\t' | b'\r' | b'\n'
                        ) =>
                {
                    // Most header lines: not a name that matters, not the end of the head. Only
                    // their end is looked for.
                    match memchr::memchr(b'\n', input) {
                        Some(end) => input = &input[end + 1..],
                        None => {
                            self.carry.push(input);
                            return None;
                        }
                    }
                }
                _ => {
                    let Some(end) = memchr::memchr(b'\n', input) else {
                        self.carry.push(input);
                        return None;
                    };
                    let refused = if self.carry.len == 0 {
                        machine.line(&input[..end], false)
                    } else {
                        self.carry.push(&input[..end]);
                        let carry = &self.carry;
                        let refused = machine.line(&carry.bytes[..carry.len], carry.truncated);
                        self.carry.clear();
                        refused
                    };
                    if refused.is_some() {
                        machine.state = State::Off;
                        return refused;
                    }
                    input = &input[end + 1..];
                }
            }
        }
        None
    }
}

impl Machine {
    /// One line (its `\n` excluded) in a line state; `truncated` if only its start is there.
    fn line(&mut self, line: &[u8], truncated: bool) -> Option<(u64, Refusal)> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.state {
            State::RequestLine => {
                if line.is_empty() {
                    return None;
                }
                // hyper-util serves HTTP/2 when the connection starts with its preface.
                if self.requests == 0 && line == b"PRI * HTTP/2.0" {
                    self.http2 = true;
                    self.state = State::Off;
                    return None;
                }
                self.requests += 1;
                // A successful CONNECT makes the connection a tunnel, like a 101.
                self.head = Head {
                    upgrade: line.starts_with(b"CONNECT "),
                    ..Head::default()
                };
                self.state = State::Headers;
            }
            State::Headers if line.is_empty() => return self.end_of_head(),
            State::Headers => self.header(line, truncated),
            State::ChunkSize => {
                self.state = match chunk_size(line, truncated) {
                    Some(0) => State::Trailers,
                    Some(size) => State::ChunkData(size),
                    None => State::Off,
                }
            }
            State::ChunkEnd => {
                self.state = if line.is_empty() {
                    State::ChunkSize
                } else {
                    State::Off
                };
            }
            State::Trailers if line.is_empty() => self.state = State::RequestLine,
            State::Trailers => {}
            State::Body(_) | State::ChunkData(_) | State::Off => {
                unreachable!("not a line state")
            }
        }
        None
    }

    /// A header line: only `Content-Length`, `Transfer-Encoding` and `Upgrade` matter, told
    /// apart by their first byte before any comparison.
    fn header(&mut self, line: &[u8], truncated: bool) {
        let head = &mut self.head;
        match line.first().map(u8::to_ascii_lowercase) {
            Some(b'c') => {
                if let Some(value) = value_of(line, b"content-length:") {
                    head.lengths = head.lengths.saturating_add(1);
                    head.too_long |= truncated;
                    head.length = digits(value.trim_ascii());
                }
            }
            Some(b't') => {
                if let Some(value) = value_of(line, b"transfer-encoding:") {
                    head.transfer_encodings = head.transfer_encodings.saturating_add(1);
                    head.too_long |= truncated;
                    head.chunked = value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                }
            }
            Some(b'u') => head.upgrade |= value_of(line, b"upgrade:").is_some(),
            // obs-fold: hyper refuses it.
            Some(b' ' | b'\t') => self.state = State::Off,
            _ => {}
        }
    }

    fn end_of_head(&mut self) -> Option<(u64, Refusal)> {
        let head = self.head;
        let refusal = if head.lengths > 1 {
            Some(Refusal::SeveralLengths)
        } else if head.lengths > 0 && head.transfer_encodings > 0 {
            Some(Refusal::LengthAndChunked)
        } else if head.too_long {
            Some(Refusal::FramingLineTooLong)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return Some((self.requests, refusal));
        }
        self.state = if head.upgrade {
            // The service says when the connection becomes a tunnel; until then (a refused
            // upgrade) requests follow as usual.
            State::RequestLine
        } else if head.transfer_encodings > 0 {
            // Anything but one `chunked` is refused by hyper or `framing`, and the
            // connection closed.
            if head.transfer_encodings == 1 && head.chunked {
                State::ChunkSize
            } else {
                State::Off
            }
        } else if head.lengths == 1 {
            match head.length {
                Some(0) => State::RequestLine,
                Some(length) => State::Body(length),
                // hyper refuses an unreadable length.
                None => State::Off,
            }
        } else {
            State::RequestLine
        };
        None
    }
}

/// The value of header line `line` if its name (with the colon) is `name_colon`, any case.
fn value_of<'a>(line: &'a [u8], name_colon: &[u8]) -> Option<&'a [u8]> {
    let (name, value) = line.split_at_checked(name_colon.len())?;
    name.eq_ignore_ascii_case(name_colon).then_some(value)
}

/// A `Content-Length` value as hyper reads it: digits only.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// The size of a chunk-size line (hex digits, then whitespace, extensions or nothing).
fn chunk_size(line: &[u8], truncated: bool) -> Option<u64> {
    let hex = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    // A size running to the end of a truncated line may go on beyond it.
    if hex == 0 || (truncated && hex == line.len()) {
        return None;
    }
    line[..hex].iter().try_fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(16)?;
        n.checked_mul(16)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` in order; the refusal, the requests seen and the final state.
    fn scan(pieces: &[&[u8]]) -> (Option<(u64, Refusal)>, u64, State) {
        let mut scanner = Scanner::default();
        let mut refused = None;
        for piece in pieces {
            if let Some(found) = scanner.feed(piece) {
                assert!(refused.is_none(), "refused twice");
                refused = Some(found);
            }
        }
        (refused, scanner.machine.requests, scanner.machine.state)
    }

    /// The same result for `stream` whole, split at every offset, and byte by byte.
    fn scan_every_split(stream: &[u8]) -> (Option<(u64, Refusal)>, u64, State) {
        let whole = scan(&[stream]);
        for at in 0..=stream.len() {
            let (a, b) = stream.split_at(at);
            assert_eq!(
                scan(&[a, b]),
                whole,
                "split at {at}: {:?} | {:?}",
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(scan(&bytes), whole, "byte by byte");
        whole
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn plain_requests_are_not_refused() {
        assert_eq!(scan_every_split(GET), (None, 1, State::RequestLine));
        let post = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(scan_every_split(post), (None, 1, State::RequestLine));
        let chunked =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(scan_every_split(chunked), (None, 1, State::RequestLine));
    }

    #[test]
    fn length_and_chunked_are_refused_in_either_order_and_any_case() {
        for stream in [
            &b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                [..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-LENGTH:4\r\ntransfer-encoding:  chunked \r\n\r\n",
            b"POST / HTTP/1.1\nTRANSFER-ENCODING: chunked\nCONTENT-LENGTH: 0\n\n",
        ] {
            assert_eq!(
                scan_every_split(stream),
                (Some((1, Refusal::LengthAndChunked)), 1, State::Off),
                "{:?}",
                String::from_utf8_lossy(stream)
            );
        }
    }

    #[test]
    fn identical_and_different_duplicate_lengths_are_refused() {
        for stream in [
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nHost: a\r\ncontent-length: 6\r\n\r\n",
        ] {
            assert_eq!(
                scan_every_split(stream),
                (Some((1, Refusal::SeveralLengths)), 1, State::Off)
            );
        }
    }

    #[test]
    fn pipelined_requests_are_counted_and_the_bad_one_found() {
        let mut stream = Vec::new();
        stream.extend_from_slice(GET);
        stream.extend_from_slice(b"POST /a HTTP/1.1\r\nContent-Length: 12\r\n\r\nContent-Leng");
        stream.extend_from_slice(
            b"PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
              a;name=value;other=\"x\"\r\n0123456789\r\n\
              3 \t; ext\r\nabc\r\n0\r\nTrailer: t\r\n\r\n",
        );
        stream.extend_from_slice(b"\r\nGET /c HTTP/1.1\r\n\r\n");
        stream.extend_from_slice(
            b"POST /bad HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        );
        stream.extend_from_slice(GET);
        assert_eq!(
            scan_every_split(&stream),
            (Some((5, Refusal::SeveralLengths)), 5, State::Off)
        );
    }

    #[test]
    fn body_bytes_are_never_read_as_headers() {
        // A body that looks like a smuggled head is payload; the next real head is request 2.
        let body = "X\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let stream = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET / HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(
            scan_every_split(stream.as_bytes()),
            (None, 2, State::RequestLine)
        );
        let chunk = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n";
        let chunked = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        assert_eq!(
            scan_every_split(chunked.as_bytes()),
            (None, 1, State::RequestLine)
        );
    }

    #[test]
    fn http2_upgrades_and_confusion_stop_the_audit() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nContent-Length: 1\r\nContent-Length: 1\r\n";
        assert_eq!(scan_every_split(preface), (None, 0, State::Off));
        let mut scanner = Scanner::default();
        scanner.feed(preface);
        assert!(scanner.machine.http2);
        // An obs-fold (hyper refuses it), a bad chunk size, a bad length.
        for stream in [
            &b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        ] {
            assert_eq!(scan_every_split(stream), (None, 1, State::Off));
        }
    }

    #[test]
    fn an_upgrade_keeps_auditing_until_the_service_says_tunnel() {
        // Refused upgrade: the next request on the connection is audited as usual.
        let stream = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n\
            POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            scan_every_split(stream),
            (Some((2, Refusal::LengthAndChunked)), 2, State::Off)
        );
        let mut scanner = Scanner::default();
        scanner.feed(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        scanner.stop();
        assert_eq!(
            scanner.feed(b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            None
        );
    }

    #[test]
    fn long_lines_split_across_reads() {
        let long_value = "v".repeat(4 * CARRY);
        let stream = format!(
            "GET /{long_value} HTTP/1.1\r\nX-Long: {long_value}\r\nContent-Length: 3\r\n\r\nabc{}",
            std::str::from_utf8(GET).unwrap()
        );
        assert_eq!(
            scan_every_split(stream.as_bytes()),
            (None, 2, State::RequestLine)
        );
        // A framing line beyond what is kept is refused when it is split.
        let padded = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}5\r\n\r\nhello",
            " ".repeat(CARRY)
        );
        let (a, b) = padded.as_bytes().split_at(30);
        assert_eq!(
            scan(&[a, b]),
            (Some((1, Refusal::FramingLineTooLong)), 1, State::Off)
        );
        assert_eq!(scan(&[padded.as_bytes()]), (None, 1, State::RequestLine));
        // A long chunk extension is fine; a size cut off by the carry is not trusted.
        let extension = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;{}\r\nabc\r\n0\r\n\r\n",
            "e".repeat(2 * CARRY)
        );
        assert_eq!(
            scan_every_split(extension.as_bytes()),
            (None, 1, State::RequestLine)
        );
    }

    #[test]
    fn chunk_sizes_parse_like_hyper() {
        assert_eq!(chunk_size(b"ff", false), Some(255));
        assert_eq!(chunk_size(b"0", false), Some(0));
        assert_eq!(chunk_size(b"A ; x=y", false), Some(10));
        assert_eq!(chunk_size(b"", false), None);
        assert_eq!(chunk_size(b";x", false), None);
        assert_eq!(chunk_size(b"11111111111111111", false), None);
        assert_eq!(chunk_size(b"0000000000000000001", false), Some(1));
        assert_eq!(chunk_size(b"1234", true), None);
        assert_eq!(digits(b"007"), Some(7));
        assert_eq!(digits(b"1 2"), None);
        assert_eq!(digits(b""), None);
    }

    #[tokio::test]
    async fn the_wrapper_passes_bytes_through_and_sets_the_verdict() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let stream = b"GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\
            Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let (mut client, server) = tokio::io::duplex(7);
        let verdict = Arc::new(AuditVerdict::default());
        let mut audited = HeadAudit::new(server, Arc::clone(&verdict));
        let writer = tokio::spawn(async move {
            client.write_all(stream).await.unwrap();
            client
        });
        let mut read = vec![0; stream.len()];
        audited.read_exact(&mut read).await.unwrap();
        assert_eq!(read, stream);
        assert!(!verdict.is_http2());
        assert_eq!(verdict.next_request(), None);
        assert_eq!(
            verdict.next_request(),
            Some("both Transfer-Encoding and Content-Length")
        );
        drop(writer.await.unwrap());

        let (mut client, server) = tokio::io::duplex(64);
        let verdict = Arc::new(AuditVerdict::default());
        let mut audited = HeadAudit::new(server, Arc::clone(&verdict));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut preface = [0; 24];
        audited.read_exact(&mut preface).await.unwrap();
        assert!(verdict.is_http2());
    }

    #[test]
    fn the_verdict_names_the_refused_request() {
        let verdict = AuditVerdict::default();
        verdict.refuse(2, Refusal::LengthAndChunked);
        assert_eq!(verdict.next_request(), None);
        assert_eq!(
            verdict.next_request(),
            Some("both Transfer-Encoding and Content-Length")
        );
        assert_eq!(verdict.next_request(), None);
    }
}
