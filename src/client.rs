//! `caliop login`, `caliop key unlock`, `caliop password change` and
//! `caliop activate`: a small client of device sign-in
//! for scripts, tests and people who read their mail in GnuPG or
//! Thunderbird. The password is stretched and the key unlocked here, on the
//! user's machine; the server sees neither (see `vault::opaque`).
//!
//! An account created before device sign-in moves on its first sign-in
//! here: the password grant once, the password-locked key unlocked here,
//! OPAQUE registered, the key locked again with the export key and
//! uploaded; the server deletes the password hash and the old blob.

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use vault::opaque::{self, ExportKey, KsfParams};

#[derive(Args)]
pub struct LoginArgs {
    /// The account's address.
    pub address: String,
    /// The API's base URL.
    #[arg(long, env = "CALIOP_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
}

#[derive(Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    pub login: LoginArgs,
    /// Where to write the unlocked secret key (ASCII-armored, no passphrase;
    /// created readable by you alone). Standard output when absent.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct ActivateArgs {
    /// The activation link an administrator gave (its secret is after `#`).
    pub link: String,
    /// The API's base URL.
    #[arg(long, env = "CALIOP_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
}

#[derive(Args)]
pub struct ResetArgs {
    /// The reset link the recovery address received (its token is after `#`).
    pub link: String,
    /// The API's base URL.
    #[arg(long, env = "CALIOP_API_URL", default_value = "http://127.0.0.1:8080")]
    pub api: String,
}

#[derive(Args)]
pub struct PasswordArgs {
    #[command(flatten)]
    pub login: LoginArgs,
}

/// A secret from the environment variable `var`, or else the next line of
/// standard input (after saying which on standard error).
fn secret(var: &str, what: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(var) {
        return Ok(p);
    }
    eprint!("{what}: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The password: `CALIOP_PASSWORD`, or the first line of standard input.
fn password() -> anyhow::Result<String> {
    secret("CALIOP_PASSWORD", "password")
}

/// A second factor, for an account that has one: `CALIOP_TOTP_CODE` or
/// `CALIOP_RECOVERY_CODE`.
fn second_factor(body: &mut Value) {
    if let Ok(code) = std::env::var("CALIOP_TOTP_CODE") {
        body["totp_code"] = json!(code);
    }
    if let Ok(code) = std::env::var("CALIOP_RECOVERY_CODE") {
        body["recovery_code"] = json!(code);
    }
}

struct Client {
    http: reqwest::Client,
    api: String,
}

impl Client {
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.post(format!("{}{path}", self.api)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    async fn get_text(&self, path: &str, token: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", detail(&text));
        }
        Ok(text)
    }
}

fn detail(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["detail"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

fn field<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    v[name]
        .as_str()
        .with_context(|| format!("the server's answer has no `{name}`: {v}"))
}

/// Signed in: the token, the account and the export key (never sent).
struct Session {
    token: String,
    account_id: String,
    export: ExportKey,
}

async fn sign_in(client: &Client, address: &str, password: &str) -> anyhow::Result<Session> {
    for _ in 0..2 {
        let Some((mut finish, export)) = prove(client, address, password).await? else {
            move_to_device(client, address, password).await?;
            continue;
        };
        second_factor(&mut finish);
        let (status, token) = client
            .post("/v1/auth/opaque/login/finish", None, finish)
            .await?;
        if status != 200 {
            bail!("sign-in refused ({status}): {}", detail(&token.to_string()));
        }
        return Ok(Session {
            token: field(&token, "access_token")?.to_owned(),
            account_id: field(&token, "account_id")?.to_owned(),
            export,
        });
    }
    bail!("the account did not move to device sign-in")
}

/// The one-time move of an account created before device sign-in.
async fn move_to_device(client: &Client, address: &str, password: &str) -> anyhow::Result<()> {
    eprintln!("moving {address} to device sign-in: its key is locked again on this machine");
    let mut grant = json!({"grant_type": "password", "username": address, "password": password});
    second_factor(&mut grant);
    let (status, token) = client.post("/v1/auth/token", None, grant).await?;
    if status != 200 {
        bail!("sign-in refused ({status}): {}", detail(&token.to_string()));
    }
    let (token, account) = (field(&token, "access_token")?, field(&token, "account_id")?);
    let locked = client
        .get_text(&format!("/v1/accounts/{account}/secret-key"), token)
        .await?;
    let password_owned = password.to_owned();
    let armored = tokio::task::spawn_blocking(move || {
        vault::openpgp::AccountKey::unprotect(&locked, &password_owned)
    })
    .await??;
    register(
        client,
        token,
        account,
        password,
        &armored,
        Current::Password(password),
    )
    .await
}

/// How a registration shows it knows the current password: the account's
/// password once more when it moves to device sign-in, or a finished
/// sign-in with it (`(login_id, finalization)`) for a password change.
enum Current<'a> {
    Password(&'a str),
    Proof(Value),
}

/// Registers `password` for the account, with `armored` locked by its
/// export key, showing it knows the current password.
async fn register(
    client: &Client,
    token: &str,
    account: &str,
    password: &str,
    armored: &str,
    current: Current<'_>,
) -> anyhow::Result<()> {
    let extra = match current {
        Current::Password(password) => ("current_password", json!(password)),
        Current::Proof(proof) => ("current_password_proof", proof),
    };
    let base = format!("/v1/accounts/{account}/opaque/register");
    upload_registration(client, &base, Some(token), password, armored, Some(extra)).await
}

/// OPAQUE registration at `{base}/start` and `{base}/finish` (an owner's,
/// or an activation link's), with `armored` locked by the new export key.
async fn upload_registration(
    client: &Client,
    base: &str,
    token: Option<&str>,
    password: &str,
    armored: &str,
    extra: Option<(&str, Value)>,
) -> anyhow::Result<()> {
    let (state, request) = opaque::client_register_start(password)?;
    let (status, started) = client
        .post(
            &format!("{base}/start"),
            token,
            json!({"registration_request": request}),
        )
        .await?;
    if status != 200 {
        bail!(
            "registration refused ({status}): {}",
            detail(&started.to_string())
        );
    }
    let ksf: KsfParams = serde_json::from_value(started["ksf"].clone())?;
    let (record, export) = opaque::client_register_finish(
        state,
        password,
        field(&started, "registration_response")?,
        &ksf,
    )?;
    let locked_key = export.wrap(armored)?;
    let mut body = json!({"registration_record": record, "ksf": ksf, "locked_key": locked_key});
    if let Some((name, value)) = extra {
        body[name] = value;
    }
    let (status, done) = client.post(&format!("{base}/finish"), token, body).await?;
    if !(200..300).contains(&status) {
        bail!(
            "registration refused ({status}): {}",
            detail(&done.to_string())
        );
    }
    Ok(())
}

/// The first half of a sign-in, finished on the device: the proof to send
/// (to `/login/finish`, or as `current_password_proof` in another request)
/// and the export key; `None` for an account still to move to device sign-in.
async fn prove(
    client: &Client,
    address: &str,
    password: &str,
) -> anyhow::Result<Option<(Value, ExportKey)>> {
    let (state, request) = opaque::client_login_start(password)?;
    let (status, started) = client
        .post(
            "/v1/auth/opaque/login/start",
            None,
            json!({"username": address, "credential_request": request}),
        )
        .await?;
    match status {
        200 => {}
        409 => return Ok(None),
        _ => bail!(
            "sign-in refused ({status}): {}",
            detail(&started.to_string())
        ),
    }
    let ksf: KsfParams = serde_json::from_value(started["ksf"].clone())
        .context("the server's key-stretching parameters")?;
    let (finalization, export) = match opaque::client_login_finish(
        state,
        password,
        field(&started, "credential_response")?,
        &ksf,
    ) {
        Ok(done) => done,
        Err(vault::VaultError::WrongPassphrase) => bail!("wrong address or password"),
        Err(e) => return Err(e.into()),
    };
    let proof = json!({"login_id": started["login_id"], "credential_finalization": finalization});
    Ok(Some((proof, export)))
}

fn client(api: &str) -> Client {
    Client {
        http: reqwest::Client::new(),
        api: api.trim_end_matches('/').to_owned(),
    }
}

/// `caliop login`: prints an access token.
pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let password = password()?;
    let session = sign_in(&client(&args.api), &args.address, &password).await?;
    println!("{}", session.token);
    Ok(())
}

/// `caliop key unlock`: writes the account's secret key, unlocked here.
pub async fn unlock(args: UnlockArgs) -> anyhow::Result<()> {
    let password = password()?;
    let api = client(&args.login.api);
    let session = sign_in(&api, &args.login.address, &password).await?;
    let locked = api
        .get_text(
            &format!("/v1/accounts/{}/secret-key", session.account_id),
            &session.token,
        )
        .await?;
    let armored = session
        .export
        .unwrap(&locked)
        .context("unlocking the secret key")?;
    match args.out {
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(armored.as_bytes())?;
            eprintln!("the unlocked key is in {}", path.display());
        }
        None => print!("{armored}"),
    }
    Ok(())
}

/// `caliop password change`: a new password, the key re-locked here.
pub async fn change_password(args: PasswordArgs) -> anyhow::Result<()> {
    let current = password()?;
    let new = secret("CALIOP_NEW_PASSWORD", "new password")?;
    // The server never sees it: the strength rule is kept here.
    tenants::password::check_strength(&new).map_err(|e| anyhow::anyhow!("{e}"))?;
    let api = client(&args.login.api);
    let address = &args.login.address;
    let session = sign_in(&api, address, &current).await?;
    let locked = api
        .get_text(
            &format!("/v1/accounts/{}/secret-key", session.account_id),
            &session.token,
        )
        .await?;
    let armored = session
        .export
        .unwrap(&locked)
        .context("unlocking the secret key")?;
    let (proof, _) = prove(&api, address, &current)
        .await?
        .context("the account signed in a moment ago: it is on device sign-in")?;
    register(
        &api,
        &session.token,
        &session.account_id,
        &new,
        &armored,
        Current::Proof(proof),
    )
    .await?;
    eprintln!("the password of {address} is changed; its key is locked with the new one");
    Ok(())
}

/// What follows `#` in a link (its secret or token), or the whole text
/// when it is that alone.
fn after_hash(link: &str) -> &str {
    link.rsplit_once('#').map_or(link, |(_, s)| s)
}

/// What a one-time link (`base`: an activation's or a reset's) opens on.
async fn open_link(api: &Client, base: &str) -> anyhow::Result<Value> {
    let (status, opened) = api.get_json(base).await?;
    if status != 200 {
        bail!(
            "the link does not open ({status}): {}",
            detail(&opened.to_string())
        );
    }
    Ok(opened)
}

/// `caliop activate LINK`: sets the password of an account an administrator
/// made, here: the key is unlocked with the link's secret and locked again
/// with the new password's export key.
pub async fn activate(args: ActivateArgs) -> anyhow::Result<()> {
    let activation =
        opaque::Activation::parse(after_hash(&args.link)).context("the link's secret")?;
    let new = secret("CALIOP_NEW_PASSWORD", "new password")?;
    tenants::password::check_strength(&new).map_err(|e| anyhow::anyhow!("{e}"))?;
    let api = client(&args.api);
    let base = format!("/v1/public/activations/{}", activation.token());
    let opened = open_link(&api, &base).await?;
    let armored = activation
        .unlock(field(&opened, "locked_key")?)
        .context("unlocking the key with the link")?;
    upload_registration(&api, &base, None, &new, &armored, None).await?;
    eprintln!(
        "{} is activated: sign in with the new password",
        field(&opened, "address")?
    );
    Ok(())
}

/// `caliop password reset LINK`: a new password from a reset link, set on
/// this machine. With the old password (`CALIOP_PASSWORD`), the current key
/// is unlocked here and locked again with the new one: nothing is lost.
/// Without it, a new key pair is made here; mail sealed before opens only
/// with the previous key, which the account keeps.
pub async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let token = after_hash(&args.link);
    let new = secret("CALIOP_NEW_PASSWORD", "new password")?;
    tenants::password::check_strength(&new).map_err(|e| anyhow::anyhow!("{e}"))?;
    let api = client(&args.api);
    let base = format!("/v1/public/password-reset/{token}");
    let opened = open_link(&api, &base).await?;
    let address = field(&opened, "address")?.to_owned();
    let current = field(&opened, "secret_key")?;
    let (armored, public_key) = match std::env::var("CALIOP_PASSWORD").ok() {
        Some(old) if opaque::is_wrapped(current) => {
            let (_, export) = prove(&api, &address, &old)
                .await?
                .context("the account signs in on its device")?;
            let armored = export
                .unwrap(current)
                .context("the old password does not unlock the key")?;
            (armored, None)
        }
        Some(old) => (
            vault::openpgp::AccountKey::unprotect(current, &old)
                .context("the old password does not unlock the key")?,
            None,
        ),
        None => {
            let key = vault::openpgp::AccountKey::generate_unprotected(&format!("<{address}>"))?;
            (key.secret_armored, Some(key.public_armored))
        }
    };
    let kept = public_key.is_none();
    upload_registration(
        &api,
        &base,
        None,
        &new,
        &armored,
        public_key.map(|k| ("public_key", json!(k))),
    )
    .await?;
    eprintln!(
        "the password of {address} is reset; {}",
        if kept {
            "its key is locked with the new one"
        } else {
            "a new key pair was made here (mail sealed before opens with the previous key)"
        }
    );
    Ok(())
}
