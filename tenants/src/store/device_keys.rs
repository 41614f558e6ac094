//! What the server keeps of sign-ins it never sees the password of: each
//! tenant's OPAQUE secrets (sealed by the caller), each account's OPAQUE
//! record with its key-stretching parameters and its secret key locked on
//! the device, and app passwords for mail clients.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Pool, Store};
use crate::model::{AccountId, TenantId};
use crate::{Error, Result};

/// An app password as listed: never its secret, which is shown once.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AppPassword {
    pub id: Uuid,
    pub account_id: AccountId,
    /// The device or client it is for, as its owner named it.
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// When a mail client last signed in with it.
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct AppPasswordRow {
    id: Uuid,
    account_id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

impl From<AppPasswordRow> for AppPassword {
    fn from(r: AppPasswordRow) -> Self {
        AppPassword {
            id: r.id,
            account_id: AccountId(r.account_id),
            name: r.name,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// An account's OPAQUE registration.
#[derive(Clone, Debug)]
pub struct OpaqueRegistration {
    /// The registration record, unpadded base64url.
    pub record: String,
    /// The key-stretching parameters, as JSON.
    pub ksf: String,
}

/// The most app passwords one account may hold (one per device; a person
/// with more devices than this revokes old ones).
pub const MAX_APP_PASSWORDS: i64 = 50;

impl Store {
    /// The tenant's sealed OPAQUE secrets; `make` seals new ones the first
    /// time. Two nodes racing keep the same (the first written).
    pub async fn opaque_setup(
        &self,
        tenant: TenantId,
        make: impl FnOnce() -> Result<String>,
    ) -> Result<String> {
        let read = "SELECT opaque_setup FROM tenants WHERE id = $1";
        let row: Option<(Option<String>,)> = on_pool!(&self.pool, p => sqlx::query_as(read)
            .bind(tenant.0).fetch_optional(p).await)?;
        let (current,) = row.ok_or(Error::NotFound("tenant"))?;
        if let Some(sealed) = current {
            return Ok(sealed);
        }
        let sealed = make()?;
        let write = "UPDATE tenants SET opaque_setup = $2 WHERE id = $1 AND opaque_setup IS NULL";
        on_pool!(&self.pool, p => sqlx::query(write).bind(tenant.0).bind(&sealed).execute(p).await.map(|_| ()))?;
        let (stored,): (Option<String>,) = on_pool!(&self.pool, p => sqlx::query_as(read)
            .bind(tenant.0).fetch_one(p).await)?;
        stored.ok_or(Error::NotFound("tenant"))
    }

    /// The account's OPAQUE registration, if it has one.
    pub async fn opaque_registration(
        &self,
        account: AccountId,
    ) -> Result<Option<OpaqueRegistration>> {
        let sql = "SELECT opaque_record, ksf_params FROM accounts WHERE id = $1";
        let row: Option<(Option<String>, Option<String>)> = on_pool!(&self.pool, p =>
            sqlx::query_as(sql).bind(account.0).fetch_optional(p).await)?;
        Ok(match row {
            Some((Some(record), Some(ksf))) => Some(OpaqueRegistration { record, ksf }),
            _ => None,
        })
    }

    /// Registers (or re-registers, on a password change) the account's
    /// OPAQUE record, with its secret key now locked on the device. The
    /// password hash and the password-locked key are gone from then on, and
    /// every token and session the account held ends.
    pub async fn register_opaque(
        &self,
        actor: &str,
        account: AccountId,
        registration: &OpaqueRegistration,
        locked_key: &str,
    ) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        // A password hash still there: the account moves to the device now.
        let moves = !current.password_hash.is_empty();
        let sql = "UPDATE accounts SET opaque_record = $2, ksf_params = $3, secret_key = $4, password_hash = '', \
             credentials_epoch = credentials_epoch + 1, updated_at = $5 WHERE id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql)
                .bind(account.0)
                .bind(&registration.record)
                .bind(&registration.ksf)
                .bind(locked_key)
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: if moves { "account.device_keys" } else { "account.password_change" },
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({"ksf": serde_json::from_str::<serde_json::Value>(&registration.ksf).ok()}),
            });
            tx.commit().await?;
        });
        self.access_changed(super::AccessChange::Account(account));
        Ok(())
    }

    pub async fn create_app_password(
        &self,
        actor: &str,
        account: AccountId,
        name: &str,
        secret_hash: &str,
    ) -> Result<AppPassword> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let count = "SELECT COUNT(*) FROM app_passwords WHERE account_id = $1";
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(count).bind(account.0).fetch_one(p).await)?;
        if n >= MAX_APP_PASSWORDS {
            return Err(Error::LimitExceeded(format!(
                "an account holds at most {MAX_APP_PASSWORDS} app passwords; revoke one no longer used"
            )));
        }
        let id = Uuid::now_v7();
        let now = Utc::now();
        let sql = "INSERT INTO app_passwords (id, account_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql)
                .bind(id)
                .bind(account.0)
                .bind(name)
                .bind(secret_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "app_password.create",
                object_type: "app_password",
                object_id: id.to_string(),
                detail: serde_json::json!({"account_id": account, "name": name}),
            });
            tx.commit().await?;
        });
        Ok(AppPassword {
            id,
            account_id: account,
            name: name.to_owned(),
            created_at: now,
            last_used_at: None,
        })
    }

    pub async fn list_app_passwords(&self, account: AccountId) -> Result<Vec<AppPassword>> {
        let sql = "SELECT id, account_id, name, created_at, last_used_at FROM app_passwords \
             WHERE account_id = $1 ORDER BY id";
        let rows: Vec<AppPasswordRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_all(p).await)?;
        Ok(rows.into_iter().map(AppPassword::from).collect())
    }

    /// Revokes an app password: mail clients signed in with it are ended.
    pub async fn delete_app_password(
        &self,
        actor: &str,
        account: AccountId,
        id: Uuid,
    ) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let sql = "DELETE FROM app_passwords WHERE id = $1 AND account_id = $2";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(sql).bind(id).bind(account.0).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(Error::NotFound("app password"));
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "app_password.revoke",
                object_type: "app_password",
                object_id: id.to_string(),
                detail: serde_json::json!({"account_id": account}),
            });
            tx.commit().await?;
        });
        self.access_changed(super::AccessChange::AppPassword(account, id));
        Ok(())
    }

    /// The app password of `account` with this hash, marked used now.
    pub async fn use_app_password(
        &self,
        account: AccountId,
        secret_hash: &str,
    ) -> Result<Option<Uuid>> {
        let sql = "UPDATE app_passwords SET last_used_at = $3 WHERE account_id = $1 AND secret_hash = $2 RETURNING id";
        let row: Option<(Uuid,)> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(account.0).bind(secret_hash).bind(Utc::now()).fetch_optional(p).await)?;
        Ok(row.map(|(id,)| id))
    }

    /// Whether the app password a session signed in with still exists.
    pub async fn app_password_exists(&self, id: Uuid) -> Result<bool> {
        let sql = "SELECT COUNT(*) FROM app_passwords WHERE id = $1";
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_one(p).await)?;
        Ok(n > 0)
    }
}

/// An account's second factor, as stored.
#[derive(Clone, Debug, Default)]
pub struct SecondFactor {
    /// The TOTP secret, sealed under the master key by the caller.
    pub sealed_secret: Option<String>,
    /// When a first code confirmed it; before that it is only being enrolled.
    pub enabled_at: Option<DateTime<Utc>>,
    /// The last time step a code was accepted for.
    pub last_step: i64,
    /// Operators and reseller administrators must have one from then on.
    pub due_at: Option<DateTime<Utc>>,
    /// Whether the account holds passkeys (a second factor too).
    pub passkeys: bool,
}

impl Store {
    pub async fn second_factor(&self, account: AccountId) -> Result<SecondFactor> {
        let sql = "SELECT totp_secret, totp_enabled_at, totp_last_step, second_factor_due_at, \
             (SELECT COUNT(*) FROM passkeys WHERE account_id = accounts.id) FROM accounts WHERE id = $1";
        let row: Option<(
            Option<String>,
            Option<DateTime<Utc>>,
            i64,
            Option<DateTime<Utc>>,
            i64,
        )> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_optional(p).await)?;
        let (sealed_secret, enabled_at, last_step, due_at, passkeys) =
            row.ok_or(Error::NotFound("account"))?;
        Ok(SecondFactor {
            sealed_secret,
            enabled_at,
            last_step,
            due_at,
            passkeys: passkeys > 0,
        })
    }

    /// When the account must have a second factor by: set the first time
    /// it is asked (its first sign-in since second factors exist), `grace`
    /// from then.
    pub async fn second_factor_due(
        &self,
        account: AccountId,
        grace: chrono::Duration,
    ) -> Result<DateTime<Utc>> {
        let set = "UPDATE accounts SET second_factor_due_at = $2 WHERE id = $1 AND second_factor_due_at IS NULL";
        on_pool!(&self.pool, p => sqlx::query(set).bind(account.0).bind(Utc::now() + grace)
            .execute(p).await.map(|_| ()))?;
        self.second_factor(account)
            .await?
            .due_at
            .ok_or(Error::NotFound("account"))
    }

    /// Starts (or restarts) a TOTP enrolment: the secret is kept, not yet enabled.
    pub async fn enrol_totp(&self, actor: &str, account: AccountId, sealed: &str) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let sql = "UPDATE accounts SET totp_secret = $2, totp_enabled_at = NULL, totp_last_step = 0 WHERE id = $1";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(account.0).bind(sealed).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM recovery_codes WHERE account_id = $1")
                .bind(account.0)
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "account.totp_enrol",
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({}),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Enables the enrolled TOTP (a first code was right at `step`), with
    /// the hashes of its recovery codes.
    pub async fn enable_totp(
        &self,
        actor: &str,
        account: AccountId,
        step: i64,
        recovery_hashes: &[String],
    ) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let sql = "UPDATE accounts SET totp_enabled_at = $2, totp_last_step = $3 WHERE id = $1 AND totp_secret IS NOT NULL";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql).bind(account.0).bind(Utc::now()).bind(step).execute(&mut *tx).await?;
            for hash in recovery_hashes {
                sqlx::query("INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)")
                    .bind(account.0)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "account.totp_enable",
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({"recovery_codes": recovery_hashes.len()}),
            });
            tx.commit().await?;
        });
        Ok(())
    }

    /// Takes a TOTP time step: true once per step, and only for a step
    /// later than the last one taken (a code is never accepted twice).
    pub async fn take_totp_step(&self, account: AccountId, step: i64) -> Result<bool> {
        let sql = "UPDATE accounts SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2";
        let done = on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(step).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Uses a recovery code: true the first time only.
    pub async fn use_recovery_code(&self, account: AccountId, code_hash: &str) -> Result<bool> {
        let sql = "UPDATE recovery_codes SET used_at = $3 WHERE account_id = $1 AND code_hash = $2 AND used_at IS NULL";
        let done = on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(code_hash).bind(Utc::now())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }
}

/// A new key pair for an account, its secret half locked with an
/// activation link's secret (see `vault::opaque::Activation`).
#[derive(Clone, Debug)]
pub struct ActivationKey {
    pub fingerprint: String,
    pub public_key: String,
    /// `caliop-key-v1:…`, openable with the link only.
    pub locked_secret_key: String,
    /// SHA-256 of the link's token.
    pub token_hash: String,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Opens an activation for an account made without a password (its key
    /// is already the activation-locked one).
    pub async fn create_activation(
        &self,
        account: AccountId,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "INSERT INTO activations (account_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4)";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(account.0).bind(token_hash).bind(expires_at)
            .bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// An administrator's reset: a new key pair locked for an activation
    /// link, every sign-in gone (password, device sign-in, tokens and
    /// sessions). The key it replaces is kept, as it was locked, for its
    /// owner to fetch (mail sealed before opens only with it).
    pub async fn reset_to_activation(
        &self,
        actor: &str,
        account: AccountId,
        key: &ActivationKey,
    ) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let sql = "UPDATE accounts SET previous_secret_key = secret_key, fingerprint = $2, public_key = $3, \
             secret_key = $4, password_hash = '', opaque_record = NULL, ksf_params = NULL, \
             credentials_epoch = credentials_epoch + 1, updated_at = $5 WHERE id = $1";
        let upsert = "INSERT INTO activations (account_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id) DO UPDATE SET token_hash = excluded.token_hash, \
             expires_at = excluded.expires_at, created_at = excluded.created_at";
        let now = Utc::now();
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query(sql)
                .bind(account.0)
                .bind(&key.fingerprint)
                .bind(&key.public_key)
                .bind(&key.locked_secret_key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(upsert)
                .bind(account.0)
                .bind(&key.token_hash)
                .bind(key.expires_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "account.activation_reset",
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({"old_fingerprint": current.fingerprint, "new_fingerprint": key.fingerprint}),
            });
            tx.commit().await?;
        });
        self.access_changed(super::AccessChange::Account(account));
        Ok(())
    }

    /// Ends every session of the account: its access tokens (and mail
    /// sessions signed in with its password) stop at once, app passwords
    /// stay. Returns the new credentials epoch, for the caller's own new
    /// token.
    pub async fn end_sessions(&self, actor: &str, account: AccountId) -> Result<i64> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let sql = "UPDATE accounts SET credentials_epoch = credentials_epoch + 1, updated_at = $2              WHERE id = $1 RETURNING credentials_epoch";
        let epoch: i64;
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            epoch = sqlx::query_scalar(sql)
                .bind(account.0)
                .bind(Utc::now())
                .fetch_one(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "account.sessions_ended",
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({}),
            });
            tx.commit().await?;
        });
        self.access_changed(super::AccessChange::Account(account));
        Ok(epoch)
    }

    /// The account an unexpired activation token opens, and until when.
    pub async fn activation(&self, token_hash: &str) -> Result<Option<(AccountId, DateTime<Utc>)>> {
        let sql = "SELECT account_id, expires_at FROM activations WHERE token_hash = $1 AND expires_at > $2";
        let row: Option<(Uuid, DateTime<Utc>)> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(token_hash).bind(Utc::now()).fetch_optional(p).await)?;
        Ok(row.map(|(id, until)| (AccountId(id), until)))
    }

    /// The key an administrator's reset replaced, as it was locked.
    pub async fn previous_secret_key(&self, account: AccountId) -> Result<Option<String>> {
        let sql = "SELECT previous_secret_key FROM accounts WHERE id = $1";
        let row: Option<(Option<String>,)> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(account.0).fetch_optional(p).await)?;
        Ok(row.and_then(|(k,)| k))
    }
}

/// A one-time link whose holder sets the account's password on their
/// device: an activation link, or a reset link from the recovery address.
#[derive(Clone, Copy, Debug)]
pub enum Link<'a> {
    /// The hash of an activation token.
    Activation(&'a str),
    /// The hash of a password-reset token.
    Reset(&'a str),
}

/// What a link's holder registered on their device.
#[derive(Clone, Debug)]
pub struct DeviceReset<'a> {
    pub registration: &'a OpaqueRegistration,
    /// The secret key locked with the new export key.
    pub locked_key: &'a str,
    /// A key pair made on the device (fingerprint, armored public key), or
    /// none when the device re-locked the current one.
    pub new_key: Option<(&'a str, &'a str)>,
}

impl Store {
    /// Spends `link` (live, of this account): its holder's device sign-in
    /// and key replace the account's credentials, and every token and
    /// session of the account ends. Past a reset link, the key blob it
    /// replaces is kept for its owner whatever was uploaded (an activation's
    /// blob opens with the spent link only: nothing to keep).
    pub async fn open_with_link(
        &self,
        account: AccountId,
        link: Link<'_>,
        reset: DeviceReset<'_>,
    ) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let (spend, token_hash, keeps_previous, action, gone) = match link {
            Link::Activation(hash) => (
                "DELETE FROM activations WHERE account_id = $1 AND token_hash = $2 AND expires_at > $3",
                hash,
                false,
                "account.activate",
                "activation",
            ),
            Link::Reset(hash) => (
                "UPDATE password_resets SET used_at = $3 WHERE account_id = $1 AND token_hash = $2 \
                 AND used_at IS NULL AND expires_at > $3",
                hash,
                true,
                "account.credentials",
                "password reset",
            ),
        };
        let sql = "UPDATE accounts SET previous_secret_key = CASE WHEN $8 THEN secret_key ELSE previous_secret_key END, \
             secret_key = $2, fingerprint = $3, public_key = $4, opaque_record = $5, ksf_params = $6, \
             password_hash = '', credentials_epoch = credentials_epoch + 1, updated_at = $7 WHERE id = $1";
        let (fingerprint, public_key) = reset
            .new_key
            .unwrap_or((current.fingerprint.as_str(), current.public_key.as_str()));
        let now = Utc::now();
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let spent = sqlx::query(spend).bind(account.0).bind(token_hash).bind(now).execute(&mut *tx).await?;
            if spent.rows_affected() == 0 {
                return Err(Error::NotFound(gone));
            }
            sqlx::query(sql)
                .bind(account.0)
                .bind(reset.locked_key)
                .bind(fingerprint)
                .bind(public_key)
                .bind(&reset.registration.record)
                .bind(&reset.registration.ksf)
                .bind(now)
                .bind(keeps_previous)
                .execute(&mut *tx)
                .await?;
            write_audit!(tx, Audit {
                actor: &format!("account:{account}"),
                tenant_id: Some(current.tenant_id.0),
                action,
                object_type: "account",
                object_id: account.to_string(),
                detail: serde_json::json!({"on_device": true, "new_fingerprint": reset.new_key.map(|k| k.0)}),
            });
            tx.commit().await?;
        });
        self.access_changed(super::AccessChange::Account(account));
        Ok(())
    }
}
