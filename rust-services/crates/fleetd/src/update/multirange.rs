//! Several ranges of the bundle in one request (`Range: bytes=A-B,C-D,…`, answered `206`
//! `multipart/byteranges`): the small ranges the chunked install asks ahead of their turn
//! share one response header and one stream of full packets instead of an answer each (a
//! one-package update is hundreds of ranges of a few KiB; their answers' headers and packets
//! were 14% on top of the bytes). nginx and Apache answer so; S3 and some CDNs do not (a
//! `200` with the whole file, or one range, or `416`). The source asks first with a `HEAD`
//! (no body either way); a request here answered otherwise
//! all the same is dropped unread (its connection closed) and the source asks one range per
//! request from then on.

use fleet_http::byteranges::{self, Part};
use fleet_http::client::{Client, Request, Response};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// What the request's task reports, in order.
enum Event {
    /// A part whole, with the body bytes that came since the last event (its boundary line
    /// and header included: what the link carried of the body).
    Part { part: Part, received: u64 },
    /// The body ended after its closing boundary.
    End { received: u64 },
    /// The server does not answer several ranges in one multipart body (the status and
    /// type it answered), or its body was not one.
    Unsupported { received: u64, why: String },
    /// The request or its body broke; the parts already reported stand.
    Failed { received: u64, reason: String },
}

/// One request for several ranges, its parts taken as they arrive.
pub struct Group {
    /// The ranges asked (offset, length), in order.
    ranges: Vec<(u64, u64)>,
    events: UnboundedReceiver<Event>,
    /// Parts in and not yet taken.
    parts: Vec<Part>,
    /// Whether more events may come.
    open: bool,
    /// Body bytes in and not yet counted by the source.
    received: u64,
    /// Why the server's answer was not a multipart one, once (for the source to stop asking).
    unsupported: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Group {
    /// Sends `request` (asking `ranges`, [`byteranges::range_header`]) on `runtime`; it runs
    /// while the source reads other ranges.
    pub fn send(
        runtime: &tokio::runtime::Runtime,
        client: Client,
        request: Request,
        ranges: Vec<(u64, u64)>,
    ) -> Group {
        let (tx, events) = unbounded_channel();
        // A part is at most the span asked (a server may merge neighbouring ranges).
        let span = ranges
            .last()
            .zip(ranges.first())
            .map_or(0, |(&(o, l), &(first, _))| o + l - first);
        let task = runtime.spawn(read(client, request, span as usize, tx));
        Group {
            ranges,
            events,
            parts: Vec::new(),
            open: true,
            received: 0,
            unsupported: None,
            task,
        }
    }

    pub fn asks(&self, offset: u64, len: u64) -> bool {
        self.ranges.contains(&(offset, len))
    }

    pub fn asks_last(&self, offset: u64, len: u64) -> bool {
        self.ranges.last() == Some(&(offset, len))
    }

    /// Body bytes received since the last call.
    pub fn take_received(&mut self) -> u64 {
        std::mem::take(&mut self.received)
    }

    /// Why the server did not answer with a multipart body, once.
    pub fn take_unsupported(&mut self) -> Option<String> {
        self.unsupported.take()
    }

    /// The bytes of `offset .. offset + len` once the part holding them is in; `None` when
    /// the answer ended (or broke, or was not multipart) without them.
    pub fn take(
        &mut self,
        runtime: &tokio::runtime::Runtime,
        offset: u64,
        len: u64,
    ) -> Option<Vec<u8>> {
        loop {
            // Parts before this range were for ranges read another way.
            self.parts
                .retain(|p| p.start + p.bytes.len() as u64 > offset);
            if let Some(p) = self
                .parts
                .iter()
                .find(|p| p.start <= offset && offset + len <= p.start + p.bytes.len() as u64)
            {
                let at = (offset - p.start) as usize;
                return Some(p.bytes[at..at + len as usize].to_vec());
            }
            if !self.open {
                return None;
            }
            match runtime.block_on(self.events.recv()) {
                Some(Event::Part { part, received }) => {
                    self.received += received;
                    self.parts.push(part);
                }
                Some(Event::End { received }) => {
                    self.received += received;
                    self.open = false;
                }
                Some(Event::Unsupported { received, why }) => {
                    self.received += received;
                    self.unsupported = Some(why);
                    self.open = false;
                }
                Some(Event::Failed { received, reason }) => {
                    self.received += received;
                    log::warn!(
                        "{} ranges in one request: {reason}; the rest one by one",
                        self.ranges.len()
                    );
                    self.open = false;
                }
                None => self.open = false,
            }
        }
    }
}

/// The boundary of a `206` `multipart/byteranges` answer; otherwise what was answered.
pub fn multipart_boundary(response: &Response) -> Result<String, String> {
    let (status, kind) = (response.status().as_u16(), response.content_type());
    byteranges::boundary(kind)
        .filter(|_| status == 206)
        .ok_or_else(|| format!("HTTP {status}, Content-Type {kind:?}"))
}

/// Sends the request and reports its parts as they complete.
async fn read(client: Client, request: Request, part_max: usize, tx: UnboundedSender<Event>) {
    let report = |event| {
        // The group was dropped: nobody waits for the answer.
        let _ = tx.send(event);
    };
    let mut response = match client.send(request).await {
        Ok(r) => r,
        Err(e) => {
            return report(Event::Failed {
                received: 0,
                reason: fleet_http::error_chain(&e),
            });
        }
    };
    let boundary = match multipart_boundary(&response) {
        Ok(boundary) => boundary,
        // Dropped unread: a 200 is the whole bundle, and the connection closes with it.
        Err(why) => return report(Event::Unsupported { received: 0, why }),
    };
    let mut parser = byteranges::Parser::new(&boundary, part_max);
    let mut parts = Vec::new();
    let mut received = 0u64;
    loop {
        match response.chunk().await {
            Ok(Some(piece)) => {
                received += piece.len() as u64;
                if let Err(e) = parser.push(&piece, &mut parts) {
                    return report(Event::Unsupported {
                        received,
                        why: e.to_string(),
                    });
                }
                for part in parts.drain(..) {
                    report(Event::Part {
                        part,
                        received: std::mem::take(&mut received),
                    });
                }
            }
            Ok(None) if parser.is_done() => return report(Event::End { received }),
            Ok(None) => {
                return report(Event::Failed {
                    received,
                    reason: "the body ended before its closing boundary".into(),
                });
            }
            Err(e) => {
                return report(Event::Failed {
                    received,
                    reason: fleet_http::error_chain(&e),
                });
            }
        }
    }
}
