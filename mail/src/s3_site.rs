//! A real S3-compatible storage site for tests (`tests/s3/site.py`: moto in
//! server mode, one process and one bucket per site), driven from Rust. It
//! needs `CALIOP_TEST_PYTHON` (the test command's venv, which has moto).

/// One S3 server on loopback; [`S3Site::stop`] (or drop) kills it, which is
/// how a test takes a site down.
pub struct S3Site {
    pub port: u16,
    pub bucket: String,
    child: Option<std::process::Child>,
}

impl S3Site {
    pub fn start(bucket: &str) -> S3Site {
        use std::io::BufRead;
        let python = std::env::var("CALIOP_TEST_PYTHON")
            .expect("CALIOP_TEST_PYTHON names the venv python with moto (set by scripts/test)");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/s3/site.py");
        let mut child = std::process::Command::new(python)
            .arg(script)
            .arg(bucket)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the S3 site");
        let stdout = child.stdout.take().expect("site stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("site banner");
        let port = line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected S3 site banner: {line:?}"));
        S3Site {
            port,
            bucket: bucket.to_owned(),
            child: Some(child),
        }
    }

    /// The site's configuration, as an operator would write it.
    pub fn config(&self, name: &str, jurisdiction: &str) -> vault::sites::SiteConfig {
        vault::sites::SiteConfig {
            name: name.into(),
            jurisdiction: jurisdiction.into(),
            path: None,
            s3: Some(vault::sites::S3Config {
                endpoint: format!("http://127.0.0.1:{}", self.port),
                region: "us-east-1".into(),
                bucket: self.bucket.clone(),
                access_key_id: "caliop-test".into(),
                secret_access_key: vault::sites::secret("caliop-test-secret"),
            }),
        }
    }

    /// Takes the site down: its process is killed, its data gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for S3Site {
    fn drop(&mut self) {
        self.stop();
    }
}
