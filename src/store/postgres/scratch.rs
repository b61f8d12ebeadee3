//! Throwaway databases for tests and benchmarks: each [`ScratchDatabase`] is a
//! fresh database with a random name on a server, dropped (with any sessions
//! still connected to it) when the handle is dropped.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::store::StoreError;

/// The environment variable naming the server for tests (a URL whose database
/// is a maintenance database such as `postgres`).
pub const SERVER_URL_VAR: &str = "HOOKGATE_TEST_DATABASE_URL";
/// The server used when [`SERVER_URL_VAR`] is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The test server's maintenance URL.
pub fn server_url() -> String {
    std::env::var(SERVER_URL_VAR).unwrap_or_else(|_| DEFAULT_SERVER_URL.to_string())
}

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates `hookgate_scratch_<random>` on the server of `server_url`.
    pub async fn create(server_url: &str) -> Result<Self, StoreError> {
        let name = format!(
            "hookgate_scratch_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        let mut c = connect(server_url).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot create a database: {e}")))?;
        let _ = c.close().await;
        let mut url = url::Url::parse(server_url)
            .map_err(|_| StoreError::Unavailable("the server URL is not a URL".into()))?;
        url.set_path(&name);
        Ok(ScratchDatabase {
            server: server_url.to_string(),
            name,
            url: url.to_string(),
        })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

async fn connect(url: &str) -> Result<sqlx::PgConnection, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|_| StoreError::Unavailable("the server URL is not a PostgreSQL URL".into()))?
        .connect()
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {e}")))
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop may run inside an async runtime, which cannot block on another:
        // a short-lived thread with its own runtime does the work.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut c = connect(&server).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut c)
                    .await
                    .ok()?;
                let _ = c.close().await;
                Some(())
            })
        })
        .join();
        if !matches!(done, Ok(Some(()))) {
            eprintln!("could not drop the scratch database {}", self.name);
        }
    }
}
