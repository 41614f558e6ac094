//! Throw-away stores for tests: a fresh SQLite file or a fresh PostgreSQL
//! database per call, migrated, so tests never see each other's rows.
//! PostgreSQL is reached at `CALIOP_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`).

use crate::{Backend, Store};

/// Where a fresh store lives, to hand the same database to a spawned process.
pub struct FreshDatabase {
    pub url: String,
    pub store: Store,
}

pub fn postgres_admin_url() -> String {
    std::env::var("CALIOP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty, migrated database on `backend`. Panics with a clear
/// message when PostgreSQL is unreachable: the test command starts it.
pub async fn fresh_database(backend: Backend) -> FreshDatabase {
    let name = format!("caliop_test_{}", uuid::Uuid::now_v7().simple());
    let url = match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join("caliop-tests");
            std::fs::create_dir_all(&dir).expect("create temp dir for SQLite test databases");
            format!("sqlite://{}", dir.join(format!("{name}.db")).display())
        }
        Backend::Postgres => {
            let admin_url = postgres_admin_url();
            let admin = Store::connect(&admin_url, 1).await.unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin_url} is needed for this test: {e}")
            });
            admin
                .create_database(&name)
                .await
                .expect("create test database");
            admin.close().await;
            let base = admin_url
                .rsplit_once('/')
                .map(|(base, _)| base)
                .unwrap_or(&admin_url);
            format!("{base}/{name}")
        }
    };
    let store = Store::connect(&url, 8)
        .await
        .expect("connect to the fresh test database");
    store
        .migrate()
        .await
        .expect("migrate the fresh test database");
    FreshDatabase { url, store }
}

pub async fn fresh_store(backend: Backend) -> Store {
    fresh_database(backend).await.store
}

/// Declares `mod name { sqlite, postgres }` tests that run the async
/// function `name(Backend)` once on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::Backend::Postgres).await
            }
        }
    )+};
}
