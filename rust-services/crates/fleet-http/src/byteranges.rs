//! Several byte ranges of one resource in one answer: `Range: bytes=A-B,C-D` and the
//! `206` `multipart/byteranges` body that carries them (RFC 9110 §14.6), read part by part
//! as the body arrives. Each part's header is parsed by httparse; what is ours is the
//! framing around it: the boundary lines, and the part's `Content-Range`, which says how many
//! bytes of body follow (a part's bytes may hold anything, the boundary included).

/// One part: bytes `start .. start + bytes.len()` of a resource of `total` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub total: u64,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("multipart/byteranges body: {0}")]
    Malformed(String),
}

/// The value of a `Range` header asking for each `(offset, len)`, in order (none empty).
pub fn range_header(ranges: &[(u64, u64)]) -> String {
    let list: Vec<String> = ranges
        .iter()
        .map(|&(offset, len)| format!("{offset}-{}", offset + len.max(1) - 1))
        .collect();
    format!("bytes={}", list.join(","))
}

/// The boundary of a `multipart/byteranges` `Content-Type`, or `None` for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 70)
    })
}

/// `bytes FIRST-LAST/TOTAL`: (first, last, total); `None` for anything else (`*` included:
/// a part of a byte-range answer names the resource's length).
pub fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (first <= last && last < total).then_some((first, last, total))
}

/// Bytes that may come before a part's body (boundary line and header), at most.
const HEADER_MAX: usize = 8 * 1024;

enum State {
    /// Before a boundary line.
    Boundary,
    /// After a boundary line, before the blank line that ends the part's header.
    Header,
    /// In a part's body: what has come of it and what is left.
    Body { part: Part, left: usize },
    /// After the closing boundary: the rest (the epilogue) is ignored.
    Done,
}

/// Reads a `multipart/byteranges` body pushed piece by piece; returns each part once all its
/// bytes are in.
pub struct Parser {
    delimiter: Vec<u8>,
    part_max: usize,
    buf: Vec<u8>,
    state: State,
}

impl Parser {
    /// A parser for the body of `boundary` ([`boundary`]) whose parts hold at most `part_max`
    /// bytes each (a longer one is an error before anything is kept of it).
    pub fn new(boundary: &str, part_max: usize) -> Parser {
        Parser {
            delimiter: [b"--", boundary.as_bytes()].concat(),
            part_max,
            buf: Vec::new(),
            state: State::Boundary,
        }
    }

    /// Whether the closing boundary has come (a body that ends before it is cut short).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes the next piece of the body; the parts it completes are appended to `parts`.
    pub fn push(&mut self, piece: &[u8], parts: &mut Vec<Part>) -> Result<(), Error> {
        self.buf.extend_from_slice(piece);
        let mut at = 0;
        let result = loop {
            match self.step(at, parts) {
                Ok(Some(next)) => at = next,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..at);
        result
    }

    /// One step from `buf[at..]`: where the next begins, or `None` when more bytes are needed.
    fn step(&mut self, at: usize, parts: &mut Vec<Part>) -> Result<Option<usize>, Error> {
        let rest = &self.buf[at..];
        let malformed = |what: &str| Err(Error::Malformed(what.to_string()));
        match &mut self.state {
            State::Done => Ok((!rest.is_empty()).then_some(self.buf.len())),
            State::Body { part, left } => {
                if rest.is_empty() {
                    return Ok(None);
                }
                let n = (*left).min(rest.len());
                part.bytes.extend_from_slice(&rest[..n]);
                *left -= n;
                if *left == 0
                    && let State::Body { part, .. } =
                        std::mem::replace(&mut self.state, State::Boundary)
                {
                    parts.push(part);
                }
                Ok(Some(at + n))
            }
            State::Boundary => {
                let Some(i) = find(rest, &self.delimiter) else {
                    if rest.len() > HEADER_MAX {
                        return malformed("no boundary line where one was due");
                    }
                    return Ok(None);
                };
                // Only line breaks come between a part's body and the next boundary (and
                // before the first).
                if !rest[..i].iter().all(|b| matches!(b, b'\r' | b'\n')) {
                    return malformed("bytes other than a line break before a boundary");
                }
                let after = &rest[i + self.delimiter.len()..];
                if after.len() < 2 {
                    return Ok(None);
                }
                if after.starts_with(b"--") {
                    self.state = State::Done;
                    return Ok(Some(self.buf.len()));
                }
                let Some(eol) = after.iter().position(|&b| b == b'\n') else {
                    if after.len() > HEADER_MAX {
                        return malformed("a boundary line without its end");
                    }
                    return Ok(None);
                };
                // Only transport padding (spaces, tabs) may follow the boundary.
                if !after[..eol]
                    .iter()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
                {
                    return malformed("a boundary line with more than the boundary");
                }
                self.state = State::Header;
                Ok(Some(at + i + self.delimiter.len() + eol + 1))
            }
            State::Header => {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let (used, headers) = match httparse::parse_headers(rest, &mut headers) {
                    Ok(httparse::Status::Complete(done)) => done,
                    Ok(httparse::Status::Partial) if rest.len() <= HEADER_MAX => return Ok(None),
                    Ok(httparse::Status::Partial) => return malformed("a part header too long"),
                    Err(e) => return Err(Error::Malformed(format!("a part header: {e}"))),
                };
                let Some(range) = headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-range"))
                else {
                    return malformed("a part without Content-Range");
                };
                let value = String::from_utf8_lossy(range.value);
                let Some((first, last, total)) = content_range(&value) else {
                    return Err(Error::Malformed(format!(
                        "a part's Content-Range {value:?} is not bytes FIRST-LAST/LENGTH"
                    )));
                };
                let len = last - first + 1;
                if len > self.part_max as u64 {
                    return Err(Error::Malformed(format!(
                        "a part of {len} bytes, more than the {} asked at most",
                        self.part_max
                    )));
                }
                self.state = State::Body {
                    part: Part {
                        start: first,
                        total,
                        bytes: Vec::with_capacity(len as usize),
                    },
                    left: len as usize,
                };
                Ok(Some(at + used))
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body as nginx writes it (its boundary is 20 digits).
    fn nginx_body(parts: &[(u64, &[u8])], total: u64) -> Vec<u8> {
        let mut body = Vec::new();
        for (start, bytes) in parts {
            body.extend_from_slice(b"\r\n--00000000000000000001\r\n");
            body.extend_from_slice(b"Content-Type: application/octet-stream\r\n");
            body.extend_from_slice(
                format!(
                    "Content-Range: bytes {start}-{}/{total}\r\n\r\n",
                    start + bytes.len() as u64 - 1
                )
                .as_bytes(),
            );
            body.extend_from_slice(bytes);
        }
        body.extend_from_slice(b"\r\n--00000000000000000001--\r\n");
        body
    }

    fn parse_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<Part>, bool), Error> {
        let mut parser = Parser::new("00000000000000000001", 1 << 20);
        let mut parts = Vec::new();
        for p in body.chunks(piece) {
            parser.push(p, &mut parts)?;
        }
        Ok((parts, parser.is_done()))
    }

    #[test]
    fn parts_come_whole_however_the_body_is_cut() {
        // The second part's bytes hold the boundary itself: its length, not a search, ends it.
        let tricky = b"\r\n--00000000000000000001--\r\n and more";
        let body = nginx_body(&[(0, b"first"), (100, tricky), (900, b"z")], 1000);
        for piece in [1, 2, 3, 7, 64, body.len()] {
            let (parts, done) = parse_in_pieces(&body, piece).unwrap();
            assert!(done, "piece {piece}");
            assert_eq!(
                parts
                    .iter()
                    .map(|p| (p.start, p.bytes.as_slice()))
                    .collect::<Vec<_>>(),
                vec![(0, &b"first"[..]), (100, &tricky[..]), (900, &b"z"[..])],
                "piece {piece}"
            );
            assert!(parts.iter().all(|p| p.total == 1000));
        }
    }

    #[test]
    fn a_body_cut_short_is_not_done_and_keeps_its_whole_parts() {
        let body = nginx_body(&[(0, b"first"), (100, b"second")], 1000);
        let (parts, done) = parse_in_pieces(&body[..body.len() - 40], 5).unwrap();
        assert!(!done);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].bytes, b"first");
    }

    #[test]
    fn bad_framing_is_refused_with_what_was_wrong() {
        let missing_range = b"\r\n--00000000000000000001\r\nContent-Type: x\r\n\r\nabc".to_vec();
        let garbage = b"hello\r\n--00000000000000000001\r\n".to_vec();
        let huge =
            b"--00000000000000000001\r\nContent-Range: bytes 0-4194303/9999999\r\n\r\n".to_vec();
        for (body, want) in [
            (missing_range, "without Content-Range"),
            (garbage, "before a boundary"),
            (huge, "more than the 1048576 asked"),
        ] {
            let e = parse_in_pieces(&body, 4).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn headers_are_read_as_servers_write_them() {
        assert_eq!(
            boundary("multipart/byteranges; boundary=00000000000000000001").as_deref(),
            Some("00000000000000000001")
        );
        assert_eq!(
            boundary("Multipart/Byteranges;boundary=\"3d6b6a416f9b5\"").as_deref(),
            Some("3d6b6a416f9b5")
        );
        assert_eq!(boundary("application/octet-stream"), None);
        assert_eq!(content_range("bytes 10-19/100"), Some((10, 19, 100)));
        assert_eq!(content_range("bytes 10-19/*"), None);
        assert_eq!(content_range("bytes 19-10/100"), None);
        assert_eq!(range_header(&[(0, 10), (100, 1)]), "bytes=0-9,100-100");
    }
}
