//! Opening databases that are new, damaged, foreign or newer, and writes that are all or nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use serde_json::json;
use tollgate_core::{
    AuditId, KeyFormat, KeyHasher, KeyKind, OrgId, Permissions, ServerSecret, UnixTime, UserId,
};
use tollgate_store::{
    Actor, AuditEntry, Bootstrap, DatabaseLocation, KeyOwner, KeyRecord, Organization, Project,
    ProjectStatus, Store, StoreError, User,
};

fn location(dir: &tempfile::TempDir, name: &str) -> DatabaseLocation {
    DatabaseLocation::Sqlite(dir.path().join(name))
}

#[tokio::test]
async fn a_new_file_is_created_in_wal_mode_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&location(&dir, "new.db")).await.unwrap();
    assert_eq!(
        store.meta("schema").await.unwrap().as_deref(),
        Some("tollgate")
    );
    assert!(store.default_organization().await.unwrap().is_none());
    store.close().await;
    let again = Store::open(&location(&dir, "new.db")).await.unwrap();
    assert_eq!(again.latest_change().await.unwrap(), 0);
    let header = std::fs::read(dir.path().join("new.db")).unwrap();
    assert_eq!(header[18], 2, "file format write version 2 means WAL");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let content = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, &content).unwrap();
    let err = Store::open(&location(&dir, "notes.db")).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        content,
        "not a byte changed"
    );
}

#[tokio::test]
async fn another_applications_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
        .status();
    if status.map(|s| !s.success()).unwrap_or(true) {
        // Build the foreign database through sqlx instead when the sqlite3 shell is absent.
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("INSERT INTO invoices VALUES (1, 9.5)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = Store::open(&location(&dir, "other.db")).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert!(err.to_string().contains("belongs to another application"));
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the foreign database must not change"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_tollgate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&location(&dir, "t.db")).await.unwrap();
    store.close().await;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, execution_time)
             VALUES (99990101000000, 'from the future', CURRENT_TIMESTAMP, 1, X'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }
    let err = Store::open(&location(&dir, "t.db")).await.unwrap_err();
    assert!(matches!(err, StoreError::TooNew(_)), "{err:?}");
    assert!(err.to_string().contains("newer version of Tollgate"));
}

#[tokio::test]
async fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(&DatabaseLocation::Sqlite(dir.path().join("missing/t.db")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

fn key(org: &OrgId, owner: &UserId, id_seed: u8, hasher: &KeyHasher) -> KeyRecord {
    let secret = KeyFormat::default().from_random(KeyKind::Admin, &[id_seed; 32]);
    KeyRecord {
        id: secret.id(),
        org_id: org.clone(),
        project_id: None,
        kind: KeyKind::Admin,
        name: format!("k{id_seed}"),
        hash: hasher.hash(&secret),
        hash_version: 1,
        redacted: secret.redacted(),
        owner: KeyOwner::User(owner.clone()),
        permissions: Permissions::All,
        created_by: "system:test".into(),
        created_at: UnixTime(100),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        rotated_from: None,
        rotated_to: None,
        allowed_ips: Default::default(),
        allowed_models: Default::default(),
    }
}

fn entry(org: &OrgId, event: &str, resource: &str) -> AuditEntry {
    AuditEntry {
        id: AuditId::generate(),
        org_id: org.clone(),
        event_type: event.into(),
        actor: Actor::system(),
        project_id: None,
        resource_id: Some(resource.into()),
        data: json!({}),
        created_at: UnixTime(200),
    }
}

#[tokio::test]
async fn a_failed_rotation_writes_nothing_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&location(&dir, "t.db")).await.unwrap();
    let hasher = KeyHasher::new(ServerSecret::new(vec![1; 32]).unwrap());
    let org = Organization {
        id: OrgId::generate(),
        name: "o".into(),
        created_at: UnixTime(1),
    };
    let owner = User {
        id: UserId::generate(),
        email: "o@example.com".into(),
        name: "o".into(),
        created_at: UnixTime(1),
    };
    let admin = key(&org.id, &owner.id, 1, &hasher);
    let boot = Bootstrap {
        organization: org.clone(),
        owner: owner.clone(),
        owner_password_hash: "x".into(),
        project: Project {
            id: tollgate_core::ProjectId::generate(),
            org_id: org.id.clone(),
            name: "Default project".into(),
            status: ProjectStatus::Active,
            is_default: true,
            created_at: UnixTime(1),
            archived_at: None,
            allowed_ips: Default::default(),
            allowed_models: Default::default(),
        },
        admin_key: admin.clone(),
        secret_fingerprint: hasher.fingerprint(),
        key_prefix: "sk".into(),
        audit: vec![],
    };
    assert!(store.bootstrap(&boot).await.unwrap());
    assert!(
        !store.bootstrap(&boot).await.unwrap(),
        "a second bootstrap writes nothing"
    );

    store
        .revoke_key(
            &admin.id,
            UnixTime(150),
            &entry(&org.id, "api_key.revoked", admin.id.as_str()),
        )
        .await
        .unwrap();
    let changes_before = store.latest_change().await.unwrap();
    let audit_before = store.audit_entries(&org.id, None, 100).await.unwrap().len();

    // Someone revoked the key between the check and the write: the rotation must leave no trace.
    let successor = key(&org.id, &owner.id, 2, &hasher);
    let err = store
        .rotate_key(
            &admin.id,
            UnixTime(500),
            &successor,
            &[entry(&org.id, "api_key.rotated", admin.id.as_str())],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        store.key(&org.id, &successor.id).await.is_err(),
        "successor not written"
    );
    assert_eq!(
        store.key(&org.id, &admin.id).await.unwrap().expires_at,
        None,
        "old key untouched"
    );
    assert_eq!(store.latest_change().await.unwrap(), changes_before);
    assert_eq!(
        store.audit_entries(&org.id, None, 100).await.unwrap().len(),
        audit_before
    );

    // A duplicate key is a conflict, not a crash, and also leaves nothing behind.
    let err = store
        .insert_key(
            &admin,
            &entry(&org.id, "api_key.created", admin.id.as_str()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.audit_entries(&org.id, None, 100).await.unwrap().len(),
        audit_before
    );
}
