//! The test SMTP sink (`tests/sink/sink.py`, Python aiosmtpd) driven from
//! Rust: a real SMTP server on loopback that records what it accepts and
//! verifies DKIM signatures with dkimpy, an implementation independent of ours.
//! It needs `CALIOP_TEST_PYTHON` (a venv with aiosmtpd and dkimpy; the test
//! command sets it up).

use std::time::Duration;

/// The Python SMTP sink of `tests/sink/sink.py` (aiosmtpd), which records
/// what it accepts as JSON and verifies DKIM signatures with dkimpy.
pub struct Sink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Sink {
    pub fn start(args: &[&str]) -> Sink {
        use std::io::BufRead;
        let python = std::env::var("CALIOP_TEST_PYTHON")
            .expect("CALIOP_TEST_PYTHON names the venv python with aiosmtpd and dkimpy (set by scripts/test)");
        let dir = tempfile::tempdir().expect("sink dir");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sink/sink.py");
        let mut child = std::process::Command::new(python)
            .arg(script)
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            // The sink exits when its stdin closes: it dies with the test.
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().expect("sink stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("sink banner");
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected sink banner: {line:?}"));
        Sink { port, dir, child }
    }

    /// What the sink accepted, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            })
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                serde_json::from_slice(&std::fs::read(p).expect("sink file")).expect("sink json")
            })
            .collect()
    }

    /// Waits until the sink holds `n` messages.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= n || tokio::time::Instant::now() > deadline {
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
