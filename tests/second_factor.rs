//! A second factor for those who hold the most (issue 18), against the real
//! binary: an operator enrolled with TOTP gets no token without a valid
//! code (codes computed by `pyotp`, an implementation that is not ours), a
//! code is taken once, a recovery code works once, on the password grant
//! and on device sign-in alike; past the grace, an operator without one
//! gets no token.

mod common;

use std::process::{Command, Stdio};

use common::{BIN, Caliop, field};
use serde_json::{Value, json};
use tenants::{Backend, on_both_backends};

on_both_backends!(
    an_operator_with_totp_needs_a_code_taken_once,
    past_the_grace_an_operator_needs_a_second_factor
);

const PASSWORD: &str = "a long operator passphrase";

fn create_operator(caliop: &Caliop, address: &str) -> String {
    let out = Command::new(BIN)
        .args(["admin", "create-operator", address])
        .envs(caliop.env.clone())
        .env("CALIOP_ADMIN_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The code `pyotp` computes for `secret`, `offset` seconds from now.
fn pyotp(secret: &str, offset: i64) -> String {
    let python = std::env::var("CALIOP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, time, pyotp; print(pyotp.TOTP(sys.argv[1]).at(time.time() + int(sys.argv[2])))",
            secret,
            &offset.to_string(),
        ])
        .output()
        .expect("python with pyotp (the test command installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn grant(caliop: &Caliop, address: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"grant_type": "password", "username": address, "password": PASSWORD});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, _, answer) = caliop.post("/v1/auth/token", None, body).await;
    (status, answer)
}

/// `caliop login` with a second factor in its environment.
fn device_login(caliop: &Caliop, address: &str, env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["login", address, "--api", &caliop.base])
        .env("CALIOP_PASSWORD", PASSWORD)
        .env_remove("CALIOP_TOTP_CODE")
        .env_remove("CALIOP_RECOVERY_CODE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn an_operator_with_totp_needs_a_code_taken_once(backend: Backend) {
    let (caliop, _data, _dns) =
        common::start(backend, &[("CALIOP_API_LOGIN_FAILURES_PER_ADDRESS", "20")]).await;
    let address = "ops@operator.test";
    let account = create_operator(&caliop, address);
    let (status, token) = grant(&caliop, address, json!({})).await;
    assert_eq!(status, 200, "within the grace: {token}");
    let token = field(&token, "access_token");

    // Enrol: a secret, then a first code turns it on.
    let (status, _, enrolment) = caliop
        .post(
            &format!("/v1/accounts/{account}/totp"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{enrolment}");
    let secret = field(&enrolment, "secret");
    assert!(
        field(&enrolment, "otpauth_uri").starts_with("otpauth://totp/"),
        "{enrolment}"
    );
    let (status, _, wrong) = caliop
        .post(
            &format!("/v1/accounts/{account}/totp/confirm"),
            Some(&token),
            json!({"code": "not a code"}),
        )
        .await;
    assert_eq!(status, 422, "{wrong}");
    let now = pyotp(&secret, 0);
    let (status, _, confirmed) = caliop
        .post(
            &format!("/v1/accounts/{account}/totp/confirm"),
            Some(&token),
            json!({"code": now}),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // No token without a code; a wrong one is refused; the code that
    // confirmed is spent; the next one works, once.
    let (status, refused) = grant(&caliop, address, json!({})).await;
    assert_eq!(status, 401, "{refused}");
    assert!(field(&refused, "detail").contains("totp_code"), "{refused}");
    let next = pyotp(&secret, 30);
    let wrong = format!("{:06}", (next.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (status, _) = grant(&caliop, address, json!({"totp_code": wrong})).await;
    assert_eq!(status, 401);
    let (status, replayed) = grant(&caliop, address, json!({"totp_code": now})).await;
    assert_eq!(status, 401, "a code is taken once: {replayed}");
    let (status, answer) = grant(&caliop, address, json!({"totp_code": next})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = grant(&caliop, address, json!({"totp_code": next})).await;
    assert_eq!(status, 401, "and the next one too");

    // A recovery code, once.
    let (status, answer) = grant(&caliop, address, json!({"recovery_code": recovery[0]})).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = grant(&caliop, address, json!({"recovery_code": recovery[0]})).await;
    assert_eq!(status, 401, "a recovery code works once");

    // Device sign-in asks the same. The move to it comes first: its
    // password grant spends the recovery code, and the OPAQUE sign-in after
    // it then finds the code spent.
    let (ok, err) = device_login(&caliop, address, &[("CALIOP_RECOVERY_CODE", &recovery[1])]);
    assert!(!ok && err.contains("already used"), "{err}");
    let (ok, err) = device_login(&caliop, address, &[]);
    assert!(!ok && err.contains("totp_code"), "{err}");
    let (ok, err) = device_login(&caliop, address, &[("CALIOP_RECOVERY_CODE", &recovery[2])]);
    assert!(ok, "{err}");
    let (ok, _) = device_login(&caliop, address, &[("CALIOP_RECOVERY_CODE", &recovery[2])]);
    assert!(!ok, "spent");
}

async fn past_the_grace_an_operator_needs_a_second_factor(backend: Backend) {
    let (caliop, _data, _dns) =
        common::start(backend, &[("CALIOP_API_SECOND_FACTOR_GRACE_DAYS", "0")]).await;
    let address = "ops@operator.test";
    create_operator(&caliop, address);
    let (status, refused) = grant(&caliop, address, json!({})).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        field(&refused, "detail").contains("need a second factor"),
        "{refused}"
    );
}
