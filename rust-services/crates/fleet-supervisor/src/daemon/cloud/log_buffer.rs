//! Log lines waiting for the server, within a memory budget: beyond it the oldest go first,
//! counted so the next delivery can say so.

use std::collections::VecDeque;

use serde_json::Value;

/// Memory for lines not yet delivered.
pub const BUFFER_BYTES: usize = 256 * 1024;

/// Lines waiting for delivery, oldest first, each a JSON object and its newline.
#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines dropped to stay within the budget since the last delivery.
    pub dropped: u64,
}

impl LogBuffer {
    pub fn push(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.bytes > BUFFER_BYTES {
            let Some(old) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= old.len();
            self.dropped += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest lines, up to `max` bytes (at least one): the body and how many lines.
    pub fn batch(&self, max: usize) -> (Vec<u8>, usize) {
        let mut body = Vec::new();
        let mut n = 0;
        for line in &self.lines {
            if n > 0 && body.len() + line.len() > max {
                break;
            }
            body.extend_from_slice(line);
            n += 1;
        }
        (body, n)
    }

    /// Forgets the `n` oldest lines (delivered).
    pub fn delivered(&mut self, n: usize) {
        for line in self.lines.drain(..n.min(self.lines.len())) {
            self.bytes -= line.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_buffer_drops_the_oldest_beyond_its_budget() {
        let mut b = LogBuffer::default();
        let line = |i: usize| json!({ "message": format!("{i:0>1000}"), "timestamp": i });
        let per_line = serde_json::to_vec(&line(0)).unwrap().len() + 1;
        let fits = BUFFER_BYTES / per_line;
        for i in 0..fits + 10 {
            b.push(&line(i));
        }
        assert!(b.bytes() <= BUFFER_BYTES);
        assert_eq!(b.len(), fits);
        assert_eq!(b.dropped, 10);
        let (body, n) = b.batch(64 * 1024);
        assert_eq!(n, 64 * 1024 / per_line);
        let first: Value =
            serde_json::from_slice(body.split(|c| *c == b'\n').next().unwrap()).unwrap();
        assert_eq!(first["timestamp"], json!(10), "the oldest kept is the 11th");
        b.delivered(n);
        assert_eq!(b.len(), fits - n);
    }

    #[test]
    fn one_line_larger_than_a_request_still_goes() {
        let mut b = LogBuffer::default();
        b.push(&json!({ "message": "x".repeat(64 * 1024 + 10) }));
        let (_, n) = b.batch(64 * 1024);
        assert_eq!(n, 1);
    }
}
