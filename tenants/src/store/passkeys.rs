//! WebAuthn passkeys, a second factor of the web sign-in. The store keeps
//! what the relying party must: the credential id, its public key and its
//! changing state (signature counter, backup and verification flags), in
//! the binary encodings the API's WebAuthn library gives; it reads none of
//! them.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, Pool, Store};
use crate::model::AccountId;
use crate::{Error, Result};

/// A passkey as listed.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Passkey {
    pub id: Uuid,
    pub account_id: AccountId,
    /// As its owner named it (e.g. "YubiKey 5", "this laptop").
    pub name: String,
    /// The host it was made on; it signs in there only.
    pub rp_id: String,
    pub created_at: DateTime<Utc>,
    /// When it last signed in.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What verifying a passkey needs, as stored.
#[derive(Clone, Debug)]
pub struct PasskeyCredential {
    pub id: Uuid,
    pub account_id: AccountId,
    pub rp_id: String,
    pub credential_id: Vec<u8>,
    pub public_key: Vec<u8>,
    pub state: Vec<u8>,
    pub transports: i32,
}

/// A passkey to store, once its registration was verified.
#[derive(Clone, Debug)]
pub struct NewPasskey<'a> {
    pub name: &'a str,
    pub rp_id: &'a str,
    pub credential_id: &'a [u8],
    pub public_key: &'a [u8],
    pub state: &'a [u8],
    pub transports: i32,
}

/// The most passkeys one account may hold.
pub const MAX_PASSKEYS: i64 = 20;

#[derive(FromRow)]
struct PasskeyRow {
    id: Uuid,
    account_id: Uuid,
    name: String,
    rp_id: String,
    created_at: DateTime<Utc>,
    last_used_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct CredentialRow {
    id: Uuid,
    account_id: Uuid,
    rp_id: String,
    credential_id: Vec<u8>,
    public_key: Vec<u8>,
    state: Vec<u8>,
    transports: i32,
}

impl From<CredentialRow> for PasskeyCredential {
    fn from(r: CredentialRow) -> Self {
        PasskeyCredential {
            id: r.id,
            account_id: AccountId(r.account_id),
            rp_id: r.rp_id,
            credential_id: r.credential_id,
            public_key: r.public_key,
            state: r.state,
            transports: r.transports,
        }
    }
}

const CREDENTIAL_COLUMNS: &str =
    "id, account_id, rp_id, credential_id, public_key, state, transports FROM passkeys";

impl Store {
    /// Stores a verified passkey. When the account had no recovery codes
    /// yet (no TOTP before), `recovery_hashes` become its codes and the
    /// answer is true: the caller shows them, once.
    pub async fn create_passkey(
        &self,
        actor: &str,
        account: AccountId,
        new: NewPasskey<'_>,
        recovery_hashes: &[String],
    ) -> Result<(Passkey, bool)> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let count = "SELECT COUNT(*) FROM passkeys WHERE account_id = $1";
        let (n,): (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(count).bind(account.0).fetch_one(p).await)?;
        if n >= MAX_PASSKEYS {
            return Err(Error::LimitExceeded(format!(
                "an account holds at most {MAX_PASSKEYS} passkeys; remove one no longer used"
            )));
        }
        let id = Uuid::now_v7();
        let now = Utc::now();
        let insert = "INSERT INTO passkeys (id, account_id, name, rp_id, credential_id, public_key, state, transports, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let codes = "SELECT COUNT(*) FROM recovery_codes WHERE account_id = $1";
        let gave_codes = on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let inserted = sqlx::query(insert)
                .bind(id)
                .bind(account.0)
                .bind(new.name)
                .bind(new.rp_id)
                .bind(new.credential_id)
                .bind(new.public_key)
                .bind(new.state)
                .bind(new.transports)
                .bind(now)
                .execute(&mut *tx)
                .await;
            if let Err(sqlx::Error::Database(e)) = &inserted
                && e.is_unique_violation()
            {
                return Err(Error::Conflict("this passkey is already registered".into()));
            }
            inserted?;
            let (existing,): (i64,) = sqlx::query_as(codes).bind(account.0).fetch_one(&mut *tx).await?;
            let give = existing == 0 && !recovery_hashes.is_empty();
            if give {
                for hash in recovery_hashes {
                    sqlx::query("INSERT INTO recovery_codes (account_id, code_hash) VALUES ($1, $2)")
                        .bind(account.0)
                        .bind(hash)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "passkey.create",
                object_type: "passkey",
                object_id: id.to_string(),
                detail: serde_json::json!({"account_id": account, "rp_id": new.rp_id, "recovery_codes": if give { recovery_hashes.len() } else { 0 }}),
            });
            tx.commit().await?;
            give
        });
        Ok((
            Passkey {
                id,
                account_id: account,
                name: new.name.to_owned(),
                rp_id: new.rp_id.to_owned(),
                created_at: now,
                last_used_at: None,
            },
            gave_codes,
        ))
    }

    pub async fn list_passkeys(&self, account: AccountId) -> Result<Vec<Passkey>> {
        let sql = "SELECT id, account_id, name, rp_id, created_at, last_used_at FROM passkeys \
             WHERE account_id = $1 ORDER BY id";
        let rows: Vec<PasskeyRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).fetch_all(p).await)?;
        Ok(rows
            .into_iter()
            .map(|r| Passkey {
                id: r.id,
                account_id: AccountId(r.account_id),
                name: r.name,
                rp_id: r.rp_id,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
            })
            .collect())
    }

    /// The account's passkeys made on `rp_id` (the ones an authenticator
    /// must not make again).
    pub async fn passkey_credentials(
        &self,
        account: AccountId,
        rp_id: &str,
    ) -> Result<Vec<PasskeyCredential>> {
        let sql = super::join_sql(
            "SELECT ",
            CREDENTIAL_COLUMNS,
            " WHERE account_id = $1 AND rp_id = $2 ORDER BY id",
        );
        let rows: Vec<CredentialRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(account.0).bind(rp_id).fetch_all(p).await)?;
        Ok(rows.into_iter().map(PasskeyCredential::from).collect())
    }

    /// The passkey with this credential id, whoever holds it.
    pub async fn passkey_by_credential(
        &self,
        credential_id: &[u8],
    ) -> Result<Option<PasskeyCredential>> {
        let sql = super::join_sql("SELECT ", CREDENTIAL_COLUMNS, " WHERE credential_id = $1");
        let row: Option<CredentialRow> = on_pool!(&self.pool, p => sqlx::query_as(sql)
            .bind(credential_id).fetch_optional(p).await)?;
        Ok(row.map(PasskeyCredential::from))
    }

    /// A passkey signed in: its new state (counter, flags) and the time.
    pub async fn passkey_used(&self, id: Uuid, state: &[u8]) -> Result<()> {
        let sql = "UPDATE passkeys SET state = $2, last_used_at = $3 WHERE id = $1";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(id).bind(state).bind(Utc::now())
            .execute(p).await.map(|_| ()))?;
        Ok(())
    }

    pub async fn delete_passkey(&self, actor: &str, account: AccountId, id: Uuid) -> Result<()> {
        let current = self
            .account(account)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let sql = "DELETE FROM passkeys WHERE id = $1 AND account_id = $2";
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            let done = sqlx::query(sql).bind(id).bind(account.0).execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                return Err(Error::NotFound("passkey"));
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(current.tenant_id.0),
                action: "passkey.delete",
                object_type: "passkey",
                object_id: id.to_string(),
                detail: serde_json::json!({"account_id": account}),
            });
            tx.commit().await?;
        });
        Ok(())
    }
}
