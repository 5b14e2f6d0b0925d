//! Many desks on one issuer home.
//!
//! Every issuing process (`personalise`, `batch`) holds a **desk lease** in
//! the registry while it works: the intents it begins name the lease, so no
//! other process touches them. The lease is renewed by a heartbeat thread
//! every [`LEASE_RENEW_EVERY`] and lapses [`LEASE_TTL_SECS`] after the last
//! renewal; on the same machine a process that died (kill -9, power cut of
//! the desk PC) is recognised at once, because the lock it held on
//! `DIR/leases/ID.lock` is released by the operating system.
//!
//! An open intent is **orphaned** when its lease is gone (released, lapsed,
//! or its holder dead). Only orphans are reconciled, and only by a desk with
//! the same card source (the reader where the interrupted card is), which
//! first takes the intent over with a compare-and-set so two desks never
//! settle the same intent. Orphans of another reader are left for that
//! reader's next run.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use citycard_registry::{Intent, IssuanceRegistry, Lease, RegistryError};

use crate::error::IssuerError;
use crate::home::IssuerHome;
use citycard_files::create_private_dir;

/// A lease lapses this many seconds after its last renewal.
pub const LEASE_TTL_SECS: i64 = 60;
/// How often a working desk renews its lease.
pub const LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);

/// This process, for people reading the lease table: `host:pid`.
pub fn holder() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// The holder name of a lease taken from `home`: [`holder`], with the
/// home's tag after the host when the registry is on a server shared by
/// several homes (offices), so that a lease of another home on the same
/// machine — whose lock file is not in this home — counts as another
/// machine's (trusted until it expires), never as a dead desk of this one.
pub fn holder_for(home: &IssuerHome) -> String {
    let plain = holder();
    if home.config().registry.is_none() {
        return plain;
    }
    let dir = fs::canonicalize(home.dir()).unwrap_or_else(|_| home.dir().to_path_buf());
    let tag = citycard_proto::crypto::sha256(&[dir.as_os_str().as_encoded_bytes()]);
    let tag = hex::encode(tag.get(..4).unwrap_or_default());
    match plain.rsplit_once(':') {
        Some((host, pid)) => format!("{host}/{tag}:{pid}"),
        None => plain,
    }
}

fn lock_path(home: &IssuerHome, lease_id: &str) -> PathBuf {
    home.dir().join("leases").join(format!("{lease_id}.lock"))
}

/// A desk at work: holds its lease (renewed in the background) and its lock
/// file until dropped, when it releases both.
pub struct Desk {
    lease: Lease,
    lock_path: PathBuf,
    lock: Option<File>,
    stop: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
    home: IssuerHome,
}

impl std::fmt::Debug for Desk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desk")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Desk {
    /// Takes a lease for the desk `desk` (its card source: see
    /// [`crate::cards::CardSource::desk_id`]) and starts renewing it.
    pub fn start(home: &IssuerHome, desk: &str) -> Result<Self, IssuerError> {
        let registry_path = home.dir().join("registry.sqlite");
        let mut reg = home.open_registry()?;
        let lease = reg.acquire_lease(desk, &holder_for(home), LEASE_TTL_SECS)?;
        create_private_dir(&home.dir().join("leases"))?;
        let lock_path = lock_path(home, &lease.id);
        let lock = citycard_files::create_lock_file(&lock_path)?;
        try_lock(&lock).map_err(|e| IssuerError::io(&lock_path, e))?;
        // One process per reader: a second one would take the first one's
        // cards (and reconcile against a card that is not its own).
        let (_, now) = crate::home::now()?;
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let busy = reg
            .active_leases(now)?
            .into_iter()
            .find(|l| l.desk == desk && l.id != lease.id && !owner_gone(home, l, now));
        if let Some(other) = busy {
            let _ = reg.release_lease(&lease.id);
            drop(lock);
            let _ = fs::remove_file(&lock_path);
            return Err(IssuerError::ReaderBusy {
                reader: desk.into(),
                holder: other.holder,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (stop, lost, id) = (stop.clone(), lost.clone(), lease.id.clone());
            let mut reg = home.open_registry()?;
            std::thread::Builder::new()
                .name("desk-lease".into())
                .spawn(move || {
                    let tick = Duration::from_millis(200);
                    let mut waited = Duration::ZERO;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        waited += tick;
                        if waited < LEASE_RENEW_EVERY {
                            continue;
                        }
                        waited = Duration::ZERO;
                        match reg.renew_lease(&id, LEASE_TTL_SECS) {
                            Ok(_) => {}
                            Err(RegistryError::LeaseGone { .. }) => {
                                lost.store(true, Ordering::Relaxed);
                                return;
                            }
                            // Busy or I/O: try again at the next tick.
                            Err(_) => {}
                        }
                    }
                })
                .map_err(|e| IssuerError::io(&registry_path, e))?
        };
        Ok(Self {
            lease,
            lock_path,
            lock: Some(lock),
            stop,
            lost,
            heartbeat: Some(heartbeat),
            home: home.clone(),
        })
    }

    /// The lease id (what the desk's intents carry).
    pub fn lease_id(&self) -> &str {
        &self.lease.id
    }

    /// The desk id the lease was taken for.
    pub fn desk(&self) -> &str {
        &self.lease.desk
    }

    /// Whether the lease was taken over by another desk (this desk lapsed,
    /// e.g. suspended for longer than the lease): it must stop issuing.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if let Ok(mut reg) = self.home.open_registry() {
            let _ = reg.release_lease(&self.lease.id);
        }
        let _ = fs::remove_file(&self.lock_path);
        drop(self.lock.take());
    }
}

/// Whether the owner of a lease is gone at `now` (unix seconds): released,
/// lapsed, or — on this machine — its process dead (its lock file is no
/// longer locked).
pub fn owner_gone(home: &IssuerHome, lease: &Lease, now: i64) -> bool {
    if lease.is_gone_at(now) {
        return true;
    }
    let path = lock_path(home, &lease.id);
    match File::open(&path) {
        // Locked by a live process: `try_lock` fails. If it succeeds, the
        // holder died without releasing (the lock is dropped again here).
        Ok(f) => try_lock(&f).is_ok(),
        // No lock file: a desk on another machine (trust the lease's own
        // expiry), or one of this machine that is gone (its lock file is
        // removed only once it is; a desk creates it before its first
        // intent, so no intent of a desk at work is ever without one).
        Err(_) => same_host(home, &lease.holder),
    }
}

/// An exclusive, non-blocking advisory lock (`flock`) on the whole file,
/// held until the file is closed: the operating system drops it when the
/// process dies, however it dies.
fn try_lock(file: &File) -> std::io::Result<()> {
    rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(std::io::Error::from)
}

fn same_host(home: &IssuerHome, holder_of_lease: &str) -> bool {
    let ours = holder_for(home);
    let host = |h: &str| h.rsplit_once(':').map(|(host, _)| host.to_string());
    host(holder_of_lease).is_some() && host(holder_of_lease) == host(&ours)
}

/// Open intents seen from one desk.
#[derive(Debug, Default)]
pub struct Orphans {
    /// Orphaned intents of this desk's card source (or with no owner at
    /// all): to reconcile against the card in this reader.
    pub here: Vec<Intent>,
    /// Orphaned intents of another card source: left for that reader.
    pub elsewhere: Vec<Intent>,
    /// Intents of desks at work: never touched.
    pub working: usize,
}

/// Sorts the registry's open intents for the desk `desk` (not counting the
/// ones owned by `own_lease`).
pub fn orphans(
    home: &IssuerHome,
    registry: &dyn IssuanceRegistry,
    desk: &str,
    own_lease: Option<&str>,
) -> Result<Orphans, IssuerError> {
    let (_, now) = crate::home::now()?;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut out = Orphans::default();
    for intent in registry.open_intents()? {
        match &intent.owner {
            Some(owner) if Some(owner.id.as_str()) == own_lease => {}
            Some(owner) if !owner_gone(home, owner, now) => out.working += 1,
            Some(owner) if owner.desk != desk => out.elsewhere.push(intent),
            _ => out.here.push(intent),
        }
    }
    Ok(out)
}

/// Takes the orphaned intents over for `lease_id` (compare-and-set on their
/// owner): returns those this desk now owns, to settle; an intent another
/// desk took first is dropped.
pub fn take_over(
    registry: &mut dyn IssuanceRegistry,
    intents: Vec<Intent>,
    lease_id: &str,
) -> Result<Vec<Intent>, IssuerError> {
    let mut mine = Vec::new();
    for intent in intents {
        let from = intent.owner.as_ref().map(|o| o.id.clone());
        if registry.take_over_intent(intent.id, from.as_deref(), lease_id)? {
            mine.push(intent);
        }
    }
    Ok(mine)
}

/// Releases leases whose holder is gone and removes their lock files
/// (housekeeping; best effort).
pub fn sweep_lock_files(home: &IssuerHome, registry: &mut dyn IssuanceRegistry) {
    let dir = home.dir().join("leases");
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let now = crate::home::now().map_or(0, |(_, n)| i64::try_from(n).unwrap_or(i64::MAX));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".lock") else {
            continue;
        };
        if let Ok(Some(lease)) = registry.lease(id) {
            if owner_gone(home, &lease, now) && registry.release_lease(id).is_ok() {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Every open intent whose owner is gone, on any reader (see [`orphans`]).
pub fn all_orphans(
    home: &IssuerHome,
    registry: &dyn IssuanceRegistry,
) -> Result<Vec<Intent>, IssuerError> {
    let (_, now) = crate::home::now()?;
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    Ok(registry
        .open_intents()?
        .into_iter()
        .filter(|i| i.owner.as_ref().is_none_or(|o| owner_gone(home, o, now)))
        .collect())
}

/// Settles, without a card, every orphaned intent on any reader: each is
/// taken over and marked spoiled; those whose card key was recorded (the
/// card may be complete) go on the next revocation list. For intents whose
/// reader will never come back (a desk replaced, a home restored on another
/// machine). Intents of desks at work are never touched.
pub fn abandon_orphans(
    home: &IssuerHome,
    registry: &mut dyn IssuanceRegistry,
    actor: &str,
) -> Result<crate::issue::Reconciled, IssuerError> {
    let orphans = all_orphans(home, registry)?;
    let lease = registry.acquire_lease("abandon", &holder_for(home), LEASE_TTL_SECS)?;
    let mine = take_over(registry, orphans, &lease.id)?;
    let report = crate::issue::settle_open(registry, mine, None, actor);
    let _ = registry.release_lease(&lease.id);
    report
}
