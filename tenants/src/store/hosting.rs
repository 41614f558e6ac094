//! Which addresses are ours: the one rule every door asks. Only a verified
//! domain is hosted. An unverified domain is a claim: nothing is delivered
//! into it, no account in it signs in or sends, its addresses are not ours
//! for recovery mail or sealing keys, and it lapses after
//! `domains.claim_days` (or the operator releases it), freeing the name for
//! whoever can prove it.

use chrono::{DateTime, Utc};

use super::{Account, Audit, DOMAIN_COLUMNS, Domain, DomainRow, INSERT_AUDIT, Pool, Store};
use crate::model::{DomainId, DomainName, EmailAddress};
use crate::{Error, Result};

/// Whether an account may send as `address` (in `From:` or `Sender:`):
/// one of `its_addresses`, its own and its aliases' (see
/// [`Store::sending_addresses`]).
pub fn may_send_as(its_addresses: &[String], address: &str) -> bool {
    its_addresses
        .iter()
        .any(|a| a.eq_ignore_ascii_case(address))
}

impl Store {
    /// The hosted domain of this name: verified, so proven to be its tenant's.
    pub async fn hosted_domain(&self, name: &DomainName) -> Result<Option<Domain>> {
        Ok(self
            .domain_by_name(name)
            .await?
            .filter(|d| d.verified_at.is_some()))
    }

    /// Whether the domain with this id is hosted (verified).
    pub async fn is_hosted_domain_id(&self, id: DomainId) -> Result<bool> {
        Ok(self
            .domain(id)
            .await?
            .is_some_and(|d| d.verified_at.is_some()))
    }

    /// The account at `address` if its domain is hosted; an account in a
    /// claim is nobody's address as far as mail is concerned.
    pub async fn hosted_account(&self, address: &EmailAddress) -> Result<Option<Account>> {
        let Some(account) = self.account_by_address(address).await? else {
            return Ok(None);
        };
        Ok(self
            .is_hosted_domain_id(account.domain_id)
            .await?
            .then_some(account))
    }

    /// Claims made before `before` and still unverified.
    pub async fn lapsed_claims(&self, before: DateTime<Utc>) -> Result<Vec<Domain>> {
        let sql = super::join_sql(
            "SELECT ",
            DOMAIN_COLUMNS,
            " FROM domains WHERE verified_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT 500",
        );
        let rows: Vec<DomainRow> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(before).fetch_all(p).await)?;
        rows.into_iter().map(Domain::try_from).collect()
    }

    /// Releases an unverified claim: the domain goes, with the accounts made
    /// in it, which can hold nothing (they never received, sent or signed
    /// in). A claim whose accounts hold mail anyway (stored before this rule)
    /// is refused, for the operator to look at. Returns how many accounts went.
    pub async fn release_claim(&self, actor: &str, domain: &Domain) -> Result<u64> {
        if domain.verified_at.is_some() {
            return Err(Error::Conflict(format!(
                "the domain `{}` is verified: it is not a claim to release",
                domain.name
            )));
        }
        let in_claim = "SELECT id FROM accounts WHERE domain_id = $1";
        let held = "SELECT (SELECT COUNT(*) FROM messages WHERE account_id IN (SELECT id FROM accounts WHERE domain_id = $1)) \
                  + (SELECT COUNT(*) FROM outbound WHERE account_id IN (SELECT id FROM accounts WHERE domain_id = $1))";
        let deletes = [
            "DELETE FROM expunged WHERE mailbox_id IN (SELECT b.id FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE a.domain_id = $1)",
            "DELETE FROM mailboxes WHERE account_id IN (SELECT id FROM accounts WHERE domain_id = $1)",
            "DELETE FROM correspondents WHERE account_id IN (SELECT id FROM accounts WHERE domain_id = $1)",
            "DELETE FROM password_resets WHERE account_id IN (SELECT id FROM accounts WHERE domain_id = $1)",
            "DELETE FROM accounts WHERE domain_id = $1",
            "DELETE FROM dkim_keys WHERE domain_id = $1",
            "DELETE FROM domains WHERE id = $1 AND verified_at IS NULL",
        ];
        let released: Result<Vec<(uuid::Uuid,)>> = on_pool!(&self.pool, p => async {
            let mut tx = p.begin().await?;
            let (n,): (i64,) = sqlx::query_as(held).bind(domain.id.0).fetch_one(&mut *tx).await?;
            if n > 0 {
                return Err(Error::Conflict(format!(
                    "the claim `{}` has {n} stored message(s); an operator must look at it", domain.name
                )));
            }
            let accounts: Vec<(uuid::Uuid,)> = sqlx::query_as(in_claim).bind(domain.id.0).fetch_all(&mut *tx).await?;
            for sql in deletes {
                sqlx::query(sql).bind(domain.id.0).execute(&mut *tx).await?;
            }
            write_audit!(tx, Audit {
                actor,
                tenant_id: Some(domain.tenant_id.0),
                action: "domain.claim.release",
                object_type: "domain",
                object_id: domain.id.to_string(),
                detail: serde_json::json!({ "name": domain.name, "accounts": accounts.len() }),
            });
            tx.commit().await?;
            Ok(accounts)
        }.await);
        let accounts = released?;
        for (id,) in &accounts {
            self.access_changed(super::AccessChange::Account(crate::AccountId(*id)));
        }
        Ok(accounts.len() as u64)
    }
}
