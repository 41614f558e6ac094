//! Billing against the real API, on both backends:
//! - Stripe's webhook, with events in Stripe's format signed the way Stripe
//!   signs them (HMAC-SHA256 computed here, independently of the server):
//!   applied once, replays change nothing, forged/unsigned/stale calls are
//!   refused with nothing recorded, out-of-order events end in the right
//!   state, and two concurrent deliveries apply once;
//! - checkout and seat changes against a stand-in for Stripe's API on
//!   loopback that checks what Caliop sends;
//! - the funding pool: paid invoices fund free accounts, signups beyond the
//!   funded places wait in line and are admitted when funding grows, a
//!   refund shrinks capacity without closing anyone's account;
//! - public signup's refusals (proof of work, reserved names, rate);
//! - payment overdue past the grace period suspends sending, payment restores it;
//! - quota warnings reach the tenant's admins; usage rolls up with CSV;
//! - daily traffic covers a reseller's whole tree; the pool's history runs
//!   month by month, for the operator only.

#![recursion_limit = "256"]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as AxPath, State as AxState};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::{PASSWORD, TestApp};
use tenants::{Backend, TenantId, on_both_backends};

const WHSEC: &str = "whsec_test_caliop_endpoint_secret";
const STRIPE_KEY: &str = "sk_test_caliop_51Hx";

// ---------------------------------------------------------------- Stripe's side

/// `Stripe-Signature` for `payload` at `t`, computed the way Stripe documents it.
fn stripe_signature(secret: &str, t: i64, payload: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{t}.{payload}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(id: &str, kind: &str, created: i64, object: Value) -> String {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2025-09-30.clover",
        "created": created,
        "data": {"object": object, "previous_attributes": {}},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": kind
    })
    .to_string()
}

fn subscription(id: &str, customer: &str, status: &str, quantity: i64, period_end: i64) -> Value {
    json!({
        "id": id, "object": "subscription", "application": null, "automatic_tax": {"enabled": false, "liability": null},
        "billing_cycle_anchor": period_end - 2_592_000, "cancel_at": null, "cancel_at_period_end": false, "canceled_at": null,
        "collection_method": "charge_automatically", "created": period_end - 2_592_000, "currency": "eur",
        "customer": customer, "days_until_due": null, "default_payment_method": "pm_1Q0PsIJvEtkwdCNYMSaVuRz6",
        "description": null, "discounts": [], "ended_at": null,
        "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
        "items": {"object": "list", "has_more": false, "total_count": 1, "url": format!("/v1/subscription_items?subscription={id}"),
            "data": [{
                "id": "si_RcaliopItem01", "object": "subscription_item", "created": period_end - 2_592_000,
                "current_period_start": period_end - 2_592_000, "current_period_end": period_end, "metadata": {},
                "price": {"id": "price_1Pcaliop", "object": "price", "active": true, "billing_scheme": "per_unit",
                          "currency": "eur", "product": "prod_Rcaliop", "recurring": {"interval": "month", "interval_count": 1,
                          "usage_type": "licensed"}, "type": "recurring", "unit_amount": 1000},
                "quantity": quantity, "subscription": id, "tax_rates": []
            }]},
        "latest_invoice": "in_1Q0PsJJvEtkwdCNYcaliop", "livemode": false, "metadata": {},
        "pending_update": null, "start_date": period_end - 2_592_000, "status": status, "trial_end": null, "trial_start": null
    })
}

fn invoice(id: &str, customer: &str, status: &str, amount_due: i64, amount_paid: i64) -> Value {
    let start = now() - 86_400;
    json!({
        "id": id, "object": "invoice", "account_country": "FR", "account_name": "Caliop", "amount_due": amount_due,
        "amount_paid": amount_paid, "amount_remaining": amount_due - amount_paid, "attempt_count": 1, "attempted": true,
        "billing_reason": "subscription_cycle", "collection_method": "charge_automatically", "created": start,
        "currency": "eur", "customer": customer, "customer_email": "admin@acme.test",
        "hosted_invoice_url": format!("https://invoice.stripe.com/i/acct_1/{id}"), "livemode": false,
        "lines": {"object": "list", "has_more": false, "total_count": 1, "url": format!("/v1/invoices/{id}/lines"),
            "data": [{"id": "il_1", "object": "line_item", "amount": amount_due, "currency": "eur",
                      "period": {"start": start, "end": start + 2_592_000}, "quantity": 1}]},
        "number": format!("CALIOP-{}", &id[id.len() - 4..]), "paid": status == "paid", "period_start": start,
        "period_end": start + 2_592_000, "status": status, "subtotal": amount_due, "total": amount_due
    })
}

fn charge_refunded(customer: &str, invoice: &str, amount: i64, refunded: i64) -> Value {
    json!({
        "id": "ch_3Q0PsJJvEtkwdCNY1caliop", "object": "charge", "amount": amount, "amount_captured": amount,
        "amount_refunded": refunded, "captured": true, "created": now(), "currency": "eur", "customer": customer,
        "invoice": invoice, "livemode": false, "paid": true, "refunded": refunded == amount, "status": "succeeded"
    })
}

async fn deliver(app: &TestApp, payload: &str, signature: Option<String>) -> support::Reply {
    let mut request = app
        .http
        .post(format!("{}/v1/billing/stripe/webhook", app.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(payload.to_owned());
    if let Some(signature) = signature {
        request = request.header("stripe-signature", signature);
    }
    app.raw(request).await
}

async fn signed(app: &TestApp, payload: &str) -> support::Reply {
    deliver(app, payload, Some(stripe_signature(WHSEC, now(), payload))).await
}

fn stripe_billing(api_base: Option<String>) -> billing::BillingConfig {
    billing::BillingConfig {
        provider: if api_base.is_some() {
            billing::Provider::Stripe
        } else {
            billing::Provider::None
        },
        stripe_api_base: api_base.unwrap_or_else(|| "http://127.0.0.1:9/".into()),
        stripe_secret_key: Some(STRIPE_KEY.to_owned().into()),
        stripe_webhook_secrets: vec![WHSEC.to_owned().into()],
        free_account_month_cents: std::collections::HashMap::from([("eur".to_owned(), 100)]),
        pool_horizon_months: 1,
        public_domain: Some("free.test".into()),
        signup_difficulty: 6,
        ..billing::BillingConfig::default()
    }
}

async fn app_with(backend: Backend, billing: billing::BillingConfig) -> TestApp {
    support::spawn_billing(
        backend,
        support::api_config(),
        support::smtp_config(),
        billing,
    )
    .await
}

/// A plan at 10 EUR a seat, 1 GB a seat, 20% to the pool.
async fn plan(app: &TestApp) -> String {
    let reply = app
        .post(
            "/v1/plans",
            &app.operator_token,
            json!({"name": "Business", "currency": "eur", "seat_price_cents": 1000, "storage_per_seat_bytes": 1_000_000_000,
                   "max_domains": 5, "max_accounts": 50, "solidarity_percent": 20, "stripe_price_id": "price_1Pcaliop"}),
        )
        .await;
    reply.ok(201)["id"].as_str().unwrap().to_owned()
}

/// An enterprise on the plan, with Stripe customer `customer`.
async fn paying(app: &TestApp, domain: &str, customer: &str, plan_id: &str) -> support::Enterprise {
    let e = app.enterprise(domain, 20).await;
    app.send(
        "PUT",
        &format!("/v1/tenants/{}/plan", e.tenant_id),
        Some(&app.operator_token),
        Some(json!({"plan_id": plan_id})),
    )
    .await
    .ok(200);
    app.store
        .set_stripe_customer(TenantId(e.tenant_id.parse().unwrap()), customer)
        .await
        .unwrap();
    e
}

async fn billing_of(app: &TestApp, e: &support::Enterprise) -> Value {
    app.get(
        &format!("/v1/tenants/{}/billing", e.tenant_id),
        &e.admin_token,
    )
    .await
    .ok(200)
    .clone()
}

async fn pool(app: &TestApp) -> Value {
    app.send("GET", "/v1/public/pool", None, None)
        .await
        .ok(200)
        .clone()
}

on_both_backends!(
    webhooks_apply_once_and_refuse_what_stripe_did_not_sign,
    out_of_order_subscription_events_end_in_the_latest_state,
    a_failed_payment_suspends_sending_after_the_grace_and_payment_restores_it,
    paid_invoices_fund_free_accounts_and_the_line_waits_for_funding,
    signups_without_work_with_reserved_names_or_too_often_are_refused,
    checkout_and_seat_changes_speak_stripes_api,
    admins_are_warned_at_80_percent_and_usage_rolls_up,
    traffic_counts_a_resellers_tree_by_day,
    the_pool_jobs_schedule_their_next_run,
    the_operator_reads_the_pool_month_by_month,
    a_signup_without_a_password_opens_on_the_device,
);

async fn webhooks_apply_once_and_refuse_what_stripe_did_not_sign(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    let plan_id = plan(&app).await;
    let e = paying(&app, "acme.test", "cus_Acme0001", &plan_id).await;
    let paid = event(
        "evt_1PaidOnce",
        "invoice.paid",
        now(),
        invoice("in_1Acme0001", "cus_Acme0001", "paid", 5000, 5000),
    );

    // Forged (another secret), unsigned, stale, or tampered: 400, nothing recorded.
    let forged = deliver(
        &app,
        &paid,
        Some(stripe_signature("whsec_not_ours", now(), &paid)),
    )
    .await;
    assert!(
        forged.problem(400).contains("no v1 signature matches"),
        "{forged:?}"
    );
    let unsigned = deliver(&app, &paid, None).await;
    assert!(
        unsigned
            .problem(400)
            .contains("Stripe-Signature header is missing")
    );
    let stale = deliver(
        &app,
        &paid,
        Some(stripe_signature(WHSEC, now() - 3600, &paid)),
    )
    .await;
    assert!(stale.problem(400).contains("beyond the tolerance"));
    let tampered = paid.replace("\"amount_paid\":5000", "\"amount_paid\":9000000");
    assert_ne!(tampered, paid);
    let reply = deliver(&app, &tampered, Some(stripe_signature(WHSEC, now(), &paid))).await;
    reply.problem(400);
    assert_eq!(
        pool(&app).await["funded_account_months"],
        0.0,
        "nothing refused was counted"
    );
    assert!(
        billing_of(&app, &e).await["invoices"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Valid: applied once. 20% of 50.00 EUR at 1.00 EUR a month = 10 free-account-months.
    let first = signed(&app, &paid).await;
    assert_eq!(
        first.ok(200)["replayed"],
        false,
        "the refused deliveries recorded nothing, so this is the first"
    );
    assert_eq!(pool(&app).await["funded_account_months"], 10.0);
    let replay = signed(&app, &paid).await;
    assert_eq!(replay.ok(200)["replayed"], true);
    assert_eq!(
        pool(&app).await["funded_account_months"],
        10.0,
        "a replay changes nothing"
    );
    let view = billing_of(&app, &e).await;
    assert_eq!(view["invoices"][0]["status"], "paid");
    assert_eq!(view["invoices"][0]["amount_paid"], 5000);
    assert_eq!(pool(&app).await["funding_tenants"], 1);
    assert!(
        pool(&app).await["named_funders"]
            .as_array()
            .unwrap()
            .is_empty(),
        "no name without opting in"
    );

    // A key being rolled: either secret signs.
    let rolled = app_with(
        backend,
        billing::BillingConfig {
            stripe_webhook_secrets: vec![
                "whsec_old_one".to_owned().into(),
                WHSEC.to_owned().into(),
            ],
            ..stripe_billing(None)
        },
    )
    .await;
    let header = format!(
        "{},v1={}",
        stripe_signature("whsec_old_one", now(), &paid),
        stripe_signature(WHSEC, now(), &paid)
            .split("v1=")
            .nth(1)
            .unwrap()
    );
    deliver(&rolled, &paid, Some(header)).await.ok(200);

    if backend == Backend::Postgres {
        // Two deliveries of one new event at the same moment: applied once.
        let twice = event(
            "evt_1Concurrent",
            "invoice.paid",
            now(),
            invoice("in_1Acme0002", "cus_Acme0001", "paid", 5000, 5000),
        );
        let (a, b) = tokio::join!(signed(&app, &twice), signed(&app, &twice));
        let replayed = [
            a.ok(200)["replayed"].as_bool().unwrap(),
            b.ok(200)["replayed"].as_bool().unwrap(),
        ];
        assert_eq!(
            replayed.iter().filter(|r| !**r).count(),
            1,
            "exactly one delivery applied it: {replayed:?}"
        );
        assert_eq!(
            pool(&app).await["funded_account_months"],
            20.0,
            "credited once"
        );
    }
}

async fn out_of_order_subscription_events_end_in_the_latest_state(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    let plan_id = plan(&app).await;
    let e = paying(&app, "acme.test", "cus_Acme0001", &plan_id).await;
    let t = now() - 60;
    let period_end = t + 2_592_000;
    let created = event(
        "evt_1SubCreated",
        "customer.subscription.created",
        t,
        subscription("sub_1Acme", "cus_Acme0001", "incomplete", 1, period_end),
    );
    let updated = event(
        "evt_1SubUpdated",
        "customer.subscription.updated",
        t + 5,
        subscription("sub_1Acme", "cus_Acme0001", "active", 4, period_end),
    );
    // Stripe sent `created` first; `updated` arrives first.
    assert_eq!(signed(&app, &updated).await.ok(200)["stale"], false);
    assert_eq!(
        signed(&app, &created).await.ok(200)["stale"],
        true,
        "older news is not applied"
    );
    let view = billing_of(&app, &e).await;
    assert_eq!(view["subscription_status"], "active");
    assert_eq!(view["status"], "active");
    assert_eq!(view["seats_billed"], 4);
    assert_eq!(view["next_invoice"]["amount_cents"], 4000);
    // Same second: `deleted` outranks `updated`.
    let deleted = event(
        "evt_1SubDeleted",
        "customer.subscription.deleted",
        t + 5,
        subscription("sub_1Acme", "cus_Acme0001", "canceled", 4, period_end),
    );
    let again = event(
        "evt_1SubUpdated2",
        "customer.subscription.updated",
        t + 5,
        subscription("sub_1Acme", "cus_Acme0001", "active", 4, period_end),
    );
    signed(&app, &deleted).await.ok(200);
    assert_eq!(signed(&app, &again).await.ok(200)["stale"], true);
    assert_eq!(billing_of(&app, &e).await["status"], "canceled");
}

async fn a_failed_payment_suspends_sending_after_the_grace_and_payment_restores_it(
    backend: Backend,
) {
    let app = app_with(
        backend,
        billing::BillingConfig {
            grace_days: 0,
            ..stripe_billing(None)
        },
    )
    .await;
    let plan_id = plan(&app).await;
    let e = paying(&app, "acme.test", "cus_Acme0001", &plan_id).await;
    let send = || async {
        app.post(
            &format!("/v1/accounts/{}/messages", e.admin_id),
            &e.admin_token,
            json!({"to": ["friend@acme.test"], "subject": "hello", "text": "still here"}),
        )
        .await
    };
    assert_eq!(
        send().await.status.as_u16(),
        202,
        "sending works while paid up"
    );
    let failed = event(
        "evt_1Failed",
        "invoice.payment_failed",
        now() - 30,
        invoice("in_1Late", "cus_Acme0001", "open", 3000, 0),
    );
    signed(&app, &failed).await.ok(200);
    let view = billing_of(&app, &e).await;
    assert_eq!(
        view["status"], "suspended",
        "past due beyond a grace of 0 days: {view}"
    );
    assert_eq!(view["sending_suspended"], true);
    let refused = send().await;
    assert!(refused.problem(402).contains("payment is overdue"));
    // The admins are told, in the tenant's brand and language.
    let worker = worker::Worker::new(
        app.store.clone(),
        app.worker_context(0, Duration::from_secs(1)),
        "mail",
    )
    .register::<worker::SystemMail>();
    assert!(
        worker.run_one("mail").await,
        "the failure queued a mail to the admin"
    );
    let inbox = app
        .get(
            &format!("/v1/accounts/{}/messages?folder=inbox", e.admin_id),
            &e.admin_token,
        )
        .await;
    let subjects: Vec<String> = inbox.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s == "Caliop: a payment did not go through"),
        "{subjects:?}"
    );
    // Received mail is untouched: the tenant's messages are all still listed.
    let listed = app
        .get(
            &format!("/v1/accounts/{}/messages", e.admin_id),
            &e.admin_token,
        )
        .await;
    assert!(
        !listed.ok(200)["items"].as_array().unwrap().is_empty(),
        "nothing is deleted for non-payment"
    );
    // Paid (the late invoice): everything comes back.
    let paid = event(
        "evt_1LatePaid",
        "invoice.paid",
        now(),
        invoice("in_1Late", "cus_Acme0001", "paid", 3000, 3000),
    );
    signed(&app, &paid).await.ok(200);
    // A failure notice arriving after the payment does not undo it.
    let late_failure = event(
        "evt_1FailedAgain",
        "invoice.payment_failed",
        now() - 20,
        invoice("in_1Late", "cus_Acme0001", "open", 3000, 0),
    );
    signed(&app, &late_failure).await.ok(200);
    let view = billing_of(&app, &e).await;
    assert_eq!(view["sending_suspended"], false, "{view}");
    assert_eq!(view["invoices"][0]["status"], "paid");
    assert_eq!(
        send().await.status.as_u16(),
        202,
        "sending resumes once paid"
    );
}

/// The public tenant of `free.test`.
async fn public_instance(app: &TestApp) {
    let tenant = app
        .post(
            "/v1/tenants",
            &app.operator_token,
            json!({"name": "Caliop Free", "kind": "public",
                   "limits": {"max_accounts": 1_000_000, "max_domains": 1, "storage_quota_bytes": 0}}),
        )
        .await;
    let id = tenant.ok(201)["id"].as_str().unwrap().to_owned();
    let domain = app
        .post(
            &format!("/v1/tenants/{id}/domains"),
            &app.operator_token,
            json!({"name": "free.test"}),
        )
        .await;
    app.verify_domain(domain.ok(201)["id"].as_str().unwrap())
        .await;
}

async fn signup(app: &TestApp, local: &str) -> support::Reply {
    signup_with(app, local, Some(PASSWORD)).await
}

/// A public signup as a page makes it: the stamp solved for the whole
/// address, with a password or (a web app) without.
async fn signup_with(app: &TestApp, local: &str, password: Option<&str>) -> support::Reply {
    signup_giving(app, local, json!({ "password": password })).await
}

/// A public signup with these fields beside the address and the stamp.
async fn signup_giving(app: &TestApp, local: &str, fields: Value) -> support::Reply {
    let challenge = app
        .send("GET", "/v1/public/signup/challenge", None, None)
        .await;
    let challenge = challenge.ok(200);
    let c = challenge["challenge"].as_str().unwrap();
    // The page learns the domain from the challenge, to stamp the whole address.
    assert_eq!(challenge["domain"], "free.test");
    let address = format!("{local}@free.test");
    let counter =
        billing::signup::solve(c, &address, challenge["difficulty"].as_u64().unwrap() as u8);
    let mut body = json!({"address": address, "stamp": {"challenge": c, "counter": counter}});
    for (name, value) in fields.as_object().unwrap() {
        body[name] = value.clone();
    }
    app.send("POST", "/v1/public/signup", None, Some(body))
        .await
}

/// A signup without a password (a web app's): the answer holds an
/// activation link; once the pool admits the signup, the link opens the
/// account and the person sets the password on their device (OPAQUE), the
/// key unlocked with the link's secret and locked again there. The password
/// never reaches the server, and the link's secret neither: the signup's
/// token is derived from it.
async fn a_signup_without_a_password_opens_on_the_device(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    public_instance(&app).await;
    let plan_id = plan(&app).await;
    paying(&app, "acme.test", "cus_Acme0001", &plan_id).await;
    // A recovery address must be one, and another than the new address.
    for (given, detail) in [
        (
            "nadia.home",
            "`recovery_address` \"nadia.home\" is not an email address",
        ),
        (
            "Nadia@free.test",
            "`recovery_address` must be another address than the account's own",
        ),
    ] {
        let refused = signup_giving(&app, "nadia", json!({ "recovery_address": given })).await;
        assert_eq!(refused.problem(422), detail);
    }
    let waiting = signup_giving(
        &app,
        "nadia",
        json!({ "recovery_address": "nadia.home@elsewhere.test" }),
    )
    .await;
    let waiting = waiting.ok(202).clone();
    assert_eq!(waiting["status"], "waiting");
    let url = waiting["activation_url"].as_str().unwrap();
    assert!(
        url.starts_with("https://") && url.contains("/activate#"),
        "{url}"
    );
    let activation = vault::opaque::Activation::parse(url.rsplit_once('#').unwrap().1).unwrap();
    let token = waiting["token"].as_str().unwrap();
    assert_eq!(
        token,
        activation.token(),
        "the signup's token derives from the link's secret"
    );
    let base = format!("/v1/public/activations/{token}");
    let early = app.send("GET", &base, None, None).await;
    assert!(
        early.problem(404).contains("activation"),
        "not open before admission: {early:?}"
    );

    paid_invoice(&app, "in_1Fund0001", "cus_Acme0001", 1000).await;
    let status = app
        .send("GET", &format!("/v1/public/signup/{token}"), None, None)
        .await;
    assert_eq!(status.ok(200)["status"], "admitted");
    let opened = app.send("GET", &base, None, None).await;
    let opened = opened.ok(200).clone();
    assert_eq!(opened["address"], "nadia@free.test");
    let key = activation
        .unlock(opened["locked_key"].as_str().unwrap())
        .unwrap();
    // No password to sign in with yet.
    let password_grant = app
        .send("POST", "/v1/auth/token", None,
            Some(json!({"grant_type": "password", "username": "nadia@free.test", "password": PASSWORD})))
        .await;
    assert_eq!(password_grant.status, 401, "{password_grant:?}");
    support::register_at(&app, &base, "nadia's own passphrase", &key, json!({}))
        .await
        .ok(204);
    let (signed_in, export) =
        support::device_sign_in(&app, "nadia@free.test", "nadia's own passphrase").await;
    assert!(!signed_in.is_empty());
    // The key she locked on her device is the one mail is sealed to.
    let account = status.body["account_id"].as_str().unwrap();
    let secret = app
        .get(&format!("/v1/accounts/{account}/secret-key"), &signed_in)
        .await;
    let unlocked = export.unwrap(secret.text()).unwrap();
    assert_eq!(unlocked, key);
    // The recovery address waited in line with the signup.
    let view = app
        .get(&format!("/v1/accounts/{account}"), &signed_in)
        .await;
    assert_eq!(
        view.ok(200)["recovery_address"],
        "nadia.home@elsewhere.test"
    );
    // The link is spent.
    assert_eq!(app.send("GET", &base, None, None).await.status, 404);
}

async fn paid_invoice(app: &TestApp, id: &str, customer: &str, cents: i64) {
    let payload = event(
        &format!("evt_{id}"),
        "invoice.paid",
        now(),
        invoice(id, customer, "paid", cents, cents),
    );
    assert_eq!(signed(app, &payload).await.ok(200)["replayed"], false);
}

async fn paid_invoices_fund_free_accounts_and_the_line_waits_for_funding(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    public_instance(&app).await;
    let plan_id = plan(&app).await;
    paying(&app, "acme.test", "cus_Acme0001", &plan_id).await;
    let before = pool(&app).await;
    assert_eq!(before["funded_capacity"], 0);
    let closed = signup(&app, "early").await;
    assert_eq!(
        closed.ok(202)["status"],
        "waiting",
        "no funding yet: the first signup waits"
    );
    assert_eq!(closed.body["position"], 1);

    // 20% of 10.00 EUR at 1.00 EUR a month: 2 free-account-months, 2 places over a 1-month horizon.
    paid_invoice(&app, "in_1Fund0001", "cus_Acme0001", 1000).await;
    let after = pool(&app).await;
    assert_eq!(after["funded_account_months"], 2.0);
    assert_eq!(after["funded_capacity"], 2);
    let status = app
        .send(
            "GET",
            &format!(
                "/v1/public/signup/{}",
                closed.body["token"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await;
    assert_eq!(
        status.ok(200)["status"],
        "admitted",
        "the payment let the line in"
    );
    let second = signup(&app, "alice").await;
    assert_eq!(second.ok(201)["status"], "admitted");
    let token = app.login("alice@free.test", PASSWORD).await;
    assert!(!token.is_empty(), "a free account signs in");
    let third = signup(&app, "bob").await;
    assert_eq!(third.ok(202)["position"], 1, "capacity used up: bob waits");
    let bob = third.body["token"].as_str().unwrap().to_owned();
    let waiting = app
        .send("GET", &format!("/v1/public/signup/{bob}"), None, None)
        .await;
    assert_eq!(waiting.ok(200)["status"], "waiting");
    assert_eq!(pool(&app).await["waiting"], 1);

    // A new payment admits bob, in order.
    paid_invoice(&app, "in_1Fund0002", "cus_Acme0001", 1000).await;
    let admitted = app
        .send("GET", &format!("/v1/public/signup/{bob}"), None, None)
        .await;
    assert_eq!(admitted.ok(200)["status"], "admitted");
    assert!(admitted.body["account_id"].is_string());
    let now_pool = pool(&app).await;
    assert_eq!(
        (
            now_pool["funded_capacity"].as_i64(),
            now_pool["active_free_accounts"].as_i64()
        ),
        (Some(4), Some(3))
    );

    // A full refund of the first invoice takes its 2 months back; nobody loses an account.
    let refund = event(
        "evt_1Refund",
        "charge.refunded",
        now(),
        charge_refunded("cus_Acme0001", "in_1Fund0001", 1000, 1000),
    );
    signed(&app, &refund).await.ok(200);
    let refunded = pool(&app).await;
    assert_eq!(refunded["funded_account_months"], 2.0);
    assert_eq!(refunded["funded_capacity"], 2);
    assert_eq!(
        refunded["active_free_accounts"], 3,
        "free accounts are never cut off"
    );
    assert!(!app.login("bob@free.test", PASSWORD).await.is_empty());
    assert_eq!(
        signup(&app, "carol").await.ok(202)["status"],
        "waiting",
        "only new admissions stop"
    );
    // Replaying the refund takes nothing more.
    signed(&app, &refund).await.ok(200);
    assert_eq!(pool(&app).await["funded_account_months"], 2.0);
}

async fn signups_without_work_with_reserved_names_or_too_often_are_refused(backend: Backend) {
    let app = app_with(
        backend,
        billing::BillingConfig {
            signups_per_ip_per_hour: 2,
            ..stripe_billing(None)
        },
    )
    .await;
    public_instance(&app).await;
    let challenge = app
        .send("GET", "/v1/public/signup/challenge", None, None)
        .await
        .ok(200)
        .clone();
    let c = challenge["challenge"].as_str().unwrap().to_owned();
    // A counter that does not do the work (checked to fail, not assumed to).
    let address = "dave@free.test";
    let difficulty = challenge["difficulty"].as_u64().unwrap() as u8;
    let good = billing::signup::solve(&c, address, difficulty);
    let zero_bits = |n: u64| {
        let d = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("{c}:{address}:{n}").as_bytes(),
        );
        d.as_ref()[0].leading_zeros()
    };
    let bad = (0u64..)
        .find(|n| zero_bits(*n) < u32::from(difficulty))
        .unwrap();
    let lazy = app
        .send("POST", "/v1/public/signup", None, Some(json!({"address": address, "password": PASSWORD, "stamp": {"challenge": c, "counter": bad}})))
        .await;
    assert!(
        lazy.problem(422).contains("proof of work does not hold"),
        "{lazy:?}"
    );
    let forged = app
        .send(
            "POST",
            "/v1/public/signup",
            None,
            Some(json!({"address": address, "password": PASSWORD,
            "stamp": {"challenge": "v1.9999999999.1.AAAA.BBBB", "counter": 0}})),
        )
        .await;
    assert!(forged.problem(422).contains("not one this server issued"));
    for reserved in ["postmaster", "abuse", "Admin"] {
        let reply = signup(&app, reserved).await;
        assert!(
            reply.problem(422).contains("is reserved"),
            "{reserved}: {reply:?}"
        );
    }
    let elsewhere = app
        .send(
            "POST",
            "/v1/public/signup",
            None,
            Some(json!({"address": "eve@acme.test", "password": PASSWORD,
            "stamp": {"challenge": c, "counter": 0}})),
        )
        .await;
    assert!(
        elsewhere
            .problem(422)
            .contains("free accounts are on `free.test`")
    );
    // The same stamp twice: the second is spent.
    let once = app
        .send("POST", "/v1/public/signup", None, Some(json!({"address": address, "password": PASSWORD, "stamp": {"challenge": c, "counter": good}})))
        .await;
    assert_eq!(once.status.as_u16(), 202, "{once:?}");
    let again = app
        .send("POST", "/v1/public/signup", None, Some(json!({"address": "dave2@free.test", "password": PASSWORD,
            "stamp": {"challenge": c, "counter": billing::signup::solve(&c, "dave2@free.test", difficulty)}})))
        .await;
    assert!(again.problem(422).contains("already used"));
    // Per IP: two signups counted (dave, dave2), the third is refused with Retry-After.
    let third = signup(&app, "frank").await;
    assert!(
        third
            .problem(429)
            .contains("too many signups from 127.0.0.1"),
        "{third:?}"
    );
    assert!(third.headers.get("retry-after").is_some());
}

/// What the stand-in for Stripe received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    idempotency_key: Option<String>,
    stripe_version: Option<String>,
    content_type: String,
    form: Vec<(String, String)>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(
                u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap(), 16).unwrap(),
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn field<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.form
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

type Log = Arc<Mutex<Vec<Seen>>>;

async fn record(log: &Log, method: &str, path: String, headers: &HeaderMap, body: &str) -> Seen {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let form = body
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let seen = Seen {
        method: method.into(),
        path,
        authorization: header("authorization").unwrap_or_default(),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        content_type: header("content-type").unwrap_or_default(),
        form,
    };
    log.lock().unwrap().push(seen.clone());
    seen
}

/// A stand-in for api.stripe.com on loopback: answers the three calls
/// Caliop makes with Stripe-shaped objects, anything else with Stripe's 404.
async fn fake_stripe() -> (String, Log) {
    use axum::routing::post;
    let log: Log = Arc::default();
    let app = axum::Router::new()
        .route(
            "/v1/customers",
            post(|AxState(log): AxState<Log>, headers: HeaderMap, body: String| async move {
                let seen = record(&log, "POST", "/v1/customers".into(), &headers, &body).await;
                axum::Json(json!({"id": "cus_RcaliopCust01", "object": "customer", "created": now(), "livemode": false,
                    "email": field(&seen, "email"), "name": field(&seen, "name"), "balance": 0, "currency": null,
                    "delinquent": false, "description": null, "invoice_prefix": "CALIOP01", "metadata":
                    {"caliop_tenant": field(&seen, "metadata[caliop_tenant]")}, "preferred_locales": [], "tax_exempt": "none"}))
            }),
        )
        .route(
            "/v1/checkout/sessions",
            post(|AxState(log): AxState<Log>, headers: HeaderMap, body: String| async move {
                let seen = record(&log, "POST", "/v1/checkout/sessions".into(), &headers, &body).await;
                axum::Json(json!({"id": "cs_test_a1caliop", "object": "checkout.session", "created": now(),
                    "expires_at": now() + 86_400, "livemode": false, "mode": field(&seen, "mode"), "status": "open",
                    "payment_status": "unpaid", "customer": field(&seen, "customer"),
                    "client_reference_id": field(&seen, "client_reference_id"), "currency": "eur",
                    "success_url": field(&seen, "success_url"), "cancel_url": field(&seen, "cancel_url"),
                    "url": "https://checkout.stripe.com/c/pay/cs_test_a1caliop#fidkdWxOYHwnPyd1blpxYHZxWjA0"}))
            }),
        )
        .route(
            "/v1/subscription_items/{item}",
            post(|AxState(log): AxState<Log>, AxPath(item): AxPath<String>, headers: HeaderMap, body: String| async move {
                let seen = record(&log, "POST", format!("/v1/subscription_items/{item}"), &headers, &body).await;
                let quantity: i64 = field(&seen, "quantity").and_then(|q| q.parse().ok()).unwrap_or(0);
                axum::Json(json!({"id": item, "object": "subscription_item", "created": now(), "metadata": {},
                    "quantity": quantity, "subscription": "sub_1Acme", "tax_rates": [],
                    "price": {"id": "price_1Pcaliop", "object": "price", "currency": "eur", "unit_amount": 1000}}))
            }),
        )
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(json!({"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}})),
            )
        })
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, log)
}

async fn checkout_and_seat_changes_speak_stripes_api(backend: Backend) {
    let (base, log) = fake_stripe().await;
    let app = app_with(backend, stripe_billing(Some(base))).await;
    let plan_id = plan(&app).await;
    let e = app.enterprise("acme.test", 20).await;
    let tenant: TenantId = TenantId(e.tenant_id.parse().unwrap());
    // No plan yet: nothing to check out.
    let early = app
        .post(
            &format!("/v1/tenants/{}/billing/checkout", e.tenant_id),
            &e.admin_token,
            json!({}),
        )
        .await;
    assert!(early.problem(409).contains("no plan"));
    assert!(log.lock().unwrap().is_empty());
    app.send(
        "PUT",
        &format!("/v1/tenants/{}/plan", e.tenant_id),
        Some(&app.operator_token),
        Some(json!({"plan_id": plan_id, "committed_seats": 3})),
    )
    .await
    .ok(200);
    // The tenant admin cannot choose its own plan.
    let own = app
        .send(
            "PUT",
            &format!("/v1/tenants/{}/plan", e.tenant_id),
            Some(&e.admin_token),
            Some(json!({"plan_id": plan_id})),
        )
        .await;
    own.problem(403);

    let reply = app
        .post(
            &format!("/v1/tenants/{}/billing/checkout", e.tenant_id),
            &e.admin_token,
            json!({}),
        )
        .await;
    assert!(
        reply.ok(201)["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.com/c/pay/cs_test_a1caliop")
    );
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (customer, session) = (&seen[0], &seen[1]);
    assert_eq!(
        (customer.method.as_str(), customer.path.as_str()),
        ("POST", "/v1/customers")
    );
    assert_eq!(field(customer, "name"), Some("acme.test Inc."));
    assert_eq!(field(customer, "email"), Some("admin@acme.test"));
    assert_eq!(
        field(customer, "metadata[caliop_tenant]"),
        Some(e.tenant_id.as_str())
    );
    assert_eq!(session.path, "/v1/checkout/sessions");
    assert_eq!(field(session, "mode"), Some("subscription"));
    assert_eq!(field(session, "customer"), Some("cus_RcaliopCust01"));
    assert_eq!(
        field(session, "client_reference_id"),
        Some(e.tenant_id.as_str())
    );
    assert_eq!(
        field(session, "line_items[0][price]"),
        Some("price_1Pcaliop")
    );
    assert_eq!(
        field(session, "line_items[0][quantity]"),
        Some("3"),
        "committed seats beat 1 account"
    );
    assert_eq!(
        field(session, "subscription_data[metadata][caliop_tenant]"),
        Some(e.tenant_id.as_str())
    );
    for s in &seen {
        assert_eq!(s.authorization, format!("Bearer {STRIPE_KEY}"));
        assert!(
            s.content_type
                .starts_with("application/x-www-form-urlencoded"),
            "{s:?}"
        );
        assert!(
            s.idempotency_key
                .as_deref()
                .is_some_and(|k| k.starts_with("caliop-")),
            "{s:?}"
        );
        assert!(s.stripe_version.is_some(), "{s:?}");
    }
    assert_eq!(
        app.store
            .tenant_billing(tenant)
            .await
            .unwrap()
            .unwrap()
            .stripe_customer_id
            .as_deref(),
        Some("cus_RcaliopCust01")
    );

    // Stripe reports the subscription; then the tenant grows past its commitment.
    let t = now() - 10;
    signed(&app, &event("evt_1CheckoutDone", "checkout.session.completed", t, json!({
        "id": "cs_test_a1caliop", "object": "checkout.session", "client_reference_id": e.tenant_id, "customer": "cus_RcaliopCust01",
        "mode": "subscription", "status": "complete", "payment_status": "paid", "subscription": "sub_1Acme"})))
        .await
        .ok(200);
    signed(
        &app,
        &event(
            "evt_1SubActive",
            "customer.subscription.created",
            t,
            subscription("sub_1Acme", "cus_RcaliopCust01", "active", 3, t + 2_592_000),
        ),
    )
    .await
    .ok(200);
    for user in ["u1", "u2", "u3"] {
        app.user(&e, user).await;
    }
    let worker = worker::Worker::new(
        app.store.clone(),
        app.worker_context(0, Duration::from_secs(1)),
        "seats",
    )
    .register::<worker::SyncSeats>();
    assert!(
        worker.run_one("seats").await,
        "account changes queued a seat recount"
    );
    while worker.run_one("seats").await {}
    let update = log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(update.path, "/v1/subscription_items/si_RcaliopItem01");
    assert_eq!(
        field(&update, "quantity"),
        Some("4"),
        "admin + 3 users beat the 3 committed"
    );
    assert_eq!(
        field(&update, "proration_behavior"),
        Some("create_prorations")
    );
    assert!(
        update
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.contains("-3-4")),
        "the key names the change: {update:?}"
    );
    let view = billing_of(&app, &e).await;
    assert_eq!(view["seats"], 4);
    assert_eq!(view["seats_billed"], 4);
    // The quota follows the seats: 4 × 1 GB.
    let tenant_view = app
        .get(&format!("/v1/tenants/{}", e.tenant_id), &app.operator_token)
        .await;
    assert_eq!(
        tenant_view.ok(200)["limits"]["storage_quota_bytes"],
        4_000_000_000i64
    );
    // Unchanged seats: no call.
    let calls = log.lock().unwrap().len();
    app.state.queue_seat_sync(tenant).await;
    while worker.run_one("seats").await {}
    assert_eq!(
        log.lock().unwrap().len(),
        calls,
        "nothing to change, nothing sent"
    );
}

async fn admins_are_warned_at_80_percent_and_usage_rolls_up(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    let reseller = app
        .post("/v1/tenants", &app.operator_token, json!({"name": "Hosting Co", "kind": "reseller",
            "limits": {"max_accounts": 50, "max_domains": 10, "storage_quota_bytes": 10_000_000_000i64}}))
        .await;
    let reseller_id = reseller.ok(201)["id"].as_str().unwrap().to_owned();
    let e = app.enterprise("acme.test", 5).await;
    // A tiny quota: 40 KB.
    app.patch(
        &format!("/v1/tenants/{}", e.tenant_id),
        &app.operator_token,
        json!({"limits": {"max_accounts": 5, "max_domains": 3, "storage_quota_bytes": 40_000}}),
    )
    .await
    .ok(200);
    let body = "x".repeat(8_000);
    let mut probe = mail::probe::SmtpProbe::connect(app.smtp).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    let mut accepted = 0;
    let mut refusal = None;
    for n in 0..8 {
        assert_eq!(probe.cmd("MAIL FROM:<sender@elsewhere.test>").await.0, 250);
        let rcpt = probe.cmd("RCPT TO:<admin@acme.test>").await;
        if rcpt.0 != 250 {
            refusal = Some(rcpt);
            probe.cmd("RSET").await;
            break;
        }
        assert_eq!(probe.cmd("DATA").await.0, 354);
        let message = format!(
            "From: <sender@elsewhere.test>\r\nTo: <admin@acme.test>\r\nSubject: load {n}\r\n\r\n{body}\r\n.\r\n"
        );
        probe.send(message.as_bytes()).await;
        let reply = probe.read_reply().await;
        if reply.0 != 250 {
            refusal = Some(reply);
            break;
        }
        accepted += 1;
    }
    let (code, text) = refusal.expect("the 40 KB quota filled up");
    assert_eq!(
        code, 452,
        "over quota, the sender is told to try later: {text}"
    );
    assert!(text.contains("4.2.2"), "{text}");
    // Larger than the whole quota: refused for good.
    assert_eq!(
        probe
            .cmd("MAIL FROM:<sender@elsewhere.test> SIZE=50000")
            .await
            .0,
        250
    );
    let permanent = probe.cmd("RCPT TO:<admin@acme.test>").await;
    assert_eq!(permanent.0, 552, "{permanent:?}");
    assert!(
        permanent.1.contains("5.2.2") && permanent.1.contains("whole quota"),
        "{permanent:?}"
    );
    probe.cmd("RSET").await;
    assert!(
        accepted >= 3,
        "some mail got in before the quota filled: {accepted}"
    );
    let worker = worker::Worker::new(
        app.store.clone(),
        app.worker_context(0, Duration::from_secs(1)),
        "warn",
    )
    .register::<worker::QuotaWarning>();
    assert!(
        worker.run_one("warn").await,
        "crossing 80% queued a warning"
    );
    while worker.run_one("warn").await {}
    let inbox = app
        .get(
            &format!("/v1/accounts/{}/messages?limit=50", e.admin_id),
            &e.admin_token,
        )
        .await;
    let subjects: Vec<String> = inbox.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("at 80% of the quota") || s.contains("at 95% of the quota")),
        "{subjects:?}"
    );

    // Usage: this month's received mail and storage, for the tenant and rolled up under a reseller.
    let usage = app
        .get(
            &format!("/v1/tenants/{}/usage", e.tenant_id),
            &e.admin_token,
        )
        .await;
    let month = &usage.ok(200)["months"][0];
    assert_eq!(
        month["messages_received"].as_i64().unwrap(),
        accepted as i64 + subjects.iter().filter(|s| s.contains("quota")).count() as i64
    );
    assert!(month["storage_peak_bytes"].as_i64().unwrap() >= 3 * 8_000);
    assert_eq!(month["active_accounts"], 1);
    let child = app
        .post(
            "/v1/tenants",
            &app.operator_token,
            json!({"name": "Child Corp", "kind": "enterprise", "parent_id": reseller_id,
            "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": 1_000_000}}),
        )
        .await;
    child.ok(201);
    let rollup = app
        .get(
            &format!("/v1/tenants/{reseller_id}/usage?children=true"),
            &app.operator_token,
        )
        .await;
    let rollup = rollup.ok(200);
    assert_eq!(rollup["children"].as_array().unwrap().len(), 1);
    assert_eq!(rollup["children"][0]["name"], "Child Corp");
    let csv = app
        .get(
            &format!("/v1/tenants/{reseller_id}/usage?children=true&format=csv"),
            &app.operator_token,
        )
        .await;
    assert_eq!(csv.status.as_u16(), 200);
    assert!(csv.content_type.starts_with("text/csv"));
    let lines: Vec<&str> = csv.text().lines().collect();
    assert_eq!(
        lines[0],
        "tenant_id,tenant,month,storage_bytes,storage_peak_bytes,messages_received,messages_sent,active_accounts"
    );
    assert!(lines.iter().any(|l| l.contains("Child Corp")), "{lines:?}");
    let bad = app
        .get(
            &format!("/v1/tenants/{reseller_id}/usage?format=xml"),
            &app.operator_token,
        )
        .await;
    assert!(bad.problem(422).contains("`format`"));
}

on_both_backends!(a_plan_sets_the_limits_and_a_reseller_pays_for_its_wholesale_children);

async fn a_plan_sets_the_limits_and_a_reseller_pays_for_its_wholesale_children(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    let small = app
        .post("/v1/plans", &app.operator_token, json!({"name": "Small", "currency": "eur", "seat_price_cents": 400,
            "storage_per_seat_bytes": 500_000_000, "max_domains": 1, "max_accounts": 2, "account_messages_per_hour": 1}))
        .await;
    let small = small.ok(201)["id"].as_str().unwrap().to_owned();
    let bad = app
        .post(
            "/v1/plans",
            &app.operator_token,
            json!({"name": "Bad", "currency": "EUR", "seat_price_cents": 1,
        "storage_per_seat_bytes": 1}),
        )
        .await;
    assert!(bad.problem(422).contains("`currency`"));
    let e = app.enterprise("acme.test", 20).await;
    let plans = app.get("/v1/plans", &e.admin_token).await;
    assert_eq!(
        plans.ok(200).as_array().unwrap().len(),
        1,
        "admins read the price list"
    );
    let denied = app
        .post(
            "/v1/plans",
            &e.admin_token,
            json!({"name": "Mine", "currency": "eur", "seat_price_cents": 0,
        "storage_per_seat_bytes": 1}),
        )
        .await;
    denied.problem(403);
    app.send(
        "PUT",
        &format!("/v1/tenants/{}/plan", e.tenant_id),
        Some(&app.operator_token),
        Some(json!({"plan_id": small})),
    )
    .await
    .ok(200);
    let tenant = app
        .get(&format!("/v1/tenants/{}", e.tenant_id), &app.operator_token)
        .await;
    let limits = &tenant.ok(200)["limits"];
    assert_eq!(
        (
            limits["max_accounts"].as_i64(),
            limits["storage_quota_bytes"].as_i64()
        ),
        (Some(2), Some(500_000_000))
    );
    app.user(&e, "second").await;
    let third = app
        .post(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
            json!({"address": "third@acme.test", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        third.status.as_u16(),
        409,
        "the plan allows two accounts: {third:?}"
    );
    // The plan's sending rate: one message an hour per account.
    let path = format!("/v1/accounts/{}/messages", e.admin_id);
    let send = || {
        app.post(
            &path,
            &e.admin_token,
            json!({"to": ["second@acme.test"], "subject": "hi", "text": "once"}),
        )
    };
    assert_eq!(send().await.status.as_u16(), 202);
    assert_eq!(
        send().await.status.as_u16(),
        429,
        "the plan's rate, not the default 500 an hour"
    );
    // An account's own cap inside the shared quota: only admins set it, mail beyond it waits.
    let second = app
        .get(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
        )
        .await;
    let second_id = second.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "second@acme.test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = app.login("second@acme.test", PASSWORD).await;
    let own = app
        .patch(
            &format!("/v1/accounts/{second_id}"),
            &user,
            json!({"storage_quota_bytes": 1_000_000}),
        )
        .await;
    own.problem(403);
    app.patch(
        &format!("/v1/accounts/{second_id}"),
        &e.admin_token,
        json!({"storage_quota_bytes": 100}),
    )
    .await
    .ok(200);
    let raw = support::message(
        "x@elsewhere.test",
        "second@acme.test",
        "too big for the cap",
        &"z".repeat(500),
    );
    let refused = support::send_with_lettre(
        app.smtp,
        "x@elsewhere.test",
        &["second@acme.test"],
        &raw,
        false,
    )
    .await;
    assert!(refused.is_err(), "over the account's cap");
    assert_eq!(
        app.store
            .account_storage(tenants::AccountId(second_id.parse().unwrap()))
            .await
            .unwrap(),
        (0, Some(100))
    );
    app.patch(
        &format!("/v1/accounts/{second_id}"),
        &e.admin_token,
        json!({"storage_quota_bytes": null}),
    )
    .await
    .ok(200);
    support::send_with_lettre(
        app.smtp,
        "x@elsewhere.test",
        &["second@acme.test"],
        &raw,
        false,
    )
    .await
    .expect("no cap: it fits");
    assert!(
        app.store
            .account_storage(tenants::AccountId(second_id.parse().unwrap()))
            .await
            .unwrap()
            .0
            > 500
    );
    // A plan in use cannot be deleted.
    app.delete(&format!("/v1/plans/{small}"), &app.operator_token)
        .await
        .problem(409);

    // Wholesale: the reseller's seats include its child's; the child cannot check out on its own.
    let reseller = app
        .post(
            "/v1/tenants",
            &app.operator_token,
            json!({"name": "Hosting Co", "kind": "reseller",
            "limits": {"max_accounts": 50, "max_domains": 10, "storage_quota_bytes": 1}}),
        )
        .await;
    let reseller_id = reseller.ok(201)["id"].as_str().unwrap().to_owned();
    let child = app
        .post(
            "/v1/tenants",
            &app.operator_token,
            json!({"name": "Child Corp", "kind": "enterprise", "parent_id": reseller_id,
            "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": 1}}),
        )
        .await;
    let child_id = child.ok(201)["id"].as_str().unwrap().to_owned();
    let retail_only = app
        .send(
            "PUT",
            &format!("/v1/tenants/{reseller_id}/plan"),
            Some(&app.operator_token),
            Some(json!({"plan_id": small, "paid_by": "parent"})),
        )
        .await;
    assert!(retail_only.problem(422).contains("only a reseller's child"));
    app.send(
        "PUT",
        &format!("/v1/tenants/{reseller_id}/plan"),
        Some(&app.operator_token),
        Some(json!({"plan_id": small})),
    )
    .await
    .ok(200);
    app.send(
        "PUT",
        &format!("/v1/tenants/{child_id}/plan"),
        Some(&app.operator_token),
        Some(json!({"plan_id": small, "paid_by": "parent", "committed_seats": 3})),
    )
    .await
    .ok(200);
    let reseller_view = app
        .get(&format!("/v1/tenants/{reseller_id}"), &app.operator_token)
        .await;
    assert_eq!(
        reseller_view.ok(200)["limits"]["storage_quota_bytes"],
        3 * 500_000_000i64,
        "the child's 3 seats are on the reseller"
    );
    let child_view = app
        .get(
            &format!("/v1/tenants/{child_id}/billing"),
            &app.operator_token,
        )
        .await;
    assert_eq!(child_view.ok(200)["paid_by"], "parent");
    assert!(
        child_view.body["next_invoice"].is_null(),
        "the reseller is invoiced, not the child"
    );
}

async fn deliver_to(app: &TestApp, to: &str, subject: &str) {
    let raw = support::message("someone@elsewhere.test", to, subject, "hello");
    support::send_with_lettre(app.smtp, "someone@elsewhere.test", &[to], &raw, false)
        .await
        .expect("delivered");
}

async fn traffic_counts_a_resellers_tree_by_day(backend: Backend) {
    let app = support::spawn(backend).await;
    let (reseller_id, child_id) = app.reseller_and_child(1_000_000_000).await;
    let onboarded = app
        .post(&format!("/v1/tenants/{child_id}/onboard"), &app.operator_token,
            json!({"domain": "child.test", "admin": {"address": "admin@child.test", "password": PASSWORD}}))
        .await;
    let admin_id = onboarded.ok(201)["admin"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.verify_domain(onboarded.body["domain"]["id"].as_str().unwrap())
        .await;
    let admin = app.login("admin@child.test", PASSWORD).await;
    let stranger = app.enterprise("stranger.test", 5).await;

    deliver_to(&app, "admin@child.test", "one").await;
    deliver_to(&app, "admin@child.test", "two").await;
    deliver_to(&app, "admin@stranger.test", "elsewhere").await;
    app.post(
        &format!("/v1/accounts/{admin_id}/messages"),
        &admin,
        json!({"to": ["bob@remote.test"], "text": "hi"}),
    )
    .await
    .ok(202);

    let today = chrono::Utc::now().date_naive();
    let tree = app
        .get(
            &format!("/v1/tenants/{reseller_id}/traffic?days=2"),
            &app.operator_token,
        )
        .await;
    let tree = tree.ok(200);
    assert_eq!(tree["tenant_id"], reseller_id);
    let days = tree["days"].as_array().unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(
        days[0]["date"],
        (today - chrono::Days::new(1))
            .format("%Y-%m-%d")
            .to_string()
    );
    assert_eq!(
        days[0],
        json!({"date": days[0]["date"], "received": 0, "sent": 0, "received_bytes": 0, "sent_bytes": 0, "spam": 0})
    );
    let now = &days[1];
    assert_eq!(now["date"], today.format("%Y-%m-%d").to_string());
    assert_eq!(
        (now["received"].as_i64(), now["sent"].as_i64()),
        (Some(2), Some(1)),
        "the child's mail, not the stranger's: {now}"
    );
    assert!(
        now["received_bytes"].as_i64().unwrap() > 0 && now["sent_bytes"].as_i64().unwrap() > 0,
        "{now}"
    );

    // The child's admin sees its own tenant, 30 days by default, and not its reseller's.
    let own = app
        .get(&format!("/v1/tenants/{child_id}/traffic"), &admin)
        .await;
    let own = own.ok(200);
    assert_eq!(own["days"].as_array().unwrap().len(), 30);
    assert_eq!(own["days"][29]["received"], 2);
    assert_eq!(own["days"][29]["sent"], 1);
    app.get(&format!("/v1/tenants/{reseller_id}/traffic"), &admin)
        .await
        .problem(404);
    let theirs = app
        .get(
            &format!("/v1/tenants/{}/traffic?days=1", stranger.tenant_id),
            &stranger.admin_token,
        )
        .await;
    assert_eq!(theirs.ok(200)["days"][0]["received"], 1);

    for bad in ["0", "367", "-1", "abc", ""] {
        let reply = app
            .get(
                &format!("/v1/tenants/{child_id}/traffic?days={bad}"),
                &admin,
            )
            .await;
        assert!(
            reply
                .problem(400)
                .contains("`days` must be a whole number from 1 to 366"),
            "{bad}: {reply:?}"
        );
    }
    assert_eq!(
        app.get(&format!("/v1/tenants/{child_id}/traffic?days=366"), &admin)
            .await
            .ok(200)["days"]
            .as_array()
            .unwrap()
            .len(),
        366
    );
}

async fn the_operator_reads_the_pool_month_by_month(backend: Backend) {
    let app = app_with(backend, stripe_billing(None)).await;
    public_instance(&app).await;
    let plan_id = plan(&app).await;
    let acme = paying(&app, "acme.test", "cus_Acme0001", &plan_id).await;
    // 2 free-account-months in, one free account opened and debited for this month.
    paid_invoice(&app, "in_1Hist0001", "cus_Acme0001", 1000).await;
    assert_eq!(signup(&app, "alice").await.ok(201)["status"], "admitted");
    let month = tenants::store::month_of(chrono::Utc::now());
    assert_eq!(app.store.debit_pool(&month).await.unwrap(), 1);

    let history = app
        .get("/v1/pool/history?months=3", &app.operator_token)
        .await;
    let history = history.ok(200);
    assert_eq!(history["horizon_months"], 1);
    let months = history["months"].as_array().unwrap();
    assert_eq!(months.len(), 3);
    assert_eq!(
        months[2],
        json!({"month": month, "credited": 2.0, "debited": 1.0, "balance": 1.0, "capacity": 1, "free_accounts": 1})
    );
    for earlier in &months[..2] {
        assert_eq!(
            (
                earlier["credited"].as_f64(),
                earlier["balance"].as_f64(),
                earlier["free_accounts"].as_i64()
            ),
            (Some(0.0), Some(0.0), Some(0))
        );
    }
    assert!(
        months[0]["month"].as_str().unwrap() < months[1]["month"].as_str().unwrap(),
        "oldest first"
    );
    assert_eq!(
        app.get("/v1/pool/history", &app.operator_token)
            .await
            .ok(200)["months"]
            .as_array()
            .unwrap()
            .len(),
        12
    );

    for bad in ["0", "121", "twelve"] {
        let reply = app
            .get(
                &format!("/v1/pool/history?months={bad}"),
                &app.operator_token,
            )
            .await;
        assert!(
            reply
                .problem(400)
                .contains("`months` must be a whole number from 1 to 120"),
            "{bad}: {reply:?}"
        );
    }
    assert!(
        app.get("/v1/pool/history", &acme.admin_token)
            .await
            .problem(403)
            .contains("operator")
    );
}

/// The waiting line and the pool's debit run from the queue and put their
/// next run on it (a job re-queued from inside its own run once clashed with
/// itself on its deduplication key, and the pool stopped until a restart).
async fn the_pool_jobs_schedule_their_next_run(backend: Backend) {
    let app = support::spawn(backend).await;
    worker::schedule_pool(&app.store).await.unwrap();
    let workers = worker::caliop_worker(app.worker_context(0, Duration::from_secs(1)), "test");
    for _ in 0..20 {
        if !workers.run_one("test").await {
            break;
        }
    }
    for kind in [billing::ADMIT_JOB, billing::DEBIT_JOB] {
        assert_eq!(
            app.store.live_jobs(kind).await.unwrap(),
            1,
            "{kind} ran and comes back"
        );
    }
}
