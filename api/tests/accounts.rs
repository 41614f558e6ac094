//! Accounts and their keys, checked with GnuPG; sign-in limits; API keys;
//! each account's storage and its own cap.

mod support;

use std::path::Path;

use serde_json::json;
use support::{PASSWORD, gpg, gpg_home};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    gnupg_reads_our_keys_and_password_changes_relock_them,
    failed_sign_ins_are_limited,
    api_keys_carry_scopes_and_can_be_revoked,
    suspended_accounts_and_tenants_cannot_act,
    web_key_directory_serves_what_gnupg_asks_for,
    accounts_show_what_they_store_and_their_own_cap,
    signing_out_everywhere_else_keeps_only_this_session,
    owners_see_their_floor_and_set_their_recovery_address,
);

/// The owner's settings: the tenant's floor for the levels on offer, and a
/// recovery address set, checked and cleared by the owner.
async fn owners_see_their_floor_and_set_their_recovery_address(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "alice").await;
    let alice = app.login("alice@acme.test", PASSWORD).await;
    let path = format!("/v1/accounts/{id}");
    let own = app.get(&path, &alice).await;
    assert_eq!(own.ok(200)["level_floor"], "standard");
    assert!(own.body.get("recovery_address").is_none(), "{own:?}");
    let set = app
        .send(
            "PATCH",
            &path,
            Some(&alice),
            Some(serde_json::json!({"recovery_address": " alice@elsewhere.test "})),
        )
        .await;
    assert_eq!(set.ok(200)["recovery_address"], "alice@elsewhere.test");
    assert_eq!(
        app.get(&path, &alice).await.ok(200)["recovery_address"],
        "alice@elsewhere.test"
    );
    let own_address = app
        .send(
            "PATCH",
            &path,
            Some(&alice),
            Some(serde_json::json!({"recovery_address": "alice@acme.test"})),
        )
        .await;
    assert!(
        own_address.problem(422).contains("another address"),
        "{own_address:?}"
    );
    let cleared = app
        .send(
            "PATCH",
            &path,
            Some(&alice),
            Some(serde_json::json!({"recovery_address": ""})),
        )
        .await;
    assert!(
        cleared.ok(200).get("recovery_address").is_none(),
        "{cleared:?}"
    );
    // Lists stay lean: one query per page, not per account.
    let listed = app
        .get(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
        )
        .await;
    assert!(listed.ok(200)["items"][0].get("level_floor").is_none());
}

/// "Sign out of other sessions": every token issued before stops at once,
/// the caller gets a fresh one; nobody else may do it for the account.
async fn signing_out_everywhere_else_keeps_only_this_session(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "alice").await;
    let here = app.login("alice@acme.test", PASSWORD).await;
    let laptop = app.login("alice@acme.test", PASSWORD).await;
    let path = format!("/v1/accounts/{id}");
    app.get(&path, &laptop).await.ok(200);

    let refused = app
        .post(
            &format!("{path}/sessions/end-others"),
            &e.admin_token,
            serde_json::json!({}),
        )
        .await;
    assert!(
        refused.problem(403).contains("only the account's owner"),
        "{refused:?}"
    );
    app.get(&path, &laptop).await.ok(200);

    let ended = app
        .post(
            &format!("{path}/sessions/end-others"),
            &here,
            serde_json::json!({}),
        )
        .await;
    let fresh = ended.ok(200)["access_token"].as_str().unwrap().to_owned();
    assert_eq!(ended.body["account_id"], serde_json::json!(id));
    app.get(&path, &fresh).await.ok(200);
    for old in [&laptop, &here] {
        assert_eq!(app.get(&path, old).await.status, 401);
    }
    let audit = app
        .get(
            &format!("/v1/tenants/{}/audit", e.tenant_id),
            &e.admin_token,
        )
        .await;
    assert_eq!(
        audit.ok(200)["items"][0]["action"],
        "account.sessions_ended"
    );
}

/// Whether `passphrase` unlocks the secret key for signing in this gpg home.
fn can_sign(home: &Path, fingerprint: &str, passphrase: &str) -> bool {
    let (ok, _, _) = gpg(
        home,
        &[
            "--passphrase",
            passphrase,
            "--local-user",
            fingerprint,
            "--armor",
            "--sign",
        ],
        b"hello",
    );
    ok
}

async fn gnupg_reads_our_keys_and_password_changes_relock_them(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "alice").await;
    let alice = app.login("alice@acme.test", PASSWORD).await;
    let account = app.get(&format!("/v1/accounts/{id}"), &alice).await;
    let fingerprint = account.ok(200)["fingerprint"].as_str().unwrap().to_owned();

    let public = app
        .get(&format!("/v1/accounts/{id}/public-key"), &e.admin_token)
        .await;
    assert_eq!(public.status, 200);
    assert_eq!(public.content_type, "application/pgp-keys");
    let home = gpg_home();
    let (ok, _, out) = gpg(home.path(), &["--import"], public.text().as_bytes());
    assert!(ok, "gpg --import refused the public key: {out}");
    let (ok, listing, _) = gpg(
        home.path(),
        &["--with-colons", "--list-keys", "alice@acme.test"],
        b"",
    );
    let listing = String::from_utf8_lossy(&listing).into_owned();
    assert!(ok && listing.contains(&fingerprint), "{listing}");
    assert!(listing.contains("alice <alice@acme.test>"), "{listing}");
    let (ok, out, _) = gpg(
        home.path(),
        &[
            "--trust-model",
            "always",
            "--armor",
            "--encrypt",
            "--recipient",
            "alice@acme.test",
        ],
        b"secret",
    );
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(
        ok && out.contains("BEGIN PGP MESSAGE"),
        "gpg cannot encrypt to the key: {out}"
    );

    // The secret key is for its owner only, and it is locked.
    let by_admin = app
        .get(&format!("/v1/accounts/{id}/secret-key"), &e.admin_token)
        .await;
    assert!(by_admin.problem(403).contains("owner"));
    let secret = app
        .get(&format!("/v1/accounts/{id}/secret-key"), &alice)
        .await;
    assert_eq!(secret.status, 200);
    assert!(
        secret
            .text()
            .starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----")
    );
    let home = gpg_home();
    let (ok, _, out) = gpg(
        home.path(),
        &["--passphrase", PASSWORD, "--import"],
        secret.text().as_bytes(),
    );
    assert!(ok, "gpg refused the secret key: {out}");
    assert!(can_sign(home.path(), &fingerprint, PASSWORD));
    assert!(!can_sign(home.path(), &fingerprint, "not the password"));

    // A password change by the owner re-locks the same key.
    let new_password = "a much longer new passphrase";
    let wrong = app
        .patch(
            &format!("/v1/accounts/{id}"),
            &alice,
            json!({"password": new_password, "current_password": "nope nope nope"}),
        )
        .await;
    assert!(wrong.problem(403).contains("current password"));
    let changed = app
        .patch(
            &format!("/v1/accounts/{id}"),
            &alice,
            json!({"password": new_password, "current_password": PASSWORD}),
        )
        .await;
    assert_eq!(
        changed.ok(200)["fingerprint"],
        fingerprint.as_str(),
        "same key, new lock"
    );
    let alice = app.login("alice@acme.test", new_password).await;
    let relocked = app
        .get(&format!("/v1/accounts/{id}/secret-key"), &alice)
        .await;
    let home = gpg_home();
    let (ok, _, out) = gpg(
        home.path(),
        &["--passphrase", new_password, "--import"],
        relocked.text().as_bytes(),
    );
    assert!(ok, "{out}");
    assert!(can_sign(home.path(), &fingerprint, new_password));
    assert!(!can_sign(home.path(), &fingerprint, PASSWORD));

    // An administrator's reset cannot unlock the old key: a new one is made.
    let reset = app
        .patch(
            &format!("/v1/accounts/{id}"),
            &e.admin_token,
            json!({"password": "reset by the admin 1"}),
        )
        .await;
    assert_ne!(reset.ok(200)["fingerprint"], fingerprint.as_str());
    let audit = app
        .get(
            &format!("/v1/tenants/{}/audit", e.tenant_id),
            &e.admin_token,
        )
        .await;
    assert_eq!(audit.ok(200)["items"][0]["action"], "account.credentials");
    assert!(
        !audit.body.to_string().contains(new_password),
        "no secret in the audit log"
    );
}

async fn failed_sign_ins_are_limited(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    app.user(&e, "bob").await;
    let attempt = |password: &'static str| {
        app.send("POST", "/v1/auth/token", None, Some(json!({"grant_type": "password", "username": "bob@acme.test", "password": password})))
    };
    for _ in 0..5 {
        assert!(
            attempt("wrong password!")
                .await
                .problem(401)
                .contains("wrong address or password")
        );
    }
    let limited = attempt(PASSWORD).await;
    assert!(
        limited
            .problem(429)
            .contains("too many failed sign-in attempts")
    );
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900);
    let unknown = app
        .send("POST", "/v1/auth/token", None, Some(json!({"grant_type": "password", "username": "nobody@acme.test", "password": "whatever!!"})))
        .await;
    assert!(
        unknown.problem(401).contains("wrong address or password"),
        "unknown addresses look like wrong passwords"
    );
    let mixed = app
        .send(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "password", "username": "bob@acme.test", "api_key": "x"})),
        )
        .await;
    assert!(
        mixed
            .problem(422)
            .contains("needs `username` and `password`")
    );
}

async fn api_keys_carry_scopes_and_can_be_revoked(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let keys = format!("/v1/tenants/{}/api-keys", e.tenant_id);
    let read_only = app
        .post(
            &keys,
            &e.admin_token,
            json!({"name": "dashboard", "scopes": ["read"]}),
        )
        .await;
    let secret = read_only.ok(201)["secret"].as_str().unwrap().to_owned();
    let key_id = read_only.body["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(read_only.body["prefix"].as_str().unwrap()));

    let listed = app.get(&keys, &e.admin_token).await;
    assert!(
        !listed.ok(200).to_string().contains(&secret),
        "the secret is shown once"
    );

    let token = app.api_key_token(&secret).await;
    app.get(&format!("/v1/tenants/{}/accounts", e.tenant_id), &token)
        .await
        .ok(200);
    let write = app
        .post(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &token,
            json!({"address": "x@acme.test", "password": PASSWORD}),
        )
        .await;
    assert!(write.problem(403).contains("read-only"));

    app.delete(&format!("/v1/api-keys/{key_id}"), &e.admin_token)
        .await
        .ok(204);
    let after = app
        .get(&format!("/v1/tenants/{}/accounts", e.tenant_id), &token)
        .await;
    assert!(
        after.problem(401).contains("revoked"),
        "tokens of a revoked key stop at once"
    );
    let exchange = app
        .send(
            "POST",
            "/v1/auth/token",
            None,
            Some(json!({"grant_type": "api_key", "api_key": secret})),
        )
        .await;
    exchange.problem(401);
}

async fn suspended_accounts_and_tenants_cannot_act(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "carol").await;
    let carol = app.login("carol@acme.test", PASSWORD).await;
    app.patch(
        &format!("/v1/accounts/{id}"),
        &e.admin_token,
        json!({"status": "suspended"}),
    )
    .await
    .ok(200);
    app.get(&format!("/v1/accounts/{id}"), &carol)
        .await
        .problem(401);
    let login = app
        .send("POST", "/v1/auth/token", None, Some(json!({"grant_type": "password", "username": "carol@acme.test", "password": PASSWORD})))
        .await;
    assert!(login.problem(403).contains("suspended"));

    // A tenant admin cannot lift its own suspension or raise its package.
    let own = format!("/v1/tenants/{}", e.tenant_id);
    let raise = app
        .patch(
            &own,
            &e.admin_token,
            json!({"limits": {"max_accounts": 1000, "max_domains": 10, "storage_quota_bytes": 1}}),
        )
        .await;
    assert!(
        raise
            .problem(403)
            .contains("parent reseller or the operator")
    );
    app.patch(&own, &app.operator_token, json!({"status": "suspended"}))
        .await
        .ok(200);
    let refused = app
        .get(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
        )
        .await;
    assert!(refused.problem(403).contains("suspended"));
}

/// The URL GnuPG itself computes for an address's key.
fn wkd_url(address: &str) -> String {
    let out = std::process::Command::new("/usr/lib/gnupg/gpg-wks-client")
        .args(["--print-wkd-url", address])
        .output()
        .expect("gpg-wks-client (part of GnuPG)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn web_key_directory_serves_what_gnupg_asks_for(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "alice").await;
    let fingerprint = app
        .get(&format!("/v1/accounts/{id}"), &e.admin_token)
        .await
        .ok(200)["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // GnuPG's advanced URL: https://openpgpkey.acme.test/.well-known/openpgpkey/acme.test/hu/<hash>?l=alice
    let url = wkd_url("alice@acme.test");
    let path = &url[url.find("/.well-known/").expect("a WKD URL")..];
    assert!(
        path.starts_with("/.well-known/openpgpkey/acme.test/hu/"),
        "{url}"
    );
    let get = |path: String, host: &'static str| {
        app.raw(
            app.http
                .get(format!("{}{path}", app.base))
                .header("host", host),
        )
    };
    // (A claim, unverified, serves nothing: see hostile.rs.)
    let advanced = get(path.to_owned(), "openpgpkey.acme.test").await;
    assert_eq!(advanced.status, 200);
    assert_eq!(advanced.content_type, "application/octet-stream");
    let direct_path = path.replace("/openpgpkey/acme.test/hu/", "/openpgpkey/hu/");
    let direct = app
        .http
        .get(format!("{}{direct_path}", app.base))
        .header("host", "acme.test")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let key = direct.bytes().await.unwrap();
    assert_ne!(key.first(), Some(&b'-'), "binary, not armored");

    let home = support::gpg_home();
    let (ok, _, err) = gpg(home.path(), &["--import"], &key);
    assert!(ok, "gpg --import refused the WKD key: {err}");
    let (_, listing, _) = gpg(home.path(), &["--with-colons", "--list-keys"], b"");
    assert!(String::from_utf8_lossy(&listing).contains(&fingerprint));
    assert_eq!(
        get(path.replace("?l=alice", "?l=bob"), "openpgpkey.acme.test")
            .await
            .status,
        404,
        "the hash must match the name"
    );
    assert_eq!(
        get("/.well-known/openpgpkey/policy".into(), "acme.test")
            .await
            .status,
        200
    );
}

async fn accounts_show_what_they_store_and_their_own_cap(backend: Backend) {
    let app = support::spawn(backend).await;
    let e = app.enterprise("acme.test", 5).await;
    let id = app.user(&e, "dora").await;
    let dora = app.login("dora@acme.test", PASSWORD).await;
    let fresh = app.get(&format!("/v1/accounts/{id}"), &dora).await;
    let fresh = fresh.ok(200);
    assert_eq!(
        (
            fresh["storage_used_bytes"].as_i64(),
            fresh["storage_quota_bytes"].is_null()
        ),
        (Some(0), true),
        "{fresh}"
    );

    let capped = app
        .patch(
            &format!("/v1/accounts/{id}"),
            &e.admin_token,
            json!({"storage_quota_bytes": 500_000}),
        )
        .await;
    assert_eq!(capped.ok(200)["storage_quota_bytes"], 500_000);
    let raw = support::message(
        "someone@elsewhere.test",
        "dora@acme.test",
        "hello",
        &"x".repeat(2_000),
    );
    support::send_with_lettre(
        app.smtp,
        "someone@elsewhere.test",
        &["dora@acme.test"],
        &raw,
        false,
    )
    .await
    .expect("delivered");
    let after = app.get(&format!("/v1/accounts/{id}"), &dora).await;
    let used = after.ok(200)["storage_used_bytes"].as_i64().unwrap();
    assert!(used >= 2_000, "the message counts: {used}");
    let listed = app
        .get(
            &format!("/v1/tenants/{}/accounts", e.tenant_id),
            &e.admin_token,
        )
        .await;
    let listed = listed.ok(200)["items"].as_array().unwrap().clone();
    let row = listed
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("dora is listed");
    assert_eq!(
        (
            row["storage_used_bytes"].as_i64(),
            row["storage_quota_bytes"].as_i64()
        ),
        (Some(used), Some(500_000))
    );
    let admin = listed
        .iter()
        .find(|a| a["id"] == e.admin_id.as_str())
        .expect("the admin is listed");
    assert_eq!(
        (
            admin["storage_used_bytes"].as_i64(),
            admin["storage_quota_bytes"].is_null()
        ),
        (Some(0), true)
    );

    let uncapped = app
        .patch(
            &format!("/v1/accounts/{id}"),
            &e.admin_token,
            json!({"storage_quota_bytes": null}),
        )
        .await;
    assert!(uncapped.ok(200)["storage_quota_bytes"].is_null());
    assert_eq!(uncapped.body["storage_used_bytes"].as_i64(), Some(used));
}
