//! A reseller's package bounds its whole tree, on both backends, through the
//! API and the real SMTP server:
//! - a plan assigned to a child cannot give it more than the reseller's
//!   package (the attack: `committed_seats: 1000000` on a 1 MB reseller);
//! - storage counts against every ancestor: children that each fit their
//!   own quota cannot together exceed the reseller's, the next delivery to
//!   any account of the tree is refused as over quota, and deleting mail
//!   gives the room back to the ancestors too.

mod support;

use serde_json::json;
use support::{PASSWORD, TestApp};
use tenants::{Backend, on_both_backends};

const RESELLER_PACKAGE: i64 = 1_000_000;
const CHILD_QUOTA: i64 = 800_000;

/// A reseller with a 1 MB package, onboarded with its own admin; returns
/// its id and the reseller admin's token.
async fn small_reseller(app: &TestApp) -> (String, String) {
    let reseller = app
        .post("/v1/tenants", &app.operator_token, json!({"name": "Tiny Hosting", "kind": "reseller",
            "limits": {"max_accounts": 50, "max_domains": 10, "storage_quota_bytes": RESELLER_PACKAGE}}))
        .await;
    let reseller_id = reseller.ok(201)["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/tenants/{reseller_id}/onboard"),
        &app.operator_token,
        json!({"domain": "tiny-hosting.test", "admin": {"address": "admin@tiny-hosting.test", "password": PASSWORD}}),
    )
    .await
    .ok(201);
    let token = app.login("admin@tiny-hosting.test", PASSWORD).await;
    (reseller_id, token)
}

/// A child of the reseller, made by the reseller's admin, with an admin
/// account at `domain`; returns the child's id, its admin's id and token.
async fn child(
    app: &TestApp,
    reseller_id: &str,
    reseller_token: &str,
    domain: &str,
) -> (String, String, String) {
    let child = app
        .post(
            "/v1/tenants",
            reseller_token,
            json!({"name": format!("{domain} Inc."), "kind": "enterprise",
            "parent_id": reseller_id,
            "limits": {"max_accounts": 5, "max_domains": 1, "storage_quota_bytes": CHILD_QUOTA}}),
        )
        .await;
    let child_id = child.ok(201)["id"].as_str().unwrap().to_owned();
    let address = format!("admin@{domain}");
    let onboarded = app
        .post(
            &format!("/v1/tenants/{child_id}/onboard"),
            reseller_token,
            json!({"domain": domain, "admin": {"address": address, "password": PASSWORD}}),
        )
        .await;
    let admin_id = onboarded.ok(201)["admin"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Only a verified domain receives mail: the operator vouches for it.
    app.verify_domain(onboarded.body["domain"]["id"].as_str().unwrap())
        .await;
    (child_id, admin_id, app.login(&address, PASSWORD).await)
}

on_both_backends!(a_plan_cannot_give_a_child_more_than_the_resellers_package);

async fn a_plan_cannot_give_a_child_more_than_the_resellers_package(backend: Backend) {
    let app = support::spawn(backend).await;
    let plan = app
        .post(
            "/v1/plans",
            &app.operator_token,
            json!({"name": "Business", "currency": "eur", "seat_price_cents": 1000, "storage_per_seat_bytes": 10_000_000_000i64,
                   "max_domains": 5, "max_accounts": 50, "solidarity_percent": 0}),
        )
        .await;
    let plan_id = plan.ok(201)["id"].as_str().unwrap().to_owned();
    let (reseller_id, reseller_token) = small_reseller(&app).await;
    let (child_id, _, _) = child(&app, &reseller_id, &reseller_token, "child-a.test").await;

    let attack = app
        .send(
            "PUT",
            &format!("/v1/tenants/{child_id}/plan"),
            Some(&reseller_token),
            Some(json!({"plan_id": plan_id, "committed_seats": 1_000_000})),
        )
        .await;
    let detail = attack.problem(409);
    assert!(
        detail.contains("Tiny Hosting") && detail.contains("storage_quota_bytes"),
        "the refusal names the ancestor whose package is exceeded: {detail}"
    );
    assert!(
        detail.contains(&format!(
            "by {}",
            10_000_000_000_000_000i64 - RESELLER_PACKAGE
        )),
        "and by how much: {detail}"
    );
    let after = app
        .get(&format!("/v1/tenants/{child_id}"), &app.operator_token)
        .await;
    assert_eq!(
        after.ok(200)["limits"]["storage_quota_bytes"],
        CHILD_QUOTA,
        "nothing changed"
    );
    let billing = app
        .get(
            &format!("/v1/tenants/{child_id}/billing"),
            &app.operator_token,
        )
        .await;
    assert!(
        billing.body.get("plan_id").is_none_or(|p| p.is_null()),
        "the plan was not assigned either: {:?}",
        billing.body
    );
}

/// A message of about 150 KB, in lines SMTP accepts.
fn bulky(to: &str, n: usize) -> String {
    let line = "x".repeat(76);
    let body: Vec<&str> = std::iter::repeat_n(line.as_str(), 150_000 / 78).collect();
    format!(
        "From: <sender@elsewhere.test>\r\nTo: <{to}>\r\nSubject: bulk {n}\r\n\r\n{}\r\n.\r\n",
        body.join("\r\n")
    )
}

/// Offers one message to `to` over SMTP: the reply to RCPT when it refuses,
/// else the reply to the end of DATA.
async fn offer(app: &TestApp, to: &str, n: usize) -> (u16, String) {
    let mut probe = mail::probe::SmtpProbe::connect(app.smtp).await;
    assert_eq!(probe.cmd("EHLO sender.test").await.0, 250);
    assert_eq!(probe.cmd("MAIL FROM:<sender@elsewhere.test>").await.0, 250);
    let rcpt = probe.cmd(&format!("RCPT TO:<{to}>")).await;
    if rcpt.0 != 250 {
        return rcpt;
    }
    assert_eq!(probe.cmd("DATA").await.0, 354);
    probe.send(bulky(to, n).as_bytes()).await;
    probe.read_reply().await
}

async fn used(app: &TestApp, tenant: &str) -> i64 {
    app.get(&format!("/v1/tenants/{tenant}"), &app.operator_token)
        .await
        .ok(200)["storage_used_bytes"]
        .as_i64()
        .unwrap()
}

on_both_backends!(children_together_cannot_store_more_than_the_resellers_package);

async fn children_together_cannot_store_more_than_the_resellers_package(backend: Backend) {
    let app = support::spawn(backend).await;
    let (reseller_id, reseller_token) = small_reseller(&app).await;
    let (a_id, a_admin_id, a_token) =
        child(&app, &reseller_id, &reseller_token, "child-a.test").await;
    let (b_id, _, _) = child(&app, &reseller_id, &reseller_token, "child-b.test").await;

    // Four messages for A (about 600 KB: within A's 800 KB and the reseller's 1 MB).
    for n in 0..4 {
        let reply = offer(&app, "admin@child-a.test", n).await;
        assert_eq!(reply.0, 250, "{reply:?}");
    }
    // B fits its own 800 KB quota, but the reseller's package fills up.
    let mut accepted = 0;
    let refusal = loop {
        let reply = offer(&app, "admin@child-b.test", accepted).await;
        if reply.0 != 250 {
            break reply;
        }
        accepted += 1;
        assert!(accepted < 5, "B's mail went past the reseller's package");
    };
    assert_eq!(
        accepted, 2,
        "room for two of B's messages under the package"
    );
    assert_eq!(refusal.0, 452, "over quota, try later: {refusal:?}");
    assert!(refusal.1.contains("4.2.2"), "{refusal:?}");
    let (a_used, b_used, reseller_used) = (
        used(&app, &a_id).await,
        used(&app, &b_id).await,
        used(&app, &reseller_id).await,
    );
    assert!(b_used < CHILD_QUOTA / 2, "B itself had room: {b_used}");
    assert_eq!(
        reseller_used,
        a_used + b_used,
        "the reseller's usage is its subtree's"
    );
    assert!(reseller_used <= RESELLER_PACKAGE, "{reseller_used}");
    // Any account of the tree is refused now, A's too, though A has room of its own.
    let a_refused = offer(&app, "admin@child-a.test", 9).await;
    assert_eq!(a_refused.0, 452, "{a_refused:?}");
    assert!(
        a_used + 160_000 < CHILD_QUOTA,
        "A itself had room: {a_used}"
    );

    // Deleting one of A's messages gives the room back to the reseller, so B gets mail again.
    let messages = app
        .get(
            &format!("/v1/accounts/{a_admin_id}/messages?limit=10"),
            &a_token,
        )
        .await;
    let first = messages.ok(200)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("/v1/messages/{first}"), &a_token)
        .await
        .ok(204);
    assert!(
        used(&app, &reseller_id).await < reseller_used,
        "freed up the tree"
    );
    assert_eq!(
        used(&app, &reseller_id).await,
        used(&app, &a_id).await + used(&app, &b_id).await
    );
    let reply = offer(&app, "admin@child-b.test", 7).await;
    assert_eq!(reply.0, 250, "room again under the package: {reply:?}");
}
