//! The SQLite implementation of the registry: one file, every mutating
//! method in one `IMMEDIATE` transaction with its audit entry, committed to
//! disk (`synchronous=FULL`) before it returns.

mod audit;
mod issuance;
mod leases;
mod residents;
mod revocation;
pub(crate) mod rows;

#[allow(unused_imports)]
use crate::prelude::*;

/// The issuance registry: one SQLite file.
///
/// Every mutating method runs in one `IMMEDIATE` transaction, writes its
/// audit entry in that same transaction, and returns only after the commit
/// is on disk (`synchronous=FULL`).
pub struct Registry {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
    #[cfg(test)]
    pub(crate) fail_after_revoke: bool,
}

impl core::fmt::Debug for Registry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) const REVOCATION_SEQUENCE: &str = "revocation_sequence";

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(|_| RegistryError::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn audit(
    tx: &Transaction<'_>,
    actor: &str,
    station: Option<&str>,
    action: &str,
    card_number: Option<&str>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO audit (at, actor, station, action, card_number) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now(), actor, station, action, card_number],
    )?;
    Ok(())
}

/// Increments a counter and returns its new value (1 for a new counter).
pub(crate) fn bump_counter(tx: &Transaction<'_>, name: &str) -> Result<i64> {
    Ok(tx.query_row(
        "INSERT INTO counters (name, value) VALUES (?1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value",
        [name],
        |r| r.get(0),
    )?)
}

pub(crate) fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // A file system without shared memory: fall back to a rollback journal,
        // which is as durable with synchronous=FULL.
        let _: String =
            conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted content is overwritten with zeros, so forgotten attributes do
    // not linger in free pages.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

/// Runs every migration step from the file's version to [`SCHEMA_VERSION`],
/// each in one exclusive transaction with its `user_version` bump (a step
/// interrupted by a crash leaves the previous version, to be upgraded again).
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current >= SCHEMA_VERSION {
        // Nothing to do: no write lock taken (many desks open the registry).
        return Ok(());
    }
    for (from, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version == *from {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", from + 1)?;
        }
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn add_count(c: &mut Counts, state: &str, n: u64) -> Result<()> {
    match state {
        "intent" => c.open_intents += n,
        "issued" => c.issued += n,
        "spoiled" => c.spoiled += n,
        "revoked" => {
            c.revoked += n;
            c.issued += n;
        }
        other => return Err(RegistryError::Corrupt(format!("bad state {other:?}"))),
    }
    Ok(())
}

/// Makes the new file's directory entry durable (best effort: not every
/// platform can fsync a directory).
pub(crate) fn sync_parent_dir(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// The next free card number for `prefix`, inside `tx`.
pub(crate) fn allocate_card_number(tx: &Transaction<'_>, prefix: &str) -> Result<String> {
    let counter = format!("card_number:{prefix}");
    loop {
        let value = bump_counter(tx, &counter)?;
        let number = format!("{prefix}-{value:06}");
        if check_card_number(&number).is_err() {
            return Err(RegistryError::CounterExhausted { counter });
        }
        if !card_number_taken(tx, &number)? {
            return Ok(number);
        }
    }
}

/// Whether any card record has this number.
pub(crate) fn card_number_taken(conn: &Connection, number: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM cards WHERE card_number = ?1",
            [number],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .is_some())
}

/// The card a batch row produced, if the row is done: it has an issued
/// (possibly since revoked) card or an open intent (the newest such card).
pub(crate) fn batch_row_card(
    conn: &Connection,
    batch_id: &str,
    row: i64,
) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT card_number FROM cards WHERE batch_id = ?1 AND batch_row = ?2 \
             AND state IN ('intent', 'issued', 'revoked') ORDER BY intent_id DESC LIMIT 1",
            params![batch_id, row],
            |r| r.get(0),
        )
        .optional()?)
}

impl Registry {
    pub(crate) fn from_connection(conn: Connection, path: &Path) -> Self {
        Self {
            conn,
            path: path.to_path_buf(),
            #[cfg(test)]
            fail_after_revoke: false,
        }
    }

    /// Creates a new, empty registry at `path`, mode 0600 whatever the umask
    /// (SQLite gives its `-wal` and `-shm` files the database file's mode).
    /// Fails with [`RegistryError::AlreadyExists`] if anything exists there.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(file) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                }
                drop(file);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RegistryError::AlreadyExists {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let made = (|| -> Result<Connection> {
            let mut conn = open_connection(path)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", OLDEST_UPGRADABLE)?;
            tx.commit()?;
            migrate(&mut conn)?;
            Ok(conn)
        })();
        match made {
            Ok(conn) => {
                sync_parent_dir(path);
                Ok(Self::from_connection(conn, path))
            }
            Err(e) => {
                // The file is ours (create_new above): leave nothing half-made.
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut p = path.as_os_str().to_owned();
                    p.push(suffix);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
                Err(e)
            }
        }
    }

    /// Opens an existing registry, upgrading an older schema version in
    /// place ([`schema::MIGRATIONS`], one transaction per step). Fails with
    /// [`RegistryError::NotFound`] if there is none, and with
    /// [`RegistryError::SchemaVersion`] if the file is not a registry this
    /// code can read or upgrade.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let mut conn = open_connection(path)?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if !(OLDEST_UPGRADABLE..=SCHEMA_VERSION).contains(&found) {
            return Err(RegistryError::SchemaVersion {
                found,
                expected: SCHEMA_VERSION,
            });
        }
        migrate(&mut conn)?;
        Ok(Self::from_connection(conn, path))
    }

    /// The registry file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `integrity_check` and `foreign_key_check`; fails with
    /// [`RegistryError::Corrupt`] describing the first problems found.
    pub fn integrity_check(&self) -> Result<()> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if rows != ["ok"] {
            return Err(RegistryError::Corrupt(rows.join("; ")));
        }
        let mut stmt = self.conn.prepare("PRAGMA foreign_key_check")?;
        if stmt.query([])?.next()?.is_some() {
            return Err(RegistryError::Corrupt("foreign key violation".into()));
        }
        Ok(())
    }

    pub(crate) fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Copies the whole registry to `dest` (a new file, mode 0600) with
    /// SQLite's online backup: a consistent snapshot even while other
    /// processes write.
    pub fn backup_to(&self, dest: &Path) -> Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(dest) {
            Ok(f) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RegistryError::AlreadyExists {
                    path: dest.to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        }
        let copied = (|| -> Result<()> {
            let mut target = Connection::open(dest)?;
            {
                let backup = rusqlite::backup::Backup::new(&self.conn, &mut target)?;
                backup.run_to_completion(256, Duration::from_millis(5), None)?;
            }
            // A single self-contained file: no WAL beside it.
            let _: String =
                target.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
            Ok(())
        })();
        if copied.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        copied?;
        sync_parent_dir(dest);
        Ok(())
    }

    /// Checkpoints the WAL into the database file and truncates it; `true` if
    /// that completed (or the registry does not use a WAL).
    pub(crate) fn truncate_wal(&self) -> bool {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|busy| busy == 0)
            .unwrap_or(false)
    }

    /// Counts of records by state.
    pub fn counts(&self) -> Result<Counts> {
        let mut stmt = self
            .conn
            .prepare("SELECT state, count(*) FROM cards GROUP BY state")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut c = Counts::default();
        for (state, n) in rows {
            add_count(&mut c, &state, n.unsigned_abs())?;
        }
        Ok(c)
    }

    /// Cards recorded per station: (station, issued, revoked, spoiled, open).
    pub fn counts_by_station(&self) -> Result<Vec<(String, Counts)>> {
        let mut stmt = self.conn.prepare(
            "SELECT station, state, count(*) FROM cards GROUP BY station, state ORDER BY station",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out: Vec<(String, Counts)> = Vec::new();
        for (station, state, n) in rows {
            if out.last().is_none_or(|(s, _)| *s != station) {
                out.push((station.clone(), Counts::default()));
            }
            let Some((_, c)) = out.last_mut() else {
                continue;
            };
            add_count(c, &state, n.unsigned_abs())?;
        }
        Ok(out)
    }

    pub(crate) fn cards_where(&self, condition: &str, param: &str) -> Result<Vec<RawCard>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE {condition} ORDER BY intent_id"
        ))?;
        let rows = stmt
            .query_map([param], RawCard::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}
