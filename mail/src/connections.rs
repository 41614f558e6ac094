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
}

/// One admitted connection; its place is given back when dropped.
pub(crate) struct Slot {
    ip: IpAddr,
    connections: Arc<Connections>,
}

impl Connections {
    pub(crate) fn new(max_total: usize, max_per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max_total,
            max_per_ip,
            counts: Mutex::default(),
        })
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
}
