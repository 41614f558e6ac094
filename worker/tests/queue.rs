//! The job queue on both backends: retries and dead letters, deduplication,
//! scheduling, leases taken over when a worker dies, and several workers
//! (each with its own connection pool, as separate processes would have)
//! never running the same job twice at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tenants::{Backend, Store, on_both_backends};
use worker::{Job, RetryPolicy, Worker, enqueue};

#[derive(Default)]
struct Ledger {
    attempts: Mutex<HashMap<u32, u32>>,
    running: Mutex<HashSet<u32>>,
    overlaps: Mutex<u32>,
}

#[derive(Serialize, Deserialize)]
struct Flaky {
    n: u32,
    /// Fails this many times before succeeding.
    failures: u32,
    key: Option<String>,
}

impl Job<Arc<Ledger>> for Flaky {
    const NAME: &'static str = "test.flaky";

    fn retry_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(20),
            max: Duration::from_millis(40),
            jitter: 0.1,
        }
    }

    fn dedup_key(&self) -> Option<String> {
        self.key.clone()
    }

    async fn run(&self, ledger: &Arc<Ledger>) -> Result<(), String> {
        if !ledger.running.lock().unwrap().insert(self.n) {
            *ledger.overlaps.lock().unwrap() += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        let attempt = {
            let mut attempts = ledger.attempts.lock().unwrap();
            let a = attempts.entry(self.n).or_default();
            *a += 1;
            *a
        };
        ledger.running.lock().unwrap().remove(&self.n);
        if attempt <= self.failures {
            Err(format!("failure {attempt} of job {}", self.n))
        } else {
            Ok(())
        }
    }
}

fn worker(store: Store, ledger: Arc<Ledger>, name: &str) -> Worker<Arc<Ledger>> {
    let mut w = Worker::new(store, ledger, name).register::<Flaky>();
    w.idle = Duration::from_millis(10);
    w
}

async fn drain(worker: &Worker<Arc<Ledger>>) {
    for _ in 0..200 {
        if !worker.run_one("drain").await {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }
}

on_both_backends!(
    retries_then_dead_letters,
    dedup_and_schedule,
    expired_leases_are_taken_over,
    workers_never_run_a_job_twice
);

async fn retries_then_dead_letters(backend: Backend) {
    let store = tenants::testing::fresh_store(backend).await;
    let ledger = Arc::new(Ledger::default());
    let recovers = enqueue(
        &store,
        &Flaky {
            n: 1,
            failures: 2,
            key: None,
        },
        None,
    )
    .await
    .unwrap();
    let hopeless = enqueue(
        &store,
        &Flaky {
            n: 2,
            failures: 99,
            key: None,
        },
        None,
    )
    .await
    .unwrap();
    drain(&worker(store.clone(), ledger.clone(), "w")).await;
    assert_eq!(store.job_state(recovers).await.unwrap().unwrap().0, "done");
    let (state, attempts, error) = store.job_state(hopeless).await.unwrap().unwrap();
    assert_eq!((state.as_str(), attempts), ("dead", 3));
    assert_eq!(
        error.as_deref(),
        Some("failure 3 of job 2"),
        "the last error is kept"
    );
    assert_eq!(ledger.attempts.lock().unwrap()[&1], 3);
    let dead = store.dead_jobs(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, hopeless);
    let depth = store.queue_depth().await.unwrap();
    assert!(depth.iter().any(|d| d.state == "dead" && d.jobs == 1));
}

async fn dedup_and_schedule(backend: Backend) {
    let store = tenants::testing::fresh_store(backend).await;
    let ledger = Arc::new(Ledger::default());
    let later = chrono::Utc::now() + chrono::Duration::milliseconds(600);
    let a = enqueue(
        &store,
        &Flaky {
            n: 7,
            failures: 0,
            key: Some("k".into()),
        },
        Some(later),
    )
    .await
    .unwrap();
    let b = enqueue(
        &store,
        &Flaky {
            n: 8,
            failures: 0,
            key: Some("k".into()),
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(a, b, "a live job with the same key is not queued twice");
    let w = worker(store.clone(), ledger.clone(), "w");
    assert!(
        !w.run_one("w").await,
        "a job scheduled for later is not due yet"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(w.run_one("w").await);
    assert_eq!(store.job_state(a).await.unwrap().unwrap().0, "done");
    let c = enqueue(
        &store,
        &Flaky {
            n: 9,
            failures: 0,
            key: Some("k".into()),
        },
        None,
    )
    .await
    .unwrap();
    assert_ne!(c, a, "once done, the key is free again");
}

async fn expired_leases_are_taken_over(backend: Backend) {
    let store = tenants::testing::fresh_store(backend).await;
    let ledger = Arc::new(Ledger::default());
    let id = enqueue(
        &store,
        &Flaky {
            n: 3,
            failures: 0,
            key: None,
        },
        None,
    )
    .await
    .unwrap();
    // A worker claims the job with a short lease, then dies without a word.
    let short = chrono::Utc::now() + chrono::Duration::milliseconds(200);
    let claimed = store
        .claim_job(&["test.flaky"], "dead-worker", short)
        .await
        .unwrap();
    assert_eq!(claimed.map(|j| j.id), Some(id));
    let w = worker(store.clone(), ledger.clone(), "w");
    assert!(
        !w.run_one("live-worker").await,
        "a leased job is not taken while the lease holds"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        w.run_one("live-worker").await,
        "an expired lease is taken over"
    );
    assert_eq!(store.job_state(id).await.unwrap().unwrap().0, "done");
    assert!(
        !store.complete_job(id, "dead-worker").await.unwrap(),
        "the dead worker's word no longer counts"
    );
    assert_eq!(ledger.attempts.lock().unwrap()[&3], 1);
}

async fn workers_never_run_a_job_twice(backend: Backend) {
    let fresh = tenants::testing::fresh_database(backend).await;
    let ledger = Arc::new(Ledger::default());
    let jobs = 120u32;
    for n in 0..jobs {
        enqueue(
            &fresh.store,
            &Flaky {
                n,
                failures: 0,
                key: None,
            },
            None,
        )
        .await
        .unwrap();
    }
    // Three workers with their own pools, four loops each.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut running = Vec::new();
    for i in 0..3 {
        let store = Store::connect(&fresh.url, 4).await.unwrap();
        let w = worker(store, ledger.clone(), &format!("process-{i}"));
        let mut stopping = stopping.clone();
        running.push(tokio::spawn(w.run(async move {
            let _ = stopping.wait_for(|s| *s).await;
        })));
    }
    for _ in 0..300 {
        let done = fresh
            .store
            .queue_depth()
            .await
            .unwrap()
            .iter()
            .filter(|d| d.state == "done")
            .map(|d| d.jobs)
            .sum::<i64>();
        if done == i64::from(jobs) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    for r in running {
        r.await.unwrap();
    }
    assert_eq!(
        *ledger.overlaps.lock().unwrap(),
        0,
        "no job ran twice at once"
    );
    let attempts = ledger.attempts.lock().unwrap();
    assert_eq!(attempts.len(), jobs as usize, "every job ran");
    assert!(attempts.values().all(|&a| a == 1), "each exactly once");
}
