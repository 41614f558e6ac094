//! The bounded pool for CPU-heavy work: OpenPGP sealing, DKIM signing,
//! Argon2id, erasure coding. Such work never runs on the async executor,
//! where one connection's sealing would stall every other connection's I/O,
//! and never more of it at once than there are cores, so that a burst of
//! sign-ins or sealed deliveries queues instead of piling up threads (and,
//! for Argon2id, 19 MiB of memory each).
//!
//! [`run`] waits for a permit, then runs the work on tokio's blocking
//! threads; the permit goes with the work, so a caller that gives up does
//! not let more work run at once than the pool allows. When the runtime
//! shuts down before the work started, the caller never resumes (its task
//! is being dropped).

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// As many permits as the process may use cores.
fn permits() -> &'static Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(size())))
}

/// How many pieces of work run at once: the cores this process may use.
pub fn size() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Runs `work` on the pool and returns what it returned. A panic in `work`
/// is raised again here, as if it had run inline.
pub async fn run<T, F>(work: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let permit = permits()
        .clone()
        .acquire_owned()
        .await
        .expect("the pool's semaphore is never closed");
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await;
    match done {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels blocking work not yet
        // started; the caller's task is dropped with it, so it waits.
        Err(_) => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_work_runs_at_once_than_there_are_cores() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..size() * 4 {
            let (running, most) = (running.clone(), most.clone());
            tasks.spawn(run(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                running.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        while tasks.join_next().await.transpose().unwrap().is_some() {}
        let most = most.load(Ordering::SeqCst);
        assert!(most <= size(), "{most} ran at once on {} cores", size());
        assert!(most >= 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_executor_stays_free_while_work_runs() {
        // On a single-threaded runtime, work run inline would hold the only
        // thread: the ticker could not advance until it finished.
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let during = run({
            let ticks = ticks.clone();
            move || {
                let before = ticks.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(200));
                ticks.load(Ordering::SeqCst) - before
            }
        })
        .await;
        ticker.abort();
        assert!(
            during >= 5,
            "the executor ticked {during} times in 200 ms of work"
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_work_reaches_the_caller() {
        let caught = tokio::spawn(run(|| panic!("boom"))).await;
        assert!(caught.unwrap_err().is_panic());
        // The permit came back: the pool still runs work, as many at once
        // as ever (a permit lost to each panic would soon stop it).
        for _ in 0..size() * 2 {
            let _ = tokio::spawn(run(|| panic!("boom again"))).await;
        }
        assert_eq!(run(|| 7).await, 7);
    }
}
