//! The control plane on a real SQLite file: every key operation, its rules, and its audit trail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use std::sync::Arc;
use tollgate_control::{Control, ControlError, ErrorClass, KeyOwnerRequest, NewKey, RevokeOutcome};
use tollgate_core::duration::Span;
use tollgate_core::lifecycle::KeyStatus;
use tollgate_core::{
    KeyFormat, KeyHasher, KeyKind, ManualClock, Permissions, ServerSecret, UnixTime,
};
use tollgate_store::{Actor, KeyOwner, UsageEvent, UsageGrouping};

const START: UnixTime = UnixTime(1_800_000_000);

struct Setup {
    _dir: tempfile::TempDir,
    _scratch: Option<tollgate_store::scratch::ScratchDatabase>,
    control: Control,
    clock: ManualClock,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    // SQLite, or PostgreSQL with TOLLGATE_TEST_STORE=postgres.
    let (store, _, scratch) = tollgate_store::scratch::test_store(dir.path())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let hasher = KeyHasher::new(ServerSecret::new(vec![42; 32]).unwrap());
    let clock = ManualClock::at(START);
    let control = Control::new(store, hasher, KeyFormat::default(), Arc::new(clock.clone()));
    control
        .bootstrap("owner@example.com")
        .await
        .unwrap()
        .unwrap();
    Setup {
        _dir: dir,
        _scratch: scratch,
        control,
        clock,
    }
}

fn actor() -> Actor {
    Actor::cli("alice")
}

fn new_key(name: &str, owner: KeyOwnerRequest) -> NewKey {
    NewKey {
        name: name.into(),
        owner,
        permissions: Permissions::All,
        expires_in: None,
        allowed_ips: Default::default(),
        allowed_models: Default::default(),
        limits: Default::default(),
        budget: None,
    }
}

fn class<T: std::fmt::Debug>(result: Result<T, ControlError>) -> ErrorClass {
    result.expect_err("should fail").class()
}

#[tokio::test]
async fn bootstrap_happens_once_and_checks_the_secret_afterwards() {
    let s = setup().await;
    assert!(
        s.control
            .bootstrap("owner@example.com")
            .await
            .unwrap()
            .is_none(),
        "second run creates nothing"
    );
    let projects = s.control.projects(false).await.unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].name, "Default project");
    assert!(projects[0].id.as_str().starts_with("proj_"));
    let keys = s.control.keys(None, Some(KeyKind::Admin)).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].redacted.starts_with("sk-admin-..."));

    let other = Control::new(
        s.control.store().clone(),
        KeyHasher::new(ServerSecret::new(vec![7; 32]).unwrap()),
        KeyFormat::default(),
        Arc::new(s.clock.clone()),
    );
    let err = other.bootstrap("owner@example.com").await.unwrap_err();
    assert!(matches!(err, ControlError::WrongSecret), "{err}");
    assert_eq!(err.class(), ErrorClass::Environment);
}

#[tokio::test]
async fn the_whole_key_lifecycle_is_stored_and_audited() {
    let s = setup().await;
    let c = &s.control;
    // Create: the default project when none is named; the secret is not what is stored.
    let created = c
        .create_key(
            &actor(),
            new_key("Project Alpha Dev", KeyOwnerRequest::Project(None)),
        )
        .await
        .unwrap();
    let id = created.record.id.clone();
    assert_eq!(created.secret.id(), id, "the id derives from the secret");
    assert_eq!(created.record.hash, c.hasher().hash(&created.secret));
    assert_eq!(created.record.created_by, "cli:alice");
    assert_eq!(created.record.redacted, created.secret.redacted());

    // List and retrieve.
    let listed = c.keys(Some("Default project"), None).await.unwrap();
    assert_eq!(listed.iter().map(|k| &k.id).collect::<Vec<_>>(), [&id]);
    assert_eq!(c.key(id.as_str()).await.unwrap().name, "Project Alpha Dev");

    // Rename.
    s.clock.advance(10);
    assert_eq!(
        c.rename_key(&actor(), id.as_str(), "  Alpha prod ")
            .await
            .unwrap()
            .name,
        "Alpha prod"
    );
    assert_eq!(c.key(id.as_str()).await.unwrap().name, "Alpha prod");

    // Expire in an hour, then rotate with a day of grace: the grace cannot outlive the expiry.
    s.clock.advance(10);
    let expiring = c
        .expire_key(&actor(), id.as_str(), Span(3_600))
        .await
        .unwrap();
    assert_eq!(expiring.expires_at, Some(START.plus_seconds(20 + 3_600)));
    s.clock.advance(10);
    let rotation = c
        .rotate_key(&actor(), id.as_str(), Span(86_400))
        .await
        .unwrap();
    assert_eq!(rotation.old.expires_at, expiring.expires_at);
    let new_id = rotation.new.record.id.clone();
    assert_ne!(new_id, id);
    assert_eq!(rotation.new.record.name, "Alpha prod");
    assert_eq!(
        rotation.new.record.expires_at, expiring.expires_at,
        "the successor keeps the expiry policy"
    );
    let stored_old = c.key(id.as_str()).await.unwrap();
    assert_eq!(stored_old.rotated_to.as_ref(), Some(&new_id));
    assert_eq!(
        c.key(new_id.as_str()).await.unwrap().rotated_from.as_ref(),
        Some(&id)
    );

    // Rotating it again is refused, and names the successor.
    let again = c.rotate_key(&actor(), id.as_str(), Span(3_600)).await;
    assert!(again
        .as_ref()
        .unwrap_err()
        .to_string()
        .contains(new_id.as_str()));
    assert_eq!(class(again), ErrorClass::Conflict);

    // Revoke the successor; revoking twice changes nothing; revoked keys cannot be rotated or renamed.
    s.clock.advance(10);
    assert!(matches!(
        c.revoke_key(&actor(), new_id.as_str()).await.unwrap(),
        RevokeOutcome::Revoked(_)
    ));
    assert!(matches!(
        c.revoke_key(&actor(), new_id.as_str()).await.unwrap(),
        RevokeOutcome::AlreadyRevoked(_)
    ));
    assert_eq!(
        class(c.rotate_key(&actor(), new_id.as_str(), Span(0)).await),
        ErrorClass::Conflict
    );
    assert_eq!(
        class(c.rename_key(&actor(), new_id.as_str(), "x").await),
        ErrorClass::Conflict
    );
    assert_eq!(
        c.key(new_id.as_str()).await.unwrap().status(c.now()),
        KeyStatus::Revoked
    );

    // After the old key's expiry it cannot be rotated either.
    s.clock.advance(3_600);
    assert_eq!(
        c.key(id.as_str()).await.unwrap().status(c.now()),
        KeyStatus::Expired
    );
    assert_eq!(
        class(c.rotate_key(&actor(), id.as_str(), Span(0)).await),
        ErrorClass::Conflict
    );

    // Every change is in the audit log with actor and time, newest first.
    let trail: Vec<(String, String, i64)> = c
        .audit(Some(id.as_str()), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.event_type,
                e.actor.label(),
                e.created_at.seconds() - START.seconds(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("api_key.rotated".to_owned(), "cli:alice".to_owned(), 30),
            ("api_key.updated".to_owned(), "cli:alice".to_owned(), 20),
            ("api_key.updated".to_owned(), "cli:alice".to_owned(), 10),
            ("api_key.created".to_owned(), "cli:alice".to_owned(), 0),
        ]
    );
    let successor_trail: Vec<String> = c
        .audit(Some(new_id.as_str()), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        successor_trail,
        ["api_key.revoked", "api_key.created"],
        "revoking twice writes one entry"
    );
}

#[tokio::test]
async fn immediate_rotation_ends_the_old_key_now() {
    let s = setup().await;
    let created = s
        .control
        .create_key(&actor(), new_key("k", KeyOwnerRequest::Project(None)))
        .await
        .unwrap();
    let rotation = s
        .control
        .rotate_key(
            &actor(),
            created.record.id.as_str(),
            Span::parse("immediate").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(rotation.old.expires_at, Some(START));
    assert_eq!(rotation.old.status(START), KeyStatus::Expired);
    assert_eq!(
        class(
            s.control
                .rotate_key(&actor(), rotation.new.record.id.as_str(), Span(31 * 86_400))
                .await
        ),
        ErrorClass::Invalid
    );
}

#[tokio::test]
async fn projects_service_accounts_and_key_kinds() {
    let s = setup().await;
    let c = &s.control;
    let project = c.create_project(&actor(), "Mobile").await.unwrap();
    assert_eq!(
        class(c.create_project(&actor(), "Mobile").await),
        ErrorClass::Conflict
    );
    assert_eq!(
        class(c.create_project(&actor(), "  ").await),
        ErrorClass::Invalid
    );

    let key = c
        .create_key(
            &actor(),
            new_key(
                "mobile",
                KeyOwnerRequest::Project(Some(project.id.to_string())),
            ),
        )
        .await
        .unwrap();
    assert_eq!(key.record.project_id.as_ref(), Some(&project.id));
    assert!(key.secret.expose().starts_with("sk-proj-"));

    let account = c
        .create_service_account(&actor(), Some("Mobile"), "ios-backend")
        .await
        .unwrap();
    assert_eq!(
        class(
            c.create_service_account(&actor(), Some("Mobile"), "ios-backend")
                .await
        ),
        ErrorClass::Conflict
    );
    let bot_key = c
        .create_key(
            &actor(),
            new_key(
                "ios",
                KeyOwnerRequest::ServiceAccount(account.id.to_string()),
            ),
        )
        .await
        .unwrap();
    assert_eq!(bot_key.record.kind, KeyKind::ServiceAccount);
    assert_eq!(
        bot_key.record.owner,
        KeyOwner::ServiceAccount(account.id.clone())
    );
    assert_eq!(bot_key.record.project_id.as_ref(), Some(&project.id));
    assert_eq!(c.service_accounts(Some("Mobile")).await.unwrap().len(), 1);
    assert!(c
        .service_accounts(None)
        .await
        .unwrap()
        .iter()
        .any(|a| a.id == account.id));

    let admin = c
        .create_key(&actor(), new_key("ops", KeyOwnerRequest::Admin))
        .await
        .unwrap();
    assert!(admin.secret.expose().starts_with("sk-admin-"));
    assert_eq!(admin.record.project_id, None);
    // A reader's admin key is read-only; per-endpoint scopes are for project keys.
    let reader = NewKey {
        permissions: Permissions::ReadOnly,
        ..new_key("reader", KeyOwnerRequest::Admin)
    };
    let reader = c.create_key(&actor(), reader).await.unwrap();
    assert_eq!(reader.record.permissions, Permissions::ReadOnly);
    let restricted_admin = NewKey {
        permissions: Permissions::from_parts("restricted", &["models:read".into()]).unwrap(),
        ..new_key("ops", KeyOwnerRequest::Admin)
    };
    assert_eq!(
        class(c.create_key(&actor(), restricted_admin).await),
        ErrorClass::Invalid
    );

    // Unknown project, unknown or malformed service account.
    assert_eq!(
        class(
            c.create_key(
                &actor(),
                new_key("x", KeyOwnerRequest::Project(Some("Nope".into())))
            )
            .await
        ),
        ErrorClass::NotFound
    );
    assert_eq!(
        class(
            c.create_key(
                &actor(),
                new_key(
                    "x",
                    KeyOwnerRequest::ServiceAccount("svc_acct_000000000000000000000000".into())
                )
            )
            .await
        ),
        ErrorClass::NotFound
    );
    assert_eq!(
        class(
            c.create_key(
                &actor(),
                new_key("x", KeyOwnerRequest::ServiceAccount("bob".into()))
            )
            .await
        ),
        ErrorClass::Invalid
    );

    // Archive: no new keys or accounts in it; the default project cannot be archived.
    c.archive_project(&actor(), "Mobile").await.unwrap();
    assert_eq!(
        class(c.archive_project(&actor(), "Mobile").await),
        ErrorClass::Conflict
    );
    assert_eq!(
        class(
            c.create_key(
                &actor(),
                new_key("x", KeyOwnerRequest::Project(Some("Mobile".into())))
            )
            .await
        ),
        ErrorClass::Conflict
    );
    assert_eq!(
        class(
            c.create_service_account(&actor(), Some("Mobile"), "other")
                .await
        ),
        ErrorClass::Conflict
    );
    assert_eq!(
        class(
            c.rotate_key(&actor(), key.record.id.as_str(), Span(0))
                .await
        ),
        ErrorClass::Conflict
    );
    assert_eq!(
        class(c.archive_project(&actor(), "Default project").await),
        ErrorClass::Conflict
    );
    assert_eq!(c.projects(false).await.unwrap().len(), 1);
    assert_eq!(c.projects(true).await.unwrap().len(), 2);
}

#[tokio::test]
async fn bad_key_ids_are_explained_without_echoing_secrets() {
    let s = setup().await;
    let created = s
        .control
        .create_key(&actor(), new_key("k", KeyOwnerRequest::Project(None)))
        .await
        .unwrap();
    let err = s.control.key(created.secret.expose()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Invalid);
    let message = err.to_string();
    assert!(
        !message.contains(&created.secret.expose()[8..]),
        "{message}"
    );
    assert!(message.contains("never the secret"), "{message}");
    assert_eq!(class(s.control.key("key_short").await), ErrorClass::Invalid);
    assert_eq!(
        class(s.control.key("key_00000000000000000000").await),
        ErrorClass::NotFound
    );
    assert_eq!(
        class(
            s.control
                .rename_key(&actor(), created.record.id.as_str(), &"n".repeat(200))
                .await
        ),
        ErrorClass::Invalid
    );
}

#[tokio::test]
async fn usage_rolls_up_by_day_model_key_and_project_and_counts_a_retried_batch_once() {
    let s = setup().await;
    let key = s
        .control
        .create_key(&actor(), new_key("k", KeyOwnerRequest::Project(None)))
        .await
        .unwrap();
    let org = s.control.organization().await.unwrap();
    let event = |n: u32, day_offset: i64, model: &str, cost: i64| UsageEvent {
        request_id: format!("req_{n:032}"),
        org_id: org.id.clone(),
        project_id: key.record.project_id.clone().unwrap(),
        key_id: key.record.id.clone(),
        model_requested: model.into(),
        model_served: model.into(),
        endpoint: "/v1/chat/completions".into(),
        input_tokens: 100,
        cached_input_tokens: 20,
        output_tokens: 50,
        reasoning_tokens: 0,
        cost: tollgate_core::MicroUsd(cost),
        status: 200,
        latency_ms: 12,
        client_ip: Some("127.0.0.1".into()),
        created_at: START.plus_seconds(day_offset * 86_400),
        objects: Vec::new(),
    };
    let batch = vec![
        event(1, 0, "gpt-4o", 1_500),
        event(2, 0, "gpt-4o-mini", 90),
        event(3, 1, "gpt-4o", 2_500),
    ];
    s.control.store().record_usage(&batch).await.unwrap();
    s.control.store().record_usage(&batch).await.unwrap();

    let until = START.plus_seconds(2 * 86_400);
    let by_day = s
        .control
        .usage(UsageGrouping::Day, START, until)
        .await
        .unwrap();
    assert_eq!(
        by_day
            .iter()
            .map(|r| (r.requests, r.cost.0))
            .collect::<Vec<_>>(),
        [(2, 1_590), (1, 2_500)]
    );
    assert_eq!(by_day[0].group, START.utc_date());
    let by_model = s
        .control
        .usage(UsageGrouping::Model, START, until)
        .await
        .unwrap();
    assert_eq!(
        by_model
            .iter()
            .map(|r| (r.group.as_str(), r.input_tokens, r.cost.0))
            .collect::<Vec<_>>(),
        [("gpt-4o", 200, 4_000), ("gpt-4o-mini", 100, 90)]
    );
    let by_key = s
        .control
        .usage(UsageGrouping::Key, START, until)
        .await
        .unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(
        (
            by_key[0].requests,
            by_key[0].output_tokens,
            by_key[0].cached_input_tokens
        ),
        (3, 150, 60)
    );
    let by_project = s
        .control
        .usage(UsageGrouping::Project, START, until)
        .await
        .unwrap();
    assert_eq!(
        by_project[0].group,
        key.record.project_id.as_ref().unwrap().as_str()
    );
    let first_day_only = s
        .control
        .usage(UsageGrouping::Day, START, START)
        .await
        .unwrap();
    assert_eq!(first_day_only.len(), 1);
}

#[tokio::test]
async fn a_large_batch_spanning_several_statements_is_stored_and_rolled_up_exactly() {
    let s = setup().await;
    let key = s
        .control
        .create_key(&actor(), new_key("k", KeyOwnerRequest::Project(None)))
        .await
        .unwrap();
    let org = s.control.organization().await.unwrap();
    let events: Vec<UsageEvent> = (0..2_500)
        .map(|n| UsageEvent {
            request_id: format!("req_{n:032}"),
            org_id: org.id.clone(),
            project_id: key.record.project_id.clone().unwrap(),
            key_id: key.record.id.clone(),
            model_requested: "gpt-4o".into(),
            model_served: if n % 2 == 0 {
                "gpt-4o".into()
            } else {
                "gpt-4o-mini".into()
            },
            endpoint: "/v1/chat/completions".into(),
            input_tokens: 10,
            cached_input_tokens: 0,
            output_tokens: 5,
            reasoning_tokens: 0,
            cost: tollgate_core::MicroUsd(7),
            status: 200,
            latency_ms: 1,
            client_ip: None,
            created_at: START,
            objects: Vec::new(),
        })
        .collect();
    s.control.store().record_usage(&events).await.unwrap();
    s.control
        .store()
        .record_usage(&events[1_000..1_200])
        .await
        .unwrap();
    let by_model = s
        .control
        .usage(UsageGrouping::Model, START, START)
        .await
        .unwrap();
    let totals: Vec<(&str, i64, i64)> = by_model
        .iter()
        .map(|r| (r.group.as_str(), r.requests, r.cost.0))
        .collect();
    assert_eq!(
        totals,
        [("gpt-4o", 1_250, 8_750), ("gpt-4o-mini", 1_250, 8_750)]
    );
    assert_eq!(
        s.control
            .store()
            .recent_usage(&org.id, 5_000)
            .await
            .unwrap()
            .len(),
        2_500
    );
}

#[tokio::test]
async fn limits_report_reads_spend_from_the_period_start_in_the_budget_s_time_zone() {
    use tollgate_control::{BudgetRequest, HolderRequest};
    use tollgate_core::budget::BudgetPeriod;
    use tollgate_core::limit_rules::RateLimits;
    let s = setup().await;
    let c = &s.control;
    let org = c.organization().await.unwrap();
    let key = c
        .create_key(
            &actor(),
            new_key("budgeted", KeyOwnerRequest::Project(None)),
        )
        .await
        .unwrap();
    let other = c
        .create_key(&actor(), new_key("other", KeyOwnerRequest::Project(None)))
        .await
        .unwrap();
    let holder = HolderRequest::Key(key.record.id.to_string());
    // A daily budget at UTC+05:00: at START (08:00 UTC) the local day began at 19:00 UTC the day before.
    c.set_budget(
        &actor(),
        &holder,
        BudgetRequest {
            limit: tollgate_core::MicroUsd(50_000),
            period: BudgetPeriod::Day,
            utc_offset_secs: 5 * 3_600,
            alerts_permille: vec![800],
        },
    )
    .await
    .unwrap();
    c.set_limits(
        &actor(),
        &holder,
        "gpt-4o*",
        RateLimits {
            rpm: Some(10),
            tpm: Some(1_000),
            ..RateLimits::default()
        },
    )
    .await
    .unwrap();
    let event = |n: u32, key: &tollgate_control::CreatedKey, at: i64, cost: i64| UsageEvent {
        request_id: format!("req_{n:032}"),
        org_id: org.id.clone(),
        project_id: key.record.project_id.clone().unwrap(),
        key_id: key.record.id.clone(),
        model_requested: "gpt-4o".into(),
        model_served: "gpt-4o".into(),
        endpoint: "/v1/chat/completions".into(),
        input_tokens: 100,
        cached_input_tokens: 0,
        output_tokens: 50,
        reasoning_tokens: 0,
        cost: tollgate_core::MicroUsd(cost),
        status: 200,
        latency_ms: 12,
        client_ip: None,
        created_at: START.plus_seconds(at),
        objects: Vec::new(),
    };
    c.store()
        .record_usage(&[
            event(1, &key, -46_801, 1), // 18:59:59 UTC the day before: the previous local day
            event(2, &key, -46_800, 10), // 19:00 UTC: local midnight
            event(3, &key, -32_400, 100), // 23:00 UTC, still the day before in UTC
            event(4, &key, -25_200, 1_000), // 01:00 UTC today (from the daily roll-up)
            event(5, &key, -30, 10_000), // half a minute ago
            event(6, &other, 0, 100_000), // another key
        ])
        .await
        .unwrap();
    let report = c.limits_report(&holder).await.unwrap();
    let budget = &report.budgets[0];
    assert_eq!(budget.spent_usd, "$0.01111");
    assert_eq!(budget.remaining_usd, "$0.03889");
    assert_eq!(budget.period_start, "2027-01-14T19:00:00Z");
    assert_eq!(budget.resets_at, "2027-01-15T19:00:00Z");
    assert_eq!(budget.timezone, "+05:00");
    let rpm = report.limits.iter().find(|l| l.metric == "rpm").unwrap();
    assert_eq!((rpm.limit, rpm.used, rpm.remaining), (10, Some(1), Some(9)));
    assert_eq!(
        rpm.reset_secs,
        Some(6),
        "one request of ten a minute refills in 6 s"
    );
    let tpm = report.limits.iter().find(|l| l.metric == "tpm").unwrap();
    assert_eq!(
        tpm.used,
        Some(150),
        "input and output of the last minute's request"
    );

    // An alert is claimed once per budget, period and threshold.
    let stored = c.store().budgets(&org.id).await.unwrap();
    let entry = tollgate_store::AuditEntry {
        id: tollgate_core::AuditId::generate(),
        org_id: org.id.clone(),
        event_type: "budget.threshold_reached".into(),
        actor: Actor::system(),
        project_id: None,
        resource_id: Some(key.record.id.to_string()),
        data: serde_json::json!({}),
        created_at: START,
    };
    let claim = || {
        c.store().claim_budget_alert(
            stored[0].id,
            UnixTime(1),
            800,
            tollgate_core::MicroUsd(40_000),
            &entry,
        )
    };
    assert!(claim().await.unwrap());
    assert!(
        !claim().await.unwrap(),
        "a second claim of the same alert fails"
    );
    let audit = c.audit(Some(key.record.id.as_str()), 50).await.unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.event_type == "budget.threshold_reached")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_key_with_limits_and_budget_is_one_transaction() {
    let s = setup().await;
    let c = &s.control;
    let keys_before = c.keys(None, None).await.unwrap().len();
    let audit_before = c.audit(None, 1_000).await.unwrap().len();
    // The limits are fine, the budget's alert threshold is not (above 1000%): it is refused
    // after the key's limits were written in the same transaction, so nothing stays.
    let mut request = new_key("limited", KeyOwnerRequest::Project(None));
    request.limits = tollgate_core::limit_rules::RateLimits {
        rpm: Some(10),
        ..Default::default()
    };
    request.budget = Some(tollgate_control::BudgetRequest {
        limit: tollgate_core::MicroUsd(1_000_000),
        period: tollgate_core::budget::BudgetPeriod::Day,
        utc_offset_secs: 0,
        alerts_permille: vec![500, 20_000],
    });
    let refused = c.create_key(&actor(), request.clone()).await;
    assert_eq!(class(refused), ErrorClass::Invalid);
    assert_eq!(c.keys(None, None).await.unwrap().len(), keys_before);
    assert!(
        c.limit_rules().await.unwrap().is_empty(),
        "no orphan limits"
    );
    assert!(c.budgets().await.unwrap().is_empty());
    assert_eq!(c.audit(None, 1_000).await.unwrap().len(), audit_before);

    // Right, it is all there at once.
    request.budget.as_mut().unwrap().alerts_permille = vec![500];
    let created = c.create_key(&actor(), request).await.unwrap();
    let rules = c.limit_rules().await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].holder.id, created.record.id.as_str());
    assert_eq!(c.budgets().await.unwrap().len(), 1);
    let types: Vec<String> = c
        .audit(None, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    // Newest first: the limits were written before the key.
    assert_eq!(
        types,
        ["api_key.created", "budget.updated", "rate_limit.updated"]
    );
}

#[tokio::test]
async fn a_service_account_comes_with_its_key_or_not_at_all() {
    let s = setup().await;
    let c = &s.control;
    let project = c.create_project(&actor(), "bots").await.unwrap();
    let (account, key) = c
        .create_service_account_with_key(&actor(), project.id.as_str(), "ci", "Secret key")
        .await
        .unwrap();
    assert_eq!(
        key.record.owner,
        KeyOwner::ServiceAccount(account.id.clone())
    );
    assert_eq!(key.record.kind, KeyKind::ServiceAccount);
    assert_eq!(key.record.project_id.as_ref(), Some(&project.id));
    // A key name the lifecycle refuses (empty) fails after the account was written in the
    // same transaction: neither stays.
    let refused = c
        .create_service_account_with_key(&actor(), project.id.as_str(), "deploy", " ")
        .await;
    assert_eq!(class(refused), ErrorClass::Invalid);
    let accounts = c.service_accounts(Some(project.id.as_str())).await.unwrap();
    assert_eq!(accounts, [account]);
}

#[tokio::test]
async fn the_last_owner_admin_key_cannot_be_expired_either() {
    let s = setup().await;
    let c = &s.control;
    let admin = c.keys(None, Some(KeyKind::Admin)).await.unwrap()[0].clone();
    let refused = c.expire_key(&actor(), admin.id.as_str(), Span(0)).await;
    assert_eq!(class(refused), ErrorClass::Conflict);
    assert_eq!(c.key(admin.id.as_str()).await.unwrap().expires_at, None);
    // With another owner key, it can end.
    c.create_key(&actor(), new_key("second owner", KeyOwnerRequest::Admin))
        .await
        .unwrap();
    let ended = c
        .expire_key(&actor(), admin.id.as_str(), Span(0))
        .await
        .unwrap();
    assert_eq!(ended.status(START), KeyStatus::Expired);
}
