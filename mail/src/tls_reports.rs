//! TLS reports (SMTP TLS Reporting, RFC 8460) that other MTAs mail to the
//! `rua` address our `_smtp._tls` records name: `tls-reports@{mail host}`,
//! which the MX takes without it being anyone's mailbox. The report (JSON,
//! usually gzipped, as an `application/tlsrpt+gzip` attachment) is read
//! and each reported policy about a verified hosted domain is kept, for
//! that domain's administrators; reports about other domains are dropped.

use std::io::Read;

use chrono::{DateTime, Utc};
use mail_parser::{MessageParser, MimeHeaders};
use serde::Deserialize;
use tenants::Store;
use tenants::store::NewTlsReport;

/// The local part of the address reports are sent to, at the mail host.
pub const LOCAL_PART: &str = "tls-reports";

/// The `rua` of our `_smtp._tls` records.
pub fn address(mail_host: &str) -> String {
    format!("{LOCAL_PART}@{mail_host}")
}

/// A report's JSON is read up to this size once decompressed (a gzip bomb stops here).
const MAX_JSON: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Report {
    organization_name: String,
    date_range: DateRange,
    report_id: String,
    #[serde(default)]
    policies: Vec<PolicyResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct DateRange {
    start_datetime: DateTime<Utc>,
    end_datetime: DateTime<Utc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct PolicyResult {
    policy: Policy,
    summary: Summary,
    #[serde(default)]
    failure_details: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Policy {
    policy_type: String,
    policy_domain: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Summary {
    total_successful_session_count: i64,
    total_failure_session_count: i64,
}

/// Why a message to the report address was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no TLS report (application/tlsrpt+gzip or +json) in the message")]
    NoReport,
    #[error("the TLS report is not RFC 8460 JSON: {0}")]
    Invalid(String),
    #[error("the TLS report could not be kept: {0}")]
    Store(String),
}

/// Reads the report a message carries and keeps what concerns our domains;
/// answers how many policy results were kept.
pub async fn take(store: &Store, message: &[u8]) -> Result<usize, ReportError> {
    let report = read(message)?;
    let mut kept = 0;
    for result in &report.policies {
        let details = serde_json::to_string(&result.failure_details)
            .map_err(|e| ReportError::Invalid(e.to_string()))?;
        let domain = result
            .policy
            .policy_domain
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let new = NewTlsReport {
            domain: &domain,
            organization: &report.organization_name,
            report_id: &report.report_id,
            starts_at: report.date_range.start_datetime,
            ends_at: report.date_range.end_datetime,
            policy_type: &result.policy.policy_type,
            successes: result.summary.total_successful_session_count,
            failures: result.summary.total_failure_session_count,
            failure_details: &details,
        };
        if store
            .keep_tls_report(&new)
            .await
            .map_err(|e| ReportError::Store(e.to_string()))?
        {
            kept += 1;
        }
    }
    tracing::info!(organization = %report.organization_name, policies = report.policies.len(), kept, "TLS report received");
    Ok(kept)
}

fn read(message: &[u8]) -> Result<Report, ReportError> {
    let parsed = MessageParser::default()
        .parse(message)
        .ok_or(ReportError::NoReport)?;
    for part in parsed.parts.iter() {
        let Some(kind) = part.content_type() else {
            continue;
        };
        let subtype = kind.subtype().unwrap_or_default().to_ascii_lowercase();
        if !kind.ctype().eq_ignore_ascii_case("application") || !subtype.starts_with("tlsrpt+") {
            continue;
        }
        let body = part.contents();
        let json = if subtype == "tlsrpt+gzip" {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_JSON + 1)
                .read_to_end(&mut out)
                .map_err(|e| ReportError::Invalid(format!("not gzip: {e}")))?;
            if out.len() as u64 > MAX_JSON {
                return Err(ReportError::Invalid(
                    "larger than 1 MiB once decompressed".into(),
                ));
            }
            out
        } else {
            body.to_vec()
        };
        return serde_json::from_slice(&json).map_err(|e| ReportError::Invalid(e.to_string()));
    }
    Err(ReportError::NoReport)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"organization-name":"Company-X","date-range":{"start-datetime":"2026-12-01T00:00:00Z",
        "end-datetime":"2026-12-01T23:59:59Z"},"contact-info":"sts-reporting@company-x.example","report-id":"5065427c-23d3",
        "policies":[{"policy":{"policy-type":"sts","policy-string":["version: STSv1","mode: testing"],"policy-domain":"acme.test",
        "mx-host":["mx.caliop.test"]},"summary":{"total-successful-session-count":5326,"total-failure-session-count":303},
        "failure-details":[{"result-type":"certificate-expired","sending-mta-ip":"2001:db8:abcd:0012::1",
        "receiving-mx-hostname":"mx.caliop.test","failed-session-count":100}]}]}"#;

    fn mail(kind: &str, body: &str) -> Vec<u8> {
        format!(
            "From: reports@company-x.example\r\nTo: tls-reports@mx.caliop.test\r\nSubject: Report Domain: acme.test\r\n\
             MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=tlsrpt; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nA report.\r\n--b\r\nContent-Type: {kind}\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn gzipped(json: &str) -> String {
        use base64::Engine;
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    #[test]
    fn reads_a_gzipped_report() {
        let report = read(&mail("application/tlsrpt+gzip", &gzipped(REPORT))).unwrap();
        assert_eq!(report.organization_name, "Company-X");
        assert_eq!(report.policies.len(), 1);
        assert_eq!(report.policies[0].policy.policy_domain, "acme.test");
        assert_eq!(report.policies[0].summary.total_failure_session_count, 303);
        assert_eq!(report.policies[0].failure_details.len(), 1);
    }

    #[test]
    fn refuses_what_is_not_a_report() {
        assert!(matches!(
            read(b"Subject: hi\r\n\r\nhello\r\n"),
            Err(ReportError::NoReport)
        ));
        assert!(matches!(
            read(&mail("application/tlsrpt+gzip", &gzipped("{\"nope\": 1}"))),
            Err(ReportError::Invalid(_))
        ));
        // A bomb: a megabyte and more of zeros, compressed small.
        let bomb = gzipped(&"0".repeat(2 * 1024 * 1024));
        assert!(matches!(
            read(&mail("application/tlsrpt+gzip", &bomb)),
            Err(ReportError::Invalid(why)) if why.contains("1 MiB")
        ));
    }
}
