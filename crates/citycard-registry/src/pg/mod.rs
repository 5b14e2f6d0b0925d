//! The PostgreSQL implementation of the registry, for a city whose offices
//! share one database server.
//!
//! Every mutating method runs in one `SERIALIZABLE` transaction with its
//! audit entry and returns once PostgreSQL has committed it
//! (`synchronous_commit = on`). Serialisable isolation gives the same
//! guarantee as the SQLite registry's single writer — every
//! read-check-write (is the resident's card live? is this batch row done?
//! is this intent still open?) behaves as if the transactions of all
//! offices ran one after another — without hand-placed row locks that a
//! later change could forget. A transaction that PostgreSQL aborts because
//! another office's commit conflicted with it (`40001`, `40P01`, or a
//! unique violation raced in by a concurrent commit) is retried from the
//! start, up to [`MAX_ATTEMPTS`] times; the retry then sees the other
//! office's commit and returns the typed refusal. After
//! [`RUN_ALONE_AFTER`] conflicts the next attempt runs alone (an exclusive
//! lock every writer respects), so a call cannot keep losing under load. Transactions that take a
//! counter's next value (card numbers, allocated inside the intent's
//! transaction; the revocation-list sequence) first lock the counters table
//! (explicit locking, before the snapshot), so they queue rather than abort
//! each other. The constraints and triggers of [`schema`] stay the last line
//! whatever the isolation level.

mod import;
mod ops;
pub mod schema;

pub use import::{copy_sqlite_to_postgres, CopyReport};

use core::cell::RefCell;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
pub use postgres::Config;
use postgres::{Client, IsolationLevel, NoTls, Transaction};

use crate::{RegistryError, Result};
use schema::{GRANTS, ISSUING_ROLE, PG_MIGRATIONS, PG_SCHEMA_VERSION};

/// How often a transaction aborted by a concurrent commit is tried in all.
pub const MAX_ATTEMPTS: u32 = 64;

/// Conflicts after which a write transaction's next attempt runs alone: it
/// takes the counters table in `EXCLUSIVE` mode before its snapshot, which
/// waits for every write transaction in progress (each holds at least
/// `ROW SHARE` on it) and holds new ones back until it commits, so nothing
/// concurrent can abort it. Under heavy contention this bounds the retries:
/// no desk's call fails because others kept winning.
pub const RUN_ALONE_AFTER: u32 = 8;

/// The environment variable holding the registry password, if any.
pub const PASSWORD_ENV: &str = "CITYCARD_REGISTRY_PASSWORD";

/// Advisory lock key serialising migrations across offices ("cityCARD").
const MIGRATION_LOCK: i64 = 0x6369_7479_4341_5244;

/// The issuance registry on a PostgreSQL server.
pub struct PgRegistry {
    pub(crate) client: RefCell<Client>,
    /// How to connect again after the server closed the connection (a
    /// restart, a failover): the next call reconnects instead of failing
    /// for ever. Holds the password; never printed.
    config: Config,
    url: String,
}

impl core::fmt::Debug for PgRegistry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The URL never carries a password (refused by `connect`).
        f.debug_struct("PgRegistry")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Whether `location` names a PostgreSQL registry (`postgres://` or `postgresql://`).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// The registry password: [`PASSWORD_ENV`] if set, else the first line of
/// `file` if given (which must not be readable by group or others), else
/// none (libpq-style trust, peer or `PGPASSFILE`-less setups).
pub fn password_from_env_or_file(file: Option<&Path>) -> Result<Option<String>> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(Some(p));
    }
    let Some(file) = file else {
        return Ok(None);
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(RegistryError::InvalidInput {
                field: "password file",
                reason: format!(
                    "{} must be readable by its owner only (mode 0600)",
                    file.display()
                ),
            });
        }
    }
    let text = std::fs::read_to_string(file)?;
    Ok(Some(text.lines().next().unwrap_or_default().to_string()))
}

fn parse_url(url: &str, password: Option<&str>) -> Result<Config> {
    if !is_postgres_url(url) {
        return Err(RegistryError::InvalidInput {
            field: "registry",
            reason: "expected a postgres:// URL".into(),
        });
    }
    let mut config = Config::from_str(url).map_err(|_| RegistryError::InvalidInput {
        field: "registry",
        reason: "not a valid postgres:// URL".into(),
    })?;
    if config.get_password().is_some() {
        return Err(RegistryError::InvalidInput {
            field: "registry",
            reason: format!(
                "the URL must not carry a password: set {PASSWORD_ENV} or use a password file"
            ),
        });
    }
    if let Some(p) = password {
        config.password(p);
    }
    config.application_name("citycard");
    config.connect_timeout(Duration::from_secs(10));
    Ok(config)
}

/// Whether an error is PostgreSQL aborting a transaction because of a
/// concurrent one (retry it).
pub(crate) fn is_conflict(e: &RegistryError) -> bool {
    match e {
        RegistryError::Postgres(e) => matches!(
            e.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::UNIQUE_VIOLATION
        ),
        _ => false,
    }
}

fn schema_version(client: &mut Client) -> Result<i64> {
    let exists: bool = client
        .query_one("SELECT to_regclass('registry_meta') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT schema_version FROM registry_meta", &[])?
        .get(0))
}

impl PgRegistry {
    /// Connects to the registry at `url` (no password in it: pass it from
    /// [`password_from_env_or_file`]). Fails with
    /// [`RegistryError::NewerSchema`] if the database is newer than this
    /// program and [`RegistryError::NeedsMigration`] if it is older (run
    /// `citycard issuer migrate`).
    pub fn connect(url: &str, password: Option<&str>) -> Result<Self> {
        let mut reg = Self::connect_unchecked(url, password)?;
        let found = schema_version(reg.client.get_mut())?;
        if found > PG_SCHEMA_VERSION {
            return Err(RegistryError::NewerSchema {
                found,
                supported: PG_SCHEMA_VERSION,
            });
        }
        if found < PG_SCHEMA_VERSION {
            return Err(RegistryError::NeedsMigration {
                found,
                expected: PG_SCHEMA_VERSION,
            });
        }
        Ok(reg)
    }

    fn connect_unchecked(url: &str, password: Option<&str>) -> Result<Self> {
        let config = parse_url(url, password)?;
        let client = session(&config)?;
        Ok(Self {
            client: RefCell::new(client),
            config,
            url: url.to_string(),
        })
    }

    /// The connection, reconnected first if the server closed it; refused
    /// (not a panic) if a callback of this registry calls back into it.
    pub(crate) fn client(&self) -> Result<core::cell::RefMut<'_, Client>> {
        let mut client = self
            .client
            .try_borrow_mut()
            .map_err(|_| RegistryError::InvalidInput {
                field: "registry",
                reason: "called again from inside one of its own callbacks".into(),
            })?;
        if client.is_closed() {
            *client = session(&self.config)?;
        }
        Ok(client)
    }

    /// Brings the database at `url` to [`PG_SCHEMA_VERSION`] (creating the
    /// registry in an empty database), one transaction per step under an
    /// advisory lock, and grants [`ISSUING_ROLE`] its rights if that role
    /// exists. Returns the versions before and after. Refused with
    /// [`RegistryError::NewerSchema`] if the database is newer than this
    /// program. Run it as the role that owns the registry's tables.
    pub fn migrate(url: &str, password: Option<&str>) -> Result<(i64, i64)> {
        let mut reg = Self::connect_unchecked(url, password)?;
        let client = reg.client.get_mut();
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
        let result = (|| -> Result<(i64, i64)> {
            let before = schema_version(client)?;
            if before > PG_SCHEMA_VERSION {
                return Err(RegistryError::NewerSchema {
                    found: before,
                    supported: PG_SCHEMA_VERSION,
                });
            }
            for (from, sql) in PG_MIGRATIONS {
                if schema_version(client)? != *from {
                    continue;
                }
                let mut tx = client.transaction()?;
                tx.batch_execute(sql)?;
                tx.execute(
                    "UPDATE registry_meta SET schema_version = $1",
                    &[&(from + 1)],
                )?;
                tx.commit()?;
            }
            let role_exists = client
                .query_opt(
                    "SELECT 1 FROM pg_roles WHERE rolname = $1",
                    &[&ISSUING_ROLE],
                )?
                .is_some();
            if role_exists {
                client.batch_execute(GRANTS)?;
            }
            Ok((before, schema_version(client)?))
        })();
        let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
        result
    }

    /// Creates the registry in the (empty) database at `url` and connects:
    /// fails with [`RegistryError::AlreadyExists`] if it holds a registry.
    pub fn create(url: &str, password: Option<&str>) -> Result<Self> {
        let mut probe = Self::connect_unchecked(url, password)?;
        if schema_version(probe.client.get_mut())? != 0 {
            return Err(RegistryError::AlreadyExistsAt {
                location: url.to_string(),
            });
        }
        drop(probe);
        Self::migrate(url, password)?;
        Self::connect(url, password)
    }

    /// The registry's URL (without password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs `body` in one serialisable transaction and commits it, retrying
    /// from the start when a concurrent commit aborted it.
    pub(crate) fn write<T>(
        &self,
        body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_with(false, body)
    }

    /// [`PgRegistry::write`] for a transaction that takes the next value of
    /// a counter (card numbers, the revocation-list sequence): it first
    /// locks the counters table, before its snapshot is taken, so such
    /// transactions queue instead of aborting each other on the counter row.
    pub(crate) fn write_counting<T>(
        &self,
        body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_with(true, body)
    }

    pub(crate) fn write_with<T>(
        &self,
        lock_counters: bool,
        mut body: impl FnMut(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.client()?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = (|| {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()?;
                // LOCK TABLE takes no snapshot: the transaction's snapshot
                // is taken after the lock is granted, so it sees the
                // previous holder's commit. Every writer takes a lock on
                // counters (ROW SHARE: writers do not wait for each other)
                // so that one running alone can hold them all back.
                tx.batch_execute(if attempt > RUN_ALONE_AFTER {
                    "LOCK TABLE counters IN EXCLUSIVE MODE"
                } else if lock_counters {
                    "LOCK TABLE counters IN SHARE ROW EXCLUSIVE MODE"
                } else {
                    "LOCK TABLE counters IN ROW SHARE MODE"
                })?;
                let value = body(&mut tx)?;
                tx.commit()?;
                Ok(value)
            })();
            match result {
                Err(e) if attempt < MAX_ATTEMPTS && is_conflict(&e) => {
                    backoff(attempt);
                }
                other => return other,
            }
        }
    }

    /// Runs a read in one repeatable-read snapshot.
    pub(crate) fn read<T>(
        &self,
        body: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut client = self.client()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let value = body(&mut tx)?;
        tx.commit()?;
        Ok(value)
    }
}

/// A new session with the registry's settings.
fn session(config: &Config) -> Result<Client> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(
        "SET synchronous_commit = on; SET client_min_messages = warning; \
         SET TIME ZONE 'UTC'; SET DateStyle = 'ISO, YMD'",
    )?;
    Ok(client)
}

/// A short random wait before retrying, growing with the attempt (at most ~50 ms).
fn backoff(attempt: u32) {
    let mut b = [0u8; 1];
    let _ = getrandom::getrandom(&mut b);
    let cap = 1u64 << attempt.min(5);
    let ms = (u64::from(b[0]) % cap.max(1)) + 1;
    std::thread::sleep(Duration::from_millis(ms));
}
