//! Store stories, each run on SQLite and on PostgreSQL.

use super::*;
use crate::on_both_backends;
use crate::testing::fresh_store;

const ACTOR: &str = "operator";

fn limits(accounts: i64, domains: i64) -> Limits {
    Limits {
        max_accounts: accounts,
        max_domains: domains,
        storage_quota_bytes: 1 << 30,
    }
}

async fn tenant(store: &Store, kind: TenantKind, parent: Option<TenantId>, l: Limits) -> Tenant {
    store
        .create_tenant(
            ACTOR,
            NewTenant {
                name: format!("{kind} tenant"),
                kind,
                parent_id: parent,
                limits: l,
                policy: Policy::default(),
            },
        )
        .await
        .unwrap()
}

fn dkim_key(selector: &str, algorithm: DkimAlgorithm) -> NewDkimKey {
    NewDkimKey {
        selector: selector.into(),
        algorithm,
        public_key: format!("pk-{selector}"),
        private_key: "sk".to_owned().into(),
    }
}

async fn domain(store: &Store, tenant: TenantId, name: &str) -> Result<Domain> {
    store
        .create_domain(
            ACTOR,
            NewDomain {
                tenant_id: tenant,
                name: DomainName::parse(name)?,
                verification_token: "token".into(),
                dkim_keys: vec![
                    dkim_key("r1", DkimAlgorithm::Rsa),
                    dkim_key("e1", DkimAlgorithm::Ed25519),
                ],
            },
        )
        .await
}

async fn account(store: &Store, d: &Domain, local: &str) -> Result<Account> {
    store
        .create_account(
            ACTOR,
            NewAccount {
                tenant_id: d.tenant_id,
                domain_id: d.id,
                address: EmailAddress::parse(&format!("{local}@{}", d.name))?,
                display_name: local.into(),
                role: AccountRole::User,
                level: Level::Standard,
                password_hash: "hash".into(),
                fingerprint: "fp".into(),
                public_key: "public".into(),
                secret_key: "secret".into(),
            },
        )
        .await
}

on_both_backends!(
    account_limit_holds_in_the_tenant,
    reseller_package_holds_across_children,
    child_package_must_fit_parent,
    concurrent_creations_never_overshoot,
    addresses_and_domains_are_unique,
    domains_with_accounts_cannot_be_deleted,
    lists_page_by_cursor,
    audit_log_is_append_only,
    pool_ledger_is_append_only_and_debits_once_a_month,
    ancestry_runs_up_to_the_root,
    dkim_rotation_switches_keys_once,
    traffic_counts_a_tenant_tree_by_day,
    pool_history_runs_month_by_month,
    mailbox_views_read_the_same_both_ways,
    a_delivery_without_room_is_refused_alone_in_its_batch,
    summaries_are_kept_with_their_message_at_every_store_path,
    another_process_hears_new_mail_and_jobs,
    submissions_committed_together_keep_their_own_limits,
    a_batch_of_submissions_spools_every_row_once,
    postgres_connections_send_without_nagle,
    every_change_of_who_may_act_reaches_a_remembered_standing,
    another_process_forgets_remembered_standings,
);

/// Sets an account's status behind the store's back, as another process
/// on the same SQLite file would (nothing is announced).
async fn set_status_unannounced(store: &Store, id: AccountId, status: AccountStatus) {
    let sql = "UPDATE accounts SET status = $2 WHERE id = $1";
    on_pool!(&store.pool, p => sqlx::query(sql).bind(id.0).bind(status.as_str()).execute(p).await.map(|_| ()))
        .unwrap();
}

/// Standings are remembered (a change nobody announced stays unseen until
/// [`HELD_FOR`] passes), and every change of who may act made through the
/// store is seen by the very next look: an account's role, a tenant's
/// status, a domain's verification, a revoked API key, a released claim.
async fn every_change_of_who_may_act_reaches_a_remembered_standing(backend: Backend) {
    use std::time::Duration;
    // Remembered for an hour, so that only announced changes can be seen.
    let store = fresh_store(backend)
        .await
        .holding_standings_for(Duration::from_secs(3600));
    let t = tenant(&store, TenantKind::Enterprise, None, limits(5, 2)).await;
    let d = domain(&store, t.id, "acme.test").await.unwrap();
    let ann = account(&store, &d, "ann").await.unwrap();
    let now = || async { store.standing_now(ann.id).await.unwrap().unwrap() };
    assert_eq!(now().await.account.status, AccountStatus::Active);

    // Remembered: a change made behind the store's back is not seen yet…
    set_status_unannounced(&store, ann.id, AccountStatus::Suspended).await;
    assert_eq!(now().await.account.status, AccountStatus::Active);
    assert_eq!(
        store
            .standing(ann.id)
            .await
            .unwrap()
            .unwrap()
            .account
            .status,
        AccountStatus::Suspended,
        "the uncached read sees it"
    );
    // …until the remembered standing is too old (here: at once).
    let brief = store.clone().holding_standings_for(Duration::ZERO);
    let seen = brief.standing_now(ann.id).await.unwrap().unwrap();
    assert_eq!(seen.account.status, AccountStatus::Suspended);
    set_status_unannounced(&store, ann.id, AccountStatus::Active).await;
    let seen = brief.standing_now(ann.id).await.unwrap().unwrap();
    assert_eq!(seen.account.status, AccountStatus::Active);

    // A role change through the store is seen at once.
    store
        .update_account(
            ACTOR,
            ann.id,
            AccountUpdate {
                role: Some(AccountRole::Admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(now().await.account.role, AccountRole::Admin);

    // So is the tenant's status.
    let suspend = TenantUpdate {
        status: Some(TenantStatus::Suspended),
        ..Default::default()
    };
    store.update_tenant(ACTOR, t.id, suspend).await.unwrap();
    assert_eq!(now().await.tenant_status, TenantStatus::Suspended);
    let resume = TenantUpdate {
        status: Some(TenantStatus::Active),
        ..Default::default()
    };
    store.update_tenant(ACTOR, t.id, resume).await.unwrap();
    assert_eq!(now().await.tenant_status, TenantStatus::Active);

    // And the domain's verification.
    assert!(!now().await.domain_verified);
    store.mark_domain_verified(ACTOR, &d, "dns").await.unwrap();
    assert!(now().await.domain_verified);

    // An API key: remembered while it holds, refused once revoked.
    let key = store
        .create_api_key(
            ACTOR,
            NewApiKey {
                tenant_id: t.id,
                name: "ci".into(),
                prefix: "ck_1234".into(),
                secret_hash: "hash".into(),
                scopes: vec![Scope::Read],
            },
        )
        .await
        .unwrap();
    let held = store.api_key_standing(key.id).await.unwrap().unwrap();
    assert_eq!(held.refusal, None);
    store.revoke_api_key(ACTOR, &key).await.unwrap();
    let held = store.api_key_standing(key.id).await.unwrap().unwrap();
    assert!(
        matches!(held.refusal, Some(KeyRefusal::Revoked(_))),
        "{:?}",
        held.refusal
    );

    // An account released with its claim stands no more.
    let claim = domain(&store, t.id, "claim.test").await.unwrap();
    let bob = account(&store, &claim, "bob").await.unwrap();
    assert!(store.standing_now(bob.id).await.unwrap().is_some());
    assert_eq!(store.release_claim(ACTOR, &claim).await.unwrap(), 1);
    assert!(store.standing_now(bob.id).await.unwrap().is_none());
}

/// Two stores on one database stand for two processes. On PostgreSQL, a
/// change of who may act made by one reaches the other over NOTIFY: its
/// sessions hear it and its remembered standing is forgotten before they do.
/// On SQLite nothing crosses, and the remembered standing expires
/// ([`HELD_FOR`]).
async fn another_process_forgets_remembered_standings(backend: Backend) {
    use std::time::Duration;
    let fresh = crate::testing::fresh_database(backend).await;
    let here = fresh.store;
    let there = Store::connect(&fresh.url, 4)
        .await
        .unwrap()
        .holding_standings_for(Duration::from_secs(3600));
    let heard = backend == Backend::Postgres;
    assert_eq!(here.hear_other_processes().await.unwrap(), heard);
    assert_eq!(there.hear_other_processes().await.unwrap(), heard);
    let t = tenant(&here, TenantKind::Enterprise, None, limits(2, 1)).await;
    let d = domain(&here, t.id, "acme.test").await.unwrap();
    let ann = account(&here, &d, "ann").await.unwrap();
    let status = || async {
        there
            .standing_now(ann.id)
            .await
            .unwrap()
            .unwrap()
            .account
            .status
    };
    assert_eq!(status().await, AccountStatus::Active);

    let mut sessions = there.access_changes();
    here.update_account(
        ACTOR,
        ann.id,
        AccountUpdate {
            status: Some(AccountStatus::Suspended),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let across = tokio::time::timeout(Duration::from_secs(5), sessions.recv()).await;
    if heard {
        let change = across.expect("heard over NOTIFY").unwrap();
        assert_eq!(change, AccessChange::Account(ann.id));
        assert_eq!(status().await, AccountStatus::Suspended);
    } else {
        // Nothing crosses: remembered until it is too old (an hour here, HELD_FOR in service).
        assert!(across.is_err(), "SQLite has no channel between processes");
        assert_eq!(status().await, AccountStatus::Active, "still remembered");
        let brief = there.clone().holding_standings_for(Duration::ZERO);
        let seen = brief.standing_now(ann.id).await.unwrap().unwrap();
        assert_eq!(seen.account.status, AccountStatus::Suspended);
    }
    there.close().await;
    here.close().await;
}

/// PostgreSQL connections over TCP have Nagle's algorithm off: sqlx leaves
/// it on, and a statement longer than one TCP segment then waits 40 ms on a
/// delayed acknowledgement (see `store/nodelay.rs`). SQLite has no socket.
async fn postgres_connections_send_without_nagle(backend: Backend) {
    let store = fresh_store(backend).await;
    match &store.pool {
        Pool::Sqlite(_) => assert_eq!(backend, Backend::Sqlite),
        Pool::Postgres(p) => {
            let mut conn = p.acquire().await.unwrap();
            let (port, server): (i32, i32) =
                sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap();
            let set = super::nodelay::is_set(port as u16, server as u16);
            assert_eq!(set, Some(true), "TCP_NODELAY on local port {port}");
        }
    }
}

/// Two stores on one database stand for two processes. On PostgreSQL the
/// second hears, over LISTEN/NOTIFY, of the mailbox the first delivered to
/// and of the job it queued; the first does not hear its own news twice.
/// On SQLite nothing crosses: the other process polls.
async fn another_process_hears_new_mail_and_jobs(backend: Backend) {
    use std::time::Duration;
    let fresh = crate::testing::fresh_database(backend).await;
    let here = fresh.store;
    let there = Store::connect(&fresh.url, 4).await.unwrap();
    let heard = backend == Backend::Postgres;
    assert_eq!(here.hear_other_processes().await.unwrap(), heard);
    assert_eq!(there.hear_other_processes().await.unwrap(), heard);
    assert_eq!(there.hears_other_processes(), heard);
    let t = tenant(&here, TenantKind::Enterprise, None, limits(2, 1)).await;
    let d = domain(&here, t.id, "acme.test").await.unwrap();
    let a = account(&here, &d, "ann").await.unwrap();
    let inbox = here.mailbox_of_role(a.id, Folder::Inbox).await.unwrap();

    let mut ours = here.mailbox_changes_feed();
    let mut theirs = there.mailbox_changes_feed();
    here.deliver(delivery(&a, "x@y.test", 10, false))
        .await
        .unwrap();
    assert_eq!(ours.recv().await.unwrap(), inbox.id, "heard here at once");
    let across = tokio::time::timeout(Duration::from_secs(5), theirs.recv()).await;
    if heard {
        assert_eq!(across.expect("heard over NOTIFY").unwrap(), inbox.id);
    } else {
        assert!(across.is_err(), "SQLite has no channel between processes");
    }
    // Our own notification came back to us, and was ignored.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ours.try_recv().is_err(), "no echo of our own news");

    let added = there.jobs_added();
    let woken = added.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    here.enqueue(NewJob {
        kind: "test",
        payload: "{}".into(),
        dedup_key: None,
        run_at: chrono::Utc::now(),
        max_attempts: 1,
    })
    .await
    .unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), woken).await;
    assert_eq!(woke.is_ok(), heard, "the other process's workers wake");
    there.close().await;
    here.close().await;
}

/// Submissions of two tenants committed in one transaction: each is
/// counted against its rates after the ones before it, one whose Sent copy
/// does not fit is refused alone, and what is refused leaves no row.
async fn submissions_committed_together_keep_their_own_limits(backend: Backend) {
    let store = fresh_store(backend).await;
    let small = Limits {
        storage_quota_bytes: 1000,
        ..limits(10, 10)
    };
    let a = tenant(&store, TenantKind::Enterprise, None, small).await;
    let b = tenant(&store, TenantKind::Enterprise, None, limits(10, 10)).await;
    let alice = account(
        &store,
        &domain(&store, a.id, "a.test").await.unwrap(),
        "alice",
    )
    .await
    .unwrap();
    let bob = account(
        &store,
        &domain(&store, b.id, "b.test").await.unwrap(),
        "bob",
    )
    .await
    .unwrap();
    let rates = SendRates {
        account_messages_per_hour: 2,
        account_recipients_per_day: 100,
        tenant_messages_per_hour: 100,
        tenant_recipients_per_day: 100,
    };
    let submission =
        |from: &Account, size: usize| submission(from, size, &["someone@remote.test"], rates);
    let outcomes = store
        .submit_batch(vec![
            submission(&alice, 100),
            submission(&alice, 2000),
            submission(&bob, 100),
            submission(&alice, 100),
            submission(&alice, 100),
        ])
        .await
        .unwrap();
    let kinds: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Ok(_) => "sent",
            Err(Error::LimitExceeded(_)) => "no room",
            Err(Error::RateLimited(_)) => "over rate",
            Err(_) => "other",
        })
        .collect();
    assert_eq!(kinds, ["sent", "no room", "sent", "sent", "over rate"]);
    assert_eq!(store.storage(a.id).await.unwrap().0, 200);
    for (who, sent) in [(&alice, 2), (&bob, 1)] {
        let folder = store.mailbox_of_role(who.id, Folder::Sent).await.unwrap();
        assert_eq!(
            store.mailbox_counts(folder.id).await.unwrap().messages,
            sent
        );
        let spooled = "SELECT COUNT(*) FROM outbound WHERE account_id = $1";
        let (n,): (i64,) =
            on_pool!(&store.pool, p => sqlx::query_as(spooled).bind(who.id.0).fetch_one(p).await)
                .unwrap();
        assert_eq!(n, sent, "nothing refused is spooled");
    }
    // The next one, alone, still sees the two of the hour.
    let again = store.submit(submission(&alice, 100)).await;
    assert!(matches!(again, Err(Error::RateLimited(_))), "{again:?}");
}

/// A submission of a Sent copy of `size` bytes from `from` to `recipients`,
/// with its delivery job, within `rates`.
fn submission(from: &Account, size: usize, recipients: &[&str], rates: SendRates) -> Submission {
    let sent_copy = delivery(from, from.address.as_str(), size, false).remove(0);
    let id = Uuid::now_v7();
    Submission {
        tenant_id: from.tenant_id,
        account_id: from.id,
        envelope_from: from.address.to_string(),
        header_message_id: format!("<{}@test>", sent_copy.id),
        outbound: vec![NewOutbound {
            id,
            content: vec![b'y'; size],
            recipients: recipients.iter().map(|r| r.to_string()).collect(),
        }],
        sent_copy,
        expires_at: chrono::Utc::now() + chrono::Duration::days(1),
        jobs: vec![crate::store::NewJob {
            kind: "deliver",
            payload: format!("{{\"outbound_id\":\"{id}\"}}"),
            dedup_key: Some(id.to_string()),
            run_at: chrono::Utc::now(),
            max_attempts: 3,
        }],
        limits: rates,
    }
}

/// A batch of submissions that all fit is written without savepoints, its
/// spool, deliveries, jobs and correspondents a few statements for all:
/// every row is there once, the same recipient twice is remembered twice,
/// the month counts each message sent, and an organisation's rate counts
/// what its other accounts sent earlier in the same batch.
async fn a_batch_of_submissions_spools_every_row_once(backend: Backend) {
    let store = fresh_store(backend).await;
    let a = tenant(&store, TenantKind::Enterprise, None, limits(10, 10)).await;
    let domain = domain(&store, a.id, "a.test").await.unwrap();
    let alice = account(&store, &domain, "alice").await.unwrap();
    let carol = account(&store, &domain, "carol").await.unwrap();
    let rates = SendRates {
        account_messages_per_hour: 10,
        account_recipients_per_day: 100,
        tenant_messages_per_hour: 4,
        tenant_recipients_per_day: 100,
    };
    let outcomes = store
        .submit_batch(vec![
            submission(&alice, 100, &["x@remote.test", "y@remote.test"], rates),
            submission(&carol, 100, &["x@remote.test"], rates),
            submission(&alice, 100, &["X@Remote.test"], rates),
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            let (n,): (i64,) =
                on_pool!(&store.pool, p => sqlx::query_as(sql).fetch_one(p).await).unwrap();
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM outbound").await, 3);
    assert_eq!(
        count("SELECT COUNT(*) FROM deliveries WHERE status = 'queued'").await,
        4
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM jobs WHERE kind = 'deliver' AND state = 'queued'").await,
        3
    );
    assert_eq!(
        count("SELECT CAST(COALESCE(SUM(messages_sent), 0) AS BIGINT) FROM usage_monthly").await,
        3
    );
    assert_eq!(
        store
            .correspondent(alice.id, "x@remote.test")
            .await
            .unwrap()
            .sent,
        2
    );
    assert_eq!(
        store
            .correspondent(alice.id, "y@remote.test")
            .await
            .unwrap()
            .sent,
        1
    );
    assert_eq!(
        store
            .correspondent(carol.id, "x@remote.test")
            .await
            .unwrap()
            .sent,
        1
    );
    // One left in the organisation's hour: carol's first is counted after
    // alice's of the same batch, and her second is over.
    let outcomes = store
        .submit_batch(vec![
            submission(&alice, 100, &["z@remote.test"], rates),
            submission(&carol, 100, &["z@remote.test"], rates),
        ])
        .await
        .unwrap();
    let sent: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
    assert_eq!(sent.iter().filter(|ok| **ok).count(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::RateLimited(_)))),
        "{outcomes:?}"
    );
    assert_eq!(count("SELECT COUNT(*) FROM outbound").await, 4);
    assert_eq!(
        count("SELECT COUNT(*) FROM jobs WHERE kind = 'deliver'").await,
        4
    );
    assert_eq!(
        count("SELECT CAST(COALESCE(SUM(messages_sent), 0) AS BIGINT) FROM usage_monthly").await,
        4
    );
}

/// A message of `size` bytes from `from` to `a`, for the group commit.
fn delivery(a: &Account, from: &str, size: usize, encrypted: bool) -> Vec<NewMessage> {
    vec![NewMessage {
        id: MessageId::new(),
        tenant_id: a.tenant_id,
        account_id: a.id,
        level: Level::Standard,
        envelope_from: from.into(),
        envelope_to: a.address.to_string(),
        subject: Some("batch".into()),
        sender: Some(from.into()),
        privacy: crate::privacy::PrivacyIndex::compute(&crate::privacy::Facts::default()),
        authentication: serde_json::json!({}),
        arrived_encrypted: encrypted,
        content: vec![b'x'; size],
        dispersed: None,
        summary: None,
        rfc822_size: size as i64,
        flags: Vec::new(),
        keywords: Vec::new(),
        received_at: None,
        verdict: None,
        mailbox: None,
    }]
}

/// The group commit stores a batch in one transaction without a savepoint
/// per delivery; when one delivery finds no room, the batch runs again with
/// savepoints and that delivery alone is refused. Storage, the month's
/// usage and the senders remembered count exactly what was stored, once.
async fn a_delivery_without_room_is_refused_alone_in_its_batch(backend: Backend) {
    let store = fresh_store(backend).await;
    let small = Limits {
        storage_quota_bytes: 1000,
        ..limits(10, 10)
    };
    let a = tenant(&store, TenantKind::Enterprise, None, small).await;
    let b = tenant(&store, TenantKind::Enterprise, None, limits(10, 10)).await;
    let alice = account(
        &store,
        &domain(&store, a.id, "a.test").await.unwrap(),
        "alice",
    )
    .await
    .unwrap();
    let bob = account(
        &store,
        &domain(&store, b.id, "b.test").await.unwrap(),
        "bob",
    )
    .await
    .unwrap();
    let outcomes = store
        .deliver_batch(vec![
            delivery(&bob, "news@x.test", 600, false),
            delivery(&alice, "news@x.test", 600, false),
            delivery(&alice, "news@x.test", 600, false),
            delivery(&bob, "News@X.test", 600, true),
        ])
        .await
        .unwrap();
    let refused: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
    assert_eq!(refused, [false, false, true, false]);
    assert!(matches!(outcomes[2], Err(Error::LimitExceeded(_))));
    assert_eq!(store.storage(a.id).await.unwrap().0, 600);
    assert_eq!(store.storage(b.id).await.unwrap().0, 1200);
    for (account, count) in [(&alice, 1), (&bob, 2)] {
        let inbox = store
            .mailbox_of_role(account.id, Folder::Inbox)
            .await
            .unwrap();
        assert_eq!(
            store.mailbox_counts(inbox.id).await.unwrap().messages,
            count
        );
    }
    let received = |tenant: TenantId| {
        let store = store.clone();
        async move {
            let sql =
                "SELECT messages_received, storage_bytes FROM usage_monthly WHERE tenant_id = $1";
            let row: (i64, i64) =
                on_pool!(&store.pool, p => sqlx::query_as(sql).bind(tenant.0).fetch_one(p).await)
                    .unwrap();
            row
        }
    };
    assert_eq!(received(a.id).await, (1, 600));
    assert_eq!(received(b.id).await, (2, 1200));
    let seen = store.correspondent(bob.id, "news@x.test").await.unwrap();
    assert_eq!((seen.received, seen.received_encrypted), (2, 1));
    let seen = store.correspondent(alice.id, "news@x.test").await.unwrap();
    assert_eq!(seen.received, 1);
}

/// A message's summary is written in the transaction that stores it, by
/// the group commit (only for the deliveries that were stored), by APPEND
/// and COPY; it is read back in one query, kept after the fact only where
/// none is and the message still is, and goes when the message does.
async fn summaries_are_kept_with_their_message_at_every_store_path(backend: Backend) {
    let store = fresh_store(backend).await;
    let small = Limits {
        storage_quota_bytes: 1000,
        ..limits(10, 10)
    };
    let t = tenant(&store, TenantKind::Enterprise, None, small).await;
    let a = account(
        &store,
        &domain(&store, t.id, "a.test").await.unwrap(),
        "ann",
    )
    .await
    .unwrap();
    let summarized = |size: usize, summary: &[u8]| {
        let mut d = delivery(&a, "x@elsewhere.test", size, false);
        d[0].summary = Some(summary.to_vec());
        d
    };
    let batch = vec![
        summarized(400, b"first"),
        summarized(700, b"refused: no room"),
        summarized(400, b"third"),
        delivery(&a, "x@elsewhere.test", 100, false),
    ];
    let ids: Vec<MessageId> = batch.iter().map(|d| d[0].id).collect();
    let outcomes = store.deliver_batch(batch).await.unwrap();
    let refused: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
    assert_eq!(refused, [false, true, false, false]);
    let found = store.message_summaries(&ids).await.unwrap();
    assert_eq!(
        found.len(),
        2,
        "the refused delivery's summary went with it"
    );
    assert_eq!(found[&ids[0]], b"first");
    assert_eq!(found[&ids[2]], b"third");

    // Kept after the fact: only where none is, and only for a message that is.
    let gone = MessageId::new();
    store
        .keep_message_summaries(&[
            (ids[0], b"replaced?".to_vec()),
            (ids[3], b"late".to_vec()),
            (gone, b"nobody's".to_vec()),
        ])
        .await
        .unwrap();
    let found = store
        .message_summaries(&[ids[0], ids[3], gone])
        .await
        .unwrap();
    assert_eq!(found.get(&ids[0]).map(Vec::as_slice), Some(&b"first"[..]));
    assert_eq!(found.get(&ids[3]).map(Vec::as_slice), Some(&b"late"[..]));
    assert!(!found.contains_key(&gone));

    // APPEND (and COPY, which appends).
    let archive = store.mailbox_of_role(a.id, Folder::Archive).await.unwrap();
    let appended = summarized(10, b"appended");
    store.append_messages(&archive, &appended).await.unwrap();
    let found = store.message_summaries(&[appended[0].id]).await.unwrap();
    assert_eq!(found[&appended[0].id], b"appended");

    // Deleting the message deletes its summary.
    let meta = store.message(ids[0]).await.unwrap().unwrap();
    store.delete_message(ACTOR, &meta).await.unwrap();
    assert!(store.message_summaries(&[ids[0]]).await.unwrap().is_empty());
}

/// SELECT's view (one aggregated read on SQLite) and the change feed (row
/// by row) agree on every field; UIDs and flags survive APPEND, STORE,
/// MOVE and EXPUNGE as the session expects.
async fn mailbox_views_read_the_same_both_ways(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(2, 1)).await;
    let d = domain(&store, t.id, "acme.test").await.unwrap();
    let a = account(&store, &d, "ann").await.unwrap();
    let inbox = store.mailbox_of_role(a.id, Folder::Inbox).await.unwrap();
    let archive = store.mailbox_of_role(a.id, Folder::Archive).await.unwrap();
    let message = |n: i64, flags: Vec<Flag>, keywords: &[&str]| NewMessage {
        id: MessageId::new(),
        tenant_id: t.id,
        account_id: a.id,
        level: if n % 2 == 0 {
            Level::Standard
        } else {
            Level::Sealed
        },
        envelope_from: "x@elsewhere.test".into(),
        envelope_to: "ann@acme.test".into(),
        subject: None,
        sender: None,
        privacy: crate::privacy::PrivacyIndex::compute(&crate::privacy::Facts::default()),
        authentication: serde_json::json!({}),
        arrived_encrypted: false,
        content: vec![b'x'; n as usize],
        dispersed: None,
        summary: None,
        rfc822_size: n,
        flags,
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        received_at: Some(
            chrono::DateTime::parse_from_rfc3339("2026-03-01T10:20:30.123456+00:00")
                .unwrap()
                .to_utc(),
        ),
        verdict: None,
        mailbox: None,
    };
    let batch = vec![
        message(10, vec![], &[]),
        message(
            11,
            vec![Flag::Seen, Flag::Flagged],
            &["$Work", "$Forwarded"],
        ),
        message(12, vec![Flag::Deleted], &[]),
        message(13, vec![Flag::Draft], &["$Junk"]),
    ];
    assert_eq!(
        store.append_messages(&inbox, &batch).await.unwrap(),
        [1, 2, 3, 4]
    );
    let change = FlagChange {
        op: FlagOp::Add,
        flags: vec![Flag::Answered],
        keywords: vec!["$work".into(), "Todo".into()],
    };
    let (changed, _) = store
        .store_flags(inbox.id, &[(2, 2)], &change, None)
        .await
        .unwrap();
    assert_eq!(
        changed[0].keywords,
        ["$Work", "$Forwarded", "Todo"],
        "keywords compare without case"
    );
    assert_eq!(
        store
            .move_messages(&inbox, &[(4, 4)], &archive)
            .await
            .unwrap(),
        [(4, 1)]
    );
    let expunged = store.expunge(inbox.id, None).await.unwrap();
    assert_eq!(expunged.iter().map(|e| e.0).collect::<Vec<_>>(), [3]);

    let (mailbox, view) = store.mailbox_view(inbox.id).await.unwrap().unwrap();
    let feed = store.mailbox_changes(inbox.id, 0).await.unwrap().unwrap();
    assert_eq!(view, feed.changed, "the two reads agree");
    assert_eq!(view.iter().map(|e| e.uid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(view[1].flags, [Flag::Answered, Flag::Flagged, Flag::Seen]);
    assert_eq!(view[1].level, Level::Sealed);
    assert_eq!(view[0].received_at, batch[0].received_at.unwrap());
    assert_eq!(
        feed.expunged,
        [3, 4],
        "moved and expunged UIDs left tombstones"
    );
    assert_eq!(mailbox.uid_next, 5, "UIDs are never given twice");
    assert!(
        store
            .mailbox_view(archive.id)
            .await
            .unwrap()
            .unwrap()
            .1
            .iter()
            .all(|e| e.keywords == ["$Junk"])
    );
    let (empty, none) = store
        .mailbox_view(store.mailbox_of_role(a.id, Folder::Trash).await.unwrap().id)
        .await
        .unwrap()
        .unwrap();
    assert!(none.is_empty() && empty.uid_next == 1);
}

async fn dkim_rotation_switches_keys_once(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(2, 1)).await;
    let d = domain(&store, t.id, "acme.test").await.unwrap();
    let states = |keys: Vec<DkimKey>| {
        keys.into_iter()
            .map(|k| (k.selector, k.state))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states(store.dkim_keys(d.id).await.unwrap()),
        [
            ("r1".to_owned(), DkimKeyState::Active),
            ("e1".to_owned(), DkimKeyState::Active)
        ]
    );
    assert!(
        !store
            .activate_pending_dkim_keys(ACTOR, t.id, d.id)
            .await
            .unwrap(),
        "nothing pending yet"
    );

    let next = [
        dkim_key("r2", DkimAlgorithm::Rsa),
        dkim_key("e2", DkimAlgorithm::Ed25519),
    ];
    store
        .add_pending_dkim_keys(ACTOR, t.id, d.id, &next)
        .await
        .unwrap();
    let again = store
        .add_pending_dkim_keys(ACTOR, t.id, d.id, &[dkim_key("r3", DkimAlgorithm::Rsa)])
        .await
        .unwrap_err();
    assert!(matches!(again, Error::Conflict(_)), "{again}");

    assert!(
        store
            .activate_pending_dkim_keys(ACTOR, t.id, d.id)
            .await
            .unwrap()
    );
    let keys = store.dkim_keys(d.id).await.unwrap();
    let by = |s: &str| keys.iter().find(|k| k.selector == s).unwrap();
    assert_eq!(by("r1").state, DkimKeyState::Retired);
    assert_eq!(by("e1").state, DkimKeyState::Retired);
    assert!(
        by("r1").retired_at.is_some() && by("r1").published(Utc::now()),
        "retired keys stay published a while"
    );
    assert_eq!(by("r2").state, DkimKeyState::Active);
    assert_eq!(by("e2").state, DkimKeyState::Active);
    assert!(
        !store
            .activate_pending_dkim_keys(ACTOR, t.id, d.id)
            .await
            .unwrap(),
        "a switch happens once"
    );
}

async fn account_limit_holds_in_the_tenant(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(2, 1)).await;
    let d = domain(&store, t.id, "acme.test").await.unwrap();
    account(&store, &d, "a").await.unwrap();
    account(&store, &d, "b").await.unwrap();
    let err = account(&store, &d, "c").await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("allows 2"), "{err}");
    let err = domain(&store, t.id, "other.test").await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");

    // Deleting frees a seat but never the address.
    let a = store
        .account_by_address(&EmailAddress::parse("a@acme.test").unwrap())
        .await
        .unwrap()
        .unwrap();
    store
        .update_account(
            ACTOR,
            a.id,
            AccountUpdate {
                status: Some(AccountStatus::Deleted),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        account(&store, &d, "a").await.unwrap_err(),
        Error::Conflict(_)
    ));
    account(&store, &d, "c").await.unwrap();
}

async fn reseller_package_holds_across_children(backend: Backend) {
    let store = fresh_store(backend).await;
    let reseller = tenant(&store, TenantKind::Reseller, None, limits(3, 5)).await;
    let a = tenant(
        &store,
        TenantKind::Enterprise,
        Some(reseller.id),
        limits(2, 1),
    )
    .await;
    let b = tenant(
        &store,
        TenantKind::Enterprise,
        Some(reseller.id),
        limits(2, 1),
    )
    .await;
    let da = domain(&store, a.id, "a.test").await.unwrap();
    let db = domain(&store, b.id, "b.test").await.unwrap();
    account(&store, &da, "one").await.unwrap();
    account(&store, &da, "two").await.unwrap();
    account(&store, &db, "three").await.unwrap();
    let err = account(&store, &db, "four").await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("parent tenant"), "{err}");

    // Closing a child gives its seats back to the reseller.
    store
        .update_tenant(
            ACTOR,
            a.id,
            TenantUpdate {
                status: Some(TenantStatus::Closed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    account(&store, &db, "four").await.unwrap();
}

async fn child_package_must_fit_parent(backend: Backend) {
    let store = fresh_store(backend).await;
    let reseller = tenant(&store, TenantKind::Reseller, None, limits(10, 2)).await;
    let too_big = NewTenant {
        name: "greedy".into(),
        kind: TenantKind::Enterprise,
        parent_id: Some(reseller.id),
        limits: limits(11, 1),
        policy: Policy::default(),
    };
    let err = store.create_tenant(ACTOR, too_big).await.unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    let child = tenant(
        &store,
        TenantKind::Enterprise,
        Some(reseller.id),
        limits(10, 2),
    )
    .await;
    let err = store
        .update_tenant(
            ACTOR,
            child.id,
            TenantUpdate {
                limits: Some(limits(20, 2)),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    let under_enterprise = NewTenant {
        name: "nested".into(),
        kind: TenantKind::Enterprise,
        parent_id: Some(child.id),
        limits: limits(1, 1),
        policy: Policy::default(),
    };
    assert!(matches!(
        store
            .create_tenant(ACTOR, under_enterprise)
            .await
            .unwrap_err(),
        Error::Invalid(_)
    ));
}

async fn concurrent_creations_never_overshoot(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(5, 1)).await;
    let d = domain(&store, t.id, "race.test").await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (store, d) = (store.clone(), d.clone());
            tokio::spawn(async move { account(&store, &d, &format!("user{i}")).await })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => created += 1,
            Err(Error::LimitExceeded(_)) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(
        store
            .list_accounts(
                t.id,
                Page {
                    after: None,
                    limit: 100
                }
            )
            .await
            .unwrap()
            .len(),
        5
    );
}

async fn addresses_and_domains_are_unique(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(5, 5)).await;
    let other = tenant(&store, TenantKind::Enterprise, None, limits(5, 5)).await;
    let d = domain(&store, t.id, "Unique.test").await.unwrap();
    assert_eq!(d.name.as_str(), "unique.test");
    let err = domain(&store, other.id, "UNIQUE.test.").await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    account(&store, &d, "Alice").await.unwrap();
    let err = account(&store, &d, "ALICE").await.unwrap_err();
    assert!(
        err.to_string().contains("alice@unique.test` is taken"),
        "{err}"
    );
}

async fn domains_with_accounts_cannot_be_deleted(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(5, 5)).await;
    let busy = domain(&store, t.id, "busy.test").await.unwrap();
    let idle = domain(&store, t.id, "idle.test").await.unwrap();
    account(&store, &busy, "x").await.unwrap();
    assert!(matches!(
        store.delete_domain(ACTOR, &busy).await.unwrap_err(),
        Error::Conflict(_)
    ));
    store.delete_domain(ACTOR, &idle).await.unwrap();
    assert!(store.domain(idle.id).await.unwrap().is_none());
    assert!(store.domain(busy.id).await.unwrap().is_some());
}

async fn lists_page_by_cursor(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(10, 10)).await;
    for i in 0..5 {
        domain(&store, t.id, &format!("d{i}.test")).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_domains(t.id, Page { after, limit: 2 })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.id.0);
        seen.extend(page.into_iter().map(|d| d.name.to_string()));
    }
    assert_eq!(
        seen,
        ["d0.test", "d1.test", "d2.test", "d3.test", "d4.test"]
    );
}

async fn audit_log_is_append_only(backend: Backend) {
    let store = fresh_store(backend).await;
    let t = tenant(&store, TenantKind::Enterprise, None, limits(1, 1)).await;
    let entries = store.audit_log(Some(t.id), None, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "tenant.create");
    assert_eq!(entries[0].actor, ACTOR);

    let update = "UPDATE audit_log SET actor = 'nobody'";
    let delete = "DELETE FROM audit_log";
    for sql in [update, delete] {
        let refused = on_pool!(&store.pool, p => sqlx::query(sql).execute(p).await.map(|_| ()));
        let err = refused.expect_err("the database must refuse to rewrite the audit log");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(
        store.audit_log(Some(t.id), None, 10).await.unwrap()[0].actor,
        ACTOR
    );
}

async fn pool_ledger_is_append_only_and_debits_once_a_month(backend: Backend) {
    let store = fresh_store(backend).await;
    let credit = "INSERT INTO pool_ledger (at, kind, reference, milli_months, amount_cents) VALUES ($1, 'credit', 'in_1', 5000, 500)";
    on_pool!(&store.pool, p => sqlx::query(credit).bind(chrono::Utc::now()).execute(p).await.map(|_| ())).unwrap();
    let again = on_pool!(&store.pool, p => sqlx::query(credit).bind(chrono::Utc::now()).execute(p).await.map(|_| ()));
    assert!(again.is_err(), "one credit per invoice");
    for sql in [
        "UPDATE pool_ledger SET milli_months = 99000",
        "DELETE FROM pool_ledger",
    ] {
        let refused = on_pool!(&store.pool, p => sqlx::query(sql).execute(p).await.map(|_| ()));
        let err = refused.expect_err("the database must refuse to rewrite the ledger");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    // Two free accounts, debited once for the month however often the job runs.
    let t = tenant(&store, TenantKind::Public, None, limits(10, 1)).await;
    let d = domain(&store, t.id, "free.test").await.unwrap();
    for local in ["ann", "ben"] {
        let a = account(&store, &d, local).await.unwrap();
        let free = "UPDATE accounts SET free = TRUE WHERE id = $1";
        on_pool!(&store.pool, p => sqlx::query(free).bind(a.id.0).execute(p).await.map(|_| ()))
            .unwrap();
    }
    assert_eq!(store.debit_pool("2026-11").await.unwrap(), 2);
    assert_eq!(
        store.debit_pool("2026-11").await.unwrap(),
        0,
        "a month is debited once"
    );
    assert_eq!(store.debit_pool("2026-12").await.unwrap(), 2);
    let summary = store.pool_summary(1).await.unwrap();
    assert_eq!(
        summary.funded_account_months, 1.0,
        "5 months credited, 4 debited"
    );
    assert_eq!(summary.active_free_accounts, 2);
    assert_eq!(summary.funded_capacity, 1);
    // The daily snapshot keeps a month's active accounts for its history.
    assert!(store.snapshot_usage("2026-11").await.unwrap() >= 1);
    let history = store.usage_history(t.id, 12).await.unwrap();
    let november = history
        .iter()
        .find(|m| m.month == "2026-11")
        .expect("November is recorded");
    assert_eq!(november.active_accounts, 2);
}

async fn ancestry_runs_up_to_the_root(backend: Backend) {
    let store = fresh_store(backend).await;
    let top = tenant(&store, TenantKind::Reseller, None, limits(10, 10)).await;
    let mid = tenant(&store, TenantKind::Reseller, Some(top.id), limits(10, 10)).await;
    let leaf = tenant(&store, TenantKind::Enterprise, Some(mid.id), limits(10, 10)).await;
    assert_eq!(
        store.ancestry(leaf.id).await.unwrap(),
        [leaf.id, mid.id, top.id]
    );
    assert!(store.ancestry(TenantId::new()).await.unwrap().is_empty());
    let within = TenantFilter {
        within: Some(mid.id),
        ..Default::default()
    };
    let listed: Vec<_> = store
        .list_tenants(
            &within,
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|t| t.id).collect::<Vec<_>>(),
        [mid.id, leaf.id]
    );
}

fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn date(text: &str) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

/// A stored message of `size` bytes in `folder`, received (or sent) at `when`.
async fn stored_message(store: &Store, a: &Account, when: &str, size: i64, folder: &str) -> Uuid {
    let id = Uuid::now_v7();
    store.ensure_mailboxes(a.id).await.unwrap();
    let sql = "INSERT INTO messages (id, tenant_id, account_id, received_at, size, level, mailbox_id, uid, flags, envelope_from, \
         envelope_to, privacy, authentication, content) VALUES ($1, $2, $3, $4, $5, 'standard', \
         (SELECT id FROM mailboxes WHERE account_id = $3 AND role = $6), \
         (SELECT COALESCE(MAX(m.uid), 0) + 1 FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id WHERE b.account_id = $3 AND b.role = $6), \
         '', 'a@x.test', 'b@y.test', '{}', '{}', $7)";
    on_pool!(&store.pool, p => sqlx::query(sql).bind(id).bind(a.tenant_id.0).bind(a.id.0).bind(at(when)).bind(size).bind(folder)
        .bind(Vec::<u8>::new()).execute(p).await.map(|_| ())).unwrap();
    id
}

/// A submission's Sent copy, with its spooled version, later moved to `folder`.
async fn sent_message(store: &Store, a: &Account, when: &str, size: i64, folder: &str) {
    let id = stored_message(store, a, when, size, folder).await;
    let sql = "INSERT INTO outbound (id, message_id, tenant_id, account_id, envelope_from, header_message_id, content, \
         recipients, created_at, expires_at) VALUES ($1, $2, $3, $4, 'a@x.test', '<m@x.test>', NULL, 1, $5, $5)";
    on_pool!(&store.pool, p => sqlx::query(sql).bind(Uuid::now_v7()).bind(id).bind(a.tenant_id.0).bind(a.id.0).bind(at(when))
        .execute(p).await.map(|_| ())).unwrap();
}

async fn traffic_counts_a_tenant_tree_by_day(backend: Backend) {
    let store = fresh_store(backend).await;
    let reseller = tenant(&store, TenantKind::Reseller, None, limits(10, 10)).await;
    let child = tenant(
        &store,
        TenantKind::Enterprise,
        Some(reseller.id),
        limits(5, 5),
    )
    .await;
    let other = tenant(&store, TenantKind::Enterprise, None, limits(5, 5)).await;
    let own = account(
        &store,
        &domain(&store, reseller.id, "reseller.test").await.unwrap(),
        "own",
    )
    .await
    .unwrap();
    let kid = account(
        &store,
        &domain(&store, child.id, "child.test").await.unwrap(),
        "kid",
    )
    .await
    .unwrap();
    let stranger = account(
        &store,
        &domain(&store, other.id, "other.test").await.unwrap(),
        "x",
    )
    .await
    .unwrap();

    stored_message(&store, &kid, "2026-03-07T23:59:59.999+00:00", 7, "inbox").await; // the day before the window
    stored_message(&store, &kid, "2026-03-08T00:00:00+00:00", 100, "inbox").await;
    stored_message(&store, &own, "2026-03-09T08:00:00.5+00:00", 5, "archive").await;
    // Received, then moved to Sent by its owner: still received.
    stored_message(&store, &kid, "2026-03-09T23:59:59.999999+00:00", 20, "sent").await;
    stored_message(&store, &kid, "2026-03-10T00:00:00+00:00", 10, "inbox").await;
    // Sent, then moved to the archive: still sent.
    sent_message(&store, &kid, "2026-03-10T12:00:00+00:00", 1000, "archive").await;
    stored_message(&store, &kid, "2026-03-11T00:00:00+00:00", 9, "inbox").await; // the day after
    stored_message(&store, &stranger, "2026-03-09T12:00:00+00:00", 50, "inbox").await; // another tree

    let day = |date: &str, received, sent, received_bytes, sent_bytes| TrafficDay {
        date: date.into(),
        received,
        sent,
        received_bytes,
        sent_bytes,
        spam: 0,
    };
    let tree = store
        .traffic(reseller.id, date("2026-03-10"), 3)
        .await
        .unwrap();
    assert_eq!(
        tree,
        [
            day("2026-03-08", 1, 0, 100, 0),
            day("2026-03-09", 2, 0, 25, 0),
            day("2026-03-10", 1, 1, 10, 1000)
        ]
    );
    let leaf = store
        .traffic(child.id, date("2026-03-10"), 3)
        .await
        .unwrap();
    assert_eq!(
        leaf,
        [
            day("2026-03-08", 1, 0, 100, 0),
            day("2026-03-09", 1, 0, 20, 0),
            day("2026-03-10", 1, 1, 10, 1000)
        ]
    );
    // Days without mail are there, as zeros, oldest first.
    let week = store
        .traffic(other.id, date("2026-03-12"), 7)
        .await
        .unwrap();
    assert_eq!(week.len(), 7);
    assert_eq!(week[0].date, "2026-03-06");
    assert_eq!(week[6].date, "2026-03-12");
    assert_eq!(
        week.iter().map(|d| d.received).collect::<Vec<_>>(),
        [0, 0, 0, 1, 0, 0, 0]
    );
    assert_eq!(week[3], day("2026-03-09", 1, 0, 50, 0));
}

async fn pool_history_runs_month_by_month(backend: Backend) {
    let store = fresh_store(backend).await;
    let (ann, ben) = (Uuid::now_v7(), Uuid::now_v7());
    let entries = [
        (
            "2025-12-15T10:00:00+00:00",
            "credit",
            "in_old".to_owned(),
            6000,
        ), // before the window
        (
            "2026-01-05T10:00:00+00:00",
            "credit",
            "in_jan".to_owned(),
            3000,
        ),
        (
            "2026-01-31T23:59:59.9+00:00",
            "debit",
            format!("{ann}:2026-01"),
            -1000,
        ),
        (
            "2026-01-31T23:59:59.9+00:00",
            "debit",
            format!("{ben}:2026-01"),
            -1000,
        ),
        (
            "2026-03-01T00:00:00+00:00",
            "debit",
            format!("{ann}:2026-03"),
            -1000,
        ),
        (
            "2026-03-02T00:00:00+00:00",
            "reversal",
            "in_jan:500".to_owned(),
            -500,
        ),
        (
            "2026-03-20T00:00:00+00:00",
            "credit",
            "in_mar".to_owned(),
            2000,
        ),
        (
            "2026-04-01T00:00:00+00:00",
            "credit",
            "in_apr".to_owned(),
            9000,
        ), // after the window
    ];
    let insert = "INSERT INTO pool_ledger (at, kind, reference, milli_months, amount_cents) VALUES ($1, $2, $3, $4, 0)";
    for (when, kind, reference, milli) in entries {
        on_pool!(&store.pool, p => sqlx::query(insert).bind(at(when)).bind(kind).bind(reference).bind(milli)
            .execute(p).await.map(|_| ())).unwrap();
    }
    let history = store.pool_history(2, date("2026-03-10"), 3).await.unwrap();
    assert_eq!(history.horizon_months, 2);
    let month = |month: &str, credited, debited, balance, capacity, free_accounts| PoolMonth {
        month: month.into(),
        credited,
        debited,
        balance,
        capacity,
        free_accounts,
    };
    assert_eq!(
        history.months,
        [
            month("2026-01", 3.0, 2.0, 7.0, 3, 2),
            month("2026-02", 0.0, 0.0, 7.0, 3, 0),
            month("2026-03", 1.5, 1.0, 7.5, 3, 1),
        ]
    );
    let one = store.pool_history(1, date("2026-04-30"), 1).await.unwrap();
    assert_eq!(one.months, [month("2026-04", 9.0, 0.0, 16.5, 16, 0)]);
    // A window across a year's end, before any entry.
    let early = store.pool_history(12, date("2025-02-01"), 2).await.unwrap();
    assert_eq!(
        early
            .months
            .iter()
            .map(|m| m.month.as_str())
            .collect::<Vec<_>>(),
        ["2025-01", "2025-02"]
    );
    assert!(
        early
            .months
            .iter()
            .all(|m| m.balance == 0.0 && m.capacity == 0)
    );
}
