//! Reading whole commands off the wire: lines up to a limit, literals
//! (`{n}` asks for a continuation first, `{n+}` does not, RFC 7888) up to
//! another, so that the parser always gets a complete command.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// The client went away, or was silent too long.
#[derive(Debug)]
pub struct Gone;

/// What one read of a command gave.
pub enum Frame {
    /// A whole command, CRLF included, literals inlined.
    Command(Vec<u8>),
    /// The line grew past the limit; it was read to its end and dropped.
    TooLong(Vec<u8>),
    /// A synchronising literal larger than the limit: the client waits for
    /// our answer and sends nothing more for this command.
    LiteralTooLarge { head: Vec<u8>, length: u64 },
}

pub struct Conn<S> {
    pub reader: BufReader<S>,
    out: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn {
            reader: BufReader::new(stream),
            out: Vec::with_capacity(8192),
        }
    }

    pub fn into_inner(self) -> S {
        self.reader.into_inner()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn pending(&self) -> usize {
        self.out.len()
    }

    pub async fn flush(&mut self) -> Result<(), Gone> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let stream = self.reader.get_mut();
        let written = tokio::time::timeout(Duration::from_secs(120), async {
            stream.write_all(&out).await?;
            stream.flush().await
        })
        .await;
        self.out = out;
        self.out.clear();
        match written {
            Ok(Ok(())) => Ok(()),
            _ => Err(Gone),
        }
    }

    /// Waits until the client has sent something (cancel-safe: nothing is consumed).
    pub async fn readable(&mut self) -> Result<(), Gone> {
        match self.reader.fill_buf().await {
            Ok(buf) if !buf.is_empty() => Ok(()),
            _ => Err(Gone),
        }
    }

    /// One line, LF included, of at most `max` bytes; `None` when longer
    /// (it is read to its end all the same).
    pub async fn read_line(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, Gone> {
        let (line, complete) = self.read_bounded_line(max, timeout).await?;
        Ok(complete.then_some(line))
    }

    /// One line of at most `max` bytes, and whether it fit; a longer one is
    /// read to its end and its first bytes kept (for the tag).
    async fn read_bounded_line(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<(Vec<u8>, bool), Gone> {
        crate::lines::read_bounded_line(&mut self.reader, max, timeout)
            .await
            .ok_or(Gone)
    }

    /// A whole command: its lines and the literals between them.
    pub async fn read_command(
        &mut self,
        max_line: usize,
        max_literal: usize,
        timeout: Duration,
    ) -> Result<Frame, Gone> {
        let mut command = Vec::new();
        let mut line_bytes = 0usize;
        let mut literal_bytes = 0u64;
        loop {
            let (line, complete) = self
                .read_bounded_line(max_line.saturating_sub(line_bytes).max(1), timeout)
                .await?;
            if !complete {
                if command.is_empty() {
                    command = line;
                }
                command.truncate(64);
                return Ok(Frame::TooLong(command));
            }
            line_bytes += line.len();
            command.extend_from_slice(&line);
            let Some((length, synchronising)) = literal_at_end(&line) else {
                return Ok(Frame::Command(command));
            };
            // The limit holds for the command's literals together.
            literal_bytes = literal_bytes.saturating_add(length);
            if literal_bytes > max_literal as u64 {
                if synchronising {
                    return Ok(Frame::LiteralTooLarge {
                        head: command,
                        length,
                    });
                }
                // The client sends it anyway: skip it, then report.
                self.skip(length, timeout).await?;
                let _ = self.read_line(max_line, timeout).await?;
                return Ok(Frame::LiteralTooLarge {
                    head: command,
                    length,
                });
            }
            if synchronising {
                self.line("+ Ready for literal data");
                self.flush().await?;
            }
            // Grown as the bytes come, not reserved on the client's word.
            let mut left = length;
            let mut chunk = vec![0u8; 64 * 1024];
            while left > 0 {
                let want = left.min(chunk.len() as u64) as usize;
                match tokio::time::timeout(timeout, self.reader.read(&mut chunk[..want])).await {
                    Ok(Ok(n)) if n > 0 => {
                        command.extend_from_slice(&chunk[..n]);
                        left -= n as u64;
                    }
                    _ => return Err(Gone),
                }
            }
        }
    }

    async fn skip(&mut self, mut length: u64, timeout: Duration) -> Result<(), Gone> {
        let mut sink = vec![0u8; 64 * 1024];
        while length > 0 {
            let want = length.min(sink.len() as u64) as usize;
            match tokio::time::timeout(timeout, self.reader.read(&mut sink[..want])).await {
                Ok(Ok(n)) if n > 0 => length -= n as u64,
                _ => return Err(Gone),
            }
        }
        Ok(())
    }
}

/// The literal announced at the end of a line: `{n}` (synchronising) or `{n+}`.
pub fn literal_at_end(line: &[u8]) -> Option<(u64, bool)> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, synchronising) = match spec.strip_suffix(b"+").or_else(|| spec.strip_suffix(b"-"))
    {
        Some(d) => (d, false),
        None => (spec, true),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, synchronising))
}

/// The tag a client put first on its line, if it looks like one.
pub fn tag_of(command: &[u8]) -> Option<String> {
    let end = command
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(command.len());
    let tag = &command[..end];
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .iter()
            .all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+".contains(&b));
    ok.then(|| String::from_utf8_lossy(tag).into_owned())
}

/// The command name after the tag, upper-cased, for error messages.
pub fn name_of(command: &[u8]) -> String {
    let text = String::from_utf8_lossy(&command[..command.len().min(128)]).into_owned();
    let mut words = text.split([' ', '\r', '\n']).filter(|w| !w.is_empty());
    let _tag = words.next();
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    if first == "UID" {
        format!("UID {}", words.next().unwrap_or("").to_ascii_uppercase())
    } else {
        first
    }
    .chars()
    .filter(|c| c.is_ascii_alphanumeric() || *c == ' ' || *c == '-')
    .take(32)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_found_at_the_end_of_lines_only() {
        assert_eq!(literal_at_end(b"a LOGIN {5}\r\n"), Some((5, true)));
        assert_eq!(
            literal_at_end(b"a APPEND INBOX {310+}\r\n"),
            Some((310, false))
        );
        assert_eq!(literal_at_end(b"a LOGIN {x}\r\n"), None);
        assert_eq!(literal_at_end(b"a LOGIN \"{5}\" pw\r\n"), None);
        assert_eq!(literal_at_end(b"a NOOP\r\n"), None);
        assert_eq!(literal_at_end(b"a X {99999999999999999999}\r\n"), None);
    }

    #[test]
    fn tags_and_names_for_errors() {
        assert_eq!(tag_of(b"A001 FETCH 1 (FLAGS)\r\n").as_deref(), Some("A001"));
        assert_eq!(tag_of(b"* FETCH\r\n"), None);
        assert_eq!(tag_of(b"\r\n"), None);
        assert_eq!(name_of(b"a1 uid fetch 1:* FLAGS\r\n"), "UID FETCH");
        assert_eq!(name_of(b"a1 select\r\n"), "SELECT");
    }
}
