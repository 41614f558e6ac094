//! Moving a tenant tree to another instance, row by row.
//!
//! [`TABLES`] says, for every table that holds something of a tenant, which
//! rows are the tenant's, how they are ordered and what type each column
//! has; a store test checks that list against the schema of both backends,
//! so a migration that adds a column cannot silently leave it behind.
//! Export reads keyset pages of rows as JSON objects (column → value) and
//! large columns (message bodies) one row at a time; import writes them back
//! in one transaction, so an import that fails leaves nothing behind.
//! Secrets sealed under the instance's own keys (tenant data keys, DKIM
//! private keys) are the caller's business: this module moves values, it
//! never opens them.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{Row as _, Transaction};
use uuid::Uuid;

use super::{Audit, INSERT_AUDIT, NewObject, Pool, Store};
use crate::model::TenantId;
use crate::{Error, Result};

/// One row, column name → value: text and times as strings (RFC 3339, to
/// the microsecond, PostgreSQL's precision),
/// UUIDs as strings, bytes as base64, integers and booleans as themselves.
pub type Row = Map<String, Value>;

/// How a column's values travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Uuid,
    Int,
    Bool,
    Time,
    Bytes,
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

/// A table of the tenant's, as export and import see it.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// Columns that order the rows and, together, identify one.
    pub key: &'static [&'static str],
    /// Which rows belong to tenant `$1`.
    scope: &'static str,
    /// Every column that travels in the row, blob excepted.
    pub columns: Vec<Column>,
    /// A large bytes column read one row at a time and carried beside the row.
    pub blob: Option<&'static str>,
    /// Columns the importing database numbers itself (the audit log's sequence).
    pub generated: &'static [&'static str],
    /// Columns deliberately left behind, and why (checked against the schema).
    pub left: &'static [(&'static str, &'static str)],
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Tables that hold nothing to move, and why (checked against the schema).
pub const LEFT_TABLES: &[(&str, &str)] = &[
    (
        "jobs",
        "work of the exporting instance; the importer schedules its own",
    ),
    (
        "recovery_codes",
        "they go with the TOTP secret, which stays behind (the user enrols again)",
    ),
    (
        "maintenance",
        "cursors of the exporting instance's maintenance passes",
    ),
    (
        "password_resets",
        "short-lived secrets sent to the old instance's users",
    ),
    (
        "plans",
        "the instance's price list; tenant billing refers to a plan by name",
    ),
    ("pool_ledger", "the exporting instance's free-account pool"),
    (
        "abuse_strikes",
        "the exporting operator's judgement of outbound abuse; the importing instance judges anew",
    ),
    (
        "shards",
        "regenerated: dispersed messages are dispersed again on the importing sites",
    ),
    ("stored_objects", "regenerated with the shards"),
    (
        "message_summaries",
        "a cache made from each message: the importing instance's IMAP makes each again at its first FETCH",
    ),
    (
        "spent_challenges",
        "proof-of-work nonces of the instance's signup",
    ),
    (
        "stripe_events",
        "the exporting instance's webhook idempotency",
    ),
    ("waiting_line", "the exporting instance's free signup queue"),
    (
        "certificates",
        "the exporting instance's TLS certificates (the importer orders its own)",
    ),
    ("acme_accounts", "the exporting instance's ACME accounts"),
    (
        "acme_challenges",
        "pending ACME answers of the exporting instance",
    ),
    (
        "legal_requests",
        "the operator's register, not the tenant's data",
    ),
    (
        "legal_exports",
        "the operator's register, not the tenant's data",
    ),
    ("warrant_canaries", "the operator's statements"),
    ("tenant_exports", "the exporting instance's export jobs"),
];

fn parse_columns(spec: &'static str) -> Vec<Column> {
    spec.split_whitespace()
        .map(|c| {
            let (name, kind) = c.split_once(':').unwrap_or((c, ""));
            let kind = match kind {
                "" => Kind::Text,
                "u" => Kind::Uuid,
                "i" => Kind::Int,
                "b" => Kind::Bool,
                "t" => Kind::Time,
                "x" => Kind::Bytes,
                other => panic!("unknown column kind `{other}` in the transfer table list"),
            };
            Column { name, kind }
        })
        .collect()
}

macro_rules! table {
    ($name:literal, key [$($key:literal),+], $scope:expr, $columns:literal $(, blob $blob:literal)? $(, generated [$($g:literal),*])? $(, left [$(($l:literal, $why:literal)),*])?) => {
        Table {
            name: $name,
            key: &[$($key),+],
            scope: $scope,
            columns: parse_columns($columns),
            blob: None $(.or(Some($blob)))?,
            generated: &[$($($g),*)?],
            left: &[$($(($l, $why)),*)?],
        }
    };
}

/// The tenant's tables, parents before children (foreign keys).
pub static TABLES: LazyLock<Vec<Table>> = LazyLock::new(|| {
    vec![
        table!(
            "tenants",
            key["id"],
            "id = $1",
            "id:u name kind parent_id:u status max_accounts:i max_domains:i storage_quota_bytes:i min_level \
             allowed_jurisdictions created_at:t updated_at:t storage_used_bytes:i dispersal_k:i dispersal_n:i self_signup_domain \
             publish_transparency:b opaque_setup scan_outbound:b external_forwarding:b outer_thread_headers:b"
        ),
        table!(
            "tenant_keys",
            key["tenant_id"],
            "tenant_id = $1",
            "tenant_id:u wrapped_key:x created_at:t"
        ),
        table!(
            "domains",
            key["id"],
            "tenant_id = $1",
            "id:u tenant_id:u name verification_token verified_at:t verification_method created_at:t alias_of:u catch_all"
        ),
        table!(
            "dkim_keys",
            key["id"],
            "domain_id IN (SELECT id FROM domains WHERE tenant_id = $1)",
            "id:u domain_id:u selector algorithm public_key private_key state created_at:t activated_at:t retired_at:t"
        ),
        table!(
            "domain_mta_sts",
            key["domain_id"],
            "domain_id IN (SELECT id FROM domains WHERE tenant_id = $1)",
            "domain_id:u mode updated_at:t"
        ),
        table!(
            "tls_reports",
            key["id"],
            "domain_id IN (SELECT id FROM domains WHERE tenant_id = $1)",
            "id:u domain_id:u organization report_id starts_at:t ends_at:t policy_type successes:i failures:i failure_details received_at:t"
        ),
        table!(
            "accounts",
            key["id"],
            "tenant_id = $1",
            "id:u tenant_id:u domain_id:u address display_name role status level password_hash fingerprint public_key \
             secret_key created_at:t updated_at:t storage_quota_bytes:i storage_used_bytes:i free:b recovery_address \
             credentials_epoch:i opaque_record ksf_params previous_secret_key forward_to forward_keep:b forward_refused_notice \
             last_uid_validity:i",
            left [
                ("totp_secret", "sealed under the exporting instance's master key: the user enrols again"),
                ("totp_enabled_at", "goes with the TOTP secret"),
                ("totp_last_step", "goes with the TOTP secret"),
                ("second_factor_due_at", "the importing instance gives its own grace"),
                ("sending_blocked_at", "the exporting operator's abuse decision; the importing instance judges anew")
            ]
        ),
        // Mail clients keep signing in after the move (the hashes only).
        table!(
            "app_passwords",
            key["id"],
            "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "id:u account_id:u name secret_hash created_at:t last_used_at:t"
        ),
        // Open links keep working after the move (the token's hash only).
        table!(
            "activations",
            key["account_id"],
            "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "account_id:u token_hash expires_at:t created_at:t"
        ),
        // Public keys only; they sign in where the tenant's hostnames now point.
        table!(
            "passkeys",
            key["id"],
            "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "id:u account_id:u name rp_id credential_id:x public_key:x state:x transports:i created_at:t last_used_at:t"
        ),
        table!(
            "mailboxes",
            key["id"],
            "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "id:u account_id:u name name_key role uid_validity:i uid_next:i highest_modseq:i subscribed:b recent_uid:i pruned_modseq:i created_at:t"
        ),
        table!("messages", key ["id"], "tenant_id = $1",
            "id:u tenant_id:u account_id:u received_at:t size:i level flags envelope_from envelope_to subject sender \
             privacy authentication storage mailbox_id:u uid:i modseq:i keywords rfc822_size:i verdict spam:b",
            blob "content"),
        table!("expunged", key ["mailbox_id", "uid"],
            "mailbox_id IN (SELECT b.id FROM mailboxes b JOIN accounts a ON a.id = b.account_id WHERE a.tenant_id = $1)",
            "mailbox_id:u uid:i modseq:i expunged_at:t"),
        table!("lost_subscriptions", key ["account_id", "name_key"],
            "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "account_id:u name_key name"),
        // The accounts' own rules about senders (their Junk judgements).
        table!(
            "addresses",
            key["id"],
            "tenant_id = $1",
            "id:u tenant_id:u domain_id:u address kind account_id:u posting name created_at:t"
        ),
        table!("group_members", key ["address_id", "account_id"], "address_id IN (SELECT id FROM addresses WHERE tenant_id = $1)",
            "address_id:u account_id:u"),
        table!("sieve_scripts", key ["owner", "name"], "tenant_id = $1",
            "owner:u tenant_id:u scope name content active:b updated_at:t"),
        table!("sieve_memory", key ["account_id", "key"], "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "account_id:u key expires_at:t"),
        table!("sender_rules", key ["account_id", "sender"], "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "account_id:u sender rule created_at:t"),
        table!("correspondents", key ["account_id", "address"], "account_id IN (SELECT id FROM accounts WHERE tenant_id = $1)",
            "account_id:u address received:i received_encrypted:i sent:i"),
        table!(
            "api_keys",
            key["id"],
            "tenant_id = $1",
            "id:u tenant_id:u name prefix secret_hash scopes created_by created_at:t last_used_at:t revoked_at:t"
        ),
        table!(
            "branding",
            key["tenant_id"],
            "tenant_id = $1",
            "tenant_id:u product_name primary_color accent_color support_address legal_url privacy_url default_language updated_at:t"
        ),
        table!("brand_assets", key ["tenant_id", "kind"], "tenant_id = $1",
            "tenant_id:u kind content_type bytes:x sha256 updated_at:t"),
        table!(
            "hostnames",
            key["id"],
            "tenant_id = $1",
            "id:u tenant_id:u hostname token verified_at:t created_at:t"
        ),
        table!("template_overrides", key ["tenant_id", "name", "language"], "tenant_id = $1",
            "tenant_id:u name language subject text_body html_body updated_at:t"),
        // Delivery history; a delivery still under way stays with the
        // exporting instance, which finishes it.
        table!(
            "outbound",
            key["id"],
            "tenant_id = $1 AND finished_at IS NOT NULL",
            "id:u message_id:u tenant_id:u account_id:u envelope_from header_message_id recipients:i created_at:t expires_at:t finished_at:t",
            left[(
                "content",
                "the spooled copy of a finished delivery is not needed any more"
            )]
        ),
        table!("deliveries", key ["outbound_id", "recipient"],
            "outbound_id IN (SELECT id FROM outbound WHERE tenant_id = $1 AND finished_at IS NOT NULL)",
            "outbound_id:u recipient status attempts:i remote_host remote_reply updated_at:t"),
        table!(
            "tenant_billing",
            key["tenant_id"],
            "tenant_id = $1",
            "tenant_id:u plan_id:u committed_seats:i paid_by stripe_customer_id stripe_subscription_id stripe_item_id \
             subscription_status subscription_at:i subscription_rank:i current_period_end:t seats_billed:i public_funder:b updated_at:t"
        ),
        table!(
            "invoices",
            key["id"],
            "tenant_id = $1",
            "id tenant_id:u number status currency amount_due:i amount_paid:i amount_refunded:i period_start:t period_end:t \
             hosted_url failed_at:t paid_at:t created:i"
        ),
        table!("usage_monthly", key ["tenant_id", "month"], "tenant_id = $1",
            "tenant_id:u month storage_bytes:i storage_peak_bytes:i messages_received:i messages_sent:i active_accounts:i"),
        table!(
            "audit_log",
            key["id"],
            "tenant_id = $1",
            "id:i at:t actor tenant_id:u action object_type object_id detail",
            generated["id"]
        ),
    ]
});

/// The table called `name`.
pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

// ---------------------------------------------------------------------------
// Values

fn bad(table: &str, column: &str, what: &str) -> Error {
    Error::Invalid(format!("`{table}.{column}` holds {what}"))
}

fn text(v: &Value, t: &str, c: &str) -> Result<Option<String>> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        _ => Err(bad(t, c, "a value that is not text")),
    }
}

fn uuid(v: &Value, t: &str, c: &str) -> Result<Option<Uuid>> {
    text(v, t, c)?
        .map(|s| {
            s.parse()
                .map_err(|_| bad(t, c, "a value that is not a UUID"))
        })
        .transpose()
}

fn int(v: &Value, t: &str, c: &str) -> Result<Option<i64>> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(t, c, "a number that is not an integer")),
        _ => Err(bad(t, c, "a value that is not an integer")),
    }
}

fn boolean(v: &Value, t: &str, c: &str) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(bad(t, c, "a value that is not a boolean")),
    }
}

fn time(v: &Value, t: &str, c: &str) -> Result<Option<DateTime<Utc>>> {
    text(v, t, c)?
        .map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|d| d.to_utc())
                .map_err(|_| bad(t, c, "a value that is not an RFC 3339 time"))
        })
        .transpose()
}

fn bytes(v: &Value, t: &str, c: &str) -> Result<Option<Vec<u8>>> {
    use base64::Engine;
    text(v, t, c)?
        .map(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| bad(t, c, "a value that is not base64"))
        })
        .transpose()
}

fn encode_bytes(b: Vec<u8>) -> Value {
    use base64::Engine;
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// Binds `$value` to `$query` as a column of `$column`'s kind.
macro_rules! bind_value {
    ($query:expr, $table:expr, $column:expr, $value:expr) => {{
        let (t, c, v): (&str, &Column, &Value) = ($table, $column, $value);
        match c.kind {
            Kind::Text => $query.bind(text(v, t, c.name)?),
            Kind::Uuid => $query.bind(uuid(v, t, c.name)?),
            Kind::Int => $query.bind(int(v, t, c.name)?),
            Kind::Bool => $query.bind(boolean(v, t, c.name)?),
            Kind::Time => $query.bind(time(v, t, c.name)?),
            Kind::Bytes => $query.bind(bytes(v, t, c.name)?),
        }
    }};
}

/// Reads the columns of `$table` out of a database row, in order.
macro_rules! decode_row {
    ($row:expr, $table:expr) => {{
        let mut out = Row::new();
        for (i, c) in $table.columns.iter().enumerate() {
            let value = match c.kind {
                Kind::Text => $row.try_get::<Option<String>, _>(i)?.map(Value::String),
                Kind::Uuid => $row
                    .try_get::<Option<Uuid>, _>(i)?
                    .map(|u| Value::String(u.to_string())),
                Kind::Int => $row.try_get::<Option<i64>, _>(i)?.map(Value::from),
                Kind::Bool => $row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                Kind::Time => $row
                    .try_get::<Option<DateTime<Utc>>, _>(i)?
                    .map(|d| Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))),
                Kind::Bytes => $row.try_get::<Option<Vec<u8>>, _>(i)?.map(encode_bytes),
            };
            out.insert(c.name.to_owned(), value.unwrap_or(Value::Null));
        }
        out
    }};
}

fn select_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|c| match c.kind {
            // PostgreSQL INTEGER columns do not decode as i64.
            Kind::Int => format!("CAST({0} AS BIGINT) AS {0}", c.name),
            _ => c.name.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn key_condition(table: &Table, first: usize) -> String {
    let placeholders: Vec<String> = (0..table.key.len())
        .map(|i| format!("${}", first + i))
        .collect();
    if table.key.len() == 1 {
        format!("{} > {}", table.key[0], placeholders[0])
    } else {
        format!("({}) > ({})", table.key.join(", "), placeholders.join(", "))
    }
}

fn key_column<'a>(table: &'a Table, name: &str) -> Result<&'a Column> {
    table
        .column(name)
        .ok_or_else(|| Error::Internal(format!("key `{name}` of `{}` is not a column", table.name)))
}

fn missing(table: &str, column: &str) -> Error {
    Error::Invalid(format!("a row of `{table}` has no `{column}`"))
}

// ---------------------------------------------------------------------------
// Export

impl Store {
    /// The tenant and every tenant below it, each after its parent.
    pub async fn subtree(&self, root: TenantId) -> Result<Vec<TenantId>> {
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i].0;
            let children: Vec<(Uuid,)> = on_pool!(&self.pool, p =>
                sqlx::query_as("SELECT id FROM tenants WHERE parent_id = $1 ORDER BY id").bind(parent).fetch_all(p).await)?;
            out.extend(children.into_iter().map(|(id,)| TenantId(id)));
            i += 1;
        }
        Ok(out)
    }

    /// Up to `limit` rows of `table` that belong to `tenant`, in key order,
    /// after the row whose key `after` holds (the first page without it).
    pub async fn export_page(
        &self,
        table: &Table,
        tenant: TenantId,
        after: Option<&Row>,
        limit: u32,
    ) -> Result<Vec<Row>> {
        let mut sql = format!(
            "SELECT {} FROM {} WHERE ({})",
            select_list(table),
            table.name,
            table.scope
        );
        if after.is_some() {
            sql.push_str(" AND ");
            sql.push_str(&key_condition(table, 2));
        }
        sql.push_str(&format!(
            " ORDER BY {} LIMIT {}",
            table.key.join(", "),
            limit.max(1)
        ));
        on_pool!(&self.pool, p => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.0);
            if let Some(after) = after {
                for k in table.key {
                    let column = key_column(table, k)?;
                    let value = after.get(*k).ok_or_else(|| missing(table.name, k))?;
                    query = bind_value!(query, table.name, column, value);
                }
            }
            let rows = query.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(decode_row!(row, table));
            }
            Ok(out)
        })
    }

    /// How many rows of `table` belong to `tenant` (for progress).
    pub async fn export_count(&self, table: &Table, tenant: TenantId) -> Result<u64> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE ({})",
            table.name, table.scope
        );
        let (n,): (i64,) = on_pool!(&self.pool, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.0).fetch_one(p).await)?;
        Ok(n as u64)
    }

    /// The blob column of one row (a message's stored bytes).
    pub async fn export_blob(&self, table: &Table, row: &Row) -> Result<Vec<u8>> {
        let blob = table
            .blob
            .ok_or_else(|| Error::Internal(format!("`{}` has no blob column", table.name)))?;
        let condition: Vec<String> = table
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 1))
            .collect();
        let sql = format!(
            "SELECT {blob} FROM {} WHERE {}",
            table.name,
            condition.join(" AND ")
        );
        let found: Option<Vec<u8>> = on_pool!(&self.pool, p => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for k in table.key {
                let column = key_column(table, k)?;
                let value = row.get(*k).ok_or_else(|| missing(table.name, k))?;
                query = bind_value!(query, table.name, column, value);
            }
            match query.fetch_optional(p).await? {
                Some(r) => Some(r.try_get::<Vec<u8>, _>(0)?),
                None => None,
            }
        });
        found.ok_or(Error::NotFound("row"))
    }

    /// Opens the one transaction an import writes in.
    pub async fn begin_import(&self) -> Result<Import> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => Import::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Postgres(p) => Import::Postgres(p.begin().await?),
        })
    }

    /// Which of these ids, names and addresses this instance already has.
    pub async fn import_clashes(&self, clashes: &Clashes) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let ids: [(&str, &str, &Vec<String>); 2] = [
            (
                "tenant",
                "SELECT 1 FROM tenants WHERE id = $1",
                &clashes.tenant_ids,
            ),
            (
                "message",
                "SELECT 1 FROM messages WHERE id = $1",
                &clashes.sample_messages,
            ),
        ];
        for (what, sql, values) in ids {
            for value in values {
                let id: Uuid = value
                    .parse()
                    .map_err(|_| Error::Invalid(format!("`{value}` is not a UUID")))?;
                let hit: Option<(i32,)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
                if hit.is_some() {
                    found.push(format!("{what} {value}"));
                }
            }
        }
        let names: [(&str, &str, &Vec<String>); 3] = [
            (
                "domain",
                "SELECT 1 FROM domains WHERE name = $1",
                &clashes.domains,
            ),
            (
                "account",
                "SELECT 1 FROM accounts WHERE address = $1",
                &clashes.addresses,
            ),
            (
                "hostname",
                "SELECT 1 FROM hostnames WHERE hostname = $1",
                &clashes.hostnames,
            ),
        ];
        for (what, sql, values) in names {
            for value in values {
                let hit: Option<(i32,)> = on_pool!(&self.pool, p => sqlx::query_as(sql).bind(value).fetch_optional(p).await)?;
                if hit.is_some() {
                    found.push(format!("{what} {value}"));
                }
            }
        }
        Ok(found)
    }
}

/// One delivery attempt's outcome, as a disclosure shows it.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryLogEntry {
    pub outbound_id: Uuid,
    /// The sender's Sent copy.
    pub message_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub envelope_from: String,
    pub recipient: String,
    pub status: String,
    pub attempts: i64,
    pub remote_host: Option<String>,
    pub remote_reply: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// The account's messages received in `[from, until)`, in id order, after `after`.
    pub async fn messages_between(
        &self,
        account: crate::model::AccountId,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<super::MessageMeta>> {
        let ids: Vec<(Uuid,)> = on_pool!(&self.pool, p => sqlx::query_as(
            "SELECT id FROM messages WHERE account_id = $1 AND ($2 IS NULL OR received_at >= $2) \
             AND ($3 IS NULL OR received_at < $3) AND id > $4 ORDER BY id LIMIT $5")
            .bind(account.0).bind(from).bind(until).bind(after.unwrap_or(Uuid::nil())).bind(i64::from(limit.max(1)))
            .fetch_all(p).await)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(meta) = self.message(crate::model::MessageId(id)).await? {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// What the account sent in `[from, until)` and how each recipient's delivery went.
    pub async fn delivery_log(
        &self,
        account: crate::model::AccountId,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<DeliveryLogEntry>> {
        let sql = "SELECT o.id AS outbound_id, o.message_id, o.created_at, o.envelope_from, d.recipient, d.status, \
                   CAST(d.attempts AS BIGINT) AS attempts, d.remote_host, d.remote_reply, d.updated_at \
                   FROM outbound o JOIN deliveries d ON d.outbound_id = o.id \
                   WHERE o.account_id = $1 AND ($2 IS NULL OR o.created_at >= $2) AND ($3 IS NULL OR o.created_at < $3) \
                   ORDER BY o.created_at, o.id, d.recipient";
        Ok(
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(account.0).bind(from).bind(until).fetch_all(p).await)?,
        )
    }
}

/// What an archive would create that must not exist yet.
#[derive(Debug, Default)]
pub struct Clashes {
    pub tenant_ids: Vec<String>,
    pub domains: Vec<String>,
    pub addresses: Vec<String>,
    pub hostnames: Vec<String>,
    /// A few message ids: an archive imported twice clashes on them too.
    pub sample_messages: Vec<String>,
}

/// An import under way: everything it writes commits together or not at
/// all (dropping it rolls back).
pub enum Import {
    Sqlite(Transaction<'static, sqlx::Sqlite>),
    Postgres(Transaction<'static, sqlx::Postgres>),
}

macro_rules! on_tx {
    ($import:expr, $tx:ident => $body:expr) => {
        match $import {
            Import::Sqlite($tx) => $body,
            Import::Postgres($tx) => $body,
        }
    };
}

impl Import {
    /// Writes one row of `table` (and its blob, when the table has one).
    pub async fn insert(&mut self, table: &Table, row: &Row, blob: Option<&[u8]>) -> Result<()> {
        for name in row.keys() {
            if table.column(name).is_none() {
                return Err(Error::Invalid(format!(
                    "the archive has a column `{}.{name}` this instance does not know: it comes from a newer Caliop",
                    table.name
                )));
            }
        }
        let columns: Vec<&Column> = table
            .columns
            .iter()
            .filter(|c| !table.generated.contains(&c.name) && row.contains_key(c.name))
            .collect();
        let mut names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        if let Some(blob_column) = table.blob {
            names.push(blob_column);
        }
        let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            names.join(", "),
            placeholders.join(", ")
        );
        let name = table.name;
        let result = on_tx!(self, tx => {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in &columns {
                query = bind_value!(query, table.name, *c, &row[c.name]);
            }
            if table.blob.is_some() {
                query = query.bind(blob.unwrap_or_default().to_vec());
            }
            query.execute(&mut **tx).await.map(|_| ())
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) if super::unique_violation(&e) => Err(Error::Conflict(format!(
                "this instance already has a row of `{name}` that the archive would create again"
            ))),
            Err(sqlx::Error::Database(db)) if db.is_foreign_key_violation() => Err(Error::Invalid(
                format!("a row of `{name}` refers to something the archive does not hold"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Records a dispersed object (a message's shards on this instance's sites).
    pub async fn insert_object(
        &mut self,
        id: Uuid,
        tenant: TenantId,
        object: &NewObject,
    ) -> Result<()> {
        let now = Utc::now();
        on_tx!(self, tx => {
            insert_object!(*tx, id, tenant.0, object, now);
        });
        Ok(())
    }

    /// Makes the imported tree consistent with this instance (storage
    /// counters and UID counters recomputed from what was imported), writes
    /// the audit entry and commits.
    pub async fn finish(
        mut self,
        actor: &str,
        root: TenantId,
        tenants: &[TenantId],
        detail: Value,
    ) -> Result<()> {
        let fixups = [
            "UPDATE accounts SET storage_used_bytes = (SELECT COALESCE(SUM(size), 0) FROM messages WHERE account_id = accounts.id) \
             WHERE tenant_id = $1",
            // A tenant's usage is its subtree's (see `COUNT_STORAGE`).
            "WITH RECURSIVE subtree(id) AS ( \
               SELECT id FROM tenants WHERE id = $1 \
               UNION ALL SELECT t.id FROM tenants t JOIN subtree s ON t.parent_id = s.id) \
             UPDATE tenants SET storage_used_bytes = \
               (SELECT COALESCE(SUM(size), 0) FROM messages WHERE tenant_id IN (SELECT id FROM subtree)) \
             WHERE id = $1",
            "UPDATE mailboxes SET uid_next = (SELECT COALESCE(MAX(uid), 0) + 1 FROM messages WHERE mailbox_id = mailboxes.id) \
             WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1) \
               AND uid_next <= (SELECT COALESCE(MAX(uid), 0) FROM messages WHERE mailbox_id = mailboxes.id)",
            "UPDATE mailboxes SET highest_modseq = (SELECT MAX(modseq) FROM messages WHERE mailbox_id = mailboxes.id) \
             WHERE account_id IN (SELECT id FROM accounts WHERE tenant_id = $1) \
               AND highest_modseq < (SELECT COALESCE(MAX(modseq), 0) FROM messages WHERE mailbox_id = mailboxes.id)",
        ];
        on_tx!(&mut self, tx => {
            for tenant in tenants {
                for sql in fixups {
                    sqlx::query(sql).bind(tenant.0).execute(&mut **tx).await?;
                }
            }
            // The tenants above the imported root now hold its mail too
            // (freeing a negative amount up the chain charges it).
            let (parent, used): (Option<Uuid>, i64) =
                sqlx::query_as("SELECT parent_id, storage_used_bytes FROM tenants WHERE id = $1")
                    .bind(root.0).fetch_one(&mut **tx).await?;
            if let Some(parent) = parent {
                sqlx::query(super::messages::FREE_TENANT_STORAGE).bind(parent).bind(-used).execute(&mut **tx).await?;
            }
            let audit = Audit {
                actor,
                tenant_id: Some(root.0),
                action: "tenant.import",
                object_type: "tenant",
                object_id: root.0.to_string(),
                detail,
            };
            write_audit!(*tx, audit);
        });
        on_tx!(self, tx => tx.commit().await)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use crate::store::{NewAccount, NewDkimKey, NewDomain, NewMessage, NewTenant};
    use crate::testing::fresh_store;
    use crate::{Backend, on_both_backends};

    #[test]
    fn every_table_has_its_key_and_scope_among_its_columns() {
        for table in TABLES.iter() {
            for k in table.key {
                assert!(table.column(k).is_some(), "{}: key {k}", table.name);
            }
            assert!(table.scope.contains("$1"), "{}", table.name);
            for g in table.generated {
                assert!(table.column(g).is_some(), "{}: generated {g}", table.name);
            }
        }
    }

    /// The schema's tables and columns (with PostgreSQL's type names).
    async fn schema(store: &Store) -> Vec<(String, Vec<(String, String)>)> {
        let rows: Vec<(String, String, String)> = match &store.pool {
            Pool::Sqlite(p) => sqlx::query_as(
                "SELECT m.name, c.name, c.type FROM sqlite_master m JOIN pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%' ORDER BY m.name, c.cid")
                .fetch_all(p).await,
            Pool::Postgres(p) => sqlx::query_as(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name NOT LIKE '_sqlx%' ORDER BY table_name, ordinal_position")
                .fetch_all(p).await,
        }
        .unwrap();
        let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for (table, column, ty) in rows {
            match out.last_mut() {
                Some((t, columns)) if *t == table => columns.push((column, ty)),
                _ => out.push((table, vec![(column, ty)])),
            }
        }
        out
    }

    async fn the_table_list_matches_the_schema(backend: Backend) {
        let store = fresh_store(backend).await;
        let schema = schema(&store).await;
        for (name, columns) in &schema {
            if LEFT_TABLES.iter().any(|(t, _)| t == name) {
                continue;
            }
            let table = table(name).unwrap_or_else(|| {
                panic!("table `{name}` is neither exported nor listed as left behind")
            });
            let mut expected: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            expected.extend(table.blob);
            expected.extend(table.left.iter().map(|(c, _)| *c));
            expected.sort();
            let mut actual: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            actual.sort();
            assert_eq!(actual, expected, "columns of `{name}`");
            if backend == Backend::Postgres {
                for (column, ty) in columns {
                    let Some(c) = table.column(column) else {
                        continue;
                    };
                    let fits = match c.kind {
                        Kind::Text => ty == "text",
                        Kind::Uuid => ty == "uuid",
                        Kind::Int => ty == "bigint" || ty == "integer",
                        Kind::Bool => ty == "boolean",
                        Kind::Time => ty == "timestamp with time zone",
                        Kind::Bytes => ty == "bytea",
                    };
                    assert!(
                        fits,
                        "`{name}.{column}` is {ty} in PostgreSQL, listed as {:?}",
                        c.kind
                    );
                }
            }
        }
        for name in LEFT_TABLES
            .iter()
            .map(|(t, _)| *t)
            .chain(TABLES.iter().map(|t| t.name))
        {
            assert!(
                schema.iter().any(|(t, _)| t == name),
                "`{name}` is listed but not in the schema"
            );
        }
    }

    /// Every row of the tree, table by table, read in small pages.
    async fn dump(store: &Store, root: TenantId) -> Vec<(&'static str, Row, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let tenants = store.subtree(root).await.unwrap();
        for table in TABLES.iter() {
            for tenant in &tenants {
                let mut after: Option<Row> = None;
                loop {
                    let page = store
                        .export_page(table, *tenant, after.as_ref(), 2)
                        .await
                        .unwrap();
                    let Some(last) = page.last().cloned() else {
                        break;
                    };
                    for row in page {
                        let blob = match table.blob {
                            Some(_) => Some(store.export_blob(table, &row).await.unwrap()),
                            None => None,
                        };
                        out.push((table.name, row, blob));
                    }
                    after = Some(last);
                }
            }
        }
        out
    }

    async fn a_tenant_tree_moves_row_for_row_to_the_other_backend(backend: Backend) {
        let source = fresh_store(backend).await;
        let target = fresh_store(if backend == Backend::Sqlite {
            Backend::Postgres
        } else {
            Backend::Sqlite
        })
        .await;
        let target_operator = target.ensure_operator().await.unwrap();
        let limits = Limits {
            max_accounts: 10,
            max_domains: 10,
            storage_quota_bytes: 1 << 30,
        };
        let new_tenant = |name: &str, kind, parent| NewTenant {
            name: name.into(),
            kind,
            parent_id: parent,
            limits,
            policy: Policy::default(),
        };
        let reseller = source
            .create_tenant(
                "operator",
                new_tenant("Reseller", TenantKind::Reseller, None),
            )
            .await
            .unwrap();
        let child = source
            .create_tenant(
                "operator",
                new_tenant("Child", TenantKind::Enterprise, Some(reseller.id)),
            )
            .await
            .unwrap();
        let domain = source
            .create_domain(
                "operator",
                NewDomain {
                    tenant_id: child.id,
                    name: DomainName::parse("child.test").unwrap(),
                    verification_token: "token".into(),
                    dkim_keys: vec![NewDkimKey {
                        selector: "s1".into(),
                        algorithm: DkimAlgorithm::Ed25519,
                        public_key: "pk".into(),
                        private_key: "sk".to_owned().into(),
                    }],
                },
            )
            .await
            .unwrap();
        let account = source
            .create_account(
                "operator",
                NewAccount {
                    tenant_id: child.id,
                    domain_id: domain.id,
                    address: EmailAddress::parse("ann@child.test").unwrap(),
                    display_name: "Ann".into(),
                    role: AccountRole::Admin,
                    level: Level::Sealed,
                    password_hash: "hash".into(),
                    fingerprint: "fp".into(),
                    public_key: "public".into(),
                    secret_key: "secret".into(),
                },
            )
            .await
            .unwrap();
        source.put_tenant_key(child.id, b"wrapped").await.unwrap();
        for n in 0..5u8 {
            source
                .deliver(vec![NewMessage {
                    id: MessageId::new(),
                    tenant_id: child.id,
                    account_id: account.id,
                    level: if n % 2 == 0 {
                        Level::Standard
                    } else {
                        Level::Sealed
                    },
                    envelope_from: "x@elsewhere.test".into(),
                    envelope_to: "ann@child.test".into(),
                    subject: (n % 2 == 0).then(|| format!("subject {n}")),
                    sender: None,
                    privacy: crate::privacy::PrivacyIndex::compute(
                        &crate::privacy::Facts::default(),
                    ),
                    authentication: serde_json::json!({"spf": "pass"}),
                    arrived_encrypted: false,
                    content: vec![n; 100 + usize::from(n)],
                    dispersed: None,
                    summary: None,
                    rfc822_size: 100,
                    flags: if n == 1 { vec![Flag::Seen] } else { vec![] },
                    keywords: vec![],
                    received_at: None,
                    verdict: None,
                    mailbox: None,
                }])
                .await
                .unwrap();
        }

        let before = dump(&source, reseller.id).await;
        assert_eq!(before.iter().filter(|(t, ..)| *t == "messages").count(), 5);
        assert_eq!(
            before.iter().filter(|(t, ..)| *t == "tenants").count(),
            2,
            "the child comes with its reseller"
        );
        let mut import = target.begin_import().await.unwrap();
        for (name, row, blob) in &before {
            let mut row = row.clone();
            // The importer hangs the root under its own operator (transfer::tenant does the same).
            if *name == "tenants" && row["id"] == reseller.id.0.to_string() {
                row.insert(
                    "parent_id".into(),
                    Value::String(target_operator.id.0.to_string()),
                );
            }
            import
                .insert(table(name).unwrap(), &row, blob.as_deref())
                .await
                .unwrap();
        }
        let tree = source.subtree(reseller.id).await.unwrap();
        import
            .finish("operator", reseller.id, &tree, serde_json::json!({}))
            .await
            .unwrap();

        let after = dump(&target, reseller.id).await;
        let comparable = |rows: &[(&'static str, Row, Option<Vec<u8>>)]| -> Vec<(&'static str, Row, Option<Vec<u8>>)> {
            rows.iter()
                .filter(|(t, row, _)| !(*t == "audit_log" && row["action"] == "tenant.import"))
                .map(|(t, row, blob)| {
                    let mut row = row.clone();
                    if *t == "audit_log" {
                        row.remove("id");
                    }
                    if *t == "tenants" && row["id"] == reseller.id.0.to_string() {
                        row.remove("parent_id");
                    }
                    (*t, row, blob.clone())
                })
                .collect()
        };
        assert_eq!(comparable(&after), comparable(&before));
        let root = target.tenant(reseller.id).await.unwrap().unwrap();
        assert_eq!(
            root.parent_id,
            Some(target_operator.id),
            "the root hangs under the importing operator"
        );
        assert!(
            after
                .iter()
                .any(|(t, row, _)| *t == "audit_log" && row["action"] == "tenant.import")
        );

        // Twice is a clash, and the failed second import leaves nothing.
        let clashes = Clashes {
            domains: vec!["child.test".into()],
            tenant_ids: vec![child.id.0.to_string()],
            ..Default::default()
        };
        assert_eq!(target.import_clashes(&clashes).await.unwrap().len(), 2);
        let mut again = target.begin_import().await.unwrap();
        let (name, row, blob) = &before[0];
        let err = again
            .insert(table(name).unwrap(), row, blob.as_deref())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict(_)), "{err}");
    }

    async fn an_import_that_is_not_finished_leaves_nothing(backend: Backend) {
        let store = fresh_store(backend).await;
        let operator = store.ensure_operator().await.unwrap();
        let id = uuid::Uuid::now_v7();
        {
            let mut import = store.begin_import().await.unwrap();
            let mut row = Row::new();
            for (k, v) in [
                ("id", Value::String(id.to_string())),
                ("name", "Gone".into()),
                ("kind", "enterprise".into()),
                ("parent_id", Value::String(operator.id.0.to_string())),
                ("status", "active".into()),
                ("max_accounts", 1.into()),
                ("max_domains", 1.into()),
                ("storage_quota_bytes", 1.into()),
                ("min_level", "standard".into()),
                ("allowed_jurisdictions", "[]".into()),
                ("created_at", "2026-01-01T00:00:00Z".into()),
                ("updated_at", "2026-01-01T00:00:00Z".into()),
                ("storage_used_bytes", 0.into()),
            ] {
                row.insert(k.into(), v);
            }
            import
                .insert(table("tenants").unwrap(), &row, None)
                .await
                .unwrap();
            row.insert("unknown".into(), Value::Null);
            let err = import
                .insert(table("tenants").unwrap(), &row, None)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("newer Caliop"), "{err}");
            row.remove("unknown");
            row.insert("max_accounts".into(), "many".into());
            let err = import
                .insert(table("tenants").unwrap(), &row, None)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("tenants.max_accounts"), "{err}");
        }
        assert!(
            store.tenant(TenantId(id)).await.unwrap().is_none(),
            "dropped without finishing: rolled back"
        );
    }

    on_both_backends!(
        the_table_list_matches_the_schema,
        a_tenant_tree_moves_row_for_row_to_the_other_backend,
        an_import_that_is_not_finished_leaves_nothing,
    );
}
