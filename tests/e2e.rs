//! The whole story against the real `caliop` binary on port 0, on SQLite and
//! on PostgreSQL: operator token → reseller → the reseller's API key → an
//! enterprise child → onboarding → the admin signs in → users up to the
//! package limit, and the next one refused. Then SIGTERM stops it cleanly.
//! And the operator's own administrators, made with `caliop admin create-operator`.

mod common;

use common::field;
use serde_json::json;
use tenants::{Backend, on_both_backends};

/// Starts `caliop serve` on a data directory it must create itself.
async fn start(
    backend: Backend,
) -> (
    common::Caliop,
    tempfile::TempDir,
    std::path::PathBuf,
    mail::dns_server::DnsServer,
) {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let dns = mail::dns_server::DnsServer::start().await.unwrap();
    let env = common::environment(backend, &data, dns.addr()).await;
    let caliop = common::serve(env, scratch.path().join("caliop.log")).await;
    (caliop, scratch, data, dns)
}

on_both_backends!(
    reseller_story_end_to_end,
    operators_are_made_from_the_command_line
);

async fn reseller_story_end_to_end(backend: Backend) {
    let (caliop, _scratch, data, _dns) = start(backend).await;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the data directory is the owner's alone");
    }
    let (status, _, health) = caliop
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let operator = caliop.operator_token();

    let (status, _, reseller) = caliop
        .post(
            "/v1/tenants",
            Some(&operator),
            json!({"name": "Hosting Co", "kind": "reseller",
                   "limits": {"max_accounts": 100, "max_domains": 10, "storage_quota_bytes": 10_000_000_000i64}}),
        )
        .await;
    assert_eq!(status, 201, "{reseller}");
    let reseller_id = field(&reseller, "id");

    let (status, _, key) = caliop
        .post(
            &format!("/v1/tenants/{reseller_id}/api-keys"),
            Some(&operator),
            json!({"name": "provisioning"}),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let (status, _, token) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "api_key", "api_key": field(&key, "secret")}),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["role"], "reseller_admin");
    let reseller_token = field(&token, "access_token");

    let (status, _, child) = caliop
        .post(
            "/v1/tenants",
            Some(&reseller_token),
            json!({"name": "Acme Corp", "kind": "enterprise",
                   "limits": {"max_accounts": 3, "max_domains": 2, "storage_quota_bytes": 1_000_000_000},
                   "policy": {"min_level": "sealed", "allowed_jurisdictions": ["FR", "CH"]}}),
        )
        .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["parent_id"], reseller_id.as_str());
    let child_id = field(&child, "id");

    let password = "a long admin passphrase";
    let (status, _, onboarded) = caliop
        .post(
            &format!("/v1/tenants/{child_id}/onboard"),
            Some(&reseller_token),
            json!({"domain": "acme.example", "admin": {"address": "root@acme.example", "display_name": "Root", "password": password}}),
        )
        .await;
    assert_eq!(status, 201, "{onboarded}");
    assert_eq!(
        onboarded["admin"]["level"], "sealed",
        "accounts start at the tenant's floor"
    );
    assert_eq!(
        onboarded["dns_records"][0]["name"],
        "_caliop-verification.acme.example"
    );
    // Only a verified domain is hosted: the operator vouches for this one.
    let (status, _, verified) = caliop
        .post(
            &format!(
                "/v1/domains/{}/verify",
                onboarded["domain"]["id"].as_str().unwrap()
            ),
            Some(&caliop.operator_token()),
            json!({"force": true}),
        )
        .await;
    assert_eq!(status, 200, "{verified}");

    let (status, _, login) = caliop
        .post("/v1/auth/token", None, json!({"grant_type": "password", "username": "Root@Acme.Example", "password": password}))
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["role"], "tenant_admin");
    let admin = field(&login, "access_token");

    let accounts = format!("/v1/tenants/{child_id}/accounts");
    for user in ["alice", "bob"] {
        let (status, _, created) = caliop
            .post(&accounts, Some(&admin), json!({"address": format!("{user}@acme.example"), "password": "user passphrase 123"}))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    let (status, content_type, refused) = caliop
        .post(
            &accounts,
            Some(&admin),
            json!({"address": "carol@acme.example", "password": "user passphrase 123"}),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(refused["type"], "/problems/limit-exceeded");
    assert!(field(&refused, "detail").contains("allows 3"), "{refused}");

    let (status, _, listed) = caliop
        .call(reqwest::Method::GET, &accounts, Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);

    // SIGTERM drains and exits cleanly.
    assert!(
        caliop.terminate().await.success(),
        "caliop exits with status 0 after SIGTERM"
    );
}

/// Runs `caliop admin create-operator` with `args`, the password in the
/// environment or else on standard input; returns (success, stdout, stderr).
fn create_operator(
    caliop: &common::Caliop,
    args: &[&str],
    env_password: Option<&str>,
    stdin: &str,
) -> (bool, String, String) {
    use std::io::Write;
    let mut command = std::process::Command::new(common::BIN);
    command
        .args(["admin", "create-operator"])
        .args(args)
        .envs(caliop.env.clone())
        .env_remove("CALIOP_ADMIN_PASSWORD");
    if let Some(password) = env_password {
        command.env("CALIOP_ADMIN_PASSWORD", password);
    }
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn operators_are_made_from_the_command_line(backend: Backend) {
    let (caliop, _scratch, _data, _dns) = start(backend).await;
    let password = "a long operator passphrase";
    let (ok, id, stderr) = create_operator(
        &caliop,
        &["root@ops.example", "--display-name", "Ops Root"],
        Some(password),
        "",
    );
    assert!(ok, "{stderr}");
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "prints the account id: {id:?}"
    );

    let (status, _, login) = caliop
        .post(
            "/v1/auth/token",
            None,
            json!({"grant_type": "password", "username": "root@ops.example", "password": password}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(login["role"], "operator");
    let token = field(&login, "access_token");
    let (status, _, account) = caliop.get(&format!("/v1/accounts/{id}"), &token).await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(
        (account["display_name"].as_str(), account["role"].as_str()),
        (Some("Ops Root"), Some("admin"))
    );
    // A full operator: it sees every tenant, the storage sites included.
    let (status, _, _) = caliop.get("/v1/sites", &token).await;
    assert_eq!(status, 200);
    let (status, _, domains) = caliop
        .get(
            &format!(
                "/v1/tenants/{}/domains",
                account["tenant_id"].as_str().unwrap()
            ),
            &token,
        )
        .await;
    assert_eq!(status, 200, "{domains}");
    assert_eq!(
        domains["items"][0]["name"], "ops.example",
        "the domain is hosted by the operator tenant"
    );

    // A second administrator in the same domain, its password on standard input.
    let (ok, second, stderr) = create_operator(
        &caliop,
        &["second@ops.example"],
        None,
        "another long passphrase\n",
    );
    assert!(ok, "{stderr}");
    assert_ne!(second, id);
    let (status, _, login) = caliop
        .post("/v1/auth/token", None, json!({"grant_type": "password", "username": "second@ops.example", "password": "another long passphrase"}))
        .await;
    assert_eq!(
        (status, login["role"].as_str()),
        (200, Some("operator")),
        "{login}"
    );

    // An address that is taken is refused, and says so.
    let (ok, out, stderr) = create_operator(&caliop, &["root@ops.example"], Some(password), "");
    assert!(!ok && out.is_empty(), "{out}");
    assert!(
        stderr.contains("the address `root@ops.example` is taken"),
        "{stderr}"
    );
    let (ok, _, stderr) = create_operator(&caliop, &["third@ops.example"], None, "");
    assert!(!ok && stderr.contains("CALIOP_ADMIN_PASSWORD"), "{stderr}");
}
