//! Following a container's output (`GET /containers/{id}/logs?follow=1`), split into lines.
//! Without a TTY the engine multiplexes stdout and stderr in frames (an 8-byte header:
//! stream, three zero bytes, big-endian length); with one it sends the raw terminal bytes.

use fleet_http::client::{self, Timeouts};
use std::time::Duration;

use super::{Body, Engine, Error, encode};

/// Longest line kept whole; a longer one is cut into pieces of this size.
const MAX_LINE: usize = 16 * 1024;

/// A followed container may be silent for any time: no idle or total limit.
const FOLLOW: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    response: Some(Duration::from_secs(60)),
    idle: None,
    total: None,
};

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The output of one container as it comes, line by line.
pub struct LogFollower {
    response: client::Response,
    tty: bool,
    raw: Vec<u8>,
    /// Unfinished line per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
    ready: std::collections::VecDeque<(Stream, String)>,
    ended: bool,
}

impl Engine {
    /// Follows `id`'s stdout and stderr from `since` (Unix seconds) on; `tty` as the
    /// container was created (its output is then one unframed stream).
    pub async fn follow_logs(&self, id: &str, since: u64, tty: bool) -> Result<LogFollower, Error> {
        let path = format!(
            "/containers/{}/logs?follow=1&stdout=1&stderr=1&since={since}",
            encode(id)
        );
        let response = self
            .call_with("GET", &path, Body::Empty, true, FOLLOW)
            .await?;
        Ok(LogFollower::new(response, tty))
    }
}

impl LogFollower {
    fn new(response: client::Response, tty: bool) -> Self {
        LogFollower {
            response,
            tty,
            raw: Vec::new(),
            partial: [Vec::new(), Vec::new()],
            ready: Default::default(),
            ended: false,
        }
    }

    /// The next whole line (without its line end); `None` when the container's output
    /// ended (it stopped, or the engine closed the stream).
    pub async fn next_line(&mut self) -> Result<Option<(Stream, String)>, Error> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Ok(Some(line));
            }
            if self.ended {
                return Ok(None);
            }
            match self.response.chunk().await? {
                Some(chunk) => self.feed(&chunk),
                None => {
                    self.ended = true;
                    for (i, stream) in [Stream::Stdout, Stream::Stderr].into_iter().enumerate() {
                        let rest = std::mem::take(&mut self.partial[i]);
                        if !rest.is_empty() {
                            self.ready.push_back((stream, text(&rest)));
                        }
                    }
                }
            }
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if self.tty {
            self.push(Stream::Stdout, chunk);
            return;
        }
        self.raw.extend_from_slice(chunk);
        let (frames, used) = split_frames(&self.raw);
        for (stream, payload) in frames {
            self.push(stream, &payload);
        }
        self.raw.drain(..used);
    }

    fn push(&mut self, stream: Stream, bytes: &[u8]) {
        let i = usize::from(stream == Stream::Stderr);
        for &b in bytes {
            if b == b'\n' {
                let line = std::mem::take(&mut self.partial[i]);
                self.ready.push_back((stream, text(&line)));
            } else {
                self.partial[i].push(b);
                if self.partial[i].len() >= MAX_LINE {
                    let line = std::mem::take(&mut self.partial[i]);
                    self.ready.push_back((stream, text(&line)));
                }
            }
        }
    }
}

/// A line without its carriage return (TTY output), invalid UTF-8 replaced.
fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// The whole frames at the start of `raw` and how many bytes they used. Stream 2 is
/// stderr; stdin (0) and stdout (1) count as stdout.
fn split_frames(raw: &[u8]) -> (Vec<(Stream, Vec<u8>)>, usize) {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(header) = raw.get(at..at + 8) {
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let Some(payload) = raw.get(at + 8..at + 8 + len) else {
            break;
        };
        let stream = if header[0] == 2 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        frames.push((stream, payload.to_vec()));
        at += 8 + len;
    }
    (frames, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![stream, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frames_are_split_and_a_cut_frame_waits_for_its_rest() {
        let mut raw = frame(1, b"hello\n");
        raw.extend(frame(2, b"oops\n"));
        let cut = frame(1, b"later");
        raw.extend_from_slice(&cut[..10]);
        let (frames, used) = split_frames(&raw);
        assert_eq!(
            frames,
            vec![
                (Stream::Stdout, b"hello\n".to_vec()),
                (Stream::Stderr, b"oops\n".to_vec())
            ]
        );
        assert_eq!(used, raw.len() - 10);
        assert_eq!(split_frames(&cut[..7]), (vec![], 0));
    }

    #[test]
    fn text_drops_the_terminal_carriage_return() {
        assert_eq!(text(b"line\r"), "line");
        assert_eq!(text(b"a\xffb"), "a\u{fffd}b");
    }
}
