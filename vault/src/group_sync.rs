//! Durability shared by concurrent writers: many shard files written at
//! once are made durable by one `syncfs(2)` of their filesystem instead of
//! an `fsync` of each file and of each new directory.
//!
//! A writer takes a ticket once its bytes are written, then waits for a sync
//! that began after its ticket. One sync runs at a time; whoever finds the
//! lock free syncs for every ticket taken so far, and those waiting behind
//! find their ticket covered and return at once: the group commit of a
//! database, for files. Linux only (elsewhere each file is synced alone).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// The syncs of one filesystem, reached through a folder on it.
#[derive(Debug)]
pub struct GroupSync {
    folder: PathBuf,
    /// Tickets taken: writes waiting to be durable.
    taken: AtomicU64,
    /// Every ticket up to this one is durable.
    durable: AtomicU64,
    /// Held while a sync runs.
    running: tokio::sync::Mutex<()>,
    /// `syncfs` calls made, for tests and for operators' curiosity.
    syncs: AtomicU64,
}

impl GroupSync {
    pub fn new(folder: PathBuf) -> GroupSync {
        GroupSync {
            folder,
            taken: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            running: tokio::sync::Mutex::new(()),
            syncs: AtomicU64::new(0),
        }
    }

    /// Returns once everything written before the call is on disk (or the
    /// sync failed: then nothing may be taken as durable).
    pub async fn durable(&self) -> std::io::Result<()> {
        let ticket = self.taken.fetch_add(1, Ordering::AcqRel) + 1;
        let _running = self.running.lock().await;
        if self.durable.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        // Every ticket taken before the sync starts is covered by it.
        let covered = self.taken.load(Ordering::Acquire);
        let folder = self.folder.clone();
        tokio::task::spawn_blocking(move || syncfs(&folder))
            .await
            .map_err(std::io::Error::other)??;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.durable.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }

    /// How many times the filesystem was synced.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

#[cfg(target_os = "linux")]
fn syncfs(folder: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(folder)?;
    // SAFETY: `dir` is an open file for the duration of the call; syncfs
    // only reads the descriptor.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(folder: &std::path::Path) -> std::io::Result<()> {
    // No syncfs: the folder itself, which is all a caller here relies on
    // (local sites sync each file themselves off Linux).
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_syncs() {
        let dir = std::env::temp_dir().join(format!("caliop-sync-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let sync = Arc::new(GroupSync::new(dir.clone()));
        sync.durable().await.unwrap();
        assert_eq!(sync.syncs(), 1, "alone, a writer syncs for itself");

        let writers = 64;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..writers {
            let (sync, path) = (sync.clone(), dir.join(format!("f{i}")));
            tasks.spawn(async move {
                tokio::fs::write(&path, b"shard").await.unwrap();
                sync.durable().await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let syncs = sync.syncs() - 1;
        assert!(syncs >= 1, "every writer waited for a sync");
        assert!(
            syncs < writers / 4,
            "{writers} concurrent writers took {syncs} syncs"
        );
        // Once all is durable, a new writer still syncs: its bytes are new.
        let before = sync.syncs();
        sync.durable().await.unwrap();
        assert_eq!(sync.syncs(), before + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_failed_sync_is_no_durability() {
        let sync = GroupSync::new(PathBuf::from("/nonexistent/caliop/site"));
        assert!(sync.durable().await.is_err());
        assert_eq!(sync.syncs(), 0);
    }
}
