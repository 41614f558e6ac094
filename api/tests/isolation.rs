//! Generated from the OpenAPI document, so a new route is covered the day it
//! is added: every route with an id in its path answers 404 to a token of
//! another tenant, and every administrator route answers 403 to a user.
//! A path parameter this test does not know fails it. The same walk sends
//! every operation a malformed path id and a body not sent as JSON, and
//! checks the refusal is one the document lists.

mod support;

use serde_json::{Value, json};
use support::{Enterprise, TestApp};
use tenants::{Backend, on_both_backends};

/// Operations a plain user may call on its own account, or that anyone signed in may call.
const USER_OPERATIONS: &[&str] = &[
    "getAccount",
    "updateAccount",
    "getPublicKey",
    "getSecretKey",
    "listMessages",
    "getMessage",
    "getRawMessage",
    "updateMessage",
    "deleteMessage",
    "sendMessage",
    "getDelivery",
    "listMailboxes",
    "createMailbox",
    "updateMailbox",
    "deleteMailbox",
    "listJurisdictions",
    "startOpaqueRegistration",
    "createAppPassword",
    "listAppPasswords",
    "revokeAppPassword",
    "enrolTotp",
    "listPasskeys",
    "listSenderRules",
    "setSenderRule",
    "deleteSenderRule",
    "getForwarding",
    "setForwarding",
    "listSieveScripts",
    "getSieveScript",
    "putSieveScript",
    "deleteSieveScript",
    "lookupRecipientKeys",
    // Run last among the owner's: the answer carries the fresh token the rest use.
    "endOtherSessions",
];
/// Operations the owner may call that cannot succeed here (a new sign-in
/// would end the test's own token; a passkey needs a browser's
/// authenticator and its `Origin`): they must reach the handler's checks,
/// not be refused, and answer this status. tests/device_keys.rs and the
/// admin app's browser tests run them through.
const OWNER_OPERATIONS_NOT_RUN: &[(&str, u16)] = &[
    ("finishOpaqueRegistration", 422),
    ("confirmTotp", 422),
    ("startPasskeyRegistration", 422),
    ("finishPasskeyRegistration", 422),
    ("deletePasskey", 404),
    ("getPreviousSecretKey", 404),
    // A whole message, not JSON: tests/stored_form.rs puts one.
    ("appendMessage", 415),
];
/// Operations that need no token at all.
const PUBLIC_OPERATIONS: &[&str] = &[
    "issueToken",
    "startOpaqueLogin",
    "finishOpaqueLogin",
    "getActivation",
    "startDeviceReset",
    "finishDeviceReset",
    "startActivation",
    "finishActivation",
    "healthz",
    "readyz",
    "stripeWebhook",
    "getPool",
    "getSignupChallenge",
    "signUp",
    "getSignup",
    "getPublicBranding",
    "getPublicLogo",
    "getPublicFavicon",
    "requestPasswordReset",
    "getPasswordReset",
    "resetPassword",
    "getPublicTransparency",
    // The link itself is the capability (a token valid once); exports.rs checks it.
    "downloadTenantExport",
];
/// Path parameters of objects that belong to no tenant: the operator's
/// price list, which every administrator may read (and only the operator
/// change, which `users_are_refused_admin_routes` checks), and the legal
/// request register, which only the operator may read (anyone else gets 403
/// whatever the id; api/tests/legal.rs checks it), and the instance's TLS
/// certificates, likewise the operator's only (api/tests/acme.rs).
const SHARED_PARAMETERS: &[&str] = &["{plan_id}", "{request_id}", "{certificate_name}"];

struct Fixture {
    tenant_id: String,
    domain_id: String,
    account_id: String,
    api_key_id: String,
    message_id: String,
    mailbox_id: String,
    plan_id: String,
    hostname_id: String,
    request_id: String,
    export_id: String,
    app_password_id: String,
    address_id: String,
}

/// One object of every kind in the enterprise, a message included.
async fn fixture(app: &TestApp, e: &Enterprise) -> Fixture {
    let account_id = app.user(e, "user").await;
    let key = app
        .post(
            &format!("/v1/tenants/{}/api-keys", e.tenant_id),
            &e.admin_token,
            json!({"name": "ci"}),
        )
        .await;
    let to = format!("user@{}", e.domain);
    let raw = support::message("someone@elsewhere.test", &to, "hello", "hi");
    support::send_with_lettre(app.smtp, "someone@elsewhere.test", &[&to], &raw, false)
        .await
        .expect("delivered");
    let user = app.login(&to, support::PASSWORD).await;
    let listed = app
        .get(&format!("/v1/accounts/{account_id}/messages"), &user)
        .await;
    let mailbox = app
        .post(
            &format!("/v1/accounts/{account_id}/mailboxes"),
            &user,
            json!({"name": "Projects"}),
        )
        .await;
    let app_password = app
        .post(
            &format!("/v1/accounts/{account_id}/app-passwords"),
            &user,
            json!({"name": "phone"}),
        )
        .await;
    let script = app
        .send(
            "PUT",
            &format!("/v1/accounts/{account_id}/sieve/rules"),
            Some(&user),
            Some(json!({"content": "keep;"})),
        )
        .await;
    script.ok(200);
    let address = app
        .post(
            &format!("/v1/tenants/{}/addresses", e.tenant_id),
            &e.admin_token,
            json!({"address": format!("alias@{}", e.domain), "kind": "alias", "account_id": account_id}),
        )
        .await;
    Fixture {
        address_id: address.ok(201)["id"].as_str().unwrap().to_owned(),
        app_password_id: app_password.ok(201)["app_password"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        mailbox_id: mailbox.ok(201)["id"].as_str().unwrap().to_owned(),
        tenant_id: e.tenant_id.clone(),
        domain_id: e.domain_id.clone(),
        account_id,
        api_key_id: key.ok(201)["id"].as_str().unwrap().to_owned(),
        message_id: listed.ok(200)["items"][0]["id"]
            .as_str()
            .expect("a message")
            .to_owned(),
        hostname_id: {
            let host = app
                .post(
                    &format!("/v1/tenants/{}/hostnames", e.tenant_id),
                    &e.admin_token,
                    json!({"hostname": format!("admin.{}", e.domain)}),
                )
                .await;
            host.ok(201)["id"].as_str().unwrap().to_owned()
        },
        request_id: {
            let request = app
                .post(
                    "/v1/legal-requests",
                    &app.operator_token,
                    json!({"authority": "Tribunal", "country": "FR",
                    "legal_basis": "RG 26/1", "received_on": "2026-01-05", "decision": "contested",
                    "scope": {"tenant_id": e.tenant_id, "kinds": ["messages"]}}),
                )
                .await;
            request.ok(201)["id"].as_str().unwrap().to_owned()
        },
        export_id: {
            let export = app
                .post(
                    &format!("/v1/tenants/{}/export", e.tenant_id),
                    &e.admin_token,
                    json!({"passphrase": "twelve chars or more", "password": support::PASSWORD}),
                )
                .await;
            export.ok(202)["export"]["id"].as_str().unwrap().to_owned()
        },
        plan_id: {
            let plan = app
                .post(
                    "/v1/plans",
                    &app.operator_token,
                    json!({"name": format!("Plan of {}", e.domain), "currency": "eur",
                    "seat_price_cents": 500, "storage_per_seat_bytes": 1_000_000}),
                )
                .await;
            plan.ok(201)["id"].as_str().unwrap().to_owned()
        },
    }
}

fn fill(path: &str, ids: &Fixture) -> String {
    let mut out = path.to_owned();
    for (param, value) in [
        ("{tenant_id}", &ids.tenant_id),
        ("{domain_id}", &ids.domain_id),
        ("{account_id}", &ids.account_id),
        ("{api_key_id}", &ids.api_key_id),
        ("{message_id}", &ids.message_id),
        ("{mailbox_id}", &ids.mailbox_id),
        ("{plan_id}", &ids.plan_id),
        ("{hostname_id}", &ids.hostname_id),
        ("{request_id}", &ids.request_id),
        ("{export_id}", &ids.export_id),
        ("{app_password_id}", &ids.app_password_id),
        ("{address_id}", &ids.address_id),
        ("{name}", &"rules".to_owned()),
        // None exists: the owner is answered 404, anyone else refused first.
        (
            "{passkey_id}",
            &"0196f000-0000-7000-8000-000000000000".to_owned(),
        ),
        ("{template}", &"welcome".to_owned()),
        ("{language}", &"fr".to_owned()),
        ("{token}", &"no-such-signup-token".to_owned()),
        ("{sender}", &"someone@sender.test".to_owned()),
        ("{certificate_name}", &"mx.caliop.test".to_owned()),
    ] {
        out = out.replace(param, value);
    }
    assert!(
        !out.contains('{'),
        "route `{path}` has a path parameter the isolation test does not know: teach `fill` about it"
    );
    out
}

fn operations(spec: &Value) -> Vec<(String, String, String)> {
    let mut ops = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ops.push((method.to_uppercase(), path.clone(), id.to_owned()));
        }
    }
    // Deletions last, so that they do not remove what later checks look at.
    ops.sort_by_key(|(method, _, _)| method == "DELETE");
    ops
}

on_both_backends!(
    other_tenants_objects_are_not_found,
    users_are_refused_admin_routes,
    no_mail_door_routes_to_a_claim,
    refusals_are_the_ones_the_spec_lists
);

async fn other_tenants_objects_are_not_found(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let b = app.enterprise("b.test", 10).await;
    let theirs = fixture(&app, &b).await;
    let user_a = {
        app.user(&a, "alice").await;
        app.login("alice@a.test", support::PASSWORD).await
    };
    let audit_before = app.audit_len(&b.tenant_id).await;
    let spec = serde_json::to_value(api::openapi()).unwrap();
    let mut checked = 0;
    for (method, path, id) in operations(&spec) {
        // Public routes with a token in the path hold no tenant's object.
        if !path.contains('{')
            || SHARED_PARAMETERS.iter().any(|p| path.contains(p))
            || PUBLIC_OPERATIONS.contains(&id.as_str())
        {
            continue;
        }
        let url = fill(&path, &theirs);
        for token in [&a.admin_token, &user_a] {
            let body = matches!(method.as_str(), "POST" | "PATCH" | "PUT").then(|| json!({}));
            let reply = app.send(&method, &url, Some(token), body).await;
            assert_eq!(
                reply.status.as_u16(),
                404,
                "{id} ({method} {path}) leaked another tenant's object: {reply:?}"
            );
            reply.problem(404);
        }
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} routes with ids were found in the spec"
    );
    assert_eq!(
        app.audit_len(&b.tenant_id).await,
        audit_before,
        "nothing of B changed"
    );

    // Lists are scoped by the token, not by a path id.
    let listed = app.get("/v1/tenants", &a.admin_token).await;
    let ids: Vec<&str> = listed.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.tenant_id.as_str()]);
}

async fn users_are_refused_admin_routes(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let mine = fixture(&app, &a).await;
    let mut user = app.login("user@a.test", support::PASSWORD).await;
    let spec = serde_json::to_value(api::openapi()).unwrap();
    let mut refused = 0;
    for (method, path, id) in operations(&spec) {
        if PUBLIC_OPERATIONS.contains(&id.as_str()) {
            continue;
        }
        let url = fill(&path, &mine);
        let body = match id.as_str() {
            // An owner's request must be valid to succeed.
            "sendMessage" => Some(json!({"to": ["someone@a.test"], "text": "hello"})),
            "createMailbox" => Some(json!({"name": "Made by the test"})),
            "createAppPassword" => Some(json!({"name": "laptop"})),
            "putSieveScript" => Some(json!({"content": "keep;"})),
            // Set before the deletions run (they come last), which remove it.
            "setSenderRule" => Some(json!({"sender": "someone@sender.test", "rule": "block"})),
            "lookupRecipientKeys" => Some(json!({"addresses": ["someone@a.test"]})),
            "startOpaqueRegistration" => Some(json!({
                "registration_request": vault::opaque::client_register_start("x").unwrap().1
            })),
            _ => matches!(method.as_str(), "POST" | "PATCH" | "PUT").then(|| json!({})),
        };
        let reply = app.send(&method, &url, Some(&user), body).await;
        if id == "endOtherSessions" {
            // Every token issued before ends, the caller gets a new one.
            user = reply.ok(200)["access_token"].as_str().unwrap().to_owned();
            continue;
        }
        if let Some((_, status)) = OWNER_OPERATIONS_NOT_RUN.iter().find(|(o, _)| *o == id) {
            reply.problem(*status);
        } else if USER_OPERATIONS.contains(&id.as_str()) {
            assert!(
                reply.status.is_success(),
                "{id} ({method} {path}) must work for the account's owner: {reply:?}"
            );
        } else {
            assert_eq!(
                reply.status.as_u16(),
                403,
                "{id} ({method} {path}) let a user through: {reply:?}"
            );
            reply.problem(403);
            refused += 1;
        }
        let anonymous = app.send(&method, &url, None, None).await;
        anonymous.problem(401);
    }
    assert!(
        refused >= 15,
        "only {refused} admin routes were found in the spec"
    );
    // The user's own account is still there and unchanged in role.
    let me = app
        .get(&format!("/v1/accounts/{}", mine.account_id), &user)
        .await;
    assert_eq!(me.ok(200)["role"], "user");
}

/// Every door through which mail or a sign-in reaches an address. Adding
/// one fails to compile until its claim check below is written.
#[derive(Clone, Copy, Debug)]
enum MailDoor {
    /// The MX's RCPT TO.
    Rcpt,
    /// Local delivery of a hosted user's mail (the workers).
    LocalDelivery,
    /// Sending from an address (submission port).
    SendingFrom,
    /// A password reset whose recovery address is the claimed one.
    PasswordReset,
}

/// The mail doors, like the routes above: an address in a domain another
/// tenant merely claims (added, never verified) is never ours.
async fn no_mail_door_routes_to_a_claim(backend: Backend) {
    let app = support::spawn(backend).await;
    let claimant = app.enterprise("claimant.test", 5).await;
    app.claim(&claimant, "claimed.test").await;
    app.post(
        &format!("/v1/tenants/{}/accounts", claimant.tenant_id),
        &claimant.admin_token,
        json!({"address": "boss@claimed.test", "password": support::PASSWORD}),
    )
    .await
    .ok(201);
    let victim = app.enterprise("victim.test", 5).await;
    let alice_id = app.user(&victim, "alice").await;
    let alice = app.login("alice@victim.test", support::PASSWORD).await;
    let boss = tenants::EmailAddress::parse("boss@claimed.test").unwrap();
    let boss_id = app
        .store
        .account_by_address(&boss)
        .await
        .unwrap()
        .unwrap()
        .id;
    let nothing_stored = async || {
        app.store
            .list_messages(
                boss_id,
                None,
                None,
                tenants::Page {
                    after: None,
                    limit: 10,
                },
            )
            .await
            .unwrap()
            .is_empty()
    };
    for door in [
        MailDoor::Rcpt,
        MailDoor::LocalDelivery,
        MailDoor::SendingFrom,
        MailDoor::PasswordReset,
    ] {
        match door {
            MailDoor::Rcpt => {
                let mut probe = mail::probe::SmtpProbe::connect(app.smtp).await;
                probe.cmd("EHLO sender.test").await;
                probe
                    .expect("MAIL FROM:<x@sender.test>", 250, "2.1.0")
                    .await;
                probe
                    .expect("RCPT TO:<boss@claimed.test>", 550, "5.1.2")
                    .await;
            }
            MailDoor::LocalDelivery => {
                // Not ours: the outbound copy goes to the domain's MX (none here), never inward.
                let workers = app.start_workers(9, std::time::Duration::from_secs(1));
                app.post(
                    &format!("/v1/accounts/{alice_id}/messages"),
                    &alice,
                    json!({"to": ["boss@claimed.test"], "text": "hello"}),
                )
                .await
                .ok(202);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                drop(workers);
            }
            MailDoor::SendingFrom => {
                let plain = support::auth_plain("boss@claimed.test", support::PASSWORD);
                let mut probe = mail::probe::SmtpProbe::connect(app.submission).await;
                probe.cmd("EHLO client.test").await;
                probe
                    .expect(&format!("AUTH PLAIN {plain}"), 535, "5.7.1")
                    .await;
            }
            MailDoor::PasswordReset => {
                app.post(
                    &format!("/v1/tenants/{}/accounts", victim.tenant_id),
                    &victim.admin_token,
                    json!({"address": "cfo@victim.test", "password": support::PASSWORD,
                           "recovery_address": "boss@claimed.test"}),
                )
                .await
                .ok(201);
                app.send(
                    "POST",
                    "/v1/public/password-reset",
                    None,
                    Some(json!({"address": "cfo@victim.test"})),
                )
                .await
                .ok(202);
                let workers = app.start_workers(9, std::time::Duration::from_secs(1));
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                drop(workers);
            }
        }
        assert!(nothing_stored().await, "{door:?} reached the claim");
    }
}

/// Asserts that `reply` is a problem with `status` and that the spec lists that status for `op`.
fn listed_refusal(reply: &support::Reply, status: u16, name: &str, op: &Value) -> String {
    assert!(
        op["responses"][status.to_string()].is_object(),
        "{name} answered {status}, which its spec does not list: {reply:?}"
    );
    reply.problem(status)
}

async fn refusals_are_the_ones_the_spec_lists(backend: Backend) {
    let app = support::spawn(backend).await;
    let a = app.enterprise("a.test", 10).await;
    let mine = fixture(&app, &a).await;
    let user = app.login("user@a.test", support::PASSWORD).await;
    let spec = serde_json::to_value(api::openapi()).unwrap();
    let (mut malformed_ids, mut unlabelled_bodies) = (0, 0);
    for (method, path, id) in operations(&spec) {
        let op = &spec["paths"][&path][method.to_lowercase()];
        let name = format!("{id} ({method} {path})");
        // The account's own operations refuse anyone else before reading the body.
        let token = if USER_OPERATIONS.contains(&id.as_str()) {
            &user
        } else {
            &app.operator_token
        };
        let url = fill(&path, &mine);

        let ids = support::spec::path_ids(&spec, op);
        if let Some(first) = ids.first() {
            let mut bad = path.clone();
            for param in &ids {
                bad = bad.replace(&format!("{{{param}}}"), "null%2Cnull");
            }
            let reply = app
                .send(&method, &fill(&bad, &mine), Some(token), None)
                .await;
            let detail = listed_refusal(&reply, 400, &name, op);
            assert!(
                detail.contains("null,null"),
                "{name}: the detail does not name the malformed `{first}`: {detail}"
            );
            malformed_ids += 1;
        }

        if support::spec::parses_json_body(op) {
            let base = format!("{}{url}", app.base);
            let request = |body: &'static str| {
                app.http
                    .request(method.parse().expect("method"), &base)
                    .bearer_auth(token)
                    .body(body)
            };
            let unlabelled = app.raw(request("{}")).await;
            let detail = listed_refusal(&unlabelled, 415, &name, op);
            assert!(
                detail.to_lowercase().contains("content-type"),
                "{name}: the detail does not say which Content-Type: {detail}"
            );
            let as_json = |body| request(body).header("content-type", "application/json");
            let broken = app.raw(as_json("{\"")).await;
            listed_refusal(&broken, 400, &name, op);
            let misfit = app.raw(as_json("42")).await;
            listed_refusal(&misfit, 422, &name, op);
            unlabelled_bodies += 1;
        }
    }
    assert!(
        malformed_ids >= 60,
        "only {malformed_ids} operations with path ids were tried"
    );
    assert!(
        unlabelled_bodies >= 25,
        "only {unlabelled_bodies} operations with JSON bodies were tried"
    );
}
