//! Storage sites: named object stores, each in one jurisdiction, that hold
//! the shards of dispersed objects (see [`crate::dispersal`]).
//!
//! A site is a local folder (the embedded default) or an S3-compatible
//! bucket, reached through the `object_store` crate. Shard `j` of object
//! `id` lives at `shards/{id}/{j}` on its site.
//!
//! Placement never gives one jurisdiction `k` shards of an object (or it
//! could read the object alone) and uses only the jurisdictions a tenant
//! allows; when that cannot be done the write is refused, never made with
//! less. Writes go to every chosen site at once and succeed once the write
//! quorum (at least `k + 1`) is durable; reads ask the sites that answered
//! best so far, need `k` shards whose hash matches the manifest, and ask one
//! more site whenever an answer is late (hedging).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::VaultError;
use crate::dispersal::{self, Params};
use crate::group_sync::GroupSync;

/// One site, as configured.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    pub name: String,
    /// ISO 3166-1 alpha-2 country code of the law the site answers to.
    pub jurisdiction: String,
    /// A local folder.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// An S3-compatible bucket.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// `https://…`, or `http://…` on loopback only.
    pub endpoint: String,
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// How the sites are used.
#[derive(Clone, Copy, Debug)]
pub struct SiteOptions {
    /// Ask one more site when a read has waited this long.
    pub hedge_after: Duration,
    /// Give up on one request after this long.
    pub request_timeout: Duration,
}

impl Default for SiteOptions {
    fn default() -> Self {
        SiteOptions {
            hedge_after: Duration::from_millis(150),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A site and what we learnt of it from its answers.
pub struct Site {
    pub name: String,
    pub jurisdiction: String,
    /// `local` or `s3`.
    pub backend: &'static str,
    /// Folder or endpoint/bucket, for operators (no credentials).
    pub location: String,
    store: Arc<dyn ObjectStore>,
    /// A local site's durability on Linux: one sync of its filesystem for
    /// all the shards written meanwhile (see [`GroupSync`]).
    sync: Option<Arc<GroupSync>>,
    /// Exponentially weighted mean latency of successful requests, µs.
    latency_us: AtomicU64,
    /// Failed requests since the last success.
    failures: AtomicU32,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("name", &self.name)
            .field("jurisdiction", &self.jurisdiction)
            .finish()
    }
}

fn shard_path(object: Uuid, index: u8) -> StorePath {
    StorePath::from(format!("shards/{object}/{index}"))
}

fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let host = rest.split('/').next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Site {
    pub fn open(config: &SiteConfig) -> Result<Site, VaultError> {
        let bad = |why: String| VaultError::Site(format!("site {:?}: {why}", config.name));
        if config.name.is_empty()
            || !config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad("a site name is letters, digits, '-' and '_'".into()));
        }
        let j = &config.jurisdiction;
        if j.len() != 2 || !j.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(bad(format!(
                "jurisdiction {j:?} is not an ISO 3166-1 alpha-2 code such as FR"
            )));
        }
        let mut sync = None;
        let (backend, location, store): (&'static str, String, Arc<dyn ObjectStore>) =
            match (&config.path, &config.s3) {
                (Some(path), None) => {
                    std::fs::create_dir_all(path)
                        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                    // A shard is acknowledged (and the message with it) only
                    // once it and its directory entry are on disk, as an S3
                    // site promises of its PUTs: on Linux by one syncfs for
                    // every shard written meanwhile, elsewhere by an fsync of
                    // each file and its folder.
                    let grouped = cfg!(target_os = "linux");
                    let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                        .map_err(|e| bad(e.to_string()))?
                        .with_automatic_cleanup(true)
                        .with_fsync(!grouped);
                    if grouped {
                        sync = Some(Arc::new(GroupSync::new(path.clone())));
                    }
                    ("local", path.display().to_string(), Arc::new(store))
                }
                (None, Some(s3)) => {
                    let plain = s3.endpoint.starts_with("http://");
                    if plain && !is_loopback(&s3.endpoint) {
                        return Err(bad(format!(
                            "{}: plain HTTP is allowed only on loopback; use https://",
                            s3.endpoint
                        )));
                    }
                    if !plain && !s3.endpoint.starts_with("https://") {
                        return Err(bad(format!(
                            "{}: the endpoint is an http(s) URL",
                            s3.endpoint
                        )));
                    }
                    let options = object_store::ClientOptions::new()
                        .with_allow_http(plain)
                        .with_connect_timeout(Duration::from_secs(3))
                        .with_timeout(Duration::from_secs(30));
                    let retry = object_store::RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(5),
                        ..Default::default()
                    };
                    let store = object_store::aws::AmazonS3Builder::new()
                        .with_endpoint(&s3.endpoint)
                        .with_region(&s3.region)
                        .with_bucket_name(&s3.bucket)
                        .with_access_key_id(&s3.access_key_id)
                        .with_secret_access_key(s3.secret_access_key.expose_secret())
                        .with_virtual_hosted_style_request(false)
                        .with_client_options(options)
                        .with_retry(retry)
                        .build()
                        .map_err(|e| bad(e.to_string()))?;
                    (
                        "s3",
                        format!("{}/{}", s3.endpoint.trim_end_matches('/'), s3.bucket),
                        Arc::new(store),
                    )
                }
                _ => {
                    return Err(bad(
                        "give either `path` (a local folder) or `s3` (a bucket), not both".into(),
                    ));
                }
            };
        Ok(Site {
            name: config.name.clone(),
            jurisdiction: config.jurisdiction.clone(),
            backend,
            location,
            store,
            sync,
            latency_us: AtomicU64::new(0),
            failures: AtomicU32::new(0),
        })
    }

    fn record(&self, started: Instant, ok: bool) {
        if ok {
            let took = started.elapsed().as_micros() as u64;
            let old = self.latency_us.load(Ordering::Relaxed);
            let new = if old == 0 { took } else { (old * 7 + took) / 8 };
            self.latency_us.store(new.max(1), Ordering::Relaxed);
            self.failures.store(0, Ordering::Relaxed);
        } else {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lower is better: sites that failed last come last, then the slowest.
    fn score(&self) -> (u32, u64) {
        (
            self.failures.load(Ordering::Relaxed).min(3),
            self.latency_us.load(Ordering::Relaxed),
        )
    }

    async fn timed<T>(
        &self,
        timeout: Duration,
        op: impl Future<Output = object_store::Result<T>>,
    ) -> Result<T, ShardError> {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(object_store::Error::NotFound { .. })) => Err(ShardError::Missing),
            Ok(Err(e)) => Err(ShardError::Unreachable(e.to_string())),
            Err(_) => Err(ShardError::Unreachable(format!(
                "no answer within {timeout:?}"
            ))),
        };
        // A missing shard is an answer: the site is up.
        self.record(started, !matches!(outcome, Err(ShardError::Unreachable(_))));
        outcome
    }

    pub async fn put_shard(
        &self,
        object: Uuid,
        index: u8,
        shard: Bytes,
        timeout: Duration,
    ) -> Result<(), ShardError> {
        self.timed(timeout, async {
            self.store
                .put(&shard_path(object, index), PutPayload::from_bytes(shard))
                .await?;
            if let Some(sync) = &self.sync {
                sync.durable()
                    .await
                    .map_err(|e| object_store::Error::Generic {
                        store: "local",
                        source: Box::new(e),
                    })?;
            }
            Ok(())
        })
        .await
    }

    pub async fn get_shard(
        &self,
        object: Uuid,
        index: u8,
        timeout: Duration,
    ) -> Result<Bytes, ShardError> {
        let path = shard_path(object, index);
        self.timed(timeout, async {
            self.store.get(&path).await?.bytes().await
        })
        .await
    }

    /// Deletes a shard; one that is not there counts as deleted.
    pub async fn delete_shard(
        &self,
        object: Uuid,
        index: u8,
        timeout: Duration,
    ) -> Result<(), ShardError> {
        match self
            .timed(timeout, self.store.delete(&shard_path(object, index)))
            .await
        {
            Ok(()) | Err(ShardError::Missing) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How many times a local site's filesystem was synced for its shards
    /// (`None` for a site that syncs each shard alone, or an S3 site).
    pub fn group_syncs(&self) -> Option<u64> {
        self.sync.as_ref().map(|s| s.syncs())
    }

    /// Every shard the site holds, as (object, index): what an operator
    /// checks after an evacuation.
    pub async fn list_shards(&self) -> Result<Vec<(Uuid, u8)>, VaultError> {
        use futures_util::TryStreamExt;
        let prefix = StorePath::from("shards");
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| VaultError::Site(format!("site {}: {e}", self.name)))?;
        Ok(metas
            .iter()
            .filter_map(|m| {
                let mut parts = m.location.parts();
                let _ = parts.next()?;
                let object = parts.next()?.as_ref().parse().ok()?;
                let index = parts.next()?.as_ref().parse().ok()?;
                Some((object, index))
            })
            .collect())
    }

    /// Writes, reads back and deletes a probe object.
    pub async fn check(&self, timeout: Duration) -> SiteHealth {
        let started = Instant::now();
        let path = StorePath::from("health/probe");
        let probe = Bytes::from_static(b"caliop site probe");
        let outcome = tokio::time::timeout(timeout, async {
            self.store
                .put(&path, PutPayload::from_bytes(probe.clone()))
                .await?;
            let back = self.store.get(&path).await?.bytes().await?;
            self.store.delete(&path).await?;
            Ok::<_, object_store::Error>(back == probe)
        })
        .await;
        let (up, error) = match outcome {
            Ok(Ok(true)) => (true, None),
            Ok(Ok(false)) => (
                false,
                Some("the probe object came back different".to_owned()),
            ),
            Ok(Err(e)) => (false, Some(e.to_string())),
            Err(_) => (false, Some(format!("no answer within {timeout:?}"))),
        };
        self.record(started, up);
        SiteHealth {
            up,
            latency: started.elapsed(),
            error,
        }
    }
}

/// What a health check found.
#[derive(Clone, Debug)]
pub struct SiteHealth {
    pub up: bool,
    pub latency: Duration,
    pub error: Option<String>,
}

/// Why one shard could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardError {
    /// The site answered that it does not have it.
    Missing,
    /// The site did not answer, or answered with an error.
    Unreachable(String),
    /// The bytes do not hash to what the manifest says.
    Corrupt,
}

impl std::fmt::Display for ShardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardError::Missing => f.write_str("missing"),
            ShardError::Unreachable(why) => write!(f, "unreachable: {why}"),
            ShardError::Corrupt => f.write_str("corrupt (hash mismatch)"),
        }
    }
}

/// Where one shard of an object went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub index: u8,
    /// `None`: no site took it; it waits for repair.
    pub site: Option<String>,
    pub hash: [u8; 32],
    pub size: u64,
}

/// A shard the manifest says is somewhere.
#[derive(Clone, Debug)]
pub struct Location {
    pub index: u8,
    pub site: String,
    pub hash: [u8; 32],
}

/// What a read found on the way.
#[derive(Debug, Default)]
pub struct ReadReport {
    /// Shards that were missing, unreadable or corrupt, with why.
    pub bad: Vec<(u8, String, ShardError)>,
    /// Requests sent because another was late.
    pub hedged: usize,
}

/// Every configured site.
pub struct Sites {
    sites: Vec<Arc<Site>>,
    options: SiteOptions,
}

impl std::fmt::Debug for Sites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.sites.iter().map(|s| &s.name))
            .finish()
    }
}

impl Sites {
    pub fn open(configs: &[SiteConfig], options: SiteOptions) -> Result<Sites, VaultError> {
        let mut sites: Vec<Arc<Site>> = Vec::with_capacity(configs.len());
        for config in configs {
            if sites.iter().any(|s| s.name == config.name) {
                return Err(VaultError::Site(format!(
                    "two sites are named {:?}",
                    config.name
                )));
            }
            sites.push(Arc::new(Site::open(config)?));
        }
        Ok(Sites { sites, options })
    }

    pub fn all(&self) -> &[Arc<Site>] {
        &self.sites
    }

    pub fn options(&self) -> SiteOptions {
        self.options
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Site>> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// Sites in `allowed` jurisdictions (all when empty), best first.
    fn candidates(&self, allowed: &[String]) -> Vec<Arc<Site>> {
        let mut candidates: Vec<Arc<Site>> = self
            .sites
            .iter()
            .filter(|s| {
                allowed.is_empty()
                    || allowed
                        .iter()
                        .any(|a| a.eq_ignore_ascii_case(&s.jurisdiction))
            })
            .cloned()
            .collect();
        // Spread load among equals: shuffle, then a stable sort by health.
        use rand::seq::SliceRandom;
        candidates.shuffle(&mut rand::rng());
        candidates.sort_by_key(|s| s.score().0);
        candidates
    }

    /// `n` distinct sites for a new object, no jurisdiction holding `k`.
    pub fn place(&self, params: Params, allowed: &[String]) -> Result<Vec<Arc<Site>>, VaultError> {
        let candidates = self.candidates(allowed);
        let chosen = pick(
            &candidates,
            params,
            &HashMap::new(),
            usize::from(params.n()),
        );
        if chosen.len() < usize::from(params.n()) {
            let jurisdictions: std::collections::BTreeSet<&str> =
                candidates.iter().map(|s| s.jurisdiction.as_str()).collect();
            return Err(VaultError::Placement(format!(
                "{params} needs {} sites with at most {} in any one jurisdiction; the allowed jurisdictions ({}) offer {} such sites",
                params.n(),
                params.k() - 1,
                if jurisdictions.is_empty() {
                    "none".to_owned()
                } else {
                    jurisdictions.into_iter().collect::<Vec<_>>().join(", ")
                },
                chosen.len()
            )));
        }
        Ok(chosen)
    }

    /// A site for one more shard of an object whose other shards are on
    /// `holders` (site names), respecting the jurisdiction rule; sites in
    /// `exclude` (already tried) are passed over.
    pub fn place_one(
        &self,
        params: Params,
        allowed: &[String],
        holders: &[&str],
        exclude: &[&str],
    ) -> Option<Arc<Site>> {
        let mut taken: HashMap<String, usize> = HashMap::new();
        for holder in holders {
            if let Some(site) = self.get(holder) {
                *taken.entry(site.jurisdiction.clone()).or_default() += 1;
            }
        }
        let candidates: Vec<Arc<Site>> = self
            .candidates(allowed)
            .into_iter()
            .filter(|s| !holders.contains(&s.name.as_str()) && !exclude.contains(&s.name.as_str()))
            .collect();
        pick(&candidates, params, &taken, 1).pop()
    }

    /// Whether one more shard on `site` keeps every jurisdiction under `k`.
    pub fn fits(&self, params: Params, site: &Site, holders: &[&str]) -> bool {
        let same = holders
            .iter()
            .filter_map(|h| self.get(h))
            .filter(|s| s.jurisdiction == site.jurisdiction)
            .count();
        same < usize::from(params.k() - 1)
    }

    /// Encodes `object` and writes its shards. Succeeds once `quorum`
    /// shards are stored; the others come back without a site, for repair.
    /// Failing that, whatever was written is deleted again.
    pub async fn write(
        &self,
        object: Uuid,
        params: Params,
        quorum: usize,
        allowed: &[String],
        plaintext: &[u8],
    ) -> Result<Vec<Placed>, VaultError> {
        let quorum = quorum
            .max(usize::from(params.k()) + 1)
            .min(usize::from(params.n()));
        let chosen = self.place(params, allowed)?;
        let plain = plaintext.to_vec();
        let encoded =
            crate::cpu::run(move || dispersal::encode_hashed(*object.as_bytes(), params, &plain))
                .await?;
        let mut placed: Vec<Placed> = encoded
            .iter()
            .enumerate()
            .map(|(i, (s, hash))| Placed {
                index: i as u8,
                site: None,
                hash: *hash,
                size: s.len() as u64,
            })
            .collect();
        let shards: Vec<Bytes> = encoded.into_iter().map(|(s, _)| Bytes::from(s)).collect();
        let timeout = self.options.request_timeout;
        let mut writes = JoinSet::new();
        for (i, site) in chosen.iter().enumerate() {
            let (site, shard) = (site.clone(), shards[i].clone());
            writes.spawn(async move {
                let outcome = site.put_shard(object, i as u8, shard, timeout).await;
                (i, site, outcome)
            });
        }
        let mut failed = Vec::new();
        while let Some(joined) = writes.join_next().await {
            let (i, site, outcome) = joined.map_err(|e| VaultError::Site(e.to_string()))?;
            match outcome {
                Ok(()) => placed[i].site = Some(site.name.clone()),
                Err(e) => {
                    tracing::warn!(site = %site.name, object = %object, shard = i, error = %e, "shard write failed");
                    failed.push(i);
                }
            }
        }
        // Spare sites, one shard at a time, within the jurisdiction rule.
        let mut tried: Vec<String> = chosen.iter().map(|s| s.name.clone()).collect();
        for i in failed {
            loop {
                let holders: Vec<&str> = placed.iter().filter_map(|p| p.site.as_deref()).collect();
                let exclude: Vec<&str> = tried.iter().map(String::as_str).collect();
                let Some(spare) = self.place_one(params, allowed, &holders, &exclude) else {
                    break;
                };
                tried.push(spare.name.clone());
                if spare
                    .put_shard(object, i as u8, shards[i].clone(), timeout)
                    .await
                    .is_ok()
                {
                    placed[i].site = Some(spare.name.clone());
                    break;
                }
            }
        }
        let stored = placed.iter().filter(|p| p.site.is_some()).count();
        if stored < quorum {
            self.delete(object, &placed).await;
            return Err(VaultError::Unavailable(format!(
                "only {stored} of {} shards could be stored, {quorum} are needed",
                params.n()
            )));
        }
        Ok(placed)
    }

    /// Reads `k` shards whose hashes match, best sites first, asking one
    /// more site whenever the answers are late or bad.
    pub async fn read(
        &self,
        object: Uuid,
        params: Params,
        locations: &[Location],
    ) -> Result<(Vec<(Bytes, [u8; 32])>, ReadReport), VaultError> {
        let k = usize::from(params.k());
        let mut queue: Vec<(&Location, Arc<Site>)> = locations
            .iter()
            .filter_map(|l| self.get(&l.site).map(|s| (l, s.clone())))
            .collect();
        // Healthy sites first; among them data shards before parity (decoding
        // from parity costs a Reed–Solomon pass), then the fastest.
        queue.sort_by_key(|(l, s)| {
            let (failures, latency) = s.score();
            (failures, l.index >= params.k(), latency)
        });
        let mut queue = std::collections::VecDeque::from(queue);
        let mut report = ReadReport::default();
        // Each good shard with its body hash (see `dispersal::check`).
        let mut good: Vec<(Bytes, [u8; 32])> = Vec::with_capacity(k);
        let mut reads = JoinSet::new();
        let timeout = self.options.request_timeout;
        let launch = |reads: &mut JoinSet<_>, (location, site): (&Location, Arc<Site>)| {
            let (index, hash) = (location.index, location.hash);
            reads.spawn(async move {
                let outcome = site
                    .get_shard(object, index, timeout)
                    .await
                    .and_then(|bytes| match dispersal::check(&bytes, &hash) {
                        Some(body) => Ok((bytes, body)),
                        None => Err(ShardError::Corrupt),
                    });
                (index, site.name.clone(), outcome)
            });
        };
        for _ in 0..k {
            match queue.pop_front() {
                Some(next) => launch(&mut reads, next),
                None => break,
            }
        }
        while good.len() < k {
            let hedge = tokio::time::sleep(self.options.hedge_after);
            tokio::select! {
                joined = reads.join_next() => {
                    let Some(joined) = joined else { break };
                    let (index, site, outcome) = joined.map_err(|e| VaultError::Site(e.to_string()))?;
                    match outcome {
                        Ok(bytes) => good.push(bytes),
                        Err(e) => {
                            tracing::warn!(site = %site, object = %object, shard = index, error = %e, "shard read failed");
                            report.bad.push((index, site, e));
                            if let Some(next) = queue.pop_front() {
                                launch(&mut reads, next);
                            }
                        }
                    }
                }
                () = hedge => {
                    if let Some(next) = queue.pop_front() {
                        report.hedged += 1;
                        launch(&mut reads, next);
                    }
                }
            }
        }
        reads.abort_all();
        if good.len() < k {
            return Err(VaultError::Unavailable(format!(
                "{} good shards of {k} needed could be read ({} failed)",
                good.len(),
                report.bad.len()
            )));
        }
        Ok((good, report))
    }

    /// Reads and decodes an object.
    pub async fn read_object(
        &self,
        object: Uuid,
        params: Params,
        locations: &[Location],
    ) -> Result<(Vec<u8>, ReadReport), VaultError> {
        let (shards, report) = self.read(object, params, locations).await?;
        let plain = crate::cpu::run(move || {
            let refs: Vec<(&[u8], [u8; 32])> =
                shards.iter().map(|(s, body)| (s.as_ref(), *body)).collect();
            dispersal::decode_checked(*object.as_bytes(), &refs)
        })
        .await?;
        Ok((plain, report))
    }

    /// Deletes the shards that were placed; failures are only logged (the
    /// caller keeps the manifest rows of shards that remain).
    pub async fn delete(&self, object: Uuid, placed: &[Placed]) -> Vec<(u8, bool)> {
        let mut deletes = JoinSet::new();
        for p in placed {
            let Some(site) = p.site.as_deref().and_then(|name| self.get(name)).cloned() else {
                continue;
            };
            let (index, timeout) = (p.index, self.options.request_timeout);
            deletes.spawn(async move {
                (
                    index,
                    site.delete_shard(object, index, timeout).await.is_ok(),
                )
            });
        }
        let mut outcomes = Vec::new();
        while let Some(Ok(outcome)) = deletes.join_next().await {
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Health of every site, checked in parallel.
    pub async fn check(&self) -> Vec<(Arc<Site>, SiteHealth)> {
        let mut checks = JoinSet::new();
        for site in &self.sites {
            let site = site.clone();
            checks.spawn(async move {
                let health = site.check(Duration::from_secs(3)).await;
                (site, health)
            });
        }
        let mut all = Vec::new();
        while let Some(Ok(outcome)) = checks.join_next().await {
            all.push(outcome);
        }
        all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        all
    }
}

/// Up to `want` sites from `candidates` (in order), no jurisdiction going
/// over `k − 1` shards counting those already `taken`. Greedy is optimal
/// here: every jurisdiction has the same cap and sites within one are
/// interchangeable.
fn pick(
    candidates: &[Arc<Site>],
    params: Params,
    taken: &HashMap<String, usize>,
    want: usize,
) -> Vec<Arc<Site>> {
    let cap = usize::from(params.k() - 1);
    let mut count = taken.clone();
    let mut chosen = Vec::new();
    for site in candidates {
        if chosen.len() == want {
            break;
        }
        let c = count.entry(site.jurisdiction.clone()).or_default();
        if *c < cap {
            *c += 1;
            chosen.push(site.clone());
        }
    }
    chosen
}

/// A secret for tests and the embedded default; S3 needs some credentials.
pub fn secret(value: &str) -> SecretString {
    SecretString::from(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path, name: &str, jurisdiction: &str) -> SiteConfig {
        SiteConfig {
            name: name.into(),
            jurisdiction: jurisdiction.into(),
            path: Some(dir.join(name)),
            s3: None,
        }
    }

    /// Where each shard of a write went, as reads ask for them.
    fn located(placed: &[Placed]) -> Vec<Location> {
        placed
            .iter()
            .map(|p| Location {
                index: p.index,
                site: p.site.clone().unwrap(),
                hash: p.hash,
            })
            .collect()
    }

    /// One local site per jurisdiction, named `site0`, `site1`… under `dir`.
    fn local_sites(dir: &std::path::Path, jurisdictions: &[&str]) -> Vec<SiteConfig> {
        jurisdictions
            .iter()
            .enumerate()
            .map(|(i, j)| local(dir, &format!("site{i}"), j))
            .collect()
    }

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("caliop-sites-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn no_jurisdiction_ever_gets_k_shards() {
        let dir = temp();
        let sites = Sites::open(
            &[
                local(&dir, "paris", "FR"),
                local(&dir, "lyon", "FR"),
                local(&dir, "berlin", "DE"),
                local(&dir, "zurich", "CH"),
            ],
            SiteOptions::default(),
        )
        .unwrap();
        let params = Params::new(2, 3).unwrap();
        for _ in 0..50 {
            let chosen = sites.place(params, &[]).unwrap();
            let mut jurisdictions: Vec<&str> =
                chosen.iter().map(|s| s.jurisdiction.as_str()).collect();
            jurisdictions.sort_unstable();
            assert_eq!(
                jurisdictions,
                ["CH", "DE", "FR"],
                "two shards in one country"
            );
        }
        // Restricted to FR and DE, 2-of-3 cannot be placed: refused, not downgraded.
        let refused = sites
            .place(params, &["FR".into(), "DE".into()])
            .unwrap_err();
        assert!(
            matches!(refused, VaultError::Placement(ref why) if why.contains("2-of-3")),
            "{refused}"
        );
        // 3-of-5 over FR ×2, DE, CH: at most 2 per country, 4 sites: refused too.
        assert!(sites.place(Params::new(3, 5).unwrap(), &[]).is_err());
        // 3-of-4 fits: FR, FR, DE, CH.
        assert_eq!(
            sites.place(Params::new(3, 4).unwrap(), &[]).unwrap().len(),
            4
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let s3 = |endpoint: &str| SiteConfig {
            name: "s".into(),
            jurisdiction: "FR".into(),
            path: None,
            s3: Some(S3Config {
                endpoint: endpoint.into(),
                region: "eu-west-3".into(),
                bucket: "b".into(),
                access_key_id: "a".into(),
                secret_access_key: secret("s"),
            }),
        };
        assert!(Site::open(&s3("http://127.0.0.1:9000")).is_ok());
        assert!(Site::open(&s3("http://[::1]:9000")).is_ok());
        assert!(Site::open(&s3("http://localhost:9000")).is_ok());
        let refused = Site::open(&s3("http://s3.example.net"))
            .unwrap_err()
            .to_string();
        assert!(refused.contains("only on loopback"), "{refused}");
        assert!(Site::open(&s3("https://s3.example.net")).is_ok());
        let bad = SiteConfig {
            jurisdiction: "France".into(),
            ..s3("https://s3.example.net")
        };
        assert!(
            Site::open(&bad)
                .unwrap_err()
                .to_string()
                .contains("ISO 3166")
        );
    }

    /// Objects written at once on local sites are made durable together:
    /// each site syncs its filesystem far fewer times than it takes shards,
    /// at least once, and every object reads back.
    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shards_written_at_once_share_their_sync() {
        let dir = temp();
        let configs = local_sites(&dir, &["FR", "DE", "CH"]);
        let sites = Arc::new(Sites::open(&configs, SiteOptions::default()).unwrap());
        let params = Params::new(2, 3).unwrap();
        let objects = 40;
        let mut writes = JoinSet::new();
        for n in 0..objects {
            let sites = sites.clone();
            writes.spawn(async move {
                let object = Uuid::now_v7();
                let body = format!("message {n} ").repeat(500).into_bytes();
                let placed = sites.write(object, params, 3, &[], &body).await.unwrap();
                (object, body, placed)
            });
        }
        let mut written = Vec::new();
        while let Some(done) = writes.join_next().await {
            written.push(done.unwrap());
        }
        for site in sites.all() {
            let syncs = site.group_syncs().expect("a local site syncs by group");
            assert!(
                (1..objects as u64 / 2).contains(&syncs),
                "{}: {syncs} syncs for {objects} shards",
                site.name
            );
        }
        for (object, body, placed) in written {
            let (read, _) = sites
                .read_object(object, params, &located(&placed))
                .await
                .unwrap();
            assert_eq!(read, body);
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[tokio::test]
    async fn writes_and_reads_survive_a_missing_site_and_a_corrupt_shard() {
        let dir = temp();
        let configs = local_sites(&dir, &["FR", "DE", "CH", "IS", "NL"]);
        let sites = Sites::open(&configs, SiteOptions::default()).unwrap();
        let params = Params::new(3, 5).unwrap();
        let object = Uuid::now_v7();
        let body = b"dispersed body ".repeat(1000);
        let placed = sites.write(object, params, 4, &[], &body).await.unwrap();
        assert!(placed.iter().all(|p| p.site.is_some()));
        let locations = located(&placed);
        // Lose one shard's file, corrupt another: still k good ones.
        let gone = &locations[0];
        std::fs::remove_file(
            dir.join(&gone.site)
                .join(format!("shards/{object}/{}", gone.index)),
        )
        .unwrap();
        let bent = &locations[1];
        let path = dir
            .join(&bent.site)
            .join(format!("shards/{object}/{}", bent.index));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        // Make them the sites asked first.
        for site in sites.all() {
            site.latency_us.store(
                if site.name == gone.site || site.name == bent.site {
                    1
                } else {
                    1000
                },
                Ordering::Relaxed,
            );
        }
        let (read, report) = sites.read_object(object, params, &locations).await.unwrap();
        assert_eq!(read, body);
        let mut bad: Vec<(u8, ShardError)> =
            report.bad.iter().map(|(i, _, e)| (*i, e.clone())).collect();
        bad.sort_by_key(|b| b.0);
        assert_eq!(
            bad,
            [
                (gone.index, ShardError::Missing),
                (bent.index, ShardError::Corrupt)
            ]
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
