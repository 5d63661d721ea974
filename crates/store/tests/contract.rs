//! The store's contract: every method of [`Store`] and [`Write`], run against a fresh store.
//! Nothing here knows which database is behind the store; the backend comes from
//! `TOLLGATE_STORE_CONTRACT`: `sqlite` (the default, in a temporary file) or `postgres` (a
//! scratch database on `TOLLGATE_TEST_POSTGRES`, see `tollgate_store::scratch`). Both pass
//! this suite unchanged; the test command runs it on each.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use serde_json::json;
use std::sync::Arc;
use tollgate_core::budget::{Budget, BudgetPeriod};
use tollgate_core::holder::{Holder, Level};
use tollgate_core::invite::{InviteStatus, InviteToken};
use tollgate_core::limit_rules::{LimitRule, RateLimits};
use tollgate_core::network::IpAllowList;
use tollgate_core::objects::ObjectKind;
use tollgate_core::routing::{ModelAllowList, ModelPattern};
use tollgate_core::{
    AuditId, InviteId, KeyFormat, KeyHasher, KeyId, KeyKind, MicroUsd, OrgId, Permissions,
    ProjectId, ServerSecret, ServiceAccountId, UnixTime, UserId,
};
use tollgate_store::scratch::ScratchDatabase;
use tollgate_store::{
    Actor, AuditEntry, AuditQuery, Bootstrap, ChangedEntity, DatabaseLocation, Invite,
    InvitedProject, KeyFilter, KeyOwner, KeyRecord, Organization, Project, ProjectRole,
    ProjectStatus, Role, ServiceAccount, Store, StoreError, UsageEvent, UsageGrouping, User,
};
use tollgate_store::{CreatedObject, ProviderObject, Suspension};

/// A new store on the backend under test, with one organization bootstrapped in it.
struct World {
    store: Store,
    org: Organization,
    owner: User,
    project: Project,
    admin: KeyRecord,
    hasher: KeyHasher,
    /// The change log's end after the bootstrap (which logs its admin key).
    base: i64,
    _scratch: Scratch,
}

/// What a test's database lives in: a temporary directory (SQLite) or a scratch database
/// (PostgreSQL), both removed when the test ends.
#[allow(dead_code)] // held for its Drop
enum Scratch {
    Dir(tempfile::TempDir),
    Postgres(ScratchDatabase),
}

async fn empty_store() -> (Store, Scratch) {
    let backend = std::env::var("TOLLGATE_STORE_CONTRACT").unwrap_or_else(|_| "sqlite".into());
    match backend.as_str() {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let location = DatabaseLocation::Sqlite(dir.path().join("contract.db"));
            (Store::open(&location).await.unwrap(), Scratch::Dir(dir))
        }
        "postgres" => {
            let db = ScratchDatabase::create()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            (
                Store::open(db.location()).await.unwrap(),
                Scratch::Postgres(db),
            )
        }
        other => panic!("TOLLGATE_STORE_CONTRACT={other}: this build has no such store backend"),
    }
}

async fn world() -> World {
    let (store, dir) = empty_store().await;
    let hasher = KeyHasher::new(ServerSecret::new(vec![7; 32]).unwrap());
    let org = Organization {
        id: OrgId::generate(),
        name: "Acme".into(),
        created_at: UnixTime(1_000),
    };
    let owner = User {
        id: UserId::generate(),
        email: "owner@example.com".into(),
        name: "Owner".into(),
        created_at: UnixTime(1_000),
    };
    let project = project(&org, "Default project", true);
    let admin = KeyRecord {
        kind: KeyKind::Admin,
        project_id: None,
        ..key(&org, &owner, None, 0, &hasher)
    };
    let boot = Bootstrap {
        organization: org.clone(),
        owner: owner.clone(),
        owner_password_hash: "$argon2id$stand-in".into(),
        project: project.clone(),
        admin_key: admin.clone(),
        secret_fingerprint: hasher.fingerprint(),
        key_prefix: "sk".into(),
        audit: vec![entry(&org, "organization.created", org.id.as_str(), 1_000)],
    };
    assert!(store.bootstrap(&boot).await.unwrap());
    let base = store.latest_change().await.unwrap();
    assert_eq!(base, 1, "the bootstrap logs its admin key");
    World {
        store,
        org,
        owner,
        project,
        admin,
        hasher,
        base,
        _scratch: dir,
    }
}

fn project(org: &Organization, name: &str, is_default: bool) -> Project {
    Project {
        id: ProjectId::generate(),
        org_id: org.id.clone(),
        name: name.into(),
        status: ProjectStatus::Active,
        is_default,
        created_at: UnixTime(1_000),
        archived_at: None,
        allowed_ips: Default::default(),
        allowed_models: Default::default(),
    }
}

fn key(
    org: &Organization,
    owner: &User,
    project: Option<&Project>,
    seed: u8,
    hasher: &KeyHasher,
) -> KeyRecord {
    let kind = if project.is_some() {
        KeyKind::Project
    } else {
        KeyKind::Admin
    };
    let secret = KeyFormat::default().from_random(kind, &[seed; 32]);
    KeyRecord {
        id: secret.id(),
        org_id: org.id.clone(),
        project_id: project.map(|p| p.id.clone()),
        kind,
        name: format!("key {seed}"),
        hash: hasher.hash(&secret),
        hash_version: 1,
        redacted: secret.redacted(),
        owner: KeyOwner::User(owner.id.clone()),
        permissions: Permissions::All,
        created_by: "cli:test".into(),
        created_at: UnixTime(2_000 + i64::from(seed)),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        rotated_from: None,
        rotated_to: None,
        allowed_ips: Default::default(),
        allowed_models: Default::default(),
    }
}

fn entry(org: &Organization, event: &str, resource: &str, at: i64) -> AuditEntry {
    AuditEntry {
        id: AuditId::generate(),
        org_id: org.id.clone(),
        event_type: event.into(),
        actor: Actor::cli("tester"),
        project_id: None,
        resource_id: Some(resource.into()),
        data: json!({"what": event}),
        created_at: UnixTime(at),
    }
}

fn event(w: &World, request: &str, key: &KeyRecord, model: &str, at: i64) -> UsageEvent {
    UsageEvent {
        request_id: request.into(),
        org_id: w.org.id.clone(),
        project_id: key.project_id.clone().unwrap(),
        key_id: key.id.clone(),
        model_requested: model.into(),
        model_served: format!("{model}-2025"),
        endpoint: "/v1/chat/completions".into(),
        input_tokens: 100,
        cached_input_tokens: 10,
        output_tokens: 20,
        reasoning_tokens: 5,
        cost: MicroUsd(1_250),
        status: 200,
        latency_ms: 42,
        client_ip: Some("127.0.0.1".into()),
        created_at: UnixTime(at),
        objects: Vec::new(),
    }
}

impl World {
    async fn project_key(&self, seed: u8) -> KeyRecord {
        let record = key(
            &self.org,
            &self.owner,
            Some(&self.project),
            seed,
            &self.hasher,
        );
        let e = || entry(&self.org, "api_key.created", record.id.as_str(), 2_000);
        self.store.insert_key(&record, &e()).await.unwrap();
        record
    }

    async fn changes(&self) -> Vec<ChangedEntity> {
        self.store
            .changes_after(self.base, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.entity)
            .collect()
    }

    async fn audit_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self
            .store
            .audit_entries(&self.org.id, None, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event_type)
            .collect();
        types.reverse();
        types
    }
}

#[tokio::test]
async fn bootstrap_writes_the_first_run_once() {
    let w = world().await;
    let s = &w.store;
    assert_eq!(s.default_organization().await.unwrap(), Some(w.org.clone()));
    assert_eq!(s.organization_owner(&w.org.id).await.unwrap(), w.owner);
    let members = s.members(&w.org.id).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].user, w.owner);
    assert_eq!(members[0].role, Role::Owner);
    assert_eq!(
        s.password_hash("owner@example.com")
            .await
            .unwrap()
            .as_deref(),
        Some("$argon2id$stand-in")
    );
    assert_eq!(s.password_hash("nobody@example.com").await.unwrap(), None);
    assert_eq!(s.default_project(&w.org.id).await.unwrap(), w.project);
    assert_eq!(s.meta("key_prefix").await.unwrap().as_deref(), Some("sk"));
    assert_eq!(
        s.meta("secret_fingerprint").await.unwrap(),
        Some(w.hasher.fingerprint())
    );
    assert_eq!(s.key(&w.org.id, &w.admin.id).await.unwrap(), w.admin);
    assert_eq!(w.audit_types().await, ["organization.created"]);

    // A second first run writes nothing, not even a partial organization.
    let other = Organization {
        id: OrgId::generate(),
        name: "Other".into(),
        created_at: UnixTime(5),
    };
    let boot = Bootstrap {
        organization: other.clone(),
        owner: User {
            id: UserId::generate(),
            email: "else@example.com".into(),
            ..w.owner.clone()
        },
        owner_password_hash: "x".into(),
        project: project(&other, "Default project", true),
        admin_key: key(&other, &w.owner, None, 99, &w.hasher),
        secret_fingerprint: "f".into(),
        key_prefix: "sk".into(),
        audit: vec![],
    };
    assert!(!s.bootstrap(&boot).await.unwrap());
    assert_eq!(s.default_organization().await.unwrap(), Some(w.org.clone()));
    assert_eq!(s.password_hash("else@example.com").await.unwrap(), None);
}

#[tokio::test]
async fn members_join_change_roles_and_leave_with_their_keys() {
    let w = world().await;
    let s = &w.store;
    let e = || entry(&w.org, "user.updated", "u", 3_000);
    let dev = User {
        id: UserId::generate(),
        email: "dev@example.com".into(),
        name: "Dev".into(),
        created_at: UnixTime(2_000),
    };
    s.add_member(&w.org.id, &dev, Some("$argon2id$x"), Role::Reader, &e())
        .await
        .unwrap();
    let twice = s
        .add_member(&w.org.id, &dev, None, Role::Reader, &e())
        .await
        .unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice:?}");
    assert_eq!(s.members(&w.org.id).await.unwrap().len(), 2);
    // The only owner is not demoted; once dev is an owner, they can be.
    let last = s
        .set_member_role(&w.org.id, &w.owner.id, Role::Reader, &e())
        .await
        .unwrap_err();
    assert!(matches!(last, StoreError::Conflict(_)), "{last:?}");
    s.set_member_role(&w.org.id, &dev.id, Role::Owner, &e())
        .await
        .unwrap();
    s.set_member_role(&w.org.id, &w.owner.id, Role::Reader, &e())
        .await
        .unwrap();
    let unknown = s
        .set_member_role(&w.org.id, &UserId::generate(), Role::Owner, &e())
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { .. }),
        "{unknown:?}"
    );
    // A member leaves; the keys (the organization's) stay. The last owner does not leave.
    s.set_member_role(&w.org.id, &w.owner.id, Role::Owner, &e())
        .await
        .unwrap();
    let theirs = key(&w.org, &dev, Some(&w.project), 40, &w.hasher);
    s.insert_key(&theirs, &e()).await.unwrap();
    s.remove_member(&w.org.id, &dev.id, &e()).await.unwrap();
    assert_eq!(s.key(&w.org.id, &theirs.id).await.unwrap().revoked_at, None);
    assert_eq!(s.members(&w.org.id).await.unwrap().len(), 1);
    let gone = s.remove_member(&w.org.id, &dev.id, &e()).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }), "{gone:?}");
    let last = s
        .remove_member(&w.org.id, &w.owner.id, &e())
        .await
        .unwrap_err();
    assert!(matches!(last, StoreError::Conflict(_)), "{last:?}");
    s.rename_organization(&w.org.id, "Acme Labs", &e())
        .await
        .unwrap();
    assert_eq!(
        s.default_organization().await.unwrap().unwrap().name,
        "Acme Labs"
    );
    let nowhere = s
        .rename_organization(&OrgId::generate(), "x", &e())
        .await
        .unwrap_err();
    assert!(
        matches!(nowhere, StoreError::NotFound { .. }),
        "{nowhere:?}"
    );
}

fn invite(w: &World, email: &str, projects: Vec<InvitedProject>, at: i64) -> Invite {
    Invite {
        id: InviteId::generate(),
        org_id: w.org.id.clone(),
        email: email.into(),
        role: Role::Reader,
        projects,
        created_by: "cli:test".into(),
        created_at: UnixTime(at),
        expires_at: UnixTime(at + 100),
        accepted_at: None,
        user_id: None,
    }
}

fn person(email: &str) -> User {
    User {
        id: UserId::generate(),
        email: email.into(),
        name: email.into(),
        created_at: UnixTime(3_000),
    }
}

#[tokio::test]
async fn invites_are_made_found_by_token_withdrawn_and_accepted_once() {
    let w = world().await;
    let s = &w.store;
    let e = || entry(&w.org, "invite.sent", "i", 3_000);
    let other = project(&w.org, "other", false);
    s.insert_project(&other, &e()).await.unwrap();
    let member = |role| InvitedProject {
        id: w.project.id.clone(),
        role,
    };
    let first = invite(
        &w,
        "ada@example.com",
        vec![member(ProjectRole::Owner)],
        3_000,
    );
    let token = InviteToken::generate();
    s.create_invite(&first, &token.hash(&w.hasher), &e())
        .await
        .unwrap();
    assert_eq!(
        s.invites(&w.org.id).await.unwrap(),
        std::slice::from_ref(&first)
    );
    assert_eq!(s.invite(&w.org.id, &first.id).await.unwrap(), first);
    assert_eq!(
        s.invite_by_token(&token.hash(&w.hasher)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        s.invite_by_token(&InviteToken::generate().hash(&w.hasher))
            .await
            .unwrap(),
        None
    );
    let elsewhere = s.invite(&OrgId::generate(), &first.id).await.unwrap_err();
    assert!(matches!(elsewhere, StoreError::NotFound { .. }));
    // One pending invite per address; none for a member; none naming a closed project.
    let twice = s
        .create_invite(
            &invite(&w, "ada@example.com", vec![], 3_001),
            &InviteToken::generate().hash(&w.hasher),
            &e(),
        )
        .await
        .unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice:?}");
    let owner = s
        .create_invite(
            &invite(&w, "owner@example.com", vec![], 3_001),
            &InviteToken::generate().hash(&w.hasher),
            &e(),
        )
        .await
        .unwrap_err();
    assert!(matches!(owner, StoreError::Conflict(_)), "{owner:?}");
    let foreign = InvitedProject {
        id: ProjectId::generate(),
        role: ProjectRole::Member,
    };
    let closed = s
        .create_invite(
            &invite(&w, "bo@example.com", vec![foreign], 3_001),
            &InviteToken::generate().hash(&w.hasher),
            &e(),
        )
        .await
        .unwrap_err();
    assert!(matches!(closed, StoreError::Conflict(_)), "{closed:?}");

    // Accepted: the account, the membership, the project role; once only; not after expiry.
    let ada = person("ada@example.com");
    let late = s
        .accept_invite(&first, &ada, Some("$argon2id$x"), UnixTime(3_100), &[e()])
        .await
        .unwrap_err();
    assert!(matches!(late, StoreError::Conflict(_)), "{late:?}");
    assert_eq!(
        s.user_by_email("ada@example.com").await.unwrap(),
        None,
        "nothing kept"
    );
    s.accept_invite(&first, &ada, Some("$argon2id$x"), UnixTime(3_050), &[e()])
        .await
        .unwrap();
    let accepted = s.invite(&w.org.id, &first.id).await.unwrap();
    assert_eq!(accepted.accepted_at, Some(UnixTime(3_050)));
    assert_eq!(accepted.user_id, Some(ada.id.clone()));
    assert_eq!(accepted.status(UnixTime(9_999)), InviteStatus::Accepted);
    assert_eq!(
        s.user_by_email("ada@example.com").await.unwrap(),
        Some(ada.clone())
    );
    assert_eq!(
        s.password_hash("ada@example.com").await.unwrap().as_deref(),
        Some("$argon2id$x")
    );
    let members = s.members(&w.org.id).await.unwrap();
    assert!(members
        .iter()
        .any(|m| m.user == ada && m.role == Role::Reader));
    let in_project = s.project_members(&w.project.id).await.unwrap();
    assert_eq!(in_project.len(), 1);
    assert_eq!(in_project[0].user, ada);
    assert_eq!(in_project[0].role, ProjectRole::Owner);
    let again = s
        .accept_invite(
            &first,
            &person("x@example.com"),
            Some("h"),
            UnixTime(3_060),
            &[e()],
        )
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    let kept = s
        .delete_invite(&w.org.id, &first.id, &e())
        .await
        .unwrap_err();
    assert!(matches!(kept, StoreError::Conflict(_)), "{kept:?}");

    // Withdrawn: gone. An existing account (no password) accepts another invite.
    let second = invite(&w, "bo@example.com", vec![], 3_000);
    s.create_invite(&second, &InviteToken::generate().hash(&w.hasher), &e())
        .await
        .unwrap();
    s.delete_invite(&w.org.id, &second.id, &e()).await.unwrap();
    let gone = s.invite(&w.org.id, &second.id).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }));
    let gone = s
        .delete_invite(&w.org.id, &second.id, &e())
        .await
        .unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }));
    s.remove_member(&w.org.id, &ada.id, &e()).await.unwrap();
    assert!(s.project_members(&w.project.id).await.unwrap().is_empty());
    let back = invite(
        &w,
        "ada@example.com",
        vec![member(ProjectRole::Member)],
        3_200,
    );
    s.create_invite(&back, &InviteToken::generate().hash(&w.hasher), &e())
        .await
        .unwrap();
    s.accept_invite(&back, &ada, None, UnixTime(3_201), &[e()])
        .await
        .unwrap();
    assert_eq!(
        s.project_members(&w.project.id).await.unwrap()[0].role,
        ProjectRole::Member
    );
    assert_eq!(s.invites(&w.org.id).await.unwrap().len(), 2);

    // An invite whose sender can no longer invite is refused at acceptance: an admin key
    // revoked (which also withdraws its pending invites), an owner removed.
    let sent_by_key = Invite {
        created_by: format!("api_key:{}", w.admin.id),
        ..invite(&w, "cy@example.com", vec![], 3_300)
    };
    s.create_invite(&sent_by_key, &InviteToken::generate().hash(&w.hasher), &e())
        .await
        .unwrap();
    let extra_admin = KeyRecord {
        kind: KeyKind::Admin,
        project_id: None,
        ..key(&w.org, &w.owner, None, 77, &w.hasher)
    };
    s.insert_key(&extra_admin, &e()).await.unwrap();
    assert!(s
        .revoke_owner_admin_key(&w.org.id, &w.admin.id, UnixTime(3_301), &e())
        .await
        .unwrap());
    let gone = s.invite(&w.org.id, &sent_by_key.id).await.unwrap_err();
    assert!(
        matches!(gone, StoreError::NotFound { .. }),
        "withdrawn with the key"
    );
    let refused = s
        .accept_invite(
            &sent_by_key,
            &person("cy@example.com"),
            Some("h"),
            UnixTime(3_302),
            &[e()],
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
    // An admin key that has expired since: the invite is still listed, and refused.
    let third_admin = KeyRecord {
        kind: KeyKind::Admin,
        project_id: None,
        ..key(&w.org, &w.owner, None, 78, &w.hasher)
    };
    s.insert_key(&third_admin, &e()).await.unwrap();
    let sent_by_expiring = Invite {
        created_by: format!("api_key:{}", extra_admin.id),
        ..invite(&w, "eve@example.com", vec![], 3_350)
    };
    s.create_invite(
        &sent_by_expiring,
        &InviteToken::generate().hash(&w.hasher),
        &e(),
    )
    .await
    .unwrap();
    s.set_key_expiry(&extra_admin.id, Some(UnixTime(3_360)), &e())
        .await
        .unwrap();
    let refused = s
        .accept_invite(
            &sent_by_expiring,
            &person("eve@example.com"),
            Some("h"),
            UnixTime(3_370),
            &[e()],
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
    assert!(s
        .invite(&w.org.id, &sent_by_expiring.id)
        .await
        .unwrap()
        .accepted_at
        .is_none());
    let dev = person("dev@example.com");
    s.add_member(&w.org.id, &dev, None, Role::Owner, &e())
        .await
        .unwrap();
    let sent_by_dev = Invite {
        created_by: format!("user:{}", dev.id),
        ..invite(&w, "dee@example.com", vec![], 3_400)
    };
    s.create_invite(&sent_by_dev, &InviteToken::generate().hash(&w.hasher), &e())
        .await
        .unwrap();
    s.remove_member(&w.org.id, &dev.id, &e()).await.unwrap();
    assert!(
        s.invite(&w.org.id, &sent_by_dev.id).await.is_err(),
        "withdrawn with the sender"
    );
    let refused = s
        .accept_invite(
            &sent_by_dev,
            &person("dee@example.com"),
            Some("h"),
            UnixTime(3_401),
            &[e()],
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
}

#[tokio::test]
async fn project_members_are_organization_members_with_a_project_role() {
    let w = world().await;
    let s = &w.store;
    let e = || entry(&w.org, "user.added", "u", 3_000);
    let p = &w.project.id;
    let dev = person("dev@example.com");
    let stranger = person("stranger@example.com");
    s.add_member(&w.org.id, &dev, None, Role::Reader, &e())
        .await
        .unwrap();
    s.add_project_member(p, &dev.id, ProjectRole::Owner, UnixTime(3_000), &e())
        .await
        .unwrap();
    s.add_project_member(p, &w.owner.id, ProjectRole::Member, UnixTime(3_001), &e())
        .await
        .unwrap();
    let listed = s.project_members(p).await.unwrap();
    let shown: Vec<(UserId, ProjectRole, UnixTime)> = listed
        .iter()
        .map(|m| (m.user.id.clone(), m.role, m.added_at))
        .collect();
    assert_eq!(
        shown,
        [
            (dev.id.clone(), ProjectRole::Owner, UnixTime(3_000)),
            (w.owner.id.clone(), ProjectRole::Member, UnixTime(3_001))
        ]
    );
    let twice = s
        .add_project_member(p, &dev.id, ProjectRole::Owner, UnixTime(3_002), &e())
        .await
        .unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice:?}");
    let outsider = s
        .add_project_member(p, &stranger.id, ProjectRole::Owner, UnixTime(3_002), &e())
        .await
        .unwrap_err();
    assert!(
        matches!(outsider, StoreError::NotFound { .. }),
        "{outsider:?}"
    );
    let nowhere = s
        .add_project_member(
            &ProjectId::generate(),
            &dev.id,
            ProjectRole::Owner,
            UnixTime(3_002),
            &e(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(nowhere, StoreError::NotFound { .. }),
        "{nowhere:?}"
    );
    s.set_project_member_role(p, &dev.id, ProjectRole::Member, &e())
        .await
        .unwrap();
    assert_eq!(
        s.project_members(p).await.unwrap()[0].role,
        ProjectRole::Member
    );
    let absent = s
        .set_project_member_role(p, &stranger.id, ProjectRole::Member, &e())
        .await
        .unwrap_err();
    assert!(matches!(absent, StoreError::NotFound { .. }), "{absent:?}");
    s.remove_project_member(p, &w.owner.id, &e()).await.unwrap();
    let absent = s
        .remove_project_member(p, &w.owner.id, &e())
        .await
        .unwrap_err();
    assert!(matches!(absent, StoreError::NotFound { .. }), "{absent:?}");
    // Archived: read, never changed.
    s.archive_project(p, UnixTime(4_000), &e()).await.unwrap();
    for refused in [
        s.set_project_member_role(p, &dev.id, ProjectRole::Owner, &e())
            .await
            .unwrap_err(),
        s.remove_project_member(p, &dev.id, &e()).await.unwrap_err(),
        s.add_project_member(p, &w.owner.id, ProjectRole::Owner, UnixTime(4_001), &e())
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
    }
    assert_eq!(s.project_members(p).await.unwrap().len(), 1);
}

#[tokio::test]
async fn projects_are_created_found_renamed_restricted_and_archived() {
    let w = world().await;
    let s = &w.store;
    let lab = project(&w.org, "Lab", false);
    s.insert_project(
        &lab,
        &entry(&w.org, "project.created", lab.id.as_str(), 1_100),
    )
    .await
    .unwrap();
    let again = Project {
        id: ProjectId::generate(),
        ..lab.clone()
    };
    let err = s
        .insert_project(&again, &entry(&w.org, "project.created", "x", 1_100))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(s.find_project(&w.org.id, "Lab").await.unwrap(), lab);
    assert_eq!(
        s.find_project(&w.org.id, lab.id.as_str()).await.unwrap(),
        lab
    );
    let missing = s.find_project(&w.org.id, "nope").await.unwrap_err();
    assert!(
        matches!(missing, StoreError::NotFound { .. }),
        "{missing:?}"
    );
    // Another organization's id finds nothing.
    let err = s
        .find_project(&OrgId::generate(), lab.id.as_str())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    let rename = || entry(&w.org, "project.updated", lab.id.as_str(), 1_200);
    s.rename_project(&lab.id, "Research", &rename())
        .await
        .unwrap();
    let taken = s
        .rename_project(&lab.id, "Default project", &rename())
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    let unknown = s
        .rename_project(&ProjectId::generate(), "X", &rename())
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { .. }),
        "{unknown:?}"
    );

    let ips = IpAllowList::parse(&["10.0.0.0/8".to_owned()]).unwrap();
    let models = ModelAllowList::new(&["gpt-4o*".to_owned()]);
    s.set_project_allowed_ips(&lab.id, &ips, &rename())
        .await
        .unwrap();
    s.set_project_allowed_models(&lab.id, &models, &rename())
        .await
        .unwrap();
    let found = s.find_project(&w.org.id, "Research").await.unwrap();
    assert_eq!(found.allowed_ips, ips);
    assert_eq!(found.allowed_models, models);

    s.archive_project(&lab.id, UnixTime(1_300), &rename())
        .await
        .unwrap();
    let twice = s
        .archive_project(&lab.id, UnixTime(1_301), &rename())
        .await
        .unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice:?}");
    // Inside a write, a project's state is read as of that transaction.
    let mut write = s.write().await.unwrap();
    assert!(!write.project_is_active(&lab.id).await.unwrap());
    assert!(write.project_is_active(&w.project.id).await.unwrap());
    assert!(!write
        .project_is_active(&ProjectId::generate())
        .await
        .unwrap());
    write.commit().await.unwrap();
    let active: Vec<_> = s.projects(&w.org.id, false).await.unwrap();
    assert_eq!(active, std::slice::from_ref(&w.project));
    let all = s.projects(&w.org.id, true).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].status, ProjectStatus::Archived);
    assert_eq!(all[1].archived_at, Some(UnixTime(1_300)));

    // Every successful change is in the change log once; the failed ones are not.
    let lab_change = ChangedEntity::Project(lab.id.clone());
    assert_eq!(w.changes().await, vec![lab_change; 4]);
    assert_eq!(
        w.audit_types().await,
        [
            "organization.created",
            "project.created",
            "project.updated",
            "project.updated",
            "project.updated",
            "project.updated"
        ]
    );
}

#[tokio::test]
async fn keys_live_their_whole_life() {
    let w = world().await;
    let s = &w.store;
    let a = w.project_key(1).await;
    let b = w.project_key(2).await;
    let dup = s
        .insert_key(&a, &entry(&w.org, "api_key.created", "x", 1))
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");

    assert_eq!(s.key(&w.org.id, &a.id).await.unwrap(), a);
    let err = s.key(&OrgId::generate(), &a.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let newest_first = s.keys(&w.org.id, &KeyFilter::default()).await.unwrap();
    assert_eq!(
        newest_first.iter().map(|k| &k.id).collect::<Vec<_>>(),
        [&b.id, &a.id, &w.admin.id]
    );
    let admins = s
        .keys(
            &w.org.id,
            &KeyFilter {
                kind: Some(KeyKind::Admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(admins, std::slice::from_ref(&w.admin));
    let of_project = s
        .keys(
            &w.org.id,
            &KeyFilter {
                project_id: Some(w.project.id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(of_project.len(), 2);

    let change = || entry(&w.org, "api_key.updated", a.id.as_str(), 3_000);
    s.rename_key(&a.id, "renamed", &change()).await.unwrap();
    s.set_key_expiry(&a.id, Some(UnixTime(9_000)), &change())
        .await
        .unwrap();
    let now = s.key(&w.org.id, &a.id).await.unwrap();
    assert_eq!(
        (now.name.as_str(), now.expires_at),
        ("renamed", Some(UnixTime(9_000)))
    );

    // Last use only moves forward.
    s.touch_keys(&[(a.id.clone(), UnixTime(5_000))])
        .await
        .unwrap();
    s.touch_keys(&[
        (a.id.clone(), UnixTime(4_000)),
        (b.id.clone(), UnixTime(4_500)),
    ])
    .await
    .unwrap();
    s.touch_keys(&[]).await.unwrap();
    assert_eq!(
        s.key(&w.org.id, &a.id).await.unwrap().last_used_at,
        Some(UnixTime(5_000))
    );
    assert_eq!(
        s.key(&w.org.id, &b.id).await.unwrap().last_used_at,
        Some(UnixTime(4_500))
    );

    s.revoke_key(&a.id, UnixTime(6_000), &change())
        .await
        .unwrap();
    let again = s
        .revoke_key(&a.id, UnixTime(6_001), &change())
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
    let renamed_revoked = s.rename_key(&a.id, "x", &change()).await;
    assert!(
        renamed_revoked.is_ok(),
        "a revoked key keeps its name editable"
    );
    let expired_revoked = s.set_key_expiry(&a.id, None, &change()).await.unwrap_err();
    assert!(matches!(expired_revoked, StoreError::Conflict(_)));
    let unknown = s
        .revoke_key(
            &KeyId::from_trusted("key_nope".into()),
            UnixTime(1),
            &change(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::NotFound { .. }),
        "{unknown:?}"
    );

    // Rotation: the successor is written and the old key gets its end of grace.
    let c = key(&w.org, &w.owner, Some(&w.project), 3, &w.hasher);
    let c = KeyRecord {
        rotated_from: Some(b.id.clone()),
        ..c
    };
    s.rotate_key(&b.id, UnixTime(7_000), &c, &[change(), change()])
        .await
        .unwrap();
    let old = s.key(&w.org.id, &b.id).await.unwrap();
    assert_eq!(old.expires_at, Some(UnixTime(7_000)));
    assert_eq!(old.rotated_to, Some(c.id.clone()));
    assert_eq!(
        s.key(&w.org.id, &c.id).await.unwrap().rotated_from,
        Some(b.id.clone())
    );
    let d = key(&w.org, &w.owner, Some(&w.project), 4, &w.hasher);
    let twice = s
        .rotate_key(&b.id, UnixTime(7_000), &d, &[change()])
        .await
        .unwrap_err();
    assert!(matches!(twice, StoreError::Conflict(_)), "{twice:?}");
    assert!(s.key(&w.org.id, &d.id).await.is_err(), "no half rotation");

    // Many at once.
    let many: Vec<KeyRecord> = (10..20)
        .map(|seed| key(&w.org, &w.owner, Some(&w.project), seed, &w.hasher))
        .collect();
    s.insert_keys(&many, &entry(&w.org, "api_key.created", "seed", 8_000))
        .await
        .unwrap();
    assert_eq!(
        s.keys(&w.org.id, &KeyFilter::default())
            .await
            .unwrap()
            .len(),
        14
    );

    let keys_changed: Vec<ChangedEntity> = w.changes().await;
    // Two keys, rename and expiry, revoke, a rename of the revoked key, a rotation (the
    // successor and the old key), ten seeded keys; the refused changes none.
    assert_eq!(keys_changed.len(), 2 + 2 + 1 + 1 + 2 + 10);
}

#[tokio::test]
async fn authentication_sees_keys_with_their_projects() {
    let w = world().await;
    let s = &w.store;
    let a = w.project_key(1).await;
    let all = s.auth_keys().await.unwrap();
    assert_eq!(all.len(), 2);
    let mut streamed = Vec::new();
    s.each_auth_key(|k| streamed.push(k)).await.unwrap();
    assert_eq!(streamed, all);

    let ips = IpAllowList::parse(&["192.0.2.0/24".to_owned()]).unwrap();
    let e = || entry(&w.org, "project.updated", w.project.id.as_str(), 3_000);
    s.set_project_allowed_ips(&w.project.id, &ips, &e())
        .await
        .unwrap();
    let seen = s.auth_key(&a.id).await.unwrap().unwrap();
    assert_eq!(seen.key, a);
    assert_eq!(seen.project_status, Some(ProjectStatus::Active));
    assert_eq!(seen.project_allowed_ips, ips);
    let admin = s.auth_key(&w.admin.id).await.unwrap().unwrap();
    assert_eq!(admin.project_status, None);
    assert_eq!(
        s.auth_key(&KeyId::from_trusted("key_nope".into()))
            .await
            .unwrap(),
        None
    );

    s.archive_project(&w.project.id, UnixTime(3_100), &e())
        .await
        .unwrap();
    let of_project = s.auth_keys_of_project(&w.project.id).await.unwrap();
    assert_eq!(of_project.len(), 1);
    assert_eq!(of_project[0].project_status, Some(ProjectStatus::Archived));
}

#[tokio::test]
async fn a_suspension_is_seen_by_authentication_and_the_change_log_until_lifted() {
    let w = world().await;
    let s = &w.store;
    let a = w.project_key(1).await;
    let before = s.latest_change().await.unwrap();
    let suspension = Suspension {
        kind: "request_spike".into(),
        reason: "500 requests in five minutes, against 10 usually".into(),
        at: UnixTime(3_000),
    };
    let e = |event: &str, at| entry(&w.org, event, a.id.as_str(), at);
    assert!(s
        .suspend_key(&a.id, &suspension, &e("api_key.suspended", 3_000))
        .await
        .unwrap());
    // Twice: nothing changes, nothing audited again.
    assert!(!s
        .suspend_key(&a.id, &suspension, &e("api_key.suspended", 3_001))
        .await
        .unwrap());
    let seen = s.auth_key(&a.id).await.unwrap().unwrap();
    assert_eq!(seen.suspension, Some(suspension.clone()));
    assert_eq!(seen.key, a, "the key itself is unchanged");
    let changes = s.changes_after(before, 100).await.unwrap();
    assert_eq!(changes.len(), 1);
    let audited = s
        .audit_entries(&w.org.id, Some(a.id.as_str()), 10)
        .await
        .unwrap();
    assert_eq!(
        audited
            .iter()
            .filter(|e| e.event_type == "api_key.suspended")
            .count(),
        1
    );

    assert!(s
        .lift_key_suspension(&a.id, &e("api_key.unsuspended", 3_100))
        .await
        .unwrap());
    assert!(!s
        .lift_key_suspension(&a.id, &e("api_key.unsuspended", 3_101))
        .await
        .unwrap());
    assert_eq!(s.auth_key(&a.id).await.unwrap().unwrap().suspension, None);
    assert_eq!(s.changes_after(before, 100).await.unwrap().len(), 2);

    // A revoked key is not suspended (it is refused already).
    s.revoke_key(&a.id, UnixTime(3_200), &e("api_key.revoked", 3_200))
        .await
        .unwrap();
    assert!(!s
        .suspend_key(&a.id, &suspension, &e("api_key.suspended", 3_300))
        .await
        .unwrap());
}

#[tokio::test]
async fn the_last_owner_admin_key_stays() {
    let w = world().await;
    let s = &w.store;
    let e = || entry(&w.org, "api_key.deleted", w.admin.id.as_str(), 3_000);
    assert!(!s
        .revoke_owner_admin_key(&w.org.id, &w.admin.id, UnixTime(3_000), &e())
        .await
        .unwrap());
    assert_eq!(
        s.key(&w.org.id, &w.admin.id).await.unwrap().revoked_at,
        None
    );
    let second = key(&w.org, &w.owner, None, 50, &w.hasher);
    s.insert_key(&second, &e()).await.unwrap();
    assert!(s
        .revoke_owner_admin_key(&w.org.id, &w.admin.id, UnixTime(3_000), &e())
        .await
        .unwrap());
    assert!(!s
        .revoke_owner_admin_key(&w.org.id, &second.id, UnixTime(3_000), &e())
        .await
        .unwrap());
    // A key already set to expire does not count as lasting: the last lasting one is neither
    // revoked nor given an expiry.
    let third = key(&w.org, &w.owner, None, 51, &w.hasher);
    s.insert_key(&third, &e()).await.unwrap();
    s.set_key_expiry(&third.id, Some(UnixTime(9_000)), &e())
        .await
        .unwrap();
    assert!(!s
        .revoke_owner_admin_key(&w.org.id, &second.id, UnixTime(3_000), &e())
        .await
        .unwrap());
    let refused = s
        .set_key_expiry(&second.id, Some(UnixTime(9_000)), &e())
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
}

#[tokio::test]
async fn service_accounts_belong_to_a_project() {
    let w = world().await;
    let s = &w.store;
    let lab = project(&w.org, "Lab", false);
    s.insert_project(&lab, &entry(&w.org, "project.created", "p", 1))
        .await
        .unwrap();
    let account = |project: &Project, name: &str| ServiceAccount {
        id: ServiceAccountId::generate(),
        project_id: project.id.clone(),
        name: name.into(),
        role: "member".into(),
        created_by: "cli:test".into(),
        created_at: UnixTime(1_500),
    };
    let bot = account(&w.project, "bot");
    let e = || entry(&w.org, "service_account.created", bot.id.as_str(), 1_500);
    s.insert_service_account(&bot, &e()).await.unwrap();
    let dup = s
        .insert_service_account(&account(&w.project, "bot"), &e())
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let lab_bot = account(&lab, "bot");
    s.insert_service_account(&lab_bot, &e()).await.unwrap();

    assert_eq!(s.service_account(&bot.id).await.unwrap(), bot);
    let err = s
        .service_account(&ServiceAccountId::generate())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    assert_eq!(s.service_accounts(&w.org.id, None).await.unwrap().len(), 2);
    assert_eq!(
        s.service_accounts(&w.org.id, Some(&lab.id)).await.unwrap(),
        [lab_bot]
    );
    assert!(s
        .service_accounts(&OrgId::generate(), None)
        .await
        .unwrap()
        .is_empty());

    // Deleting one revokes the keys it owns (each in the change log) and frees its name.
    let owned = KeyRecord {
        kind: KeyKind::ServiceAccount,
        owner: KeyOwner::ServiceAccount(bot.id.clone()),
        ..key(&w.org, &w.owner, Some(&w.project), 30, &w.hasher)
    };
    s.insert_key(&owned, &e()).await.unwrap();
    let before = s.latest_change().await.unwrap();
    let revoked = s
        .delete_service_account(&bot.id, UnixTime(1_600), &e())
        .await
        .unwrap();
    assert_eq!(revoked, std::slice::from_ref(&owned.id));
    assert_eq!(
        s.key(&w.org.id, &owned.id).await.unwrap().revoked_at,
        Some(UnixTime(1_600))
    );
    assert_eq!(s.latest_change().await.unwrap(), before + 1);
    let gone = s.service_account(&bot.id).await.unwrap_err();
    assert!(matches!(gone, StoreError::NotFound { .. }), "{gone:?}");
    let again = s
        .delete_service_account(&bot.id, UnixTime(1_601), &e())
        .await
        .unwrap_err();
    assert!(matches!(again, StoreError::NotFound { .. }), "{again:?}");
    assert_eq!(s.service_accounts(&w.org.id, None).await.unwrap().len(), 1);
    s.insert_service_account(&account(&w.project, "bot"), &e())
        .await
        .unwrap();
}

#[tokio::test]
async fn rate_limits_and_budgets_are_set_replaced_and_removed() {
    let w = world().await;
    let s = &w.store;
    let holder = Holder::new(Level::Project, w.project.id.as_str());
    let rule = LimitRule {
        holder: holder.clone(),
        model: ModelPattern::new("gpt-4o*"),
        limits: RateLimits {
            rpm: Some(60),
            tpm: Some(10_000),
            ..Default::default()
        },
    };
    let e = || entry(&w.org, "rate_limit.updated", &holder.id, 2_000);
    s.set_rate_limit(&w.org.id, &rule, &e()).await.unwrap();
    let replaced = LimitRule {
        limits: RateLimits {
            concurrent: Some(2),
            ..Default::default()
        },
        ..rule.clone()
    };
    s.set_rate_limit(&w.org.id, &replaced, &e()).await.unwrap();
    assert_eq!(
        s.rate_limits(&w.org.id).await.unwrap(),
        std::slice::from_ref(&replaced)
    );
    assert!(s
        .remove_rate_limit(&holder, &ModelPattern::new("gpt-4o*"), &e())
        .await
        .unwrap());
    assert!(!s
        .remove_rate_limit(&holder, &ModelPattern::new("gpt-4o*"), &e())
        .await
        .unwrap());
    assert!(s.rate_limits(&w.org.id).await.unwrap().is_empty());

    let budget = Budget {
        id: 0,
        holder: holder.clone(),
        limit: MicroUsd(5_000_000),
        period: BudgetPeriod::Month,
        utc_offset_secs: 19_800,
        alerts_permille: vec![500, 800],
    };
    let stored = s.set_budget(&w.org.id, &budget, &e()).await.unwrap();
    assert!(stored.id > 0);
    let raised = Budget {
        limit: MicroUsd(9_000_000),
        ..budget.clone()
    };
    let again = s.set_budget(&w.org.id, &raised, &e()).await.unwrap();
    assert_eq!(again.id, stored.id, "replacing keeps the budget's identity");
    assert_eq!(
        s.budgets(&w.org.id).await.unwrap(),
        std::slice::from_ref(&again)
    );

    let alert = || entry(&w.org, "budget.alert", &holder.id, 2_100);
    let (first, second) = (alert(), alert());
    let claim = |e| s.claim_budget_alert(again.id, UnixTime(0), 500, MicroUsd(4_600_000), e);
    assert!(claim(&first).await.unwrap(), "the first claim wins");
    assert!(
        !claim(&second).await.unwrap(),
        "the same alert is claimed once"
    );
    assert!(s
        .claim_budget_alert(again.id, UnixTime(0), 800, MicroUsd(8_000_000), &alert())
        .await
        .unwrap());

    assert!(s.remove_budget(&holder, &e()).await.unwrap());
    assert!(!s.remove_budget(&holder, &e()).await.unwrap());
    assert!(s.budgets(&w.org.id).await.unwrap().is_empty());
    // Set, set, remove (rules); set, set, remove (budgets): six changes; the no-op removals none.
    assert_eq!(w.changes().await, vec![ChangedEntity::Limits; 6]);
}

#[tokio::test]
async fn a_large_batch_of_usage_events_is_stored_field_for_field() {
    // 256 + 16 + 1 + 3 rows: every size of multi-row insert, each row's values its own.
    let w = world().await;
    let a = w.project_key(1).await;
    let b = w.project_key(2).await;
    let events: Vec<UsageEvent> = (0..276i64)
        .map(|i| {
            let key = if i % 3 == 0 { &b } else { &a };
            let mut e = event(
                &w,
                &format!("req_{i:03}"),
                key,
                &format!("model-{i}"),
                1_000 + i,
            );
            e.endpoint = format!("/v1/endpoint-{i}");
            e.input_tokens = i;
            e.cached_input_tokens = 1_000 + i;
            e.output_tokens = 2_000 + i;
            e.reasoning_tokens = 3_000 + i;
            e.cost = MicroUsd(4_000 + i);
            e.status = 200 + u16::try_from(i % 300).unwrap();
            e.latency_ms = 5_000 + i;
            e.client_ip = (i % 2 == 0).then(|| format!("10.0.{}.{}", i / 256, i % 256));
            e
        })
        .collect();
    w.store.record_usage(&events).await.unwrap();
    let mut stored = w.store.recent_usage(&w.org.id, 1_000).await.unwrap();
    stored.reverse();
    assert_eq!(stored, events);
}

#[tokio::test]
async fn the_daily_roll_up_counts_every_new_event_once_however_its_batch_is_summed() {
    // All-new batches are summed by the store before they reach the roll-up; a batch with
    // events already stored (a replay) is summed by the database from the rows it inserted.
    // Both must come to the same rows.
    let w = world().await;
    let keys = [w.project_key(1).await, w.project_key(2).await];
    let day = 86_400 * 20_001;
    let make = |i: i64| {
        let key = &keys[(i % 2) as usize];
        let model = if i % 3 == 0 { "gpt-4o" } else { "gpt-4o-mini" };
        // Two days, the second starting at event 30.
        let at = day + if i < 30 { i * 60 } else { 86_400 + i };
        let mut e = event(&w, &format!("req_roll_{i:03}"), key, model, at);
        e.input_tokens = i;
        e.cached_input_tokens = 2 * i;
        e.output_tokens = 3 * i;
        e.reasoning_tokens = i % 5;
        e.cost = MicroUsd(7 * i);
        e
    };
    let first: Vec<UsageEvent> = (0..40).map(make).collect();
    let replayed: Vec<UsageEvent> = (20..60).map(make).collect();
    let later: Vec<UsageEvent> = (60..70).map(make).collect();
    w.store.record_usage(&first).await.unwrap();
    w.store.record_usage(&replayed).await.unwrap();
    w.store.record_usage(&later).await.unwrap();
    let all: Vec<UsageEvent> = (0..70).map(make).collect();
    for grouping in [UsageGrouping::Day, UsageGrouping::Key, UsageGrouping::Model] {
        let report = w
            .store
            .usage_report(&w.org.id, grouping, UnixTime(day), UnixTime(day + 86_400))
            .await
            .unwrap();
        let mut expected: std::collections::BTreeMap<String, [i64; 6]> = Default::default();
        for e in &all {
            let group = match grouping {
                UsageGrouping::Day => e.created_at.utc_date(),
                UsageGrouping::Key => e.key_id.as_str().to_owned(),
                _ => e.model_served.clone(),
            };
            let sums = expected.entry(group).or_default();
            for (t, v) in sums.iter_mut().zip([
                1,
                e.input_tokens,
                e.cached_input_tokens,
                e.output_tokens,
                e.reasoning_tokens,
                e.cost.0,
            ]) {
                *t += v;
            }
        }
        let mut got: std::collections::BTreeMap<String, [i64; 6]> = Default::default();
        for r in &report {
            got.insert(
                r.group.clone(),
                [
                    r.requests,
                    r.input_tokens,
                    r.cached_input_tokens,
                    r.output_tokens,
                    r.reasoning_tokens,
                    r.cost.0,
                ],
            );
        }
        assert_eq!(got, expected, "{grouping:?}");
    }
}

#[tokio::test]
async fn usage_is_recorded_once_and_read_back_in_every_shape() {
    let w = world().await;
    let s = &w.store;
    let a = w.project_key(1).await;
    let b = w.project_key(2).await;
    let day = 86_400 * 20_000; // a UTC midnight
    let events = vec![
        event(&w, "req_1", &a, "gpt-4o", day + 10),
        event(&w, "req_2", &a, "gpt-4o-mini", day + 70),
        event(&w, "req_3", &b, "gpt-4o", day + 3_700),
        event(&w, "req_4", &b, "text-embedding-3-small", day + 86_400 + 5),
    ];
    s.record_usage(&events).await.unwrap();
    // A retried batch counts once.
    s.record_usage(&events[..2]).await.unwrap();
    s.record_usage(&[]).await.unwrap();

    let recent = s.recent_usage(&w.org.id, 10).await.unwrap();
    assert_eq!(
        recent
            .iter()
            .map(|e| e.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req_4", "req_3", "req_2", "req_1"]
    );
    assert_eq!(recent[3], events[0]);
    assert_eq!(s.recent_usage(&w.org.id, 1).await.unwrap().len(), 1);
    let of_a = s.recent_usage_of_key(&w.org.id, &a.id, 10).await.unwrap();
    assert_eq!(of_a.len(), 2);
    assert!(s
        .recent_usage(&OrgId::generate(), 10)
        .await
        .unwrap()
        .is_empty());

    let by_day = s
        .usage_report(
            &w.org.id,
            UsageGrouping::Day,
            UnixTime(day),
            UnixTime(day + 86_400),
        )
        .await
        .unwrap();
    assert_eq!(by_day.len(), 2);
    assert_eq!(by_day[0].requests, 3);
    assert_eq!(by_day[0].input_tokens, 300);
    assert_eq!(by_day[0].cost, MicroUsd(3_750));
    assert_eq!(by_day[1].requests, 1);
    let by_key = s
        .usage_report(&w.org.id, UsageGrouping::Key, UnixTime(day), UnixTime(day))
        .await
        .unwrap();
    assert_eq!(by_key.len(), 2);
    assert_eq!(by_key.iter().map(|r| r.requests).sum::<i64>(), 3);
    let by_model = s
        .usage_report(
            &w.org.id,
            UsageGrouping::Model,
            UnixTime(day),
            UnixTime(day + 86_400),
        )
        .await
        .unwrap();
    assert_eq!(by_model.len(), 3, "by served model");
    let by_project = s
        .usage_report(
            &w.org.id,
            UsageGrouping::Project,
            UnixTime(day),
            UnixTime(day + 86_400),
        )
        .await
        .unwrap();
    assert_eq!(by_project.len(), 1);
    assert_eq!(by_project[0].group, w.project.id.as_str());
    assert_eq!(by_project[0].output_tokens, 80);
    assert_eq!(by_project[0].reasoning_tokens, 20);
    assert_eq!(by_project[0].cached_input_tokens, 40);

    let key_a = Holder::new(Level::Key, a.id.as_str());
    assert_eq!(
        s.usage_since(&key_a, "*", UnixTime(day)).await.unwrap(),
        (2, 240)
    );
    assert_eq!(
        s.usage_since(&key_a, "gpt-4o-mini*", UnixTime(day))
            .await
            .unwrap(),
        (1, 120)
    );
    assert_eq!(
        s.usage_since(&key_a, "*", UnixTime(day + 11))
            .await
            .unwrap(),
        (1, 120)
    );
    let org = Holder::new(Level::Organization, w.org.id.as_str());
    assert_eq!(
        s.usage_since(&org, "*", UnixTime(0)).await.unwrap(),
        (4, 480)
    );

    // Hourly buckets from the day's start: bucket 0 holds two events, bucket 1 one; the next
    // day's event is past the end.
    let totals = s
        .usage_totals(&w.org.id, UnixTime(day), UnixTime(day + 86_400), 3_600)
        .await
        .unwrap();
    assert_eq!(
        totals
            .iter()
            .map(|t| (t.bucket, t.requests))
            .collect::<Vec<_>>(),
        [(0, 1), (0, 1), (1, 1)]
    );
    assert_eq!(totals.iter().map(|t| t.cost.0).sum::<i64>(), 3_750);
    assert_eq!(totals[2].endpoint, "/v1/chat/completions");

    // Spend: whole days from the roll-up, the part before the first midnight from the events.
    let project = Holder::new(Level::Project, w.project.id.as_str());
    assert_eq!(
        s.spend_since(&project, UnixTime(day)).await.unwrap(),
        MicroUsd(5_000)
    );
    assert_eq!(
        s.spend_since(&project, UnixTime(day + 60)).await.unwrap(),
        MicroUsd(3_750),
        "mid-day start: the events after it, then the next day's roll-up"
    );
    assert_eq!(
        s.spend_since(&key_a, UnixTime(day + 86_400)).await.unwrap(),
        MicroUsd(0)
    );
}

#[tokio::test]
async fn retention_prunes_old_events_oldest_first_and_keeps_the_daily_roll_up() {
    let w = world().await;
    let s = &w.store;
    let a = w.project_key(1).await;
    let day = 86_400 * 20_000;
    let events: Vec<UsageEvent> = (0..7)
        .map(|n| event(&w, &format!("req_{n}"), &a, "gpt-4o", day + n * 1_000))
        .collect();
    s.record_usage(&events).await.unwrap();
    let report = |s: &Store| {
        let org = w.org.id.clone();
        let s = s.clone();
        async move {
            s.usage_report(&org, UsageGrouping::Day, UnixTime(day), UnixTime(day))
                .await
                .unwrap()
        }
    };
    let before = report(s).await;

    // At most `limit` at a time, oldest first, only those before the cut.
    assert_eq!(s.prune_usage(UnixTime(day + 5_000), 2).await.unwrap(), 2);
    assert_eq!(s.prune_usage(UnixTime(day + 5_000), 100).await.unwrap(), 3);
    assert_eq!(s.prune_usage(UnixTime(day + 5_000), 100).await.unwrap(), 0);
    let left: Vec<String> = s
        .recent_usage(&w.org.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    assert_eq!(left, ["req_6", "req_5"]);
    assert_eq!(report(s).await, before, "the roll-up keeps the day's sums");

    // Events after pruning (even of everything) are rolled up once each.
    let later = event(&w, "req_7", &a, "gpt-4o", day + 8_000);
    s.record_usage(std::slice::from_ref(&later)).await.unwrap();
    let after = report(s).await;
    assert_eq!(after[0].requests, before[0].requests + 1);
    assert_eq!(s.prune_usage(UnixTime(i64::MAX), 100).await.unwrap(), 3);
    s.record_usage(&[event(&w, "req_8", &a, "gpt-4o", day + 9_000)])
        .await
        .unwrap();
    assert_eq!(report(s).await[0].requests, before[0].requests + 2);
}

#[tokio::test]
async fn audit_entries_are_filtered_and_paged() {
    let w = world().await;
    let s = &w.store;
    let mut written = Vec::new();
    for (i, event_type) in ["api_key.created", "project.created", "api_key.deleted"]
        .iter()
        .cycle()
        .take(9)
        .enumerate()
    {
        let mut e = entry(
            &w.org,
            event_type,
            &format!("res_{}", i % 3),
            5_000 + i as i64,
        );
        if i % 2 == 0 {
            e.project_id = Some(w.project.id.clone());
            e.actor = Actor {
                kind: "api_key".into(),
                id: w.admin.id.as_str().into(),
            };
        }
        s.record_audit(&e).await.unwrap();
        written.push(e);
    }
    let newest = s.audit_entries(&w.org.id, None, 3).await.unwrap();
    assert_eq!(newest[0], written[8]);
    let about = s
        .audit_entries(&w.org.id, Some("res_1"), 100)
        .await
        .unwrap();
    assert_eq!(about.len(), 3);

    let page = |query: AuditQuery| audit_page(s, &w.org.id, query);
    let q = AuditQuery {
        limit: 100,
        ..Default::default()
    };
    assert_eq!(page(q.clone()).await.len(), 10, "with the bootstrap entry");
    let typed = page(AuditQuery {
        event_types: vec!["api_key.created".into(), "api_key.deleted".into()],
        ..q.clone()
    })
    .await;
    assert_eq!(typed.len(), 6);
    let in_project = page(AuditQuery {
        project_ids: vec![w.project.id.as_str().into()],
        ..q.clone()
    })
    .await;
    assert_eq!(in_project.len(), 5);
    let by_actor = page(AuditQuery {
        actor_ids: vec![w.admin.id.as_str().into()],
        ..q.clone()
    })
    .await;
    assert_eq!(by_actor.len(), 5);
    let resources = page(AuditQuery {
        resource_ids: vec!["res_0".into(), "res_2".into()],
        ..q.clone()
    })
    .await;
    assert_eq!(resources.len(), 6);
    let window = page(AuditQuery {
        since: Some(UnixTime(5_002)),
        until: Some(UnixTime(5_004)),
        ..q.clone()
    })
    .await;
    assert_eq!(
        window
            .iter()
            .map(|e| e.created_at.seconds())
            .collect::<Vec<_>>(),
        [5_004, 5_003, 5_002]
    );
    // Pages: `limit` is read as asked (the caller asks one more to learn of a next page).
    let first = page(AuditQuery {
        limit: 4,
        ..q.clone()
    })
    .await;
    let second = page(AuditQuery {
        limit: 4,
        after: Some(first[3].id.as_str().into()),
        ..q.clone()
    })
    .await;
    assert_eq!(second[0], written[4]);
    // Backwards: the entries just newer than the cursor, newest first, one more (the newest)
    // read past the page.
    let previous = page(AuditQuery {
        limit: 2,
        before: Some(second[0].id.as_str().into()),
        ..q.clone()
    })
    .await;
    assert_eq!(previous, first[1..4]);
    assert!(page(AuditQuery {
        resource_ids: vec!["res_0".into()],
        ..q.clone()
    })
    .await
    .iter()
    .all(|e| e.resource_id.as_deref() == Some("res_0")));
    let other_org = s.audit_page(&OrgId::generate(), &q).await.unwrap();
    assert!(other_org.is_empty());
}

async fn audit_page(s: &Store, org: &OrgId, query: AuditQuery) -> Vec<AuditEntry> {
    s.audit_page(org, &query).await.unwrap()
}

#[tokio::test]
async fn a_write_scope_keeps_all_of_its_changes_or_none() {
    let w = world().await;
    let s = &w.store;
    let a = key(&w.org, &w.owner, Some(&w.project), 1, &w.hasher);
    let holder = Holder::new(Level::Key, a.id.as_str());
    let rule = LimitRule {
        holder: holder.clone(),
        model: ModelPattern::new("*"),
        limits: RateLimits {
            rpm: Some(5),
            ..Default::default()
        },
    };
    let e = || entry(&w.org, "api_key.created", a.id.as_str(), 2_000);

    // Dropped without commit: nothing.
    {
        let mut write = s.write().await.unwrap();
        write.insert_key(&a, &e()).await.unwrap();
        write.set_rate_limit(&w.org.id, &rule, &e()).await.unwrap();
    }
    assert!(s.key(&w.org.id, &a.id).await.is_err());
    assert!(s.rate_limits(&w.org.id).await.unwrap().is_empty());
    assert_eq!(s.latest_change().await.unwrap(), w.base);

    // A failed change poisons the scope: commit refuses, and nothing before it is kept.
    let mut write = s.write().await.unwrap();
    write.set_rate_limit(&w.org.id, &rule, &e()).await.unwrap();
    let dup = write.insert_key(&w.admin, &e()).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let refused = write.insert_key(&a, &e()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Aborted), "{refused:?}");
    assert!(matches!(write.commit().await, Err(StoreError::Aborted)));
    assert!(s.rate_limits(&w.org.id).await.unwrap().is_empty());
    assert_eq!(s.latest_change().await.unwrap(), w.base);

    // Committed: everything, with the change log in order.
    let mut write = s.write().await.unwrap();
    write.insert_key(&a, &e()).await.unwrap();
    write.set_rate_limit(&w.org.id, &rule, &e()).await.unwrap();
    write.commit().await.unwrap();
    assert_eq!(s.key(&w.org.id, &a.id).await.unwrap(), a);
    assert_eq!(s.rate_limits(&w.org.id).await.unwrap(), [rule]);
    assert_eq!(
        w.changes().await,
        [ChangedEntity::Key(a.id.clone()), ChangedEntity::Limits]
    );
}

/// The change log's contract for followers: numbers in commit order, no gaps, so a follower
/// that reads "after N" while writers commit never skips a change. On SQLite writers are
/// serialized by `BEGIN IMMEDIATE`, so this holds even without the sequence counter; the test
/// has teeth on a backend whose transactions interleave (PostgreSQL), where it must also pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_reading_during_concurrent_writes_sees_every_change_once_in_order() {
    let w = Arc::new(world().await);
    const WRITERS: u8 = 8;
    const EACH: u8 = 6;
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            for n in 0..EACH {
                let seed = 100 + writer * EACH + n;
                let record = key(&w.org, &w.owner, Some(&w.project), seed, &w.hasher);
                let e = || entry(&w.org, "api_key.created", record.id.as_str(), 3_000);
                w.store.insert_key(&record, &e()).await.unwrap();
            }
        }));
    }
    let total = w.base + i64::from(WRITERS) * i64::from(EACH);
    let mut seen = Vec::new();
    let mut last = w.base;
    loop {
        let writers_done = tasks.iter().all(|t| t.is_finished());
        let batch = w.store.changes_after(last, 5).await.unwrap();
        for change in &batch {
            assert_eq!(change.seq, last + 1, "changes are numbered without gaps");
            last = change.seq;
            seen.push(change.entity.clone());
        }
        if last == total {
            break;
        }
        if batch.is_empty() {
            // Every writer had finished before this read, so nothing more can come.
            assert!(!writers_done, "the follower stopped at {last} of {total}");
            tokio::task::yield_now().await;
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(w.store.latest_change().await.unwrap(), total);
    let mut distinct = seen.clone();
    distinct.sort_by_key(|c| format!("{c:?}"));
    distinct.dedup();
    assert_eq!(distinct.len(), seen.len(), "each change once");
}

fn provider_object(w: &World, project: &Project, id: &str, at: i64) -> ProviderObject {
    ProviderObject {
        provider: "openai".into(),
        object_id: id.into(),
        kind: ObjectKind::of_id(id).unwrap(),
        org_id: w.org.id.clone(),
        project_id: project.id.clone(),
        key_id: None,
        created_at: UnixTime(at),
    }
}

#[tokio::test]
async fn the_ownership_ledger_keeps_each_object_s_first_owner() {
    let w = world().await;
    let beta = project(&w.org, "beta", false);
    w.store
        .insert_project(
            &beta,
            &entry(&w.org, "project.created", beta.id.as_str(), 1_500),
        )
        .await
        .unwrap();
    let made = [
        provider_object(&w, &w.project, "file-a1", 3_000),
        provider_object(&w, &w.project, "batch_a2", 3_001),
        provider_object(&w, &beta, "file-b1", 3_002),
    ];
    assert_eq!(
        w.store.record_provider_objects(&made).await.unwrap(),
        vec![true; 3]
    );
    // A second record of an id (another project, or a replay) keeps the first owner.
    let stolen = provider_object(&w, &beta, "file-a1", 3_003);
    assert_eq!(
        w.store.record_provider_objects(&[stolen]).await.unwrap(),
        vec![false]
    );
    let owner = w
        .store
        .provider_object("openai", "file-a1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.project_id, w.project.id);
    assert_eq!(owner.kind, ObjectKind::File);
    // Ids are per provider.
    assert!(w
        .store
        .provider_object("other", "file-a1")
        .await
        .unwrap()
        .is_none());
    let among = w
        .store
        .provider_objects_among("openai", &["file-b1", "file-zz", "file-a1"])
        .await
        .unwrap();
    let mut found: Vec<(String, ProjectId)> = among
        .into_iter()
        .map(|o| (o.object_id, o.project_id))
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("file-a1".into(), w.project.id.clone()),
            ("file-b1".into(), beta.id.clone())
        ]
    );
    // A project's objects, newest first, by kind, after a cursor.
    let ids =
        |objects: Vec<ProviderObject>| objects.into_iter().map(|o| o.object_id).collect::<Vec<_>>();
    let all = w
        .store
        .project_objects(&w.project.id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(ids(all), vec!["batch_a2", "file-a1"]);
    let files = w
        .store
        .project_objects(&w.project.id, Some(ObjectKind::File), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(files), vec!["file-a1"]);
    let after = w
        .store
        .project_objects(&w.project.id, None, Some("batch_a2"), 10)
        .await
        .unwrap();
    assert_eq!(ids(after), vec!["file-a1"]);
    let one = w
        .store
        .project_objects(&w.project.id, None, None, 1)
        .await
        .unwrap();
    assert_eq!(ids(one), vec!["batch_a2"]);
    // Forgotten when the provider deletes it.
    w.store
        .forget_provider_object("openai", "file-a1")
        .await
        .unwrap();
    assert!(w
        .store
        .provider_object("openai", "file-a1")
        .await
        .unwrap()
        .is_none());
    // Adoption is audited.
    let adopted = provider_object(&w, &beta, "vs_legacy", 3_010);
    let e = entry(&w.org, "provider_objects.adopted", beta.id.as_str(), 3_010);
    assert_eq!(
        w.store
            .adopt_provider_objects(&[adopted], &e)
            .await
            .unwrap(),
        vec![true]
    );
    assert!(w
        .audit_types()
        .await
        .contains(&"provider_objects.adopted".to_owned()));
}

#[tokio::test]
async fn objects_ride_with_usage_events_once_and_never_fail_a_batch() {
    let w = world().await;
    let key = w.project_key(1).await;
    let made = |id: &str| CreatedObject {
        provider: "openai".into(),
        kind: ObjectKind::of_id(id).unwrap(),
        id: id.into(),
    };
    let mut first = event(&w, "req_1", &key, "gpt-4o", 5_000);
    first.objects = vec![made("resp_1"), made("file-out")];
    // An event of a project that does not exist (or another organization's) records no
    // object, and the batch is stored all the same.
    let mut stray = event(&w, "req_2", &key, "gpt-4o", 5_001);
    stray.project_id = ProjectId::generate();
    stray.objects = vec![made("resp_2")];
    w.store.record_usage(&[first.clone(), stray]).await.unwrap();
    let kept = w
        .store
        .provider_object("openai", "resp_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.project_id, kept.key_id),
        (w.project.id.clone(), Some(key.id.clone()))
    );
    assert_eq!(kept.kind, ObjectKind::Response);
    assert!(w
        .store
        .provider_object("openai", "file-out")
        .await
        .unwrap()
        .is_some());
    assert!(w
        .store
        .provider_object("openai", "resp_2")
        .await
        .unwrap()
        .is_none());
    // Replayed (from the spool after a crash): nothing doubles.
    w.store.record_usage(&[first]).await.unwrap();
    let all = w
        .store
        .project_objects(&w.project.id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(w.store.recent_usage(&w.org.id, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn client_tokens_are_found_by_hash_and_counted_atomically_within_their_caps() {
    use tollgate_core::client_token::GrantAsk;
    let w = world().await;
    let s = &w.store;
    let key = w.project_key(1).await;
    let ask = GrantAsk {
        max_requests: Some(3),
        allowed_origins: vec!["https://app.example.com".into()],
        user: Some("user-1".into()),
        ..GrantAsk::default()
    };
    let grant = ask
        .grant(
            &Permissions::All,
            &ModelAllowList::default(),
            UnixTime(5_000),
        )
        .unwrap();
    let secret = tollgate_core::client_token::generate();
    let token = tollgate_store::ClientToken {
        id: tollgate_core::ClientTokenId::generate(),
        token_hash: w.hasher.hash(&secret),
        key_id: key.id.clone(),
        org_id: w.org.id.clone(),
        grant: grant.clone(),
        session: Some(r#"{"type":"realtime"}"#.into()),
        requests_used: 0,
        tokens_used: 0,
    };
    s.create_client_token(&token).await.unwrap();
    let found = s.client_token(&token.token_hash).await.unwrap().unwrap();
    assert_eq!(found.token, token);
    assert_eq!(
        found.key_hash, key.hash,
        "the key is found through its hash"
    );
    let other = w.hasher.hash(&tollgate_core::client_token::generate());
    assert!(s.client_token(&other).await.unwrap().is_none());

    assert!(s
        .client_origin_live("https://app.example.com", UnixTime(5_001))
        .await
        .unwrap());
    assert!(!s
        .client_origin_live("https://other.example.com", UnixTime(5_001))
        .await
        .unwrap());
    assert!(!s
        .client_origin_live("https://app.example.com", grant.expires_at)
        .await
        .unwrap());

    // Eight takers at once for three requests: exactly three get one.
    let takes = futures_util::future::join_all(
        (0..8).map(|_| s.take_client_token_request(&token.id, UnixTime(5_002))),
    )
    .await;
    assert_eq!(takes.iter().filter(|t| *t.as_ref().unwrap()).count(), 3);
    let found = s.client_token(&token.token_hash).await.unwrap().unwrap();
    assert_eq!(found.token.requests_used, 3);

    // A token cap stops requests once reached; an expired token gives none.
    let mut capped = token.clone();
    capped.id = tollgate_core::ClientTokenId::generate();
    capped.token_hash = other;
    capped.grant.max_requests = None;
    capped.grant.max_tokens = Some(100);
    s.create_client_token(&capped).await.unwrap();
    assert!(s
        .take_client_token_request(&capped.id, UnixTime(5_003))
        .await
        .unwrap());
    assert_eq!(
        s.add_client_token_tokens(&capped.id, 60).await.unwrap(),
        Some(60)
    );
    assert_eq!(
        s.add_client_token_tokens(&capped.id, 40).await.unwrap(),
        Some(100)
    );
    assert_eq!(
        s.client_token_tokens_used(&capped.id).await.unwrap(),
        Some(100)
    );
    assert_eq!(
        s.client_token_tokens_used(&tollgate_core::ClientTokenId::generate())
            .await
            .unwrap(),
        None
    );
    assert!(!s
        .take_client_token_request(&capped.id, UnixTime(5_004))
        .await
        .unwrap());
    let mut live = token.clone();
    live.id = tollgate_core::ClientTokenId::generate();
    live.token_hash = w.hasher.hash(&tollgate_core::client_token::generate());
    live.grant.max_requests = None;
    s.create_client_token(&live).await.unwrap();
    assert!(s
        .take_client_token_request(&live.id, UnixTime(5_004))
        .await
        .unwrap());
    assert!(!s
        .take_client_token_request(&live.id, grant.expires_at)
        .await
        .unwrap());
}
