//! The register's rules, each run on SQLite and on PostgreSQL.

use chrono::{Days, NaiveDate, Utc};
use uuid::Uuid;

use super::*;
use crate::model::{AccountRole, DomainName, EmailAddress, Level, Limits, Policy, TenantKind};
use crate::on_both_backends;
use crate::store::{Account, NewAccount, NewDomain, NewTenant, Store, Tenant};
use crate::testing::fresh_store;
use crate::{Backend, Error};

const ACTOR: &str = "operator";

on_both_backends!(
    a_request_without_legal_basis_is_recorded_and_refused,
    a_correction_points_to_the_newest_entry,
    scope_accounts_belong_to_the_scope_tenant,
    exports_need_a_valid_request_complied_with,
    transparency_counts_each_request_once_as_corrected,
    the_canary_is_renewed_only_while_no_gag_order_runs,
    the_register_is_append_only,
);

async fn enterprise(store: &Store, name: &str) -> Tenant {
    let limits = Limits {
        max_accounts: 10,
        max_domains: 2,
        storage_quota_bytes: 1 << 30,
    };
    let new = NewTenant {
        name: name.into(),
        kind: TenantKind::Enterprise,
        parent_id: None,
        limits,
        policy: Policy::default(),
    };
    store.create_tenant(ACTOR, new).await.unwrap()
}

async fn accounts(store: &Store, tenant: &Tenant, domain: &str, locals: &[&str]) -> Vec<Account> {
    let new = NewDomain {
        tenant_id: tenant.id,
        name: DomainName::parse(domain).unwrap(),
        verification_token: "token".into(),
        dkim_keys: Vec::new(),
    };
    let d = store.create_domain(ACTOR, new).await.unwrap();
    let mut made = Vec::new();
    for local in locals {
        let new = NewAccount {
            tenant_id: tenant.id,
            domain_id: d.id,
            address: EmailAddress::parse(&format!("{local}@{domain}")).unwrap(),
            display_name: (*local).into(),
            role: AccountRole::User,
            level: Level::Standard,
            password_hash: "hash".into(),
            fingerprint: "fp".into(),
            public_key: "public".into(),
            secret_key: "secret".into(),
        };
        made.push(store.create_account(ACTOR, new).await.unwrap());
    }
    made
}

fn day(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// A request of `tenant` received on `received`, with a court order and `decision`.
fn request(tenant: &Tenant, country: &str, received: &str, decision: Decision) -> NewLegalRequest {
    NewLegalRequest {
        authority: "Tribunal judiciaire de Paris".into(),
        country: Jurisdiction::parse(country).unwrap(),
        legal_basis: Some(format!("RG {received}/0042")),
        received_on: day(received),
        scope: LegalScope {
            tenant_id: tenant.id,
            account_ids: Vec::new(),
            from: None,
            until: None,
            kinds: vec![DataKind::Messages, DataKind::AccountMetadata],
        },
        decision: Some(decision),
        disclosed: String::new(),
        tenant_notified: false,
        gag_until: None,
    }
}

fn unfounded(tenant: &Tenant, country: &str, received: &str) -> NewLegalRequest {
    NewLegalRequest {
        legal_basis: None,
        decision: None,
        ..request(tenant, country, received, Decision::Refused)
    }
}

fn export(accounts: i64, by_level: [i64; 4]) -> NewLegalExport {
    NewLegalExport {
        sha256: "ab".repeat(32),
        signature: format!("{}==", "A".repeat(86)),
        accounts,
        messages_by_level: by_level,
        bytes: 4096,
    }
}

fn canary(issued_days_ago: u64) -> NewCanary {
    let issued_at = Utc::now() - chrono::Duration::days(issued_days_ago as i64);
    NewCanary {
        issued_at,
        next_due: issued_at + chrono::Duration::days(2),
        statement: format!("No gag order as of {issued_at}"),
        signature: format!("{}==", "B".repeat(86)),
    }
}

fn invalid(e: Error) -> String {
    match e {
        Error::Invalid(why) => why,
        other => panic!("expected Error::Invalid, got {other:?}"),
    }
}

fn conflict(e: Error) -> String {
    match e {
        Error::Conflict(why) => why,
        other => panic!("expected Error::Conflict, got {other:?}"),
    }
}

async fn a_request_without_legal_basis_is_recorded_and_refused(backend: Backend) {
    let store = fresh_store(backend).await;
    let operator = store.ensure_operator().await.unwrap();
    let acme = enterprise(&store, "Acme").await;

    let recorded = store
        .record_legal_request(ACTOR, unfounded(&acme, "us", "2026-01-10"))
        .await
        .unwrap();
    assert_eq!(recorded.decision, Decision::Refused);
    assert!(!recorded.valid);
    assert_eq!(recorded.legal_basis, None);
    assert_eq!(recorded.country.as_str(), "US", "countries are upper case");
    assert_eq!(recorded.recorded_by, ACTOR);
    assert_eq!(
        store
            .legal_request(recorded.id)
            .await
            .unwrap()
            .unwrap()
            .decision,
        Decision::Refused
    );
    // Saying `refused` outright is the same.
    let refused = NewLegalRequest {
        decision: Some(Decision::Refused),
        ..unfounded(&acme, "US", "2026-01-11")
    };
    assert_eq!(
        store
            .record_legal_request(ACTOR, refused)
            .await
            .unwrap()
            .decision,
        Decision::Refused
    );

    let complied = NewLegalRequest {
        decision: Some(Decision::Complied),
        ..unfounded(&acme, "US", "2026-01-12")
    };
    let why = invalid(
        store
            .record_legal_request(ACTOR, complied)
            .await
            .unwrap_err(),
    );
    assert!(
        why.contains("without a legal basis")
            && why.contains("can only be refused")
            && why.contains("`complied`"),
        "{why}"
    );
    let undecided = NewLegalRequest {
        decision: None,
        ..request(&acme, "FR", "2026-01-12", Decision::Complied)
    };
    assert!(
        invalid(
            store
                .record_legal_request(ACTOR, undecided)
                .await
                .unwrap_err()
        )
        .contains("`decision` is required")
    );
    let blank = NewLegalRequest {
        legal_basis: Some("  ".into()),
        ..request(&acme, "FR", "2026-01-12", Decision::Complied)
    };
    assert!(
        invalid(store.record_legal_request(ACTOR, blank).await.unwrap_err())
            .contains("leave it out")
    );
    let future = request(
        &acme,
        "FR",
        &(today() + Days::new(2)).to_string(),
        Decision::Complied,
    );
    assert!(
        invalid(store.record_legal_request(ACTOR, future).await.unwrap_err())
            .contains("in the future")
    );
    let mut nothing = request(&acme, "FR", "2026-01-12", Decision::Complied);
    nothing.scope.kinds.clear();
    assert!(
        invalid(
            store
                .record_legal_request(ACTOR, nothing)
                .await
                .unwrap_err()
        )
        .contains("at least one kind")
    );
    let notified_under_gag = NewLegalRequest {
        tenant_notified: true,
        gag_until: Some(today() + Days::new(10)),
        ..request(&acme, "FR", "2026-01-12", Decision::Complied)
    };
    assert!(
        invalid(
            store
                .record_legal_request(ACTOR, notified_under_gag)
                .await
                .unwrap_err()
        )
        .contains("gag order")
    );

    // The register's traces are the operator's: the tenant's own audit log shows nothing of it.
    let own = store.audit_log(Some(acme.id), None, 200).await.unwrap();
    assert!(
        own.iter().all(|e| !e.action.starts_with("legal")),
        "{own:?}"
    );
    let operators = store.audit_log(Some(operator.id), None, 200).await.unwrap();
    assert_eq!(
        operators
            .iter()
            .filter(|e| e.action == "legal_request.record")
            .count(),
        2
    );
}

async fn a_correction_points_to_the_newest_entry(backend: Backend) {
    let store = fresh_store(backend).await;
    let acme = enterprise(&store, "Acme").await;
    let first = store
        .record_legal_request(
            ACTOR,
            request(&acme, "FR", "2026-02-01", Decision::Contested),
        )
        .await
        .unwrap();
    let fixed = NewLegalRequest {
        authority: "Cour d'appel de Paris".into(),
        ..request(&acme, "FR", "2026-02-01", Decision::Complied)
    };
    let second = store
        .correct_legal_request(ACTOR, first.id, fixed.clone())
        .await
        .unwrap();
    assert_eq!(second.corrects, Some(first.id));
    assert_eq!(second.corrected_by, None);

    // Correcting the entry already corrected is a conflict that names the newer one.
    let why = conflict(
        store
            .correct_legal_request(ACTOR, first.id, fixed.clone())
            .await
            .unwrap_err(),
    );
    assert!(
        why.contains(&second.id.to_string()) && why.contains("newest"),
        "{why}"
    );
    let third = store
        .correct_legal_request(
            ACTOR,
            second.id,
            NewLegalRequest {
                disclosed: "two mailboxes".into(),
                ..fixed.clone()
            },
        )
        .await
        .unwrap();
    let why = conflict(
        store
            .correct_legal_request(ACTOR, first.id, fixed.clone())
            .await
            .unwrap_err(),
    );
    assert!(
        why.contains(&second.id.to_string()) && why.contains(&third.id.to_string()),
        "names the newer and the newest: {why}"
    );
    assert!(matches!(
        store
            .correct_legal_request(ACTOR, Uuid::now_v7(), fixed)
            .await,
        Err(Error::NotFound(_))
    ));

    // An entry reads as recorded; the current request is the newest of its chain.
    let entry = store.legal_request(first.id).await.unwrap().unwrap();
    assert_eq!(
        (entry.decision, entry.corrected_by),
        (Decision::Contested, Some(second.id))
    );
    for id in [first.id, second.id, third.id] {
        let current = store.current_legal_request(id).await.unwrap().unwrap();
        assert_eq!(current.id, third.id);
        assert_eq!(current.disclosed, "two mailboxes");
        assert_eq!(current.authority, "Cour d'appel de Paris");
        let chain: Vec<Uuid> = store
            .legal_request_chain(id)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(chain, [first.id, second.id, third.id]);
    }
    assert!(
        store
            .current_legal_request(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
    let listed = store
        .list_legal_requests(Page {
            after: None,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [first.id, second.id]
    );
    let rest = store
        .list_legal_requests(Page {
            after: Some(second.id),
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|r| r.id).collect::<Vec<_>>(), [third.id]);
}

async fn scope_accounts_belong_to_the_scope_tenant(backend: Backend) {
    let store = fresh_store(backend).await;
    let acme = enterprise(&store, "Acme").await;
    let globex = enterprise(&store, "Globex").await;
    let ours = accounts(&store, &acme, "acme.test", &["ann", "bob"]).await;
    let theirs = accounts(&store, &globex, "globex.test", &["eve"]).await;

    let mut new = request(&acme, "DE", "2026-03-01", Decision::Complied);
    new.scope.account_ids = vec![ours[1].id, ours[0].id, ours[1].id];
    let recorded = store
        .record_legal_request(ACTOR, new.clone())
        .await
        .unwrap();
    let mut expected = vec![ours[0].id, ours[1].id];
    expected.sort();
    assert_eq!(recorded.scope.account_ids, expected, "each account once");

    new.scope.account_ids = vec![ours[0].id, theirs[0].id];
    let why = invalid(
        store
            .record_legal_request(ACTOR, new.clone())
            .await
            .unwrap_err(),
    );
    assert!(
        why.contains("eve@globex.test") && why.contains("`Acme`"),
        "{why}"
    );
    new.scope.account_ids = vec![crate::model::AccountId::new()];
    assert!(
        invalid(
            store
                .record_legal_request(ACTOR, new.clone())
                .await
                .unwrap_err()
        )
        .contains("does not exist")
    );
    new.scope.account_ids.clear();
    new.scope.tenant_id = crate::model::TenantId::new();
    assert!(
        invalid(
            store
                .record_legal_request(ACTOR, new.clone())
                .await
                .unwrap_err()
        )
        .contains("tenant")
    );
    // A correction is checked like a first entry.
    let mut moved = request(&acme, "DE", "2026-03-01", Decision::Complied);
    moved.scope.account_ids = vec![theirs[0].id];
    assert!(
        invalid(
            store
                .correct_legal_request(ACTOR, recorded.id, moved)
                .await
                .unwrap_err()
        )
        .contains("does not belong")
    );
    let mut backwards = request(&acme, "DE", "2026-03-01", Decision::Complied);
    backwards.scope.from = Some(Utc::now());
    backwards.scope.until = Some(Utc::now() - chrono::Duration::days(1));
    assert!(
        invalid(
            store
                .record_legal_request(ACTOR, backwards)
                .await
                .unwrap_err()
        )
        .contains("before")
    );
}

async fn exports_need_a_valid_request_complied_with(backend: Backend) {
    let store = fresh_store(backend).await;
    let acme = enterprise(&store, "Acme").await;
    let unfounded = store
        .record_legal_request(ACTOR, unfounded(&acme, "US", "2026-04-01"))
        .await
        .unwrap();
    let why = conflict(
        store
            .record_legal_export(ACTOR, unfounded.id, export(1, [1, 0, 0, 0]))
            .await
            .unwrap_err(),
    );
    assert!(why.contains("no legal basis"), "{why}");
    let contested = store
        .record_legal_request(
            ACTOR,
            request(&acme, "FR", "2026-04-02", Decision::Contested),
        )
        .await
        .unwrap();
    assert!(
        conflict(
            store
                .record_legal_export(ACTOR, contested.id, export(1, [1, 0, 0, 0]))
                .await
                .unwrap_err()
        )
        .contains("`contested`")
    );

    // Once corrected to complied, the old entry's id reaches the request as it stands.
    let complied = store
        .correct_legal_request(
            ACTOR,
            contested.id,
            request(&acme, "FR", "2026-04-02", Decision::Complied),
        )
        .await
        .unwrap();
    let made = store
        .record_legal_export(ACTOR, contested.id, export(3, [4, 3, 2, 1]))
        .await
        .unwrap();
    assert_eq!(
        made.request_id, complied.id,
        "recorded under the current entry"
    );
    assert_eq!(
        made.messages,
        MessagesByLevel {
            standard: 4,
            sealed: 3,
            dispersed: 2,
            end_to_end: 1
        }
    );
    assert_eq!(made.messages.ciphertext_only(), 6);
    for id in [contested.id, complied.id] {
        assert_eq!(
            store.legal_request(id).await.unwrap().unwrap().exports,
            std::slice::from_ref(&made),
            "the chain's exports"
        );
    }
    let partially = store
        .correct_legal_request(
            ACTOR,
            complied.id,
            request(&acme, "FR", "2026-04-02", Decision::Partially),
        )
        .await
        .unwrap();
    assert!(
        store
            .record_legal_export(ACTOR, partially.id, export(1, [0, 1, 0, 0]))
            .await
            .is_ok()
    );
    assert_eq!(
        store
            .current_legal_request(contested.id)
            .await
            .unwrap()
            .unwrap()
            .exports
            .len(),
        2
    );

    let bad_hash = NewLegalExport {
        sha256: "AB".repeat(32),
        ..export(1, [0; 4])
    };
    assert!(
        invalid(
            store
                .record_legal_export(ACTOR, partially.id, bad_hash)
                .await
                .unwrap_err()
        )
        .contains("sha256")
    );
    let bad_signature = NewLegalExport {
        signature: "c2ln".into(),
        ..export(1, [0; 4])
    };
    assert!(
        invalid(
            store
                .record_legal_export(ACTOR, partially.id, bad_signature)
                .await
                .unwrap_err()
        )
        .contains("signature")
    );
    let negative = export(1, [0, -1, 0, 0]);
    assert!(
        invalid(
            store
                .record_legal_export(ACTOR, partially.id, negative)
                .await
                .unwrap_err()
        )
        .contains("negative")
    );
    assert!(matches!(
        store
            .record_legal_export(ACTOR, Uuid::now_v7(), export(1, [0; 4]))
            .await,
        Err(Error::NotFound(_))
    ));
}

fn counts(
    received: i64,
    [
        refused_no_legal_basis,
        refused,
        contested,
        complied,
        partially,
    ]: [i64; 5],
    accounts_affected: i64,
    by_level: [i64; 4],
) -> TransparencyCounts {
    let messages_disclosed = MessagesByLevel::from_counts(by_level);
    TransparencyCounts {
        received,
        refused_no_legal_basis,
        refused,
        contested,
        complied,
        partially,
        accounts_affected,
        messages_ciphertext_only: messages_disclosed.ciphertext_only(),
        messages_disclosed,
    }
}

fn row(quarter: &str, country: &str, counts: TransparencyCounts) -> TransparencyRow {
    TransparencyRow {
        quarter: quarter.into(),
        country: Jurisdiction::parse(country).unwrap(),
        counts,
    }
}

async fn transparency_counts_each_request_once_as_corrected(backend: Backend) {
    let store = fresh_store(backend).await;
    let acme = enterprise(&store, "Acme").await;
    let globex = enterprise(&store, "Globex").await;
    let people = accounts(&store, &acme, "acme.test", &["ann", "bob", "cat"]).await;

    // 2025-Q4, FR: complied for two accounts, with an export.
    let mut two = request(&acme, "FR", "2025-11-03", Decision::Complied);
    two.scope.account_ids = vec![people[0].id, people[1].id];
    let two = store.record_legal_request(ACTOR, two).await.unwrap();
    store
        .record_legal_export(ACTOR, two.id, export(2, [5, 7, 0, 1]))
        .await
        .unwrap();
    // 2025-Q4, FR: no legal basis.
    store
        .record_legal_request(ACTOR, unfounded(&acme, "FR", "2025-12-31"))
        .await
        .unwrap();
    // 2025-Q4, US: first recorded as refused in 2025-Q4, corrected to partially,
    // received 2026-01-02 (counted once, in 2026-Q1), the whole tenant, exported twice.
    let wrong = store
        .record_legal_request(ACTOR, request(&acme, "US", "2025-12-30", Decision::Refused))
        .await
        .unwrap();
    let right = store
        .correct_legal_request(
            ACTOR,
            wrong.id,
            request(&acme, "US", "2026-01-02", Decision::Partially),
        )
        .await
        .unwrap();
    store
        .record_legal_export(ACTOR, right.id, export(3, [0, 2, 3, 0]))
        .await
        .unwrap();
    store
        .record_legal_export(ACTOR, right.id, export(3, [0, 1, 0, 0]))
        .await
        .unwrap();
    // 2026-Q1, US: contested; Globex, refused with a basis.
    store
        .record_legal_request(
            ACTOR,
            request(&acme, "US", "2026-03-31", Decision::Contested),
        )
        .await
        .unwrap();
    store
        .record_legal_request(
            ACTOR,
            request(&globex, "US", "2026-02-14", Decision::Refused),
        )
        .await
        .unwrap();
    // Acme, under a gag order still running: hidden from Acme's own report only.
    let gagged = NewLegalRequest {
        gag_until: Some(today() + Days::new(30)),
        ..request(&acme, "DE", "2026-01-20", Decision::Complied)
    };
    let gagged = store.record_legal_request(ACTOR, gagged).await.unwrap();
    store
        .record_legal_export(ACTOR, gagged.id, export(1, [10, 0, 0, 0]))
        .await
        .unwrap();
    // Acme, a gag order that ended: shown.
    let lifted = NewLegalRequest {
        gag_until: Some(day("2026-01-31")),
        ..request(&acme, "DE", "2026-01-21", Decision::Refused)
    };
    store.record_legal_request(ACTOR, lifted).await.unwrap();

    let instance = store.transparency(None).await.unwrap();
    assert_eq!(instance.tenant_id, None);
    assert_eq!(
        instance.rows,
        [
            row("2025-Q4", "FR", counts(2, [1, 0, 0, 1, 0], 2, [5, 7, 0, 1])),
            row(
                "2026-Q1",
                "DE",
                counts(2, [0, 1, 0, 1, 0], 1, [10, 0, 0, 0])
            ),
            row("2026-Q1", "US", counts(3, [0, 1, 1, 0, 1], 3, [0, 3, 3, 0])),
        ]
    );
    assert_eq!(
        instance.totals,
        counts(7, [1, 2, 1, 2, 1], 6, [15, 10, 3, 1])
    );
    assert_eq!(instance.totals.messages_ciphertext_only, 14);

    let own = store.transparency(Some(acme.id)).await.unwrap();
    assert_eq!(own.tenant_id, Some(acme.id));
    assert_eq!(
        own.rows,
        [
            row("2025-Q4", "FR", counts(2, [1, 0, 0, 1, 0], 2, [5, 7, 0, 1])),
            row("2026-Q1", "DE", counts(1, [0, 1, 0, 0, 0], 0, [0, 0, 0, 0])),
            row("2026-Q1", "US", counts(2, [0, 0, 1, 0, 1], 3, [0, 3, 3, 0])),
        ],
        "without the gagged request, nor Globex's"
    );
    // Once the gag order has run out, the tenant's report shows it.
    let later = store
        .transparency_on(Some(acme.id), today() + Days::new(31))
        .await
        .unwrap();
    assert_eq!(later.totals.received, 6);
    assert_eq!(later.totals.messages_disclosed.standard, 15);
    let theirs = store.transparency(Some(globex.id)).await.unwrap();
    assert_eq!(
        theirs.rows,
        [row("2026-Q1", "US", counts(1, [0, 1, 0, 0, 0], 0, [0; 4]))]
    );
    assert_eq!(quarter_of(day("2026-10-01")), "2026-Q4");
    assert_eq!(quarter_of(day("2026-09-30")), "2026-Q3");
}

async fn the_canary_is_renewed_only_while_no_gag_order_runs(backend: Backend) {
    let store = fresh_store(backend).await;
    let acme = enterprise(&store, "Acme").await;
    assert!(store.latest_canary().await.unwrap().is_none());
    let first = store.issue_canary("worker", canary(1)).await.unwrap();
    assert_eq!(store.latest_canary().await.unwrap(), Some(first.clone()));
    let bad = NewCanary {
        next_due: first.issued_at,
        ..canary(0)
    };
    assert!(invalid(store.issue_canary("worker", bad).await.unwrap_err()).contains("due after"));

    // A gag order recorded: no renewal while it runs.
    let gag = NewLegalRequest {
        gag_until: Some(today() + Days::new(5)),
        ..request(&acme, "FR", "2026-01-05", Decision::Complied)
    };
    let gagged = store.record_legal_request(ACTOR, gag).await.unwrap();
    assert!(store.gag_order_running(today()).await.unwrap());
    assert!(
        conflict(store.issue_canary("worker", canary(0)).await.unwrap_err()).contains("gag order")
    );
    assert_eq!(
        store.latest_canary().await.unwrap(),
        Some(first.clone()),
        "the old canary stays, and lapses"
    );
    // The day after it ends, renewal is possible again.
    assert!(
        !store
            .gag_order_running(today() + Days::new(6))
            .await
            .unwrap()
    );

    // The order lifted early (a correction): only the register as it stands counts.
    let lifted = NewLegalRequest {
        gag_until: Some(today() - Days::new(1)),
        ..request(&acme, "FR", "2026-01-05", Decision::Complied)
    };
    store
        .correct_legal_request(ACTOR, gagged.id, lifted)
        .await
        .unwrap();
    assert!(!store.gag_order_running(today()).await.unwrap());
    let renewed = store.issue_canary("worker", canary(0)).await.unwrap();
    assert_ne!(renewed.id, first.id);
    assert_eq!(store.latest_canary().await.unwrap(), Some(renewed));
}

async fn the_register_is_append_only(backend: Backend) {
    let store = fresh_store(backend).await;
    let acme = enterprise(&store, "Acme").await;
    let recorded = store
        .record_legal_request(
            ACTOR,
            request(&acme, "FR", "2026-01-05", Decision::Complied),
        )
        .await
        .unwrap();
    store
        .record_legal_export(ACTOR, recorded.id, export(1, [1, 0, 0, 0]))
        .await
        .unwrap();
    store.issue_canary("worker", canary(0)).await.unwrap();
    for sql in [
        "UPDATE legal_requests SET decision = 'refused'",
        "DELETE FROM legal_requests",
        "UPDATE legal_exports SET accounts = 0",
        "DELETE FROM legal_exports",
        "UPDATE warrant_canaries SET statement = 'changed'",
        "DELETE FROM warrant_canaries",
    ] {
        let outcome = on_pool!(&store.pool, p => sqlx::query(sql).execute(p).await.map(|_| ()));
        let error = outcome.expect_err(sql).to_string();
        assert!(error.contains("append-only"), "{sql}: {error}");
    }
    let kept = store.legal_request(recorded.id).await.unwrap().unwrap();
    assert_eq!((kept.decision, kept.exports.len()), (Decision::Complied, 1));
}
