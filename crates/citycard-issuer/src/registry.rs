//! Where the home's registry lives: `registry.sqlite` in the home (the
//! default, for one office), or a PostgreSQL database shared by several
//! offices (`issuer.json` → `registry`). Credentials never sit in
//! `issuer.json` or on a command line: the password comes from
//! `CITYCARD_REGISTRY_PASSWORD` or from a private file the home names.

use std::path::{Path, PathBuf};

use citycard_registry::pg::{copy_sqlite_to_postgres, is_postgres_url, password_from_env_or_file};
use citycard_registry::{IssuanceRegistry, PgRegistry, Registry, RegistryError};
use serde::{Deserialize, Serialize};

use crate::error::IssuerError;
use crate::home::IssuerHome;

/// A registry on a PostgreSQL server (`issuer.json` → `registry`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryServer {
    /// `postgres://user@host:port/database` — never with a password.
    pub url: String,
    /// A file (mode 0600) whose first line is the password; relative to the
    /// home. `CITYCARD_REGISTRY_PASSWORD` takes precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

impl RegistryServer {
    /// A server registry at `url`, refused if it is not a `postgres://` URL
    /// or carries a password.
    pub fn new(url: &str, password_file: Option<PathBuf>) -> Result<Self, IssuerError> {
        if !is_postgres_url(url) {
            return Err(RegistryError::InvalidInput {
                field: "registry",
                reason: "expected a postgres:// URL".into(),
            }
            .into());
        }
        let parsed: Result<citycard_registry::pg::Config, _> = url.parse();
        if parsed.map_or(true, |c| c.get_password().is_some()) {
            return Err(RegistryError::InvalidInput {
                field: "registry",
                reason: format!(
                    "the URL must be valid and carry no password: set {} or use a password file",
                    citycard_registry::pg::PASSWORD_ENV
                ),
            }
            .into());
        }
        Ok(Self {
            url: url.into(),
            password_file,
        })
    }

    /// The password, from the environment or the file (relative to `home`).
    pub fn password(&self, home: &Path) -> Result<Option<String>, IssuerError> {
        let file = self.password_file.as_ref().map(|p| home.join(p));
        Ok(password_from_env_or_file(file.as_deref())?)
    }

    /// Connects, creating the registry's tables first if the database is
    /// empty (that needs the rights of the tables' owner; otherwise run
    /// `citycard issuer migrate` as that role).
    pub fn connect_or_create(&self, home: &Path) -> Result<PgRegistry, IssuerError> {
        let password = self.password(home)?;
        match PgRegistry::connect(&self.url, password.as_deref()) {
            Err(RegistryError::NeedsMigration { found: 0, .. }) => {
                PgRegistry::migrate(&self.url, password.as_deref())?;
                Ok(PgRegistry::connect(&self.url, password.as_deref())?)
            }
            other => Ok(other?),
        }
    }
}

/// What `citycard issuer migrate` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MigrateReport {
    /// The registry's schema went from one version to another (equal: up to date).
    Upgraded {
        /// Which registry (`registry.sqlite` or the URL).
        location: String,
        /// Version before.
        from: i64,
        /// Version after.
        to: i64,
    },
    /// The home's SQLite registry was copied to PostgreSQL and the home now uses it.
    Moved {
        /// The new registry's URL.
        url: String,
        /// What was copied.
        copied: citycard_registry::pg::CopyReport,
        /// Where the old file was kept (private to the owner).
        old_file: PathBuf,
    },
}

impl IssuerHome {
    /// The SQLite registry's path in the home.
    pub fn registry_path(&self) -> PathBuf {
        self.dir().join("registry.sqlite")
    }

    /// Where the registry is, for people: the SQLite file's path, or the
    /// server's URL (which never holds a password).
    pub fn registry_location(&self) -> String {
        match &self.config().registry {
            None => self.registry_path().display().to_string(),
            Some(server) => server.url.clone(),
        }
    }

    /// Opens the registry wherever it lives (without the retention purge
    /// that [`IssuerHome::registry`] runs).
    pub fn open_registry(&self) -> Result<Box<dyn IssuanceRegistry + Send>, IssuerError> {
        match &self.config().registry {
            None => Ok(Box::new(Registry::open(self.registry_path())?)),
            Some(server) => {
                let password = server.password(self.dir())?;
                Ok(Box::new(PgRegistry::connect(
                    &server.url,
                    password.as_deref(),
                )?))
            }
        }
    }

    /// Brings the registry's schema up to date (`citycard issuer migrate`).
    /// A registry newer than this program is refused with
    /// [`RegistryError::NewerSchema`].
    pub fn migrate_registry(&self) -> Result<MigrateReport, IssuerError> {
        match &self.config().registry {
            None => {
                let path = self.registry_path();
                let before = sqlite_version(&path)?;
                drop(Registry::open(&path)?);
                Ok(MigrateReport::Upgraded {
                    location: path.display().to_string(),
                    from: before,
                    to: sqlite_version(&path)?,
                })
            }
            Some(server) => {
                let password = server.password(self.dir())?;
                let (from, to) = PgRegistry::migrate(&server.url, password.as_deref())?;
                Ok(MigrateReport::Upgraded {
                    location: server.url.clone(),
                    from,
                    to,
                })
            }
        }
    }

    /// Moves the home's SQLite registry to PostgreSQL (`citycard issuer
    /// migrate --to URL`): creates the tables in the (empty) database, copies
    /// every record in one transaction, records the server in `issuer.json`,
    /// and renames the old file `registry.sqlite.moved` (kept private until
    /// the office has checked the move; then delete it). No desk may work
    /// meanwhile.
    pub fn move_registry_to(
        &mut self,
        server: RegistryServer,
    ) -> Result<MigrateReport, IssuerError> {
        if self.config().registry.is_some() {
            return Err(RegistryError::InvalidInput {
                field: "registry",
                reason: "this home's registry is already on a server".into(),
            }
            .into());
        }
        let password = server.password(self.dir())?;
        let source = Registry::open(self.registry_path())?;
        PgRegistry::migrate(&server.url, password.as_deref())?;
        let copied = copy_sqlite_to_postgres(&source, &server.url, password.as_deref())?;
        drop(source);
        let mut config = self.config().clone();
        config.registry = Some(server.clone());
        self.save_config(config)?;
        let old_file = self.dir().join("registry.sqlite.moved");
        std::fs::rename(self.registry_path(), &old_file)
            .map_err(|e| IssuerError::io(&old_file, e))?;
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(self.dir().join(format!("registry.sqlite{suffix}")));
        }
        Ok(MigrateReport::Moved {
            url: server.url,
            copied,
            old_file,
        })
    }
}

fn sqlite_version(path: &Path) -> Result<i64, IssuerError> {
    let conn = citycard_registry::sqlite_file_version(path)?;
    Ok(conn)
}
