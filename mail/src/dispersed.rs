//! Dispersed storage of messages: the bytes of a message at `dispersed` or
//! `end-to-end` (already sealed to the recipient's key) are cut into k-of-n
//! shards on the storage sites ([`vault::sites`]), and the database keeps
//! the manifest. Also the maintenance passes on the shards: scrub (re-hash
//! every shard), repair (rebuild missing or corrupt shards from `k` good
//! ones, the most endangered objects first), evacuation (move every shard
//! off a site) and purge (delete the shards of deleted messages). None of
//! them ever decrypts anything: they work on shards with the Reed–Solomon
//! code alone.
//!
//! Logs carry object ids, shard indexes and site names, never bytes.

use std::collections::HashMap;
use std::sync::Arc;

use tenants::store::{
    NewJob, NewObject, NewShard, ObjectCount, RedundancyCount, SiteUsage, StoredObject,
};
use tenants::{Policy, Redundancy, ShardState, Store, TenantId};
use uuid::Uuid;
use vault::VaultError;
use vault::dispersal::{self, Params};
use vault::sites::{Location, ShardError, Site, Sites};

/// The job that repairs every object with a missing or corrupt shard.
pub const REPAIR_JOB: &str = "sites.repair";
/// The job that scrubs every shard, then schedules itself again.
pub const SCRUB_JOB: &str = "sites.scrub";
/// The job that moves every shard off a site.
pub const EVACUATE_JOB: &str = "sites.evacuate";
/// Objects handled per database round trip.
const BATCH: i64 = 64;

/// The operator's choices.
#[derive(Clone, Copy, Debug)]
pub struct DispersalConfig {
    /// Redundancy for tenants that did not choose their own.
    pub default: Params,
    /// Shards that must be stored before a write succeeds; raised to `k + 1`.
    pub write_quorum: usize,
    /// Bounds on a tenant's own choice.
    pub min_k: u8,
    pub max_n: u8,
}

/// Reports the progress of a long pass (a progress bar, or the log).
pub trait Progress: Send + Sync {
    fn start(&self, what: &str, total: u64);
    fn advance(&self, done: u64);
    fn finish(&self);
}

/// Progress that goes nowhere (jobs log their summary instead).
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// What a maintenance pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub objects: u64,
    pub shards_checked: u64,
    pub missing: u64,
    pub corrupt: u64,
    /// Shards whose site did not answer.
    pub unreachable: u64,
    pub rebuilt: u64,
    pub moved: u64,
    pub purged: u64,
    /// Objects left as they were, with why.
    pub skipped: Vec<(Uuid, String)>,
}

/// One site's health and load.
#[derive(Clone, Debug)]
pub struct SiteStatus {
    pub name: String,
    pub jurisdiction: String,
    pub backend: &'static str,
    pub location: String,
    pub up: bool,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub usage: SiteUsage,
}

/// Everything `caliop sites status` and `GET /v1/sites` show.
#[derive(Clone, Debug)]
pub struct DispersalStatus {
    pub default: Params,
    pub write_quorum: usize,
    pub sites: Vec<SiteStatus>,
    pub redundancy: Vec<RedundancyCount>,
}

pub struct Dispersed {
    store: Store,
    sites: Sites,
    config: DispersalConfig,
}

impl std::fmt::Debug for Dispersed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispersed")
            .field("sites", &self.sites)
            .field("default", &self.config.default)
            .finish()
    }
}

fn allowed(policy: &Policy) -> Vec<String> {
    policy
        .allowed_jurisdictions
        .iter()
        .map(|j| j.as_str().to_owned())
        .collect()
}

fn internal(e: tenants::Error) -> VaultError {
    VaultError::Site(format!("manifest: {e}"))
}

fn params_of(object: &StoredObject) -> Result<Params, VaultError> {
    Params::new(object.k, object.n)
}

fn locations(object: &StoredObject, only_ok: bool) -> Vec<Location> {
    object
        .shards
        .iter()
        .filter(|s| !only_ok || s.state == ShardState::Ok)
        .filter_map(|s| {
            s.site.clone().map(|site| Location {
                index: s.index,
                site,
                hash: s.hash,
            })
        })
        .collect()
}

impl Dispersed {
    pub fn new(
        store: Store,
        sites: Sites,
        config: DispersalConfig,
    ) -> Result<Dispersed, VaultError> {
        let quorum = config.write_quorum.max(usize::from(config.default.k()) + 1);
        if quorum > usize::from(config.default.n()) {
            return Err(VaultError::Site(format!(
                "a write quorum of {quorum} cannot be met with {} shards",
                config.default
            )));
        }
        Ok(Dispersed {
            store,
            sites,
            config: DispersalConfig {
                write_quorum: quorum,
                ..config
            },
        })
    }

    pub fn sites(&self) -> &Sites {
        &self.sites
    }

    pub fn config(&self) -> DispersalConfig {
        self.config
    }

    /// Whether a tenant may choose `redundancy`: within the operator's
    /// bounds, and placeable on the sites there are.
    pub fn check_redundancy(&self, redundancy: Redundancy) -> Result<Params, String> {
        let params = Params::new(redundancy.k, redundancy.n).map_err(|e| e.to_string())?;
        if redundancy.k < self.config.min_k {
            return Err(format!(
                "redundancy.k = {}: this instance needs at least {}",
                redundancy.k, self.config.min_k
            ));
        }
        if redundancy.n > self.config.max_n {
            return Err(format!(
                "redundancy.n = {}: this instance allows at most {}",
                redundancy.n, self.config.max_n
            ));
        }
        if usize::from(redundancy.n) > self.sites.all().len() {
            return Err(format!(
                "redundancy {params} needs {} sites; this instance has {}",
                redundancy.n,
                self.sites.all().len()
            ));
        }
        Ok(params)
    }

    /// The redundancy for a tenant: its own if it still fits the bounds.
    pub fn params_for(&self, policy: &Policy) -> Params {
        policy
            .redundancy
            .and_then(|r| self.check_redundancy(r).ok())
            .unwrap_or(self.config.default)
    }

    fn quorum(&self, params: Params) -> usize {
        // The configured quorum counts for the default; others keep its margin over k.
        let margin = self.config.write_quorum - usize::from(self.config.default.k());
        (usize::from(params.k()) + margin).min(usize::from(params.n()))
    }

    /// Disperses `bytes` as object `id` under the tenant's policy. Refused
    /// (never stored with less) when the policy cannot be met.
    pub async fn write(
        &self,
        tenant: TenantId,
        id: Uuid,
        bytes: &[u8],
    ) -> Result<NewObject, VaultError> {
        let policy = self
            .store
            .tenant(tenant)
            .await
            .map_err(internal)?
            .map(|t| t.policy)
            .unwrap_or_default();
        self.write_for(&policy, id, bytes).await
    }

    /// Disperses `bytes` as object `id` under `policy` (a tenant being
    /// imported, not yet in the store).
    pub async fn write_for(
        &self,
        policy: &Policy,
        id: Uuid,
        bytes: &[u8],
    ) -> Result<NewObject, VaultError> {
        let policy = policy.clone();
        let params = self.params_for(&policy);
        let placed = self
            .sites
            .write(id, params, self.quorum(params), &allowed(&policy), bytes)
            .await?;
        let missing = placed.iter().filter(|p| p.site.is_none()).count();
        if missing > 0 {
            tracing::warn!(object = %id, missing, "object stored with shards missing; repair queued");
            self.queue_repair().await;
        }
        Ok(NewObject {
            k: params.k(),
            n: params.n(),
            size: bytes.len() as i64,
            shards: placed
                .into_iter()
                .map(|p| NewShard {
                    index: p.index,
                    site: p.site,
                    hash: p.hash,
                    size: p.size as i64,
                })
                .collect(),
        })
    }

    /// Deletes the shards of an object whose message was never stored.
    pub async fn discard(&self, id: Uuid, object: &NewObject) {
        let placed: Vec<vault::sites::Placed> = object
            .shards
            .iter()
            .map(|s| vault::sites::Placed {
                index: s.index,
                site: s.site.clone(),
                hash: s.hash,
                size: s.size as u64,
            })
            .collect();
        let outcomes = self.sites.delete(id, &placed).await;
        let left = outcomes.iter().filter(|(_, ok)| !ok).count();
        if left > 0 {
            // Unreferenced shards are unreadable without the others; log them for the operator.
            tracing::warn!(object = %id, left, "shards of a message that was not stored could not be deleted");
        }
    }

    /// Reads object `id` back, from any `k` good shards.
    pub async fn read(&self, id: Uuid) -> Result<Vec<u8>, VaultError> {
        let object = self
            .store
            .stored_object(id)
            .await
            .map_err(internal)?
            .ok_or_else(|| VaultError::Site(format!("object {id} is not in the manifest")))?;
        let params = params_of(&object)?;
        let outcome = match self
            .sites
            .read_object(id, params, &locations(&object, true))
            .await
        {
            Err(VaultError::Unavailable(_)) => {
                // The shards believed bad may be back (a site that was down).
                self.sites
                    .read_object(id, params, &locations(&object, false))
                    .await
            }
            other => other,
        };
        let (bytes, report) = outcome?;
        let mut marked = false;
        for (index, site, error) in &report.bad {
            let state = match error {
                ShardError::Missing => ShardState::Missing,
                ShardError::Corrupt => ShardState::Corrupt,
                ShardError::Unreachable(_) => continue,
            };
            self.store
                .mark_shard(id, *index, site, state)
                .await
                .map_err(internal)?;
            marked = true;
        }
        if marked {
            self.queue_repair().await;
        }
        Ok(bytes)
    }

    /// Queues one repair pass (one at a time).
    pub async fn queue_repair(&self) {
        let job = NewJob {
            kind: REPAIR_JOB,
            payload: "{}".into(),
            dedup_key: Some("all".into()),
            run_at: chrono::Utc::now(),
            max_attempts: 20,
        };
        if let Err(e) = self.store.enqueue(job).await {
            tracing::error!(error = %e, "could not queue a shard repair");
        }
    }

    /// Health of every site next to what it holds.
    pub async fn status(&self) -> Result<DispersalStatus, VaultError> {
        let (usage, redundancy) = self.store.dispersal_status().await.map_err(internal)?;
        let health = self.sites.check().await;
        let sites = health
            .into_iter()
            .map(|(site, h)| SiteStatus {
                name: site.name.clone(),
                jurisdiction: site.jurisdiction.clone(),
                backend: site.backend,
                location: site.location.clone(),
                up: h.up,
                latency_ms: h.latency.as_millis() as u64,
                error: h.error,
                usage: usage
                    .iter()
                    .find(|u| u.site == site.name)
                    .cloned()
                    .unwrap_or(SiteUsage {
                        site: site.name.clone(),
                        ..Default::default()
                    }),
            })
            .collect();
        Ok(DispersalStatus {
            default: self.config.default,
            write_quorum: self.config.write_quorum,
            sites,
            redundancy,
        })
    }

    async fn policy(
        &self,
        cache: &mut HashMap<TenantId, Policy>,
        tenant: TenantId,
    ) -> Result<Policy, VaultError> {
        if let Some(p) = cache.get(&tenant) {
            return Ok(p.clone());
        }
        let policy = self
            .store
            .tenant(tenant)
            .await
            .map_err(internal)?
            .map(|t| t.policy)
            .unwrap_or_default();
        cache.insert(tenant, policy.clone());
        Ok(policy)
    }

    /// Re-hashes every shard of every live object; marks what is missing or
    /// corrupt and queues a repair. Resumes where an interrupted scrub
    /// stopped unless `restart`.
    pub async fn scrub(
        &self,
        progress: &dyn Progress,
        restart: bool,
    ) -> Result<PassReport, VaultError> {
        const CURSOR: &str = "scrub";
        let mut cursor = if restart {
            None
        } else {
            self.store
                .maintenance_cursor(CURSOR)
                .await
                .map_err(internal)?
        };
        let total = self
            .store
            .count_objects(ObjectCount::Live { after: cursor })
            .await
            .map_err(internal)?;
        progress.start("scrub", total as u64);
        let mut report = PassReport::default();
        let timeout = self.sites.options().request_timeout;
        loop {
            let batch = self
                .store
                .objects_after(cursor, BATCH)
                .await
                .map_err(internal)?;
            let Some(last) = batch.last() else { break };
            cursor = Some(last.id);
            for object in &batch {
                for shard in &object.shards {
                    let Some(name) = shard.site.as_deref() else {
                        continue;
                    };
                    report.shards_checked += 1;
                    let Some(site) = self.sites.get(name) else {
                        // A site taken out of the configuration holds nothing we can reach.
                        if shard.state == ShardState::Ok {
                            tracing::warn!(site = %name, object = %object.id, shard = shard.index, "scrub: shard on a site no longer configured");
                            self.store
                                .mark_shard(object.id, shard.index, name, ShardState::Missing)
                                .await
                                .map_err(internal)?;
                        }
                        report.missing += 1;
                        continue;
                    };
                    let found = match site.get_shard(object.id, shard.index, timeout).await {
                        Ok(bytes) if dispersal::hash(&bytes) == shard.hash => ShardState::Ok,
                        Ok(_) => ShardState::Corrupt,
                        Err(ShardError::Missing) => ShardState::Missing,
                        Err(e) => {
                            tracing::warn!(site = %site.name, object = %object.id, shard = shard.index, error = %e, "scrub: site did not answer");
                            report.unreachable += 1;
                            continue;
                        }
                    };
                    match found {
                        ShardState::Missing => report.missing += 1,
                        ShardState::Corrupt => report.corrupt += 1,
                        ShardState::Ok => {}
                    }
                    if found != ShardState::Ok || shard.state != ShardState::Ok {
                        tracing::info!(site = %site.name, object = %object.id, shard = shard.index, state = found.as_str(), "scrub");
                    }
                    self.store
                        .mark_shard(object.id, shard.index, &site.name, found)
                        .await
                        .map_err(internal)?;
                }
                report.objects += 1;
                progress.advance(1);
            }
            self.store
                .set_maintenance_cursor(CURSOR, cursor)
                .await
                .map_err(internal)?;
        }
        self.store
            .set_maintenance_cursor(CURSOR, None)
            .await
            .map_err(internal)?;
        progress.finish();
        if report.missing + report.corrupt > 0 {
            self.queue_repair().await;
        }
        Ok(report)
    }

    /// Rebuilds every missing or corrupt shard from `k` good ones, the
    /// objects with the fewest good shards first; purges the shards of
    /// deleted messages on the way.
    pub async fn repair(&self, progress: &dyn Progress) -> Result<PassReport, VaultError> {
        let mut report = PassReport::default();
        self.purge(&mut report).await?;
        let total = self
            .store
            .count_objects(ObjectCount::ToRepair)
            .await
            .map_err(internal)?;
        progress.start("repair", total as u64);
        let mut policies = HashMap::new();
        let mut skipped: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
        loop {
            let batch = self
                .store
                .objects_to_repair(BATCH + skipped.len() as i64)
                .await
                .map_err(internal)?;
            let batch: Vec<StoredObject> = batch
                .into_iter()
                .filter(|o| !skipped.contains(&o.id))
                .collect();
            if batch.is_empty() {
                break;
            }
            for object in &batch {
                let policy = self.policy(&mut policies, object.tenant_id).await?;
                match self.repair_object(object, &policy, &mut report).await {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(object = %object.id, error = %e, "repair: object left for later");
                        report.skipped.push((object.id, e.to_string()));
                        skipped.insert(object.id);
                    }
                }
                report.objects += 1;
                progress.advance(1);
            }
        }
        progress.finish();
        Ok(report)
    }

    async fn repair_object(
        &self,
        object: &StoredObject,
        policy: &Policy,
        report: &mut PassReport,
    ) -> Result<(), VaultError> {
        let params = params_of(object)?;
        let timeout = self.sites.options().request_timeout;
        // A shard marked bad may be fine again (its site was down): look first.
        let mut bad = Vec::new();
        for shard in object
            .shards
            .iter()
            .filter(|s| s.state != ShardState::Ok || s.site.is_none())
        {
            if let Some(site) = shard.site.as_deref().and_then(|s| self.sites.get(s))
                && let Ok(bytes) = site.get_shard(object.id, shard.index, timeout).await
                && dispersal::hash(&bytes) == shard.hash
            {
                self.store
                    .mark_shard(object.id, shard.index, &site.name, ShardState::Ok)
                    .await
                    .map_err(internal)?;
                continue;
            }
            bad.push(shard);
        }
        if bad.is_empty() {
            return Ok(());
        }
        let (good, _) = self
            .sites
            .read(object.id, params, &locations(object, true))
            .await?;
        let refs: Vec<&[u8]> = good.iter().map(|(b, _)| b.as_ref()).collect();
        for shard in bad {
            let rebuilt = dispersal::rebuild(&refs, shard.index)?;
            if dispersal::hash(&rebuilt) != shard.hash {
                return Err(VaultError::Dispersal(format!(
                    "shard {} rebuilt with a hash the manifest does not have",
                    shard.index
                )));
            }
            let holders: Vec<&str> = object
                .shards
                .iter()
                .filter(|s| s.index != shard.index && s.state == ShardState::Ok)
                .filter_map(|s| s.site.as_deref())
                .collect();
            // Back where it was if that site is up and still fits; else elsewhere.
            let home = shard
                .site
                .as_deref()
                .and_then(|s| self.sites.get(s))
                .filter(|s| {
                    !holders.contains(&s.name.as_str()) && self.sites.fits(params, s, &holders)
                })
                .cloned();
            let bytes = bytes::Bytes::from(rebuilt);
            let mut stored_on: Option<Arc<Site>> = None;
            if let Some(home) = home
                && home
                    .put_shard(object.id, shard.index, bytes.clone(), timeout)
                    .await
                    .is_ok()
            {
                stored_on = Some(home);
            }
            if stored_on.is_none() {
                let mut tried: Vec<String> = shard.site.iter().cloned().collect();
                loop {
                    let exclude: Vec<&str> = tried.iter().map(String::as_str).collect();
                    let Some(site) =
                        self.sites
                            .place_one(params, &allowed(policy), &holders, &exclude)
                    else {
                        break;
                    };
                    tried.push(site.name.clone());
                    if site
                        .put_shard(object.id, shard.index, bytes.clone(), timeout)
                        .await
                        .is_ok()
                    {
                        stored_on = Some(site);
                        break;
                    }
                }
            }
            let Some(site) = stored_on else {
                return Err(VaultError::Placement(format!(
                    "no site in the allowed jurisdictions can take shard {} of {params}",
                    shard.index
                )));
            };
            if self
                .store
                .move_shard(
                    object.id,
                    shard.index,
                    shard.site.as_deref(),
                    &site.name,
                    &shard.hash,
                )
                .await
                .map_err(internal)?
            {
                tracing::info!(object = %object.id, shard = shard.index, site = %site.name, "repair: shard rebuilt");
                report.rebuilt += 1;
                if let Some(old) = shard
                    .site
                    .as_deref()
                    .filter(|old| *old != site.name)
                    .and_then(|s| self.sites.get(s))
                {
                    let _ = old.delete_shard(object.id, shard.index, timeout).await;
                }
            }
        }
        Ok(())
    }

    /// Deletes the shards of deleted messages (crypto-shredding: once
    /// `n − k + 1` are gone the object is unrecoverable) and forgets them.
    async fn purge(&self, report: &mut PassReport) -> Result<(), VaultError> {
        let timeout = self.sites.options().request_timeout;
        let mut stuck: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
        loop {
            let batch = self
                .store
                .deleted_objects(BATCH + stuck.len() as i64)
                .await
                .map_err(internal)?;
            let batch: Vec<StoredObject> = batch
                .into_iter()
                .filter(|o| !stuck.contains(&o.id))
                .collect();
            if batch.is_empty() {
                return Ok(());
            }
            for object in batch {
                for shard in &object.shards {
                    let deleted = match shard.site.as_deref().and_then(|s| self.sites.get(s)) {
                        Some(site) => site
                            .delete_shard(object.id, shard.index, timeout)
                            .await
                            .is_ok(),
                        // A site no longer configured, or none: nothing to delete.
                        None => true,
                    };
                    if deleted {
                        self.store
                            .forget_shard(object.id, shard.index)
                            .await
                            .map_err(internal)?;
                        report.purged += 1;
                    } else {
                        stuck.insert(object.id);
                    }
                }
            }
        }
    }

    /// Deletes the shards of one deleted message now (the repair pass
    /// retries whatever a down site kept).
    pub async fn shred(&self, id: Uuid) -> Result<(), VaultError> {
        let Some(object) = self.store.stored_object(id).await.map_err(internal)? else {
            return Ok(());
        };
        if object.deleted_at.is_none() {
            return Err(VaultError::Site(format!(
                "object {id} still has its message"
            )));
        }
        let timeout = self.sites.options().request_timeout;
        let mut left = 0;
        for shard in &object.shards {
            let deleted = match shard.site.as_deref().and_then(|s| self.sites.get(s)) {
                Some(site) => site.delete_shard(id, shard.index, timeout).await.is_ok(),
                None => true,
            };
            if deleted {
                self.store
                    .forget_shard(id, shard.index)
                    .await
                    .map_err(internal)?;
            } else {
                left += 1;
            }
        }
        if left > 0 {
            tracing::warn!(object = %id, left, "shards left on unreachable sites; the repair pass will delete them");
            self.queue_repair().await;
        }
        Ok(())
    }

    /// Moves every shard off `from`, to `to` or wherever placement allows,
    /// copying before deleting so no object ever has fewer stored shards.
    pub async fn evacuate(
        &self,
        from: &str,
        to: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<PassReport, VaultError> {
        let source = self
            .sites
            .get(from)
            .cloned()
            .ok_or_else(|| VaultError::Site(format!("no site named {from:?}")))?;
        let target = match to {
            Some(name) if name == from => {
                return Err(VaultError::Site(
                    "a site cannot be evacuated to itself".into(),
                ));
            }
            Some(name) => Some(
                self.sites
                    .get(name)
                    .cloned()
                    .ok_or_else(|| VaultError::Site(format!("no site named {name:?}")))?,
            ),
            None => None,
        };
        let total = self
            .store
            .count_objects(ObjectCount::OnSite(from))
            .await
            .map_err(internal)?;
        progress.start(&format!("evacuate {from}"), total as u64);
        let mut report = PassReport::default();
        let mut policies = HashMap::new();
        let mut skipped: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
        loop {
            let batch = self
                .store
                .objects_on_site(from, BATCH + skipped.len() as i64)
                .await
                .map_err(internal)?;
            let batch: Vec<StoredObject> = batch
                .into_iter()
                .filter(|o| !skipped.contains(&o.id))
                .collect();
            if batch.is_empty() {
                break;
            }
            for object in &batch {
                let policy = self.policy(&mut policies, object.tenant_id).await?;
                if let Err(e) = self
                    .evacuate_object(object, &source, target.as_ref(), &policy, &mut report)
                    .await
                {
                    tracing::warn!(object = %object.id, site = %from, error = %e, "evacuation: object left in place");
                    report.skipped.push((object.id, e.to_string()));
                    skipped.insert(object.id);
                }
                report.objects += 1;
                progress.advance(1);
            }
        }
        progress.finish();
        Ok(report)
    }

    async fn evacuate_object(
        &self,
        object: &StoredObject,
        source: &Arc<Site>,
        target: Option<&Arc<Site>>,
        policy: &Policy,
        report: &mut PassReport,
    ) -> Result<(), VaultError> {
        let params = params_of(object)?;
        let timeout = self.sites.options().request_timeout;
        for shard in object
            .shards
            .iter()
            .filter(|s| s.site.as_deref() == Some(source.name.as_str()))
        {
            let holders: Vec<&str> = object
                .shards
                .iter()
                .filter(|s| s.index != shard.index)
                .filter_map(|s| s.site.as_deref())
                .collect();
            let destination = match target {
                Some(t) => {
                    if !allowed(policy).is_empty() && !allowed(policy).contains(&t.jurisdiction) {
                        return Err(VaultError::Placement(format!(
                            "the tenant does not allow jurisdiction {} of site {}",
                            t.jurisdiction, t.name
                        )));
                    }
                    if holders.contains(&t.name.as_str()) || !self.sites.fits(params, t, &holders) {
                        return Err(VaultError::Placement(format!(
                            "site {} already holds a shard, or its jurisdiction {} would hold {}",
                            t.name,
                            t.jurisdiction,
                            params.k()
                        )));
                    }
                    t.clone()
                }
                None => self
                    .sites
                    .place_one(params, &allowed(policy), &holders, &[source.name.as_str()])
                    .ok_or_else(|| {
                        VaultError::Placement(format!(
                            "no other site can take shard {} under {params}",
                            shard.index
                        ))
                    })?,
            };
            // The shard as it is, or rebuilt from the others if it is not.
            let bytes = match source.get_shard(object.id, shard.index, timeout).await {
                Ok(bytes) if dispersal::hash(&bytes) == shard.hash => bytes,
                _ => {
                    let others: Vec<Location> = locations(object, true)
                        .into_iter()
                        .filter(|l| l.index != shard.index)
                        .collect();
                    let (good, _) = self.sites.read(object.id, params, &others).await?;
                    let refs: Vec<&[u8]> = good.iter().map(|(b, _)| b.as_ref()).collect();
                    let rebuilt = dispersal::rebuild(&refs, shard.index)?;
                    report.rebuilt += 1;
                    bytes::Bytes::from(rebuilt)
                }
            };
            destination
                .put_shard(object.id, shard.index, bytes, timeout)
                .await
                .map_err(|e| VaultError::Unavailable(format!("site {}: {e}", destination.name)))?;
            if self
                .store
                .move_shard(
                    object.id,
                    shard.index,
                    Some(&source.name),
                    &destination.name,
                    &shard.hash,
                )
                .await
                .map_err(internal)?
            {
                let _ = source.delete_shard(object.id, shard.index, timeout).await;
                tracing::info!(object = %object.id, shard = shard.index, from = %source.name, to = %destination.name, "shard moved");
                report.moved += 1;
            }
        }
        Ok(())
    }
}
