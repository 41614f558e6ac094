//! Stripe's webhooks: the `Stripe-Signature` check and what an event means.
//!
//! The signature is HMAC-SHA256, keyed with the endpoint's secret, over
//! `"{t}.{payload}"`; the header is `t=<unix time>,v1=<hex>[,v1=<hex>…]`
//! (several `v1` while Stripe rolls the secret; other schemes ignored). An
//! event is accepted when one `v1` matches one of our secrets (we may hold
//! two while we roll ours) and `t` is within the tolerance of now, so a
//! captured event cannot be replayed later.
//!
//! Events are read for the fields we act on, not into a full typed model:
//! the shape of Stripe's objects follows the API version of the account
//! that sends them, and a model pinned to one version would turn away
//! events of another. What we read is checked (types, presence) and an
//! event missing it is refused with the reason.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tenants::TenantId;
use tenants::store::{BillingEvent, InvoiceEvent, StripeEvent};

/// Why a webhook call was turned away (answered 400, nothing recorded).
#[derive(Debug, PartialEq, Eq)]
pub enum WebhookError {
    /// No `Stripe-Signature` header.
    Unsigned,
    /// The header has no timestamp or no `v1` signature.
    Malformed(String),
    /// The timestamp is further from now than the tolerance.
    Stale { age_seconds: i64 },
    /// No `v1` signature matches any of our secrets.
    Forged,
    /// Signed, but not an event we can read.
    Invalid(String),
}

impl std::fmt::Display for WebhookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookError::Unsigned => f.write_str("the Stripe-Signature header is missing"),
            WebhookError::Malformed(why) => {
                write!(f, "the Stripe-Signature header is malformed: {why}")
            }
            WebhookError::Stale { age_seconds } => {
                write!(
                    f,
                    "the signature's timestamp is {age_seconds} s away from now, beyond the tolerance"
                )
            }
            WebhookError::Forged => f.write_str("no v1 signature matches this endpoint's secret"),
            WebhookError::Invalid(why) => write!(f, "the event cannot be read: {why}"),
        }
    }
}

/// `HMAC-SHA256(secret, "{t}.{payload}")` in lower-case hex: what Stripe puts after `v1=`.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(payload);
    hex(ctx.sign().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks the `Stripe-Signature` header of `payload` against `secrets` at time `now`.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
    tolerance_seconds: i64,
    now: i64,
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::Unsigned)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(WebhookError::Malformed(format!(
                "`{part}` is not key=value"
            )));
        };
        match key {
            "t" => {
                timestamp = Some(value.parse::<i64>().map_err(|_| {
                    WebhookError::Malformed(format!("t={value} is not a Unix time"))
                })?)
            }
            "v1" => signatures.push(
                unhex(value)
                    .ok_or_else(|| WebhookError::Malformed("a v1 value is not hex".into()))?,
            ),
            _ => {} // v0 (test mode) and schemes to come
        }
    }
    let timestamp = timestamp.ok_or_else(|| WebhookError::Malformed("no t= timestamp".into()))?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed("no v1 signature".into()));
    }
    let age = now - timestamp;
    if age.abs() > tolerance_seconds {
        return Err(WebhookError::Stale { age_seconds: age });
    }
    let mut signed = timestamp.to_string().into_bytes();
    signed.push(b'.');
    signed.extend_from_slice(payload);
    for secret in secrets {
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            secret.expose_secret().as_bytes(),
        );
        // `verify` compares in constant time.
        if signatures
            .iter()
            .any(|s| aws_lc_rs::hmac::verify(&key, &signed, s).is_ok())
        {
            return Ok(());
        }
    }
    Err(WebhookError::Forged)
}

fn invalid(why: impl Into<String>) -> WebhookError {
    WebhookError::Invalid(why.into())
}

fn text(v: &Value, field: &str) -> Result<String, WebhookError> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("`{field}` is missing or not a string")))
}

fn opt_text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_owned)
}

fn int(v: &Value, field: &str) -> Result<i64, WebhookError> {
    v.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(format!("`{field}` is missing or not an integer")))
}

fn time(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v.get(field)
        .and_then(Value::as_i64)
        .and_then(|t| DateTime::from_timestamp(t, 0))
}

/// An id field that may be expanded into its object.
fn id_of(v: &Value, field: &str) -> Option<String> {
    match v.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn customer(v: &Value) -> Result<String, WebhookError> {
    id_of(v, "customer").ok_or_else(|| invalid("`customer` is missing"))
}

fn invoice(object: &Value) -> Result<InvoiceEvent, WebhookError> {
    // The billing period: the invoice's own, or its first line's.
    let line_period = object.pointer("/lines/data/0/period");
    Ok(InvoiceEvent {
        id: text(object, "id")?,
        customer: customer(object)?,
        number: opt_text(object, "number"),
        currency: text(object, "currency")?.to_ascii_lowercase(),
        amount_due: int(object, "amount_due")?,
        amount_paid: int(object, "amount_paid")?,
        period_start: line_period
            .and_then(|p| time(p, "start"))
            .or_else(|| time(object, "period_start")),
        period_end: line_period
            .and_then(|p| time(p, "end"))
            .or_else(|| time(object, "period_end")),
        hosted_url: opt_text(object, "hosted_invoice_url"),
    })
}

/// Reads a verified payload.
pub fn parse(payload: &[u8]) -> Result<StripeEvent, WebhookError> {
    let root: Value =
        serde_json::from_slice(payload).map_err(|e| invalid(format!("not JSON: {e}")))?;
    if root.get("object").and_then(Value::as_str) != Some("event") {
        return Err(invalid("`object` is not \"event\""));
    }
    let id = text(&root, "id")?;
    let kind = text(&root, "type")?;
    let created = int(&root, "created")?;
    let object = root
        .pointer("/data/object")
        .ok_or_else(|| invalid("`data.object` is missing"))?;
    let event = match kind.as_str() {
        "checkout.session.completed" => BillingEvent::CheckoutCompleted {
            tenant: opt_text(object, "client_reference_id")
                .and_then(|t| t.parse().ok())
                .map(TenantId),
            customer: customer(object)?,
            subscription: id_of(object, "subscription"),
        },
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => {
            let item = object.pointer("/items/data/0");
            // Newer API versions keep the period on the item.
            let period_end = time(object, "current_period_end")
                .or_else(|| item.and_then(|i| time(i, "current_period_end")));
            BillingEvent::Subscription {
                id: text(object, "id")?,
                customer: customer(object)?,
                status: text(object, "status")?,
                item_id: item.and_then(|i| opt_text(i, "id")),
                quantity: item.and_then(|i| i.get("quantity")).and_then(Value::as_i64),
                current_period_end: period_end,
                rank: match kind.as_str() {
                    "customer.subscription.created" => 0,
                    "customer.subscription.updated" => 1,
                    _ => 2,
                },
            }
        }
        "invoice.paid" => BillingEvent::InvoicePaid(invoice(object)?),
        "invoice.payment_failed" => BillingEvent::InvoiceFailed(invoice(object)?),
        "charge.refunded" => match id_of(object, "invoice") {
            Some(invoice) => BillingEvent::Refunded {
                customer: customer(object)?,
                invoice,
                amount_refunded: int(object, "amount_refunded")?,
            },
            None => BillingEvent::Ignored,
        },
        _ => BillingEvent::Ignored,
    };
    Ok(StripeEvent {
        id,
        kind,
        created,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn a_signature_stripe_would_send_passes_and_anything_else_fails() {
        let payload = br#"{"id":"evt_1","object":"event"}"#;
        let now = 1_700_000_000;
        let good = sign("whsec_a", now - 10, payload);
        let header = format!("t={},v1={good}", now - 10);
        let ours = [secret("whsec_a")];
        assert_eq!(verify(payload, Some(&header), &ours, 300, now), Ok(()));
        // Rolled secrets: either of ours, either of theirs.
        let rolled = [secret("whsec_old"), secret("whsec_a")];
        let two = format!(
            "t={},v1={},v1={good},v0=abc",
            now - 10,
            sign("whsec_b", now - 10, payload)
        );
        assert_eq!(verify(payload, Some(&two), &rolled, 300, now), Ok(()));
        assert_eq!(
            verify(payload, None, &ours, 300, now),
            Err(WebhookError::Unsigned)
        );
        assert_eq!(
            verify(b"{}", Some(&header), &ours, 300, now),
            Err(WebhookError::Forged)
        );
        assert_eq!(
            verify(payload, Some(&header), &[secret("whsec_b")], 300, now),
            Err(WebhookError::Forged)
        );
        let old = format!("t={},v1={}", now - 301, sign("whsec_a", now - 301, payload));
        assert_eq!(
            verify(payload, Some(&old), &ours, 300, now),
            Err(WebhookError::Stale { age_seconds: 301 })
        );
        assert!(matches!(
            verify(payload, Some("v1=00"), &ours, 300, now),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            verify(payload, Some(&format!("t={now}")), &ours, 300, now),
            Err(WebhookError::Malformed(_))
        ));
    }
}
