//! Debian's `pebble` (Let's Encrypt's test ACME server) on loopback, for
//! tests: its own HTTPS under a test authority made here, HTTP-01 checked
//! on the port given, names resolved through the test's DNS server.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::https_server::TestCa;

/// A running pebble: its directory URL and what it signs with.
pub struct Pebble {
    child: Child,
    /// Its ACME directory URL.
    pub directory: String,
    management: u16,
    dir: tempfile::TempDir,
    /// The authority of pebble's own HTTPS (ours, made here): what an ACME
    /// client must trust to reach the directory.
    pub ca: TestCa,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port`, resolving through `dns`.
    pub fn start(http_port: u16, dns: std::net::SocketAddr) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let own = ca.issue(&["localhost"]);
        std::fs::write(dir.path().join("cert.pem"), &own.cert_pem).unwrap();
        std::fs::write(dir.path().join("key.pem"), &own.key_pem).unwrap();
        let (listen, management) = (free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false
        }});
        std::fs::write(dir.path().join("pebble.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(dir.path().join("pebble.json"))
            .arg("-dnsserver")
            .arg(dns.to_string())
            // No random sleeps before validation, and no nonce rejected on purpose.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("pebble (Debian package `pebble`) must be installed: .ci/run installs it");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", listen)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Pebble {
            child,
            directory: format!("https://localhost:{listen}/dir"),
            management,
            dir,
            ca,
        }
    }

    /// The root pebble issues certificates under (its management interface).
    pub fn issuing_root(&self) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let ca = self.dir.path().join("ca.pem");
        std::fs::write(&ca, self.ca.root_pem()).unwrap();
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&ca)
            .arg(format!("https://localhost:{}/roots/0", self.management))
            .output()
            .unwrap();
        assert!(out.status.success(), "pebble's root: {out:?}");
        CertificateDer::from_pem_slice(&out.stdout).unwrap()
    }

    /// Where its configuration and log are.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
