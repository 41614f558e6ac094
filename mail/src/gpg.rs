//! GnuPG, the OpenPGP implementation nobody here wrote, for tests that check
//! what we seal and sign against it.

/// Runs gpg in its own home; returns (success, stdout, stderr).
pub fn gpg(home: &std::path::Path, args: &[&str], input: &[u8]) -> (bool, Vec<u8>, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty", "--pinentry-mode", "loopback"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpg is installed (the test command installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to gpg");
    let out = child.wait_with_output().expect("gpg runs");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A throw-away GnuPG home whose agent caches no passphrase (so a wrong one
/// is really tried) and is stopped when the home is dropped.
pub struct GpgHome(tempfile::TempDir);

impl GpgHome {
    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.0.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A fresh home for [`gpg`].
pub fn gpg_home() -> GpgHome {
    let home = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        home.path().join("gpg-agent.conf"),
        "default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n",
    )
    .expect("gpg-agent.conf");
    GpgHome(home)
}
