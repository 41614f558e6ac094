//! Mail on the wire: the inbound SMTP server (the MX), what it does with a
//! message before answering `250`, MIME parsing, SPF/DKIM/DMARC, TLS, and
//! the DNS client every mail check goes through.

pub mod acme;
pub mod append;
pub mod automatic;
pub mod certs;
mod connections;
pub mod dane;
pub mod dispersed;
pub mod dns;
pub mod dsn;
pub mod egress;
pub mod filter;
pub mod https;
pub mod imap;
pub mod inbound;
mod lines;
pub mod managesieve;
pub mod mta_sts;
pub mod outbound;
pub mod reply;
pub mod scripts;
pub mod smtp;
pub mod stored;
pub mod templates;
pub mod tls;
pub mod tls_reports;
pub mod wkd;

#[cfg(any(test, feature = "testing"))]
pub mod dns_server;
#[cfg(any(test, feature = "testing"))]
pub mod gpg;
#[cfg(any(test, feature = "testing"))]
pub mod https_server;
#[cfg(any(test, feature = "testing"))]
pub mod imap_probe;
#[cfg(any(test, feature = "testing"))]
pub mod pebble;
#[cfg(any(test, feature = "testing"))]
pub mod probe;
#[cfg(any(test, feature = "testing"))]
pub mod s3_site;
#[cfg(any(test, feature = "testing"))]
pub mod sink;
