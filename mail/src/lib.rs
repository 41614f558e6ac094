//! Mail on the wire. Today: the DNS client every mail check goes through
//! (domain ownership and published records); the SMTP server, MIME parsing
//! and SPF/DKIM/DMARC arrive with the inbound-mail issue.

pub mod dns;

#[cfg(any(test, feature = "testing"))]
pub mod dns_server;
