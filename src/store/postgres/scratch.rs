//! Throwaway databases for tests and benchmarks: each [`ScratchDatabase`] is a
//! fresh database with a random name on a server, dropped (with any sessions
//! still connected to it) when the handle is dropped.
//!
//! Tests ([`ScratchDatabase::for_test`]) reuse databases within one process:
//! `CREATE DATABASE` writes and syncs a copy of the template (about a third of
//! a second each here, most of the PostgreSQL tests' time), while emptying one
//! (`DROP SCHEMA public CASCADE`) takes milliseconds. A dropped test handle
//! empties its database and gives it back to the process's pool; the pool's
//! databases are dropped by a small watchdog process (`sh` + `psql`) when the
//! test process ends, however it ends (its end closes the watchdog's stdin).
//! Without `psql`, each test database is dropped with its handle, as before.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::str::FromStr;
use std::sync::Mutex;

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

/// Set to `1` to make [`ScratchDatabase::for_test`] fail, not skip, when no
/// server answers (CI sets it).
pub const REQUIRE_VAR: &str = "HOOKGATE_TEST_REQUIRE_POSTGRES";

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
    /// Emptied and given back to [`POOL`] on drop, not dropped.
    pooled: bool,
}

/// The test process's reusable databases, and the watchdog that drops them
/// when the process ends.
struct Pool {
    free: Vec<ScratchDatabase>,
    /// `None` when the watchdog could not start: then nothing is pooled.
    watchdog: Option<(Child, ChildStdin)>,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

/// Starts the watchdog: it reads database names, one per line, until its
/// stdin ends (this process ended), then drops each on `server`.
fn watchdog(server: &str) -> Option<(Child, ChildStdin)> {
    let script = r#"while read -r n; do set -- "$@" "$n"; done
for n; do psql -q -X "$HOOKGATE_SCRATCH_SERVER" -c "DROP DATABASE IF EXISTS \"$n\" WITH (FORCE)" >/dev/null 2>&1; done"#;
    let probe = Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return None;
    }
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("HOOKGATE_SCRATCH_SERVER", server)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdin = child.stdin.take()?;
    Some((child, stdin))
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
            pooled: false,
        })
    }

    /// A database of the process's pool (emptied), or a new one put in the
    /// watchdog's care; a new unpooled one when there is no watchdog.
    async fn pooled(server_url: &str) -> Result<Self, StoreError> {
        let watched = {
            let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
            let pool = pool.get_or_insert_with(|| Pool {
                free: Vec::new(),
                watchdog: watchdog(server_url),
            });
            if let Some(i) = pool.free.iter().position(|d| d.server == server_url) {
                return Ok(pool.free.swap_remove(i));
            }
            pool.watchdog.is_some()
        };
        if !watched {
            return Self::create(server_url).await;
        }
        let mut db = Self::create(server_url).await?;
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, stdin)) = pool.as_mut().and_then(|p| p.watchdog.as_mut()) {
            if writeln!(stdin, "{}", db.name)
                .and_then(|()| stdin.flush())
                .is_ok()
            {
                db.pooled = true;
            }
        }
        Ok(db)
    }

    /// A fresh database on the test server for the test `test`, or `None`
    /// (after one line on stderr saying the test is skipped) when no server
    /// answers at its address, unless [`REQUIRE_VAR`] is `1`: then it panics.
    /// A server that answers but refuses is an error, not a skip.
    pub async fn for_test(test: &str) -> Option<Self> {
        let server = server_url();
        let addr = url::Url::parse(&server)
            .ok()
            .map(|u| {
                let host = u.host_str().unwrap_or("127.0.0.1").to_string();
                (host, u.port().unwrap_or(5432))
            })
            .unwrap_or_else(|| ("127.0.0.1".to_string(), 5432));
        let answers = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            tokio::net::TcpStream::connect((addr.0.as_str(), addr.1)),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        if !answers {
            let why = format!(
                "no PostgreSQL server answers at {}:{} (set {SERVER_URL_VAR} to use another)",
                addr.0, addr.1
            );
            if std::env::var(REQUIRE_VAR).is_ok_and(|v| v == "1") {
                panic!("{test}: {why}; {REQUIRE_VAR}=1 requires one");
            }
            // Past the test harness's capture, so the skip shows in a passing run.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            return None;
        }
        match Self::pooled(&server).await {
            Ok(db) => Some(db),
            Err(e) => panic!(
                "{test}: cannot create a scratch database on {}:{}: {e}",
                addr.0, addr.1
            ),
        }
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

/// Empties the database at `url` for its next test: ends every other session
/// on it (their locks, `LISTEN`s and advisory locks with them) and drops
/// everything in `public`, where the store keeps all it makes.
async fn empty(url: &str, name: &str) -> Option<()> {
    let mut c = connect(url).await.ok()?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .execute(&mut c)
    .await
    .ok()?;
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(&mut c)
        .await
        .ok()?;
    let _ = c.close().await;
    Some(())
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if self.pooled {
            let (url, name) = (self.url.clone(), self.name.clone());
            let emptied = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(empty(&url, &name))
            })
            .join();
            if matches!(emptied, Ok(Some(()))) {
                let back = ScratchDatabase {
                    server: self.server.clone(),
                    name: self.name.clone(),
                    url: self.url.clone(),
                    pooled: true,
                };
                let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(p) = pool.as_mut() {
                    p.free.push(back);
                    return;
                }
            }
            // Not emptied: left to the watchdog, never reused.
            return;
        }
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
