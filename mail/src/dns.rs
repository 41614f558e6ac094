//! A DNS client pointed at one configured resolver (loopback by default, a
//! local validating resolver being what a mail server should use; tests
//! point it at a DNS server they run on loopback). Answers come back as the
//! text a person would compare against what they published.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};

/// The record types Caliop asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Txt,
    Mx,
    Cname,
    Srv,
    A,
    Aaaa,
    Tlsa,
}

impl Kind {
    fn record_type(self) -> RecordType {
        match self {
            Kind::Txt => RecordType::TXT,
            Kind::Mx => RecordType::MX,
            Kind::Cname => RecordType::CNAME,
            Kind::Srv => RecordType::SRV,
            Kind::A => RecordType::A,
            Kind::Aaaa => RecordType::AAAA,
            Kind::Tlsa => RecordType::TLSA,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("`{0}` is not a valid DNS name")]
    BadName(String),
    #[error("the DNS resolver at {resolver} did not answer for {name}: {reason}")]
    Unavailable {
        resolver: SocketAddr,
        name: String,
        reason: String,
    },
}

/// A resolver bound to one upstream address.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
    upstream: SocketAddr,
    timeout: Duration,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dns")
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl Dns {
    /// A resolver that asks only `upstream` (UDP, then TCP for truncated
    /// answers), without caching, so a record just published is seen at once.
    pub fn new(upstream: SocketAddr, timeout: Duration) -> Result<Dns, LookupError> {
        let connection = |protocol| {
            let mut config = ConnectionConfig::new(protocol);
            config.port = upstream.port();
            config
        };
        let server = NameServerConfig::new(
            upstream.ip(),
            true,
            vec![
                connection(ProtocolConfig::Udp),
                connection(ProtocolConfig::Tcp),
            ],
        );
        let config = ResolverConfig::from_parts(None, vec![], vec![server]);
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        let resolver = hickory_resolver::Resolver::builder_with_config(
            config,
            TokioRuntimeProvider::default(),
        )
        .with_options(options)
        .build()
        .map_err(|e| LookupError::Unavailable {
            resolver: upstream,
            name: String::new(),
            reason: e.to_string(),
        })?;
        Ok(Dns {
            resolver,
            upstream,
            timeout,
        })
    }

    /// Whether the resolver answers at all (an empty answer counts).
    pub async fn answers(&self) -> bool {
        // Not a special-use name (hickory answers `.invalid` itself), so the query really goes out.
        self.lookup("resolver-probe.caliop-check", Kind::Txt)
            .await
            .is_ok()
    }

    /// SPF, DKIM and DMARC checks through the same resolver.
    pub fn authenticator(&self) -> mail_auth::MessageAuthenticator {
        mail_auth::MessageAuthenticator(self.resolver.clone())
    }

    /// The records of `kind` at `name`, as text: TXT strings joined, `MX`
    /// as `priority host`, `CNAME` as the target, `SRV` as
    /// `priority weight port target`, `A`/`AAAA` as the address; names
    /// without the final dot.
    /// A name with no such records gives an empty list, not an error.
    pub async fn lookup(&self, name: &str, kind: Kind) -> Result<Vec<String>, LookupError> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let answer = match self
            .resolver
            .lookup(fqdn.as_str(), kind.record_type())
            .await
        {
            Ok(answer) => answer,
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => return Ok(Vec::new()),
            Err(NetError::Proto(e)) => return Err(LookupError::BadName(format!("{name}: {e}"))),
            Err(e) => {
                return Err(LookupError::Unavailable {
                    resolver: self.upstream,
                    name: name.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(answer
            .answers()
            .iter()
            .filter_map(|record| render(kind, &record.data))
            .collect())
    }

    /// [`Dns::lookup`], asked directly of the configured resolver with the
    /// AD bit set (RFC 6840 §5.7), answering whether the resolver says the
    /// answer was validated with DNSSEC. Only a validating resolver on a
    /// trusted path (loopback, as `dns.resolver` should be) makes that
    /// worth anything; DANE rests on it.
    pub async fn lookup_validated(
        &self,
        name: &str,
        kind: Kind,
    ) -> Result<(Vec<String>, bool), LookupError> {
        use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
        use hickory_resolver::proto::rr::Name;
        let unavailable = |reason: String| LookupError::Unavailable {
            resolver: self.upstream,
            name: name.to_owned(),
            reason,
        };
        let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
            .map_err(|e| LookupError::BadName(format!("{name}: {e}")))?;
        let id: u16 = rand::random();
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.metadata.authentic_data = true;
        query.add_query(Query::query(fqdn, kind.record_type()));
        let bytes = query.to_vec().map_err(|e| unavailable(e.to_string()))?;
        let local: SocketAddr = if self.upstream.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let socket = tokio::net::UdpSocket::bind(local)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        socket
            .connect(self.upstream)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        socket
            .send(&bytes)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let mut buf = vec![0u8; 65_535];
        let response = tokio::time::timeout(self.timeout, async {
            loop {
                let len = socket.recv(&mut buf).await?;
                if let Ok(message) = Message::from_vec(&buf[..len])
                    && message.metadata.id == id
                {
                    return Ok::<_, std::io::Error>(message);
                }
            }
        })
        .await
        .map_err(|_| unavailable("no answer in time".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
        let authentic = response.metadata.authentic_data;
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Ok((Vec::new(), authentic)),
            other => return Err(unavailable(format!("answered {other}"))),
        }
        // A truncated answer is not taken as validated (it is incomplete).
        let authentic = authentic && !response.metadata.truncation;
        Ok((
            response
                .answers
                .iter()
                .filter_map(|record| render(kind, &record.data))
                .collect(),
            authentic,
        ))
    }
}

/// One record of `kind` as text (see [`Dns::lookup`]).
fn render(kind: Kind, data: &RData) -> Option<String> {
    let trim = |s: String| s.trim_end_matches('.').to_owned();
    match data {
        RData::TXT(txt) if kind == Kind::Txt => Some(
            txt.txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part).into_owned())
                .collect::<String>(),
        ),
        RData::MX(mx) if kind == Kind::Mx => Some(format!(
            "{} {}",
            mx.preference,
            trim(mx.exchange.to_ascii())
        )),
        RData::CNAME(target) if kind == Kind::Cname => Some(trim(target.0.to_ascii())),
        RData::SRV(srv) if kind == Kind::Srv => Some(format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            trim(srv.target.to_ascii())
        )),
        RData::A(a) if kind == Kind::A => Some(a.0.to_string()),
        RData::AAAA(a) if kind == Kind::Aaaa => Some(a.0.to_string()),
        RData::TLSA(t) if kind == Kind::Tlsa => Some(format!(
            "{} {} {} {}",
            u8::from(t.cert_usage),
            u8::from(t.selector),
            u8::from(t.matching),
            t.cert_data
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )),
        _ => None,
    }
}
