//! The connections one listener holds, in all and per client address, for
//! SMTP and IMAP alike: a connection past either cap is refused before its
//! session starts, so a flood can neither exhaust the process nor let one
//! client crowd out the others.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Why a connection was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The listener holds `max_connections` already.
    Instance,
    /// This client address holds `max_connections_per_ip` already.
    Address,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The open connections of one listener.
pub(crate) struct Connections {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
    /// Woken whenever a place is given back.
    freed: tokio::sync::Notify,
}

/// One admitted connection; its place is given back when dropped.
pub(crate) struct Slot {
    ip: IpAddr,
    connections: Arc<Connections>,
}

/// How long a connection from an address at its cap waits for one of its
/// sessions to end before it is refused (see `Connections::admit_within`).
/// Every listener (SMTP, IMAP, ManageSieve) admits with it.
pub(crate) const ADMISSION_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl Connections {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_ip,
            counts: Mutex::default(),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// [`Connections::admit`], waiting up to `grace` for a place to come
    /// back when this address holds its share. A sender that reconnects as
    /// soon as its previous session ends (Postfix's `smtp-source`, a relay
    /// with a connection per message) would otherwise find that session
    /// still counted: the server learns of the close only when it reads it.
    /// A full listener is refused at once.
    pub(crate) async fn admit_within(
        self: &Arc<Self>,
        ip: IpAddr,
        grace: std::time::Duration,
    ) -> Result<Slot, Full> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.admit(ip) {
                Err(Full::Address) if tokio::time::Instant::now() < deadline => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return self.admit(ip);
                    }
                }
                answer => return answer,
            }
        }
    }

    /// [`Connections::admit_within`] the grace for a line protocol (IMAP,
    /// ManageSieve): a refused client is told why, `instance` or
    /// `address` by the cap it met, with at most 5 s spent writing it.
    pub(crate) async fn admit_or_tell<S>(
        self: &Arc<Self>,
        stream: &mut S,
        ip: IpAddr,
        instance: &[u8],
        address: &[u8],
    ) -> Option<Slot>
    where
        S: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        match self.admit_within(ip, ADMISSION_GRACE).await {
            Ok(slot) => Some(slot),
            Err(full) => {
                let bye = match full {
                    Full::Instance => instance,
                    Full::Address => address,
                };
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), stream.write_all(bye))
                        .await;
                None
            }
        }
    }

    /// A place for a connection from `ip`, if both caps allow one.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Full> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max_total {
            return Err(Full::Instance);
        }
        let n = counts.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Full::Address);
        }
        *n += 1;
        counts.total += 1;
        Ok(Slot {
            ip,
            connections: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .connections
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
        drop(counts);
        self.connections.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_caps_hold_and_places_come_back() {
        let connections = Connections::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ([192, 0, 2, 1].into(), [192, 0, 2, 2].into());
        let first = connections.admit(a).expect("first");
        let _second = connections.admit(a).expect("second");
        assert_eq!(connections.admit(a).err(), Some(Full::Address));
        let _third = connections.admit(b).expect("another address");
        assert_eq!(connections.admit(b).err(), Some(Full::Instance));
        drop(first);
        assert!(
            connections.admit(b).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[tokio::test]
    async fn a_place_given_back_within_the_grace_admits_the_next() {
        use std::time::Duration;
        let connections = Connections::new(10, 1);
        let ip: IpAddr = [192, 0, 2, 1].into();
        let held = connections.admit(ip).expect("first");
        // Nobody gives it back: refused once the grace is over.
        let started = std::time::Instant::now();
        assert_eq!(
            connections
                .admit_within(ip, Duration::from_millis(100))
                .await
                .err(),
            Some(Full::Address)
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        // The previous session ends a moment after the next one connects: admitted.
        let freeing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(held);
        });
        assert!(
            connections
                .admit_within(ip, Duration::from_secs(2))
                .await
                .is_ok()
        );
        freeing.await.unwrap();
    }
}
