//! A hand-driven IMAP client for tests: exact commands in, exact responses
//! out, literals read whole.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A hand-driven IMAP client for tests: sends a command, returns what came back up to
/// its tagged answer, literals inlined.
pub struct ImapProbe {
    reader: BufReader<tokio::net::TcpStream>,
    next: u32,
}

impl ImapProbe {
    pub async fn connect(addr: std::net::SocketAddr) -> (ImapProbe, String) {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to IMAP");
        Self::over(stream).await
    }

    /// Connects from `local` (any 127.0.0.0/8 address works on loopback),
    /// to play a client on another network.
    pub async fn connect_from(
        addr: std::net::SocketAddr,
        local: std::net::IpAddr,
    ) -> (ImapProbe, String) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(local, 0))
            .expect("bind the client address");
        let stream = socket.connect(addr).await.expect("connect to IMAP");
        Self::over(stream).await
    }

    async fn over(stream: tokio::net::TcpStream) -> (ImapProbe, String) {
        let mut client = ImapProbe {
            reader: BufReader::new(stream),
            next: 1,
        };
        let greeting = client.line().await;
        (client, greeting)
    }

    pub async fn line(&mut self) -> String {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            self.reader.read_until(b'\n', &mut line),
        )
        .await;
        assert!(
            matches!(read, Ok(Ok(n)) if n > 0),
            "the server answers (got {:?} so far)",
            String::from_utf8_lossy(&line)
        );
        let mut text = String::from_utf8_lossy(&line).into_owned();
        // A literal follows: read it into the same response.
        while let Some(n) = literal(&text) {
            let mut data = vec![0u8; n];
            self.reader
                .read_exact(&mut data)
                .await
                .expect("literal data");
            text.push_str(&String::from_utf8_lossy(&data));
            let mut rest = Vec::new();
            self.reader
                .read_until(b'\n', &mut rest)
                .await
                .expect("after the literal");
            text.push_str(&String::from_utf8_lossy(&rest));
        }
        text
    }

    /// Everything the server sends until it closes the connection (20 s at
    /// most): for a session the server is expected to end.
    pub async fn until_closed(&mut self) -> String {
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(20), self.reader.read_to_end(&mut rest)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "the server closes the connection (got {:?} so far)",
            String::from_utf8_lossy(&rest)
        );
        String::from_utf8_lossy(&rest).into_owned()
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.expect("write");
    }

    /// Sends `command` with a fresh tag; returns (untagged lines, tagged line).
    pub async fn run(&mut self, command: &str) -> (Vec<String>, String) {
        let tag = format!("t{}", self.next);
        self.next += 1;
        self.send_raw(format!("{tag} {command}\r\n").as_bytes())
            .await;
        self.until(&tag).await
    }

    pub async fn until(&mut self, tag: &str) -> (Vec<String>, String) {
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await;
            if line.starts_with(&format!("{tag} ")) {
                return (untagged, line);
            }
            untagged.push(line);
        }
    }

    pub async fn login(&mut self, address: &str, password: &str) {
        let (_, done) = self
            .run(&format!("LOGIN \"{address}\" \"{password}\""))
            .await;
        assert!(done.contains(" OK "), "{done}");
    }
}

fn literal(line: &str) -> Option<usize> {
    let trimmed = line.strip_suffix("\r\n")?;
    let inner = trimmed.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].parse().ok()
}
