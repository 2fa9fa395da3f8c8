//! A fresh PostgreSQL schema of its own for a test, in `POINTS_TEST_DATABASE_URL`; the
//! test is skipped where no database answers, unless `POINTS_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::Duration;

/// A schema made for one test.
pub struct Schema {
    /// The server URL, with `search_path` set to the schema.
    pub url: String,
    /// The database URL without the schema.
    pub base: String,
    /// The schema name.
    pub name: String,
    /// The connection the schema was created on.
    pub client: tokio_postgres::Client,
}

/// Creates a schema named `<prefix><uuid>`; `None` (after saying so) when no database
/// answers within 5 s and PostgreSQL is not required.
pub async fn schema(prefix: &str) -> Option<Schema> {
    let base = std::env::var("POINTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/points_test".to_owned());
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&base, tokio_postgres::NoTls),
    )
    .await;
    let (client, connection) = match connected {
        Ok(Ok(pair)) => pair,
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            assert!(
                std::env::var("POINTS_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PostgreSQL is required but {base} does not answer: {why}"
            );
            eprintln!("no PostgreSQL at {base} ({why}): skipping");
            return None;
        }
    };
    tokio::spawn(connection);
    let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(Schema {
        url: format!("{base}{sep}options=-csearch_path%3D{name}"),
        base,
        name,
        client,
    })
}

/// Drops a schema over a new connection, ignoring failure (the test has already passed or
/// failed on its own).
pub async fn drop_schema(base: &str, name: &str) {
    if let Ok((client, connection)) = tokio_postgres::connect(base, tokio_postgres::NoTls).await {
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
            .await;
    }
}
