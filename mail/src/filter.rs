//! Spam and virus verdicts, taken on arrival while the plaintext exists in
//! memory, before a message is stored at any level. Two filters:
//!
//! - **Rspamd** (`filter.rspamd_url`), through its HTTP protocol: `/checkv2`
//!   with the envelope, client IP, HELO, TLS and authentication facts as
//!   headers, and `/learnspam`, `/learnham` when an account judges a
//!   `standard` message (`Deliver-To` names the tenant, for Bayes statistics
//!   per tenant with `per_user = true`). Viruses come back as its antivirus
//!   module's symbols (`filter.virus_symbols`).
//! - **The built-in baseline**, which needs no other service: DNSBL and
//!   DNSWL lookups of the client IP and domain blocklists of the sender
//!   domain through the configured resolver (Spamhaus ZEN-style return
//!   codes), the SPF, DKIM and DMARC results already computed, and a few
//!   cheap heuristics. It files in Junk; it never refuses mail from outside
//!   on its own score.
//!
//! Either way, `filter.clamd` scans the message with ClamAV directly
//! (`INSTREAM`). What the verdict makes of a message is
//! [`tenants::Verdict::disposition`]; what a failing filter makes of it is
//! `filter.on_error`. Nothing here logs a header or a body.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use serde::Deserialize;
use tenants::{SpamAction, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::{Dns, Kind};

/// What to do with mail when the filter cannot give a verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// `451 4.7.1`: the sender retries later; nothing is lost.
    #[default]
    Tempfail,
    /// Stored unscanned (its verdict says so), and counted.
    Accept,
}

#[derive(Clone, Debug)]
pub struct FilterConfig {
    /// Rspamd's controller, e.g. `http://127.0.0.1:11334` (it answers both
    /// `/checkv2` and the learn endpoints). `None`: the built-in filter.
    pub rspamd_url: Option<String>,
    /// The controller's password, for learning (not needed from `secure_ip`).
    pub rspamd_password: Option<String>,
    /// ClamAV's clamd, `host:port`, asked directly.
    pub clamd: Option<String>,
    pub on_error: OnError,
    pub timeout: Duration,
    /// DNS blocklists of client IPs (e.g. `zen.spamhaus.org`).
    pub dnsbl: Vec<String>,
    /// DNS allowlists of client IPs (e.g. `list.dnswl.org`).
    pub dnswl: Vec<String>,
    /// DNS blocklists of sender domains (e.g. `dbl.spamhaus.org`).
    pub domain_blocklists: Vec<String>,
    /// Rspamd symbols that name a virus.
    pub virus_symbols: Vec<String>,
    /// The built-in filter's score from which mail goes to Junk.
    pub junk_score: f64,
    /// Refusals of an account's submissions within 24 hours after which it
    /// loses sending until an operator looks (0: never).
    pub outbound_strikes: u32,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            rspamd_url: None,
            rspamd_password: None,
            clamd: None,
            on_error: OnError::Tempfail,
            timeout: Duration::from_secs(15),
            dnsbl: vec!["zen.spamhaus.org".into()],
            dnswl: vec!["list.dnswl.org".into()],
            domain_blocklists: vec!["dbl.spamhaus.org".into()],
            virus_symbols: vec!["CLAM_VIRUS".into(), "CLAMAV_VIRUS".into()],
            junk_score: 6.0,
            outbound_strikes: 3,
        }
    }
}

/// What the filter is told about one message.
pub struct Scan<'a> {
    pub client_ip: IpAddr,
    pub helo: &'a str,
    /// The envelope sender; empty for bounces.
    pub from: &'a str,
    pub recipients: Vec<&'a str>,
    /// 0 in clear, 12 or 13 for TLS 1.2 or 1.3.
    pub tls_version: u8,
    pub tls_cipher: Option<&'a str>,
    /// The authenticated account, for mail our own users submit.
    pub user: Option<&'a str>,
    /// Whose Bayes statistics apply (the tenant, sent as `Deliver-To`, as
    /// when learning): set when every recipient (or the sender, outbound)
    /// belongs to one tenant.
    pub class: Option<&'a str>,
    /// `pass`, `fail`, `softfail`, `none`… as the MX computed them.
    pub spf: &'a str,
    pub dkim: &'a str,
    pub dmarc: &'a str,
    pub dmarc_policy: &'a str,
    pub data: &'a [u8],
}

/// Why no verdict could be taken.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

/// Verdicts and failures, for `/metrics`.
#[derive(Default)]
struct Counters {
    /// Indexed like [`SpamAction::ALL`], then viruses, then unscanned.
    verdicts: [AtomicU64; 8],
    errors: AtomicU64,
}

/// The spam and virus filter every door that stores mail asks.
pub struct Filter {
    config: FilterConfig,
    /// For the built-in filter's DNS lists (none: they are skipped).
    dns: Option<Dns>,
    counters: Counters,
}

const GTUBE: &[u8] = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

impl Filter {
    pub fn new(config: FilterConfig, dns: Option<Dns>) -> Filter {
        Filter {
            config,
            dns,
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &FilterConfig {
        &self.config
    }

    /// Which filter runs, in a sentence for `serve`'s banner.
    pub fn describe(&self) -> String {
        let spam = match &self.config.rspamd_url {
            Some(url) => format!("Rspamd at {url}"),
            None if self.dns.is_some() => format!(
                "built-in (DNS lists: {}; files in Junk from score {})",
                self.config
                    .dnsbl
                    .iter()
                    .chain(&self.config.dnswl)
                    .chain(&self.config.domain_blocklists)
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                self.config.junk_score
            ),
            None => format!(
                "built-in without DNS lists (no resolver); files in Junk from score {}",
                self.config.junk_score
            ),
        };
        let virus = match &self.config.clamd {
            Some(clamd) => format!(", viruses: clamd at {clamd}"),
            None if self.config.rspamd_url.is_some() => {
                ", viruses: Rspamd's antivirus module".into()
            }
            None => ", viruses: not scanned".into(),
        };
        let on_error = match self.config.on_error {
            OnError::Tempfail => "tempfail",
            OnError::Accept => "accept unscanned",
        };
        format!("{spam}{virus}; on error: {on_error}")
    }

    /// The verdict on a message arriving (or submitted, with `scan.user`).
    pub async fn scan(&self, scan: &Scan<'_>) -> Result<Verdict, FilterError> {
        let outcome = self.judge(scan).await;
        match &outcome {
            Ok(verdict) => self.count(verdict),
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "the content filter gave no verdict");
            }
        }
        outcome
    }

    async fn judge(&self, scan: &Scan<'_>) -> Result<Verdict, FilterError> {
        let mut verdict = match &self.config.rspamd_url {
            Some(url) => self.rspamd(url, scan).await?,
            None => self.builtin(scan).await,
        };
        // A message refused anyway needs no virus scan.
        if let Some(clamd) = &self.config.clamd
            && verdict.virus.is_none()
            && verdict.action != SpamAction::Reject
            && let Some(virus) = self.clamd(clamd, scan.data).await?
        {
            verdict.virus = Some(virus);
            verdict.symbols.insert(0, "CLAMD_VIRUS".into());
        }
        Ok(verdict)
    }

    /// Counts a verdict (and, from the caller, a message accepted unscanned
    /// because the filter failed and `filter.on_error` is `accept`).
    pub fn count(&self, verdict: &Verdict) {
        let index = if verdict.virus.is_some() {
            6
        } else if verdict.filter == "unscanned" {
            7
        } else {
            SpamAction::ALL
                .iter()
                .position(|a| *a == verdict.action)
                .unwrap_or(0)
        };
        self.counters.verdicts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let mut text = String::from(
            "# HELP caliop_filter_verdicts Spam and virus verdicts by action.\n# TYPE caliop_filter_verdicts counter\n",
        );
        let labels = SpamAction::ALL
            .iter()
            .map(|a| a.as_str())
            .chain(["virus", "unscanned"]);
        for (label, count) in labels.zip(&self.counters.verdicts) {
            text.push_str(&format!(
                "caliop_filter_verdicts_total{{action=\"{label}\"}} {}\n",
                count.load(Ordering::Relaxed)
            ));
        }
        text.push_str(&format!(
            "# HELP caliop_filter_errors Scans that gave no verdict (timeouts, a filter down).\n# TYPE caliop_filter_errors counter\ncaliop_filter_errors_total {}\n",
            self.counters.errors.load(Ordering::Relaxed)
        ));
        text
    }

    /// Tells Rspamd an account judged this `standard` message spam (or not),
    /// for the Bayes statistics of `class` (the tenant). Without Rspamd
    /// there is nothing to teach: the account's sender rules are the
    /// built-in filter's memory.
    pub async fn learn(
        &self,
        spam: bool,
        message: &[u8],
        class: &str,
    ) -> Result<bool, FilterError> {
        let Some(url) = &self.config.rspamd_url else {
            return Ok(false);
        };
        let path = if spam { "/learnspam" } else { "/learnham" };
        let mut headers = vec![("Deliver-To", class.to_owned())];
        if let Some(password) = &self.config.rspamd_password {
            headers.push(("Password", password.clone()));
        }
        let (status, body) = self.post(url, path, &headers, message.to_vec()).await?;
        // 208: already learned the same way; not an error.
        if status == 200 || status == 208 {
            return Ok(true);
        }
        let why = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("status {status}"));
        Err(FilterError(format!("Rspamd did not learn: {why}")))
    }

    async fn rspamd(&self, url: &str, scan: &Scan<'_>) -> Result<Verdict, FilterError> {
        let mut headers: Vec<(&str, String)> = vec![
            ("IP", scan.client_ip.to_string()),
            ("Helo", scan.helo.to_owned()),
            ("MTA-Name", "caliop".to_owned()),
        ];
        if !scan.from.is_empty() {
            headers.push(("From", scan.from.to_owned()));
        }
        for rcpt in &scan.recipients {
            headers.push(("Rcpt", (*rcpt).to_owned()));
        }
        if let Some(user) = scan.user {
            headers.push(("User", user.to_owned()));
        }
        if let Some(class) = scan.class {
            headers.push(("Deliver-To", class.to_owned()));
        }
        if scan.tls_version > 0 {
            headers.push(("TLS-Version", format!("1.{}", scan.tls_version % 10)));
            if let Some(cipher) = scan.tls_cipher {
                headers.push(("TLS-Cipher", cipher.to_owned()));
            }
        }
        if let Some(password) = &self.config.rspamd_password {
            headers.push(("Password", password.clone()));
        }
        let (status, body) = self
            .post(url, "/checkv2", &headers, scan.data.to_vec())
            .await?;
        if status != 200 {
            return Err(FilterError(format!("Rspamd answered status {status}")));
        }
        let answer: RspamdAnswer = serde_json::from_slice(&body)
            .map_err(|e| FilterError(format!("Rspamd's answer does not parse: {e}")))?;
        let action = match answer.action.as_str() {
            "no action" => SpamAction::NoAction,
            "greylist" => SpamAction::Greylist,
            "add header" => SpamAction::AddHeader,
            "rewrite subject" => SpamAction::RewriteSubject,
            "soft reject" => SpamAction::SoftReject,
            "reject" => SpamAction::Reject,
            other => return Err(FilterError(format!("Rspamd's action `{other}` is unknown"))),
        };
        let mut symbols: Vec<(&String, &RspamdSymbol)> = answer.symbols.iter().collect();
        symbols.sort_by(|a, b| {
            b.1.score
                .abs()
                .total_cmp(&a.1.score.abs())
                .then(a.0.cmp(b.0))
        });
        let virus = symbols
            .iter()
            .find(|(name, _)| self.config.virus_symbols.contains(name))
            .map(|(name, s)| {
                s.options
                    .first()
                    .cloned()
                    .unwrap_or_else(|| (*name).clone())
            });
        Ok(Verdict {
            filter: "rspamd".into(),
            action,
            score: answer.score,
            symbols: symbols.into_iter().map(|(n, _)| n.clone()).collect(),
            virus,
            sender_rule: None,
        })
    }

    /// The built-in filter: DNS lists, authentication results, heuristics.
    async fn builtin(&self, scan: &Scan<'_>) -> Verdict {
        let mut hits: Vec<(String, f64)> = Vec::new();
        if let Some(dns) = &self.dns {
            let mut lookups = tokio::task::JoinSet::new();
            // The client of mail our own users submit is us.
            if scan.user.is_none() {
                let reversed = reversed_ip(scan.client_ip);
                for (zone, weight) in self
                    .config
                    .dnsbl
                    .iter()
                    .map(|z| (z, 6.5))
                    .chain(self.config.dnswl.iter().map(|z| (z, -2.0)))
                {
                    let (dns, name, zone) =
                        (dns.clone(), format!("{reversed}.{zone}"), zone.clone());
                    lookups.spawn(async move {
                        (zone, weight, listed(&dns, &name, weight > 0.0).await)
                    });
                }
            }
            if let Some((_, domain)) = scan.from.rsplit_once('@') {
                for zone in &self.config.domain_blocklists {
                    let (dns, name, zone) = (dns.clone(), format!("{domain}.{zone}"), zone.clone());
                    lookups.spawn(async move { (zone, 6.0, listed(&dns, &name, true).await) });
                }
            }
            while let Some(Ok((zone, weight, listed))) = lookups.join_next().await {
                if listed {
                    let symbol = if weight < 0.0 { "DNSWL" } else { "DNSBL" };
                    hits.push((format!("{symbol}({zone})"), weight));
                }
            }
        }
        match scan.spf {
            "fail" => hits.push(("SPF_FAIL".into(), 2.0)),
            "softfail" => hits.push(("SPF_SOFTFAIL".into(), 1.0)),
            _ => {}
        }
        if scan.dkim == "fail" {
            hits.push(("DKIM_FAIL".into(), 1.0));
        }
        if scan.dmarc == "fail" {
            // The domain asked for failing mail to be quarantined: Junk.
            let weight = if scan.dmarc_policy == "quarantine" {
                6.0
            } else {
                1.0
            };
            hits.push(("DMARC_FAIL".into(), weight));
        }
        hits.extend(heuristics(scan.data));
        hits.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        let score: f64 = hits.iter().map(|(_, w)| w).sum();
        let action = if score >= self.config.junk_score {
            SpamAction::AddHeader
        } else {
            SpamAction::NoAction
        };
        Verdict {
            filter: "builtin".into(),
            action,
            score: (score * 100.0).round() / 100.0,
            symbols: hits.into_iter().map(|(s, _)| s).collect(),
            virus: None,
            sender_rule: None,
        }
    }

    /// `zINSTREAM` to clamd: the virus's name, or `None` when clean.
    async fn clamd(&self, address: &str, data: &[u8]) -> Result<Option<String>, FilterError> {
        let failed = |e: &dyn std::fmt::Display| FilterError(format!("clamd at {address}: {e}"));
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| failed(&e))?;
            stream
                .write_all(b"zINSTREAM\0")
                .await
                .map_err(|e| failed(&e))?;
            for chunk in data.chunks(64 * 1024) {
                stream
                    .write_all(&(chunk.len() as u32).to_be_bytes())
                    .await
                    .map_err(|e| failed(&e))?;
                stream.write_all(chunk).await.map_err(|e| failed(&e))?;
            }
            stream
                .write_all(&[0, 0, 0, 0])
                .await
                .map_err(|e| failed(&e))?;
            let mut answer = Vec::new();
            stream
                .take(4096)
                .read_to_end(&mut answer)
                .await
                .map_err(|e| failed(&e))?;
            Ok::<_, FilterError>(answer)
        };
        let answer = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| failed(&"no answer in time"))??;
        clamd_answer(&answer).map_err(|e| failed(&e))
    }

    /// One POST to Rspamd: its status and body.
    async fn post(
        &self,
        url: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), FilterError> {
        let (authority, base) = split_url(url)?;
        let failed = |e: &dyn std::fmt::Display| FilterError(format!("Rspamd at {url}: {e}"));
        let exchange = async {
            let tcp = tokio::net::TcpStream::connect(&authority)
                .await
                .map_err(|e| failed(&e))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(|e| failed(&e))?;
            tokio::spawn(connection);
            let mut request = hyper::Request::post(format!("{base}{path}"))
                .header(hyper::header::HOST, &authority)
                .header(hyper::header::USER_AGENT, "Caliop");
            for (name, value) in headers {
                // Header values from the envelope are already SMTP-checked;
                // anything that is not a valid header value is left out.
                if let Ok(value) = hyper::header::HeaderValue::from_str(value) {
                    request = request.header(*name, value);
                }
            }
            let request = request
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| failed(&e))?;
            let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), 4 << 20)
                .collect()
                .await
                .map_err(|e| failed(&e))?;
            Ok::<_, FilterError>((status, body.to_bytes().to_vec()))
        };
        tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| {
                failed(&format!(
                    "no answer within {} s",
                    self.config.timeout.as_secs()
                ))
            })?
    }
}

#[derive(Deserialize)]
struct RspamdAnswer {
    action: String,
    #[serde(default)]
    score: f64,
    #[serde(default)]
    symbols: std::collections::BTreeMap<String, RspamdSymbol>,
}

#[derive(Deserialize)]
struct RspamdSymbol {
    #[serde(default)]
    score: f64,
    #[serde(default)]
    options: Vec<String>,
}

/// `http://host:port/base` → (`host:port`, `/base`). Rspamd speaks plain
/// HTTP: keep it on loopback or a private network.
fn split_url(url: &str) -> Result<(String, String), FilterError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        FilterError(format!(
            "filter.rspamd_url `{url}` must start with http:// (Rspamd's controller speaks plain HTTP)"
        ))
    })?;
    let (authority, base) = rest.split_once('/').unwrap_or((rest, ""));
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let base = base.trim_end_matches('/');
    Ok((
        authority,
        if base.is_empty() {
            String::new()
        } else {
            format!("/{base}")
        },
    ))
}

/// clamd's answer to `zINSTREAM`: `stream: OK`, `stream: <name> FOUND`, or an error.
fn clamd_answer(answer: &[u8]) -> Result<Option<String>, String> {
    let text = String::from_utf8_lossy(answer);
    let text = text.trim_end_matches(['\0', '\n']).trim();
    let result = text.strip_prefix("stream:").map(str::trim).unwrap_or(text);
    if result == "OK" {
        Ok(None)
    } else if let Some(name) = result.strip_suffix("FOUND") {
        Ok(Some(name.trim().to_owned()))
    } else {
        Err(format!("clamd answered `{result}`"))
    }
}

/// The IP as a DNS list wants it: IPv4 octets reversed, IPv6 nibbles reversed.
fn reversed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => v6
            .octets()
            .iter()
            .rev()
            .flat_map(|byte| [byte & 0x0f, byte >> 4])
            .map(|nibble| format!("{nibble:x}"))
            .collect::<Vec<_>>()
            .join("."),
    }
}

/// Whether `name` is listed: an answer in 127.0.0.0/8, except the codes
/// lists use to say the query itself was refused (127.255.255.0/24, e.g.
/// Spamhaus to open resolvers) and, for allowlists, dnswl.org's 127.0.0.255.
/// A failed lookup lists nothing.
async fn listed(dns: &Dns, name: &str, blocklist: bool) -> bool {
    let Ok(answers) = dns.lookup(name, Kind::A).await else {
        return false;
    };
    answers
        .iter()
        .any(|a| match a.parse::<std::net::Ipv4Addr>() {
            Ok(ip) => {
                let [a, b, c, d] = ip.octets();
                a == 127
                    && !(b == 255 && c == 255)
                    && (blocklist || d != 255)
                    && ip != std::net::Ipv4Addr::LOCALHOST
            }
            Err(_) => false,
        })
}

/// Cheap tests of the message itself.
fn heuristics(data: &[u8]) -> Vec<(String, f64)> {
    let mut hits = Vec::new();
    if data.windows(GTUBE.len()).any(|w| w == GTUBE) {
        hits.push(("GTUBE".to_owned(), 100.0));
    }
    let Some(message) = mail_parser::MessageParser::default().parse_headers(data) else {
        return hits;
    };
    if message.date().is_none() {
        hits.push(("MISSING_DATE".into(), 1.0));
    }
    if message.message_id().is_none() {
        hits.push(("MISSING_MESSAGE_ID".into(), 1.0));
    }
    if message.from().is_none() {
        hits.push(("MISSING_FROM".into(), 2.0));
    }
    if let Some(subject) = message.subject() {
        let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() >= 10 && letters.iter().all(|c| c.is_uppercase()) {
            hits.push(("SUBJECT_ALL_CAPS".into(), 1.0));
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamd_answers_are_read() {
        assert_eq!(clamd_answer(b"stream: OK\0"), Ok(None));
        assert_eq!(
            clamd_answer(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"),
            Ok(Some("Eicar-Test-Signature.UNOFFICIAL".into()))
        );
        assert!(clamd_answer(b"INSTREAM size limit exceeded. ERROR\0").is_err());
    }

    #[test]
    fn ips_are_reversed_for_dns_lists() {
        assert_eq!(reversed_ip("192.0.2.99".parse().unwrap()), "99.2.0.192");
        let v6 = reversed_ip("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0."), "{v6}");
        assert!(v6.ends_with(".8.b.d.0.1.0.0.2"), "{v6}");
        assert_eq!(v6.split('.').count(), 32);
    }

    #[test]
    fn rspamd_urls_split() {
        assert_eq!(
            split_url("http://127.0.0.1:11334").unwrap(),
            ("127.0.0.1:11334".into(), String::new())
        );
        assert_eq!(
            split_url("http://rspamd/base/").unwrap(),
            ("rspamd:80".into(), "/base".into())
        );
        assert!(split_url("https://rspamd:11334").is_err());
    }

    #[test]
    fn heuristics_see_gtube_and_missing_headers() {
        let gtube = format!(
            "From: a@b.test\r\nDate: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@b.test>\r\nSubject: hi\r\n\r\n{}\r\n",
            std::str::from_utf8(GTUBE).unwrap()
        );
        assert_eq!(
            heuristics(gtube.as_bytes()),
            vec![("GTUBE".to_owned(), 100.0)]
        );
        let bare = heuristics(b"Subject: BUY CHEAP WATCHES NOW\r\n\r\nhello\r\n");
        let names: Vec<&str> = bare.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "MISSING_DATE",
                "MISSING_MESSAGE_ID",
                "MISSING_FROM",
                "SUBJECT_ALL_CAPS"
            ]
        );
    }
}
