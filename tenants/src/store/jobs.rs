//! The rows of the job queue. Claiming is one statement on each backend:
//! PostgreSQL picks the row with `FOR UPDATE SKIP LOCKED`, so workers in
//! several processes never take the same job at once; SQLite has one
//! writer, and `UPDATE … RETURNING` claims atomically. A running job whose
//! lease has expired (its worker died) is claimable again.
//!
//! A payload holds references (ids, addresses, non-secret values), never a
//! token, a password or message plaintext; a finished job (done or dead)
//! keeps none.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Pool, Store};
use crate::{Error, Result};

/// A claimed job, to run.
#[derive(Clone, Debug, FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub kind: String,
    pub payload: String,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// What the queue holds, per kind and state.
#[derive(Clone, Debug, Serialize, ToSchema, FromRow)]
pub struct QueueDepth {
    pub kind: String,
    /// `queued`, `running`, `done` or `dead`.
    pub state: String,
    pub jobs: i64,
}

/// A job that used up its attempts.
#[derive(Clone, Debug, Serialize, ToSchema, FromRow)]
pub struct DeadJob {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub kind: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A job to add.
pub struct NewJob<'a> {
    pub kind: &'a str,
    pub payload: String,
    /// While a job with this key and kind is queued or running, another is not added.
    pub dedup_key: Option<String>,
    pub run_at: DateTime<Utc>,
    pub max_attempts: i32,
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Adds a job; with a deduplication key already live, returns that job's id instead.
    pub async fn enqueue(&self, job: NewJob<'_>) -> Result<(Uuid, bool)> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        let insert = "INSERT INTO jobs (id, kind, payload, dedup_key, state, attempts, max_attempts, run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7)";
        let inserted = on_pool!(&self.pool, p => sqlx::query(insert)
            .bind(id).bind(job.kind).bind(&job.payload).bind(&job.dedup_key).bind(job.max_attempts).bind(job.run_at).bind(now)
            .execute(p).await.map(|_| ()));
        match inserted {
            Ok(()) => {
                self.job_queued();
                Ok((id, true))
            }
            Err(e) if unique_violation(&e) => {
                let live = "SELECT id FROM jobs WHERE kind = $1 AND dedup_key = $2 AND state IN ('queued', 'running')";
                let found: Option<(Uuid,)> = on_pool!(&self.pool, p =>
                    sqlx::query_as(live).bind(job.kind).bind(&job.dedup_key).fetch_optional(p).await)?;
                found
                    .map(|(id,)| (id, false))
                    .ok_or_else(|| Error::Internal("deduplicated job vanished".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the next due job of one of `kinds` for `worker`, leased until `lease_until`.
    pub async fn claim_job(
        &self,
        kinds: &[&str],
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>> {
        let now = Utc::now();
        let kinds = serde_json::to_string(kinds).map_err(|e| Error::Internal(e.to_string()))?;
        let row: Option<JobRow> = match &self.pool {
            Pool::Postgres(p) => {
                let sql = "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, leased_by = $2, updated_at = $3 \
                     WHERE id = (SELECT id FROM jobs \
                        WHERE kind IN (SELECT json_array_elements_text($4::json)) \
                          AND ((state = 'queued' AND run_at <= $3) OR (state = 'running' AND lease_until < $3)) \
                        ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     RETURNING id, kind, payload, attempts, max_attempts";
                sqlx::query_as(sql)
                    .bind(lease_until)
                    .bind(worker)
                    .bind(now)
                    .bind(&kinds)
                    .fetch_optional(p)
                    .await?
            }
            Pool::Sqlite(p) => {
                let sql = "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1, leased_by = $2, updated_at = $3 \
                     WHERE id = (SELECT id FROM jobs \
                        WHERE kind IN (SELECT value FROM json_each($4)) \
                          AND ((state = 'queued' AND run_at <= $3) OR (state = 'running' AND lease_until < $3)) \
                        ORDER BY run_at LIMIT 1) \
                     RETURNING id, kind, payload, attempts, max_attempts";
                sqlx::query_as(sql)
                    .bind(lease_until)
                    .bind(worker)
                    .bind(now)
                    .bind(&kinds)
                    .fetch_optional(p)
                    .await?
            }
        };
        Ok(row)
    }

    /// Marks a job done, if `worker` still holds it. Its payload is
    /// forgotten: a finished job keeps its kind, times and error, nothing
    /// it was given.
    pub async fn complete_job(&self, id: Uuid, worker: &str) -> Result<bool> {
        let sql = "UPDATE jobs SET state = 'done', payload = '{}', lease_until = NULL, updated_at = $3 \
             WHERE id = $1 AND leased_by = $2 AND state = 'running'";
        let n = on_pool!(&self.pool, p => sqlx::query(sql).bind(id).bind(worker).bind(Utc::now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Records a failure: queued again at `retry_at`, or dead when `None`
    /// (and then, like a job done, without its payload).
    pub async fn fail_job(
        &self,
        id: Uuid,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        let sql = "UPDATE jobs SET state = CASE WHEN $4 IS NULL THEN 'dead' ELSE 'queued' END, \
               payload = CASE WHEN $4 IS NULL THEN '{}' ELSE payload END, \
               run_at = COALESCE($4, run_at), lease_until = NULL, last_error = $3, updated_at = $5 \
             WHERE id = $1 AND leased_by = $2 AND state = 'running'";
        let n = on_pool!(&self.pool, p => sqlx::query(sql)
            .bind(id).bind(worker).bind(error).bind(retry_at).bind(Utc::now())
            .execute(p).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Jobs per kind and state.
    /// Jobs of `kind` queued or running.
    pub async fn live_jobs(&self, kind: &str) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM jobs WHERE kind = $1 AND state IN ('queued', 'running')";
        let n: (i64,) =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(kind).fetch_one(p).await)?;
        Ok(n.0)
    }

    pub async fn queue_depth(&self) -> Result<Vec<QueueDepth>> {
        let sql = "SELECT kind, state, COUNT(*) AS jobs FROM jobs GROUP BY kind, state ORDER BY kind, state";
        let rows: Vec<QueueDepth> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows)
    }

    /// The most recent dead letters.
    pub async fn dead_jobs(&self, limit: i64) -> Result<Vec<DeadJob>> {
        let sql = "SELECT id, kind, attempts, last_error, updated_at FROM jobs WHERE state = 'dead' \
             ORDER BY updated_at DESC LIMIT $1";
        let rows: Vec<DeadJob> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(limit).fetch_all(p).await)?;
        Ok(rows)
    }

    /// Every job's kind, state, payload and last error, as the table holds
    /// them (tests and diagnostics: what a reader of the database sees).
    pub async fn job_rows(&self) -> Result<Vec<(String, String, String, Option<String>)>> {
        let sql = "SELECT kind, state, payload, last_error FROM jobs ORDER BY created_at";
        let rows = on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_all(p).await)?;
        Ok(rows)
    }

    /// The state of one job (tests and diagnostics).
    pub async fn job_state(&self, id: Uuid) -> Result<Option<(String, i32, Option<String>)>> {
        let sql = "SELECT state, attempts, last_error FROM jobs WHERE id = $1";
        let row: Option<(String, i32, Option<String>)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(id).fetch_optional(p).await)?;
        Ok(row)
    }
}
