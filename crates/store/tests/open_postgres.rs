//! Opening PostgreSQL databases: new (migrated, and by several servers at once), reopened,
//! another application's (refused, untouched), unreachable (a clear error without the
//! password). Each test makes its own scratch database on `TOLLGATE_TEST_POSTGRES`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use sqlx::Connection;
use tollgate_store::scratch::ScratchDatabase;
use tollgate_store::{DatabaseLocation, Store, StoreError};

async fn scratch() -> ScratchDatabase {
    ScratchDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn servers_starting_together_on_a_new_database_migrate_it_once_and_reopen_it() {
    let db = scratch().await;
    // Replicas of a deployment start at the same moment: the migrations run once, under
    // their lock, and every server opens the database.
    let opened = futures_util::future::join_all((0..4).map(|_| Store::open(db.location()))).await;
    for store in &opened {
        assert!(store.is_ok(), "{:?}", store.as_ref().err());
    }
    let store = opened.into_iter().next().unwrap().unwrap();
    assert_eq!(
        store.meta("schema").await.unwrap().as_deref(),
        Some("tollgate")
    );
    assert_eq!(store.latest_change().await.unwrap(), 0);
    store.close().await;

    let again = Store::open(db.location()).await.unwrap();
    assert_eq!(
        again.meta("schema").await.unwrap().as_deref(),
        Some("tollgate")
    );
    again.close().await;
}

#[tokio::test]
async fn another_application_s_schema_is_refused_and_left_as_it_was() {
    let db = scratch().await;
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("CREATE TABLE invoices (id BIGINT PRIMARY KEY, total BIGINT)")
        .execute(&mut conn)
        .await
        .unwrap();
    let err = Store::open(db.location()).await.unwrap_err();
    assert!(matches!(err, StoreError::ForeignSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("another application"), "{err}");
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        tables,
        vec![("invoices".to_owned(),)],
        "nothing was created"
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_that_never_shows_the_password() {
    let location =
        DatabaseLocation::parse("postgres://tollgate:sup3r-s3cret@127.0.0.1:1/tollgate").unwrap();
    let err = Store::open(&location).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(!message.contains("sup3r-s3cret"), "{message}");
    assert!(message.contains("tollgate:*****@127.0.0.1:1"), "{message}");
}
