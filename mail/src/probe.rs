//! A hand-driven SMTP client for tests, to see every reply code exactly
//! (and to measure the server without a client library in the way).

/// Headers of a message `alice@acme.test` submits that name an author
/// besides her (finding 7 of issue 17), each with the words the refusal
/// must give: both doors (API and submission) are tried with these.
pub const FORGED_AUTHORS: [(&str, &str); 4] = [
    (
        "From: <alice@acme.test>\r\nFrom: CEO <admin@acme.test>\r\n",
        "2 From headers",
    ),
    (
        "From: <alice@acme.test>, CEO <admin@acme.test>\r\n",
        "2 addresses",
    ),
    (
        "From: CEO <admin@acme.test>, <alice@acme.test>\r\n",
        "2 addresses",
    ),
    (
        "From: <alice@acme.test>\r\nSender: <admin@acme.test>\r\n",
        "Sender header",
    ),
];

/// The argument of `AUTH PLAIN` (RFC 4616) for `address` and `password`.
pub fn auth_plain(address: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{address}\0{password}"))
}

pub struct SmtpProbe {
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
    pub greeting: (u16, String),
}

impl SmtpProbe {
    pub async fn connect(smtp: std::net::SocketAddr) -> SmtpProbe {
        let stream = tokio::net::TcpStream::connect(smtp)
            .await
            .expect("connect to SMTP");
        Self::over(stream).await
    }

    /// Connects from `local` (any 127.0.0.0/8 address works on loopback),
    /// to play a client on another network.
    pub async fn connect_from(smtp: std::net::SocketAddr, local: std::net::IpAddr) -> SmtpProbe {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(local, 0))
            .expect("bind the client address");
        let stream = socket.connect(smtp).await.expect("connect to SMTP");
        Self::over(stream).await
    }

    async fn over(stream: tokio::net::TcpStream) -> SmtpProbe {
        let mut probe = SmtpProbe {
            reader: tokio::io::BufReader::new(stream),
            greeting: (0, String::new()),
        };
        probe.greeting = probe.read_reply().await;
        probe
    }

    pub async fn read_reply(&mut self) -> (u16, String) {
        use tokio::io::AsyncBufReadExt;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.expect("read reply");
            if n == 0 {
                return (0, text);
            }
            text.push_str(line.get(4..).unwrap_or_default().trim_end());
            text.push('\n');
            if line.as_bytes().get(3) != Some(&b'-') {
                return (line[..3].parse().expect("reply code"), text);
            }
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.reader.get_mut().write_all(bytes).await.expect("write");
    }

    /// Sends one command line and returns the reply.
    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.read_reply().await
    }

    /// Asserts the reply to `line` has this code and enhanced status.
    pub async fn expect(&mut self, line: &str, code: u16, status: &str) -> String {
        let (got, text) = self.cmd(line).await;
        assert_eq!(got, code, "`{line}` answered {got} {text}");
        assert!(
            text.starts_with(status),
            "`{line}` answered {got} {text}, expected status {status}"
        );
        text
    }
}
