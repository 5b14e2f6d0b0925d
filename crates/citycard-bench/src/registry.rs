//! Registry throughput: issuance transactions per second and their latency,
//! for 1 and 8 stations issuing at once, on SQLite (one file) and on
//! PostgreSQL (a server; a throwaway local cluster unless a URL is given).
//!
//! One issuance is what a desk writes for one card: the intent (with its
//! card number allocated), the card key, the commit as issued — three
//! durable transactions, each with its audit entry. Each station is its own
//! thread with its own connection (as separate processes would have), and
//! card keys are computed before the clock starts.

use std::time::{Duration, Instant};

use citycard_proto::{crypto, date::Date, revocation};
use citycard_registry::{CardNumber, IssuanceRegistry, NewIssuance, PgRegistry, Registry};
use rand_chacha::rand_core::SeedableRng;
use serde::Serialize;

use crate::stats::median_p95_us;

/// Which registry to measure.
#[derive(Clone, Debug)]
pub enum Target {
    /// A new SQLite file in a temporary directory.
    Sqlite,
    /// A PostgreSQL database (migrated on first use): URL and password.
    Postgres {
        /// `postgres://…` (no password).
        url: String,
        /// The password, if the server asks for one.
        password: Option<String>,
    },
}

/// One row of the registry table (fields in alphabetical order: the JSON
/// keys come out sorted, as `citycard bench registry --json` has always
/// printed them).
#[derive(Clone, Debug, Serialize)]
pub struct RegistryRow {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Median latency of one commit, milliseconds.
    pub commit_p50_ms: f64,
    /// 95th percentile latency of one commit, milliseconds.
    pub commit_p95_ms: f64,
    /// Durable transactions (commits) per second, all stations together.
    pub commits_per_sec: f64,
    /// Issuances completed (each three transactions).
    pub issuances: usize,
    /// Issuances per second, all stations together.
    pub issuances_per_sec: f64,
    /// Stations issuing at once.
    pub stations: usize,
}

/// What `citycard bench registry --json` prints: the rows and the setup.
#[derive(Clone, Debug, Serialize)]
pub struct RegistryReport {
    /// The table's rows.
    pub rows: Vec<RegistryRow>,
    /// How the run was set up (machine, server), for people.
    pub setup: String,
}

fn open(
    target: &Target,
    sqlite: &std::path::Path,
) -> anyhow::Result<Box<dyn IssuanceRegistry + Send>> {
    Ok(match target {
        Target::Sqlite => Box::new(Registry::open(sqlite)?),
        Target::Postgres { url, password } => {
            Box::new(PgRegistry::connect(url, password.as_deref())?)
        }
    })
}

/// Issues `per_station` cards from each of `stations` threads at once on a
/// fresh registry (`run` distinguishes runs on a shared PostgreSQL
/// database: residents and prefixes are per run).
pub fn measure(
    target: &Target,
    stations: usize,
    per_station: usize,
    run: u64,
) -> anyhow::Result<RegistryRow> {
    let dir = tempfile::tempdir()?;
    let sqlite = dir.path().join("registry.sqlite");
    match target {
        Target::Sqlite => drop(Registry::create(&sqlite)?),
        Target::Postgres { url, password } => {
            PgRegistry::migrate(url, password.as_deref())?;
        }
    }
    let keys: Vec<Vec<([u8; 33], [u8; 8])>> = (0..stations)
        .map(|s| {
            let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64((run << 16) + s as u64);
            (0..per_station)
                .map(|_| {
                    let pk = crypto::generate(&mut rng).public_key();
                    (crypto::encode_point(&pk), revocation::revocation_id(&pk))
                })
                .collect()
        })
        .collect();
    let issued_on = Date::new(2026, 3, 1).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let expires_on = Date::new(2031, 2, 28).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let barrier = std::sync::Barrier::new(stations + 1);
    let started = std::sync::OnceLock::new();
    let results: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(s, keys)| {
                let (barrier, sqlite) = (&barrier, &sqlite);
                scope.spawn(move || -> anyhow::Result<Vec<Duration>> {
                    let mut reg = open(target, sqlite)?;
                    let station = format!("bench-{s}");
                    let prefix = format!("B{run}");
                    let mut lat = Vec::with_capacity(keys.len() * 3);
                    barrier.wait();
                    for (i, (key, rid)) in keys.iter().enumerate() {
                        let resident = format!("{run}-{s}-{i}");
                        let t = Instant::now();
                        let intent = reg.begin_intent(&NewIssuance {
                            card_number: CardNumber::Next { prefix: &prefix },
                            resident_ref: &resident,
                            station: &station,
                            issued_on,
                            expires_on,
                            attributes: &[],
                            batch: None,
                            replaces: None,
                            actor: "bench",
                            lease: None,
                            retain_until: None,
                        })?;
                        lat.push(t.elapsed());
                        let t = Instant::now();
                        reg.attach_card_key(intent.id, key, rid, "bench")?;
                        lat.push(t.elapsed());
                        let t = Instant::now();
                        reg.commit_issued(intent.id, key, rid, "bench")?;
                        lat.push(t.elapsed());
                    }
                    Ok(lat)
                })
            })
            .collect();
        barrier.wait();
        let _ = started.set(Instant::now());
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("station panicked")))
            })
            .collect()
    });
    let elapsed = started.get().map_or(Duration::ZERO, Instant::elapsed);
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    let (p50, p95) = median_p95_us(&mut all);
    let issuances = stations * per_station;
    let secs = elapsed.as_secs_f64().max(1e-9);
    Ok(RegistryRow {
        backend: match target {
            Target::Sqlite => "sqlite".into(),
            Target::Postgres { .. } => "postgres".into(),
        },
        stations,
        issuances,
        issuances_per_sec: issuances as f64 / secs,
        commits_per_sec: all.len() as f64 / secs,
        commit_p50_ms: p50 / 1000.0,
        commit_p95_ms: p95 / 1000.0,
    })
}

/// The registry table as text.
pub fn render(rows: &[RegistryRow], setup: &str) -> String {
    let mut out = format!("registry throughput — {setup}\n");
    out.push_str(
        "backend   stations  issuances  issuances/s  commits/s  commit p50 ms  commit p95 ms\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{:<9} {:>8}  {:>9}  {:>11.1}  {:>9.1}  {:>13.2}  {:>13.2}\n",
            r.backend,
            r.stations,
            r.issuances,
            r.issuances_per_sec,
            r.commits_per_sec,
            r.commit_p50_ms,
            r.commit_p95_ms
        ));
    }
    out
}

/// Runs the registry table: 1 and 8 stations on SQLite and on PostgreSQL
/// (`postgres`: a server and password; `None` starts a throwaway local
/// cluster for the run). Returns the rows and a description of the setup.
pub fn run_all(
    postgres: Option<(String, Option<String>)>,
    per_station: usize,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<(Vec<RegistryRow>, String)> {
    let mut cluster = None;
    let (url, password, server) = match postgres {
        Some((url, password)) => (url, password, "the given server".to_string()),
        None => {
            progress("starting a throwaway PostgreSQL cluster (loopback)");
            let c = citycard_testkit::pg::Cluster::start();
            let db = c.new_database();
            let url = c.url(citycard_testkit::pg::ADMIN, &db);
            cluster = Some(c);
            (
                url,
                Some(citycard_testkit::pg::PASSWORD.to_string()),
                "a local throwaway cluster on 127.0.0.1 (fsync on, synchronous_commit on)"
                    .to_string(),
            )
        }
    };
    let pg = Target::Postgres { url, password };
    let mut rows = Vec::new();
    let mut run = 0u64;
    for target in [Target::Sqlite, pg] {
        for stations in [1usize, 8] {
            run += 1;
            progress(&format!(
                "registry: {} × {per_station} issuances on {}",
                stations,
                match target {
                    Target::Sqlite => "sqlite",
                    Target::Postgres { .. } => "postgres",
                }
            ));
            rows.push(measure(&target, stations, per_station, run)?);
        }
    }
    drop(cluster);
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let setup = format!(
        "{cpus} CPU(s); SQLite: WAL, synchronous=FULL, file in the system temp dir; \
         PostgreSQL: {server}; serialisable transactions; {per_station} issuances per station, \
         3 commits each"
    );
    Ok((rows, setup))
}
