//! Request bodies: none, bytes in memory, or a reader of known length streamed as it is read.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes read from a [`Body::Reader`] per frame.
const READ_CHUNK: usize = 64 * 1024;

/// A request body.
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// Exactly `length` bytes read from `reader` (sent with that `Content-Length`); a reader
    /// that ends early fails the request.
    Reader {
        reader: Box<dyn AsyncRead + Send + Unpin>,
        length: u64,
    },
}

impl Body {
    pub fn reader(reader: impl AsyncRead + Send + Unpin + 'static, length: u64) -> Body {
        Body::Reader {
            reader: Box::new(reader),
            length,
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Bytes(v.into())
    }
}

/// [`Body`] as hyper sends it.
pub(crate) struct Outgoing {
    body: Body,
    remaining: u64,
}

impl Outgoing {
    pub(crate) fn new(body: Body) -> Outgoing {
        let remaining = match &body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::Reader { length, .. } => *length,
        };
        Outgoing { body, remaining }
    }
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        match &mut this.body {
            Body::Empty => Poll::Ready(None),
            Body::Bytes(b) => {
                this.remaining = 0;
                Poll::Ready(Some(Ok(Frame::data(std::mem::take(b)))))
            }
            Body::Reader { reader, length } => {
                let want = this.remaining.min(READ_CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                let mut read = ReadBuf::new(&mut buf);
                ready!(Pin::new(reader).poll_read(cx, &mut read))?;
                let n = read.filled().len();
                if n == 0 {
                    let sent = *length - this.remaining;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("request body ended after {sent} of {length} bytes"),
                    ))));
                }
                buf.truncate(n);
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
