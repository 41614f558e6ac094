//! The manifest of dispersed objects: for every object, its redundancy and,
//! for every shard, the site that holds it, its BLAKE3 hash and what the
//! last look at it found. The bytes themselves are never here.
//!
//! Shards move (repair, evacuation) by compare-and-set on their current
//! site, so two maintenance passes cannot lose track of a shard.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Pool, Store};
use crate::model::{ShardState, TenantId};
use crate::{Error, Result};

/// A dispersed object as written, to record with its message.
#[derive(Clone, Debug)]
pub struct NewObject {
    pub k: u8,
    pub n: u8,
    /// Bytes of the object (the sealed message).
    pub size: i64,
    pub shards: Vec<NewShard>,
}

#[derive(Clone, Debug)]
pub struct NewShard {
    pub index: u8,
    /// `None`: no site took it at write time; it waits for repair.
    pub site: Option<String>,
    pub hash: [u8; 32],
    pub size: i64,
}

/// An object and its shards, as the manifest knows them.
#[derive(Clone, Debug)]
pub struct StoredObject {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub size: i64,
    pub k: u8,
    pub n: u8,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub shards: Vec<ShardRecord>,
}

#[derive(Clone, Debug)]
pub struct ShardRecord {
    pub index: u8,
    pub site: Option<String>,
    pub hash: [u8; 32],
    pub size: i64,
    pub state: ShardState,
}

impl StoredObject {
    /// Shards believed good.
    pub fn good(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| s.state == ShardState::Ok && s.site.is_some())
            .count()
    }
}

/// Shards and bytes a site holds.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct SiteUsage {
    pub site: String,
    /// Shards believed good.
    pub shards: i64,
    pub bytes: i64,
    /// Shards the last look found missing or corrupt.
    pub unhealthy: i64,
}

/// How many live objects have `good` good shards (of `n`, `k` needed).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RedundancyCount {
    pub k: i32,
    pub n: i32,
    pub good: i32,
    pub objects: i64,
}

#[derive(FromRow)]
struct Row {
    id: Uuid,
    tenant_id: Uuid,
    size: i64,
    k: i32,
    n: i32,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    idx: i32,
    site: Option<String>,
    hash: Vec<u8>,
    shard_size: i64,
    state: String,
}

const SELECT_OBJECTS: &str = "SELECT o.id, o.tenant_id, o.size, o.k, o.n, o.created_at, o.deleted_at, \
     s.idx, s.site, s.hash, s.size AS shard_size, s.state \
     FROM stored_objects o JOIN shards s ON s.object_id = o.id WHERE o.id IN (";
const ORDER_OBJECTS: &str = ") ORDER BY o.id, s.idx";

fn group(rows: Vec<Row>) -> Result<Vec<StoredObject>> {
    let mut objects: Vec<StoredObject> = Vec::new();
    for r in rows {
        if objects.last().is_none_or(|o| o.id != r.id) {
            objects.push(StoredObject {
                id: r.id,
                tenant_id: TenantId(r.tenant_id),
                size: r.size,
                k: r.k as u8,
                n: r.n as u8,
                created_at: r.created_at,
                deleted_at: r.deleted_at,
                shards: Vec::new(),
            });
        }
        let hash: [u8; 32] = r
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| Error::Internal("a stored shard hash is not 32 bytes".into()))?;
        objects
            .last_mut()
            .expect("pushed")
            .shards
            .push(ShardRecord {
                index: r.idx as u8,
                site: r.site,
                hash,
                size: r.shard_size,
                state: r.state.parse()?,
            });
    }
    Ok(objects)
}

/// Records an object and its shards inside the caller's transaction.
macro_rules! insert_object {
    ($tx:expr, $id:expr, $tenant:expr, $object:expr, $now:expr) => {{
        let o: &$crate::store::objects::NewObject = $object;
        sqlx::query("INSERT INTO stored_objects (id, tenant_id, size, k, n, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind($id)
            .bind($tenant)
            .bind(o.size)
            .bind(i32::from(o.k))
            .bind(i32::from(o.n))
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        for s in &o.shards {
            sqlx::query("INSERT INTO shards (object_id, idx, site, hash, size, state, checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind($id)
                .bind(i32::from(s.index))
                .bind(&s.site)
                .bind(s.hash.as_slice())
                .bind(s.size)
                .bind(if s.site.is_some() { "ok" } else { "missing" })
                .bind($now)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

impl Store {
    async fn objects_where(
        &self,
        ids_sql: &str,
        bind: impl FnOnce(ObjectQuery) -> ObjectQuery,
    ) -> Result<Vec<StoredObject>> {
        let sql = format!("{SELECT_OBJECTS}{ids_sql}{ORDER_OBJECTS}");
        let query = bind(ObjectQuery::default());
        let rows: Vec<Row> = on_pool!(&self.pool, p => {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for b in &query.binds {
                q = match b {
                    Bind::Uuid(u) => q.bind(*u),
                    Bind::OptUuid(u) => q.bind(*u),
                    Bind::Text(t) => q.bind(t.clone()),
                    Bind::Int(i) => q.bind(*i),
                };
            }
            q.fetch_all(p).await
        })?;
        group(rows)
    }

    /// One object and its shards.
    pub async fn stored_object(&self, id: Uuid) -> Result<Option<StoredObject>> {
        Ok(self.objects_where("$1", |q| q.uuid(id)).await?.pop())
    }

    /// Live objects after `cursor` in id order (scrubbing).
    pub async fn objects_after(
        &self,
        cursor: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<StoredObject>> {
        self.objects_where(
            "SELECT id FROM stored_objects WHERE deleted_at IS NULL AND ($1 IS NULL OR id > $1) ORDER BY id LIMIT $2",
            |q| q.opt_uuid(cursor).int(limit),
        )
        .await
    }

    /// Live objects with a shard not known good, the fewest good shards
    /// first (most endangered), then oldest.
    pub async fn objects_to_repair(&self, limit: i64) -> Result<Vec<StoredObject>> {
        let mut objects = self
            .objects_where(
                "SELECT object_id FROM shards WHERE state <> 'ok' OR site IS NULL GROUP BY object_id \
                 ORDER BY SUM(CASE WHEN state = 'ok' AND site IS NOT NULL THEN 1 ELSE 0 END), object_id LIMIT $1",
                |q| q.int(limit),
            )
            .await?;
        objects.retain(|o| o.deleted_at.is_none());
        objects.sort_by_key(|o| (o.good(), o.id));
        Ok(objects)
    }

    /// Live objects with a shard on `site`.
    pub async fn objects_on_site(&self, site: &str, limit: i64) -> Result<Vec<StoredObject>> {
        self.objects_where(
            "SELECT s.object_id FROM shards s JOIN stored_objects o ON o.id = s.object_id \
             WHERE s.site = $1 AND o.deleted_at IS NULL ORDER BY s.object_id LIMIT $2",
            |q| q.text(site).int(limit),
        )
        .await
    }

    /// Objects whose message is gone and whose shards wait to be purged.
    pub async fn deleted_objects(&self, limit: i64) -> Result<Vec<StoredObject>> {
        self.objects_where(
            "SELECT id FROM stored_objects WHERE deleted_at IS NOT NULL ORDER BY deleted_at LIMIT $1",
            |q| q.int(limit),
        )
        .await
    }

    /// Counts what is left to do, for progress bars.
    pub async fn count_objects(&self, what: ObjectCount<'_>) -> Result<i64> {
        let n: (i64,) = match what {
            ObjectCount::Live { after } => {
                let sql = "SELECT COUNT(*) FROM stored_objects WHERE deleted_at IS NULL AND ($1 IS NULL OR id > $1)";
                on_pool!(&self.pool, p => sqlx::query_as(sql).bind(after).fetch_one(p).await)?
            }
            ObjectCount::ToRepair => {
                let sql = "SELECT COUNT(DISTINCT s.object_id) FROM shards s JOIN stored_objects o ON o.id = s.object_id \
                     WHERE (s.state <> 'ok' OR s.site IS NULL) AND o.deleted_at IS NULL";
                on_pool!(&self.pool, p => sqlx::query_as(sql).fetch_one(p).await)?
            }
            ObjectCount::OnSite(site) => {
                let sql = "SELECT COUNT(DISTINCT s.object_id) FROM shards s JOIN stored_objects o ON o.id = s.object_id \
                     WHERE s.site = $1 AND o.deleted_at IS NULL";
                on_pool!(&self.pool, p => sqlx::query_as(sql).bind(site).fetch_one(p).await)?
            }
        };
        Ok(n.0)
    }

    /// Records what a look at a shard found (reads, scrubs).
    pub async fn mark_shard(
        &self,
        object: Uuid,
        index: u8,
        site: &str,
        state: ShardState,
    ) -> Result<()> {
        let sql = "UPDATE shards SET state = $4, checked_at = $5 WHERE object_id = $1 AND idx = $2 AND site = $3";
        on_pool!(&self.pool, p => sqlx::query(sql)
            .bind(object).bind(i32::from(index)).bind(site).bind(state.as_str()).bind(Utc::now())
            .execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Points shard `index` at `to`, if it is still where the caller saw it
    /// (`from`, `None` for nowhere); false when another pass moved it first.
    pub async fn move_shard(
        &self,
        object: Uuid,
        index: u8,
        from: Option<&str>,
        to: &str,
        hash: &[u8; 32],
    ) -> Result<bool> {
        let sql = "UPDATE shards SET site = $4, hash = $5, state = 'ok', checked_at = $6 \
             WHERE object_id = $1 AND idx = $2 AND (site = $3 OR ($3 IS NULL AND site IS NULL))";
        let moved = on_pool!(&self.pool, p => sqlx::query(sql)
            .bind(object).bind(i32::from(index)).bind(from).bind(to).bind(hash.as_slice()).bind(Utc::now())
            .execute(p).await.map(|done| done.rows_affected()))?;
        Ok(moved == 1)
    }

    /// Forgets a purged shard of a deleted object, and the object with its last shard.
    pub async fn forget_shard(&self, object: Uuid, index: u8) -> Result<()> {
        on_pool!(&self.pool, p => {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM shards WHERE object_id = $1 AND idx = $2")
                .bind(object).bind(i32::from(index)).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM stored_objects WHERE id = $1 AND deleted_at IS NOT NULL \
                 AND NOT EXISTS (SELECT 1 FROM shards WHERE object_id = $1)")
                .bind(object).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Shards and bytes per site, and live objects per count of good shards.
    pub async fn dispersal_status(&self) -> Result<(Vec<SiteUsage>, Vec<RedundancyCount>)> {
        let per_site = "SELECT s.site, \
               CAST(SUM(CASE WHEN s.state = 'ok' THEN 1 ELSE 0 END) AS BIGINT), \
               CAST(SUM(CASE WHEN s.state = 'ok' THEN s.size ELSE 0 END) AS BIGINT), \
               CAST(SUM(CASE WHEN s.state <> 'ok' THEN 1 ELSE 0 END) AS BIGINT) \
             FROM shards s JOIN stored_objects o ON o.id = s.object_id \
             WHERE o.deleted_at IS NULL AND s.site IS NOT NULL GROUP BY s.site ORDER BY s.site";
        let sites: Vec<(String, i64, i64, i64)> =
            on_pool!(&self.pool, p => sqlx::query_as(per_site).fetch_all(p).await)?;
        let levels = "SELECT k, n, good, COUNT(*) FROM ( \
               SELECT o.k, o.n, CAST(SUM(CASE WHEN s.state = 'ok' AND s.site IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS good \
               FROM stored_objects o JOIN shards s ON s.object_id = o.id WHERE o.deleted_at IS NULL \
               GROUP BY o.id, o.k, o.n) per_object \
             GROUP BY k, n, good ORDER BY k, n, good";
        let rows: Vec<(i32, i32, i64, i64)> =
            on_pool!(&self.pool, p => sqlx::query_as(levels).fetch_all(p).await)?;
        Ok((
            sites
                .into_iter()
                .map(|(site, shards, bytes, unhealthy)| SiteUsage {
                    site,
                    shards,
                    bytes,
                    unhealthy,
                })
                .collect(),
            rows.into_iter()
                .map(|(k, n, good, objects)| RedundancyCount {
                    k,
                    n,
                    good: good as i32,
                    objects,
                })
                .collect(),
        ))
    }

    /// Where a resumable pass stopped, if it did not finish.
    pub async fn maintenance_cursor(&self, name: &str) -> Result<Option<Uuid>> {
        let sql = "SELECT cursor_id FROM maintenance WHERE name = $1";
        let row: Option<(Option<Uuid>,)> =
            on_pool!(&self.pool, p => sqlx::query_as(sql).bind(name).fetch_optional(p).await)?;
        Ok(row.and_then(|(c,)| c))
    }

    /// Saves where a pass is; `None` when it finished.
    pub async fn set_maintenance_cursor(&self, name: &str, cursor: Option<Uuid>) -> Result<()> {
        let sql = "INSERT INTO maintenance (name, cursor_id, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET cursor_id = excluded.cursor_id, updated_at = excluded.updated_at";
        on_pool!(&self.pool, p => sqlx::query(sql).bind(name).bind(cursor).bind(Utc::now()).execute(p).await.map(|_| ()))?;
        Ok(())
    }
}

/// What [`Store::count_objects`] counts.
pub enum ObjectCount<'a> {
    Live { after: Option<Uuid> },
    ToRepair,
    OnSite(&'a str),
}

enum Bind {
    Uuid(Uuid),
    OptUuid(Option<Uuid>),
    Text(String),
    Int(i64),
}

#[derive(Default)]
struct ObjectQuery {
    binds: Vec<Bind>,
}

impl ObjectQuery {
    fn uuid(mut self, u: Uuid) -> Self {
        self.binds.push(Bind::Uuid(u));
        self
    }
    fn opt_uuid(mut self, u: Option<Uuid>) -> Self {
        self.binds.push(Bind::OptUuid(u));
        self
    }
    fn text(mut self, t: &str) -> Self {
        self.binds.push(Bind::Text(t.to_owned()));
        self
    }
    fn int(mut self, i: i64) -> Self {
        self.binds.push(Bind::Int(i));
        self
    }
}
