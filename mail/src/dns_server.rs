//! A small authoritative DNS server on loopback UDP, for tests: it answers
//! TXT, MX, CNAME and SRV questions from a table the test fills, so domain
//! checks run against a real DNS exchange instead of a mock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{CNAME, MX, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

type Zone = Arc<Mutex<HashMap<(String, RecordType), Vec<RData>>>>;

pub struct DnsServer {
    addr: SocketAddr,
    zone: Zone,
    /// Names under these say their answers are DNSSEC-validated (the AD
    /// bit), as a validating resolver does for a signed zone.
    authentic: Authentic,
    task: tokio::task::JoinHandle<()>,
}

type Authentic = Arc<Mutex<Vec<String>>>;

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn name(text: &str) -> Name {
    Name::from_ascii(format!("{}.", text.trim_end_matches('.'))).expect("valid DNS name in test")
}

impl DnsServer {
    pub async fn start() -> std::io::Result<DnsServer> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let zone: Zone = Arc::default();
        let authentic: Authentic = Arc::default();
        let task = tokio::spawn(serve(socket, zone.clone(), authentic.clone()));
        Ok(DnsServer {
            addr,
            zone,
            authentic,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn set(&self, at: &str, kind: RecordType, data: Vec<RData>) {
        let mut zone = self.zone.lock().unwrap_or_else(|p| p.into_inner());
        if data.is_empty() {
            zone.remove(&(key(at), kind));
        } else {
            zone.insert((key(at), kind), data);
        }
    }

    /// Publishes TXT records at `at` (an empty list removes them). Values
    /// longer than 255 bytes are split into several strings, as zone files do.
    pub fn set_txt(&self, at: &str, values: &[&str]) {
        let record = |v: &&str| {
            let parts = v
                .as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            RData::TXT(TXT::new(parts))
        };
        self.set(at, RecordType::TXT, values.iter().map(record).collect());
    }

    pub fn set_mx(&self, at: &str, values: &[(u16, &str)]) {
        self.set(
            at,
            RecordType::MX,
            values
                .iter()
                .map(|(p, host)| RData::MX(MX::new(*p, name(host))))
                .collect(),
        );
    }

    /// Publishes A records (IPv4 addresses) at `at`.
    pub fn set_a(&self, at: &str, addresses: &[std::net::Ipv4Addr]) {
        self.set(
            at,
            RecordType::A,
            addresses.iter().map(|a| RData::A((*a).into())).collect(),
        );
    }

    /// Publishes AAAA records (IPv6 addresses) at `at`.
    pub fn set_aaaa(&self, at: &str, addresses: &[std::net::Ipv6Addr]) {
        self.set(
            at,
            RecordType::AAAA,
            addresses.iter().map(|a| RData::AAAA((*a).into())).collect(),
        );
    }

    pub fn set_cname(&self, at: &str, target: &str) {
        self.set(
            at,
            RecordType::CNAME,
            vec![RData::CNAME(CNAME(name(target)))],
        );
    }

    /// Answers for `zone` and the names under it are said to be validated
    /// (or no longer, with `false`).
    pub fn set_authentic(&self, zone: &str, authentic: bool) {
        let mut zones = self.authentic.lock().unwrap_or_else(|p| p.into_inner());
        zones.retain(|z| *z != key(zone));
        if authentic {
            zones.push(key(zone));
        }
    }

    /// Publishes TLSA records (`usage selector matching hex`) at `at`.
    pub fn set_tlsa(&self, at: &str, values: &[&str]) {
        use hickory_proto::rr::rdata::TLSA;
        let records = values
            .iter()
            .map(|v| {
                let t = crate::dane::Tlsa::parse(v).expect("a TLSA record in test");
                RData::TLSA(TLSA::new(
                    t.usage.into(),
                    t.selector.into(),
                    t.matching.into(),
                    t.data,
                ))
            })
            .collect();
        self.set(at, RecordType::TLSA, records);
    }

    pub fn set_srv(&self, at: &str, priority: u16, weight: u16, port: u16, target: &str) {
        self.set(
            at,
            RecordType::SRV,
            vec![RData::SRV(SRV::new(priority, weight, port, name(target)))],
        );
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, zone: Zone, authentic: Authentic) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            return;
        };
        let Ok(query) = Message::from_vec(&buf[..len]) else {
            continue;
        };
        let mut response = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.authoritative = true;
        response.metadata.recursion_desired = query.metadata.recursion_desired;
        let mut known_name = false;
        for question in &query.queries {
            let wanted = key(&question.name().to_ascii());
            let zone = zone.lock().unwrap_or_else(|p| p.into_inner());
            known_name |= zone.keys().any(|(n, _)| *n == wanted);
            for rdata in zone
                .get(&(wanted.clone(), question.query_type()))
                .into_iter()
                .flatten()
            {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    rdata.clone(),
                ));
            }
            response.add_query(question.clone());
        }
        let validated = query.queries.iter().all(|q| {
            let asked = key(&q.name().to_ascii());
            authentic
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|z| asked == *z || asked.ends_with(&format!(".{z}")))
        });
        response.metadata.authentic_data = validated && !query.queries.is_empty();
        if response.answers.is_empty() && !known_name {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        if let Ok(bytes) = response.to_vec() {
            let _ = socket.send_to(&bytes, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{Dns, Kind};
    use std::time::Duration;

    #[tokio::test]
    async fn answers_what_was_published_and_nothing_else() {
        let server = DnsServer::start().await.unwrap();
        server.set_txt("_caliop.example.com", &["caliop-verify=abc"]);
        server.set_mx("example.com", &[(10, "mx.caliop.test")]);
        server.set_srv(
            "_submission._tcp.example.com",
            0,
            1,
            587,
            "smtp.caliop.test",
        );
        let dns = Dns::new(server.addr(), Duration::from_secs(2)).unwrap();
        assert_eq!(
            dns.lookup("_caliop.example.com", Kind::Txt).await.unwrap(),
            ["caliop-verify=abc"]
        );
        assert_eq!(
            dns.lookup("Example.com.", Kind::Mx).await.unwrap(),
            ["10 mx.caliop.test"]
        );
        assert_eq!(
            dns.lookup("_submission._tcp.example.com", Kind::Srv)
                .await
                .unwrap(),
            ["0 1 587 smtp.caliop.test"]
        );
        assert!(
            dns.lookup("example.com", Kind::Txt)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            dns.lookup("nowhere.example.com", Kind::Txt)
                .await
                .unwrap()
                .is_empty()
        );
        server.set_txt("_caliop.example.com", &[]);
        assert!(
            dns.lookup("_caliop.example.com", Kind::Txt)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_silent_resolver_is_an_error_not_an_empty_answer() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns = Dns::new(silent.local_addr().unwrap(), Duration::from_millis(200)).unwrap();
        let err = dns.lookup("example.com", Kind::Txt).await.unwrap_err();
        assert!(
            matches!(err, crate::dns::LookupError::Unavailable { .. }),
            "{err}"
        );
        assert!(
            !dns.answers().await,
            "a silent resolver is reported as such"
        );
        let server = DnsServer::start().await.unwrap();
        assert!(
            Dns::new(server.addr(), Duration::from_secs(2))
                .unwrap()
                .answers()
                .await
        );
    }
}
