//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` and
//! `pg_ctl` from the distribution's packages in a temporary directory,
//! listening on 127.0.0.1 and a free port only, stopped (and deleted) when
//! the [`Cluster`] guard is dropped — also when the test fails.
//!
//! As root (CI), the server runs as the `postgres` system user through
//! `runuser`, since PostgreSQL refuses to run as root.
//!
//! Roles: [`ADMIN`] (superuser, owns the registry's tables, runs
//! migrations), [`ISSUING_ROLE`] (no login: the rights issuance needs) and
//! [`STATION`] (a login member of it, what desks connect as). Host
//! connections need a password (SCRAM); [`PASSWORD`] is every role's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The superuser that owns the registry's tables.
pub const ADMIN: &str = "citycard_admin";
/// The group role the registry grants issuance rights to.
pub const ISSUING_ROLE: &str = "citycard_issuer";
/// A desk's login role, member of [`ISSUING_ROLE`].
pub const STATION: &str = "citycard_station";
/// The password of [`ADMIN`] and [`STATION`] in a throwaway cluster.
pub const PASSWORD: &str = "throwaway-test-password";

/// A running throwaway cluster; dropping it stops the server and removes its files.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    databases: std::sync::atomic::AtomicU32,
}

/// The directory holding `initdb` and `pg_ctl`: the newest
/// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`, else from `PATH`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    dir.join("initdb").exists().then_some(dir)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    /// Starts a new cluster. Panics with the server's messages if PostgreSQL
    /// is not installed or does not start (tests need it: no silent skip).
    pub fn start() -> Self {
        let bin = bin_dir().expect(
            "PostgreSQL is not installed (initdb not found): run `tools/testbench install`",
        );
        let dir = tempfile::Builder::new()
            .prefix("citycard-pg-")
            .tempdir()
            .expect("temp dir");
        let as_postgres = is_root();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).expect("password file");
        if as_postgres {
            check(
                "chown",
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(dir.path())
                    .output()
                    .expect("chown"),
            );
        }
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            as_postgres,
            databases: std::sync::atomic::AtomicU32::new(0),
        };
        let data = cluster.data_dir();
        cluster.run_checked(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                ADMIN,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pwfile.to_str().expect("utf-8 path"),
            ],
        );
        // Loopback TCP only; the socket lives in the cluster's own directory.
        let socket = cluster.dir.path().to_str().expect("utf-8 path").to_string();
        let log = cluster.dir.path().join("server.log");
        for _ in 0..5 {
            cluster.port = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={socket} \
                 -c max_connections=200 -c fsync=on",
                cluster.port
            );
            let out = cluster.run(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().expect("utf-8 path"),
                    "-l",
                    log.to_str().expect("utf-8 path"),
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            if out.status.success() {
                cluster.sql(
                    "postgres",
                    &format!(
                        "CREATE ROLE {ISSUING_ROLE} NOLOGIN; \
                         CREATE ROLE {STATION} LOGIN PASSWORD '{PASSWORD}' IN ROLE {ISSUING_ROLE};"
                    ),
                );
                return cluster;
            }
        }
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("the PostgreSQL test cluster did not start:\n{log}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    fn run_checked(&self, program: &str, args: &[&str]) -> Output {
        check(program, self.run(program, args))
    }

    /// Runs SQL as [`ADMIN`] through `psql` on the cluster's socket; panics on error.
    pub fn sql(&self, database: &str, sql: &str) -> String {
        let socket = self.dir.path().to_str().expect("utf-8 path");
        let port = self.port.to_string();
        let out = self.run_checked(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                socket,
                "-p",
                &port,
                "-U",
                ADMIN,
                "-d",
                database,
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database owned by [`ADMIN`]; returns its name.
    pub fn new_database(&self) -> String {
        let n = self
            .databases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("registry_{n}");
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// The URL (no password) of `database` for `user`.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// Restarts the server (fast shutdown: every connection is closed).
    pub fn restart(&self) {
        let data = self.data_dir();
        // With its log file, as at start: otherwise the new server would
        // write to (and hold open) this call's output pipes.
        let log = self.dir.path().join("server.log");
        self.run_checked(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-l",
                log.to_str().expect("utf-8 path"),
                "-m",
                "fast",
                "-w",
                "restart",
            ],
        );
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The cluster's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        if let Some(data) = data.to_str() {
            let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
        }
    }
}
