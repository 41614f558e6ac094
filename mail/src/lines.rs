//! Reading one bounded line off a connection, the same way for SMTP and
//! IMAP: a line longer than the limit is read to its end (so the dialogue
//! stays in step) but not kept, save its first bytes (an IMAP tag).

use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Bytes kept of a line that was too long.
const KEPT_OF_TOO_LONG: usize = 64;

/// One line, LF included, of at most `max` bytes, and whether it fit;
/// `None` when the client went away or was silent past `timeout`.
pub(crate) async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    timeout: Duration,
) -> Option<(Vec<u8>, bool)> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = match tokio::time::timeout(timeout, reader.fill_buf()).await {
            Ok(Ok(buf)) if !buf.is_empty() => buf,
            _ => return None,
        };
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let used = chunk.len();
        if !too_long && line.len() + used <= max {
            line.extend_from_slice(chunk);
        } else {
            if !too_long {
                line.truncate(KEPT_OF_TOO_LONG);
            }
            too_long = true;
        }
        reader.consume(used);
        if done {
            return Some((line, !too_long));
        }
    }
}
