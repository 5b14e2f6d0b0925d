//! [`TrustSource`]: the trust the watcher uses, swapped in on reload only
//! if the new bundle and credential validate and do not roll back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Shutdown, TapEvent};
use crate::{ReaderError, Trust};

/// The bundle and credential files a [`TrustSource`] reloads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFiles {
    /// The trust bundle (binary or hex).
    pub bundle: PathBuf,
    /// The partner credential (JSON).
    pub credential: PathBuf,
}

struct SourceInner {
    current: RwLock<Arc<Trust>>,
    files: Option<TrustFiles>,
    generation: AtomicU64,
    /// Warn this many seconds before the revocation list's next update (0: never).
    warn_before_secs: AtomicU64,
    /// Serialises reloads (SIGHUP and the file watcher at once).
    reload: Mutex<()>,
}

/// The trust the watcher uses, swappable while it runs.
///
/// Cloning shares it. Reader threads take [`current`](Self::current) once per
/// tap; [`reload_from_files`](Self::reload_from_files) and
/// [`replace`](Self::replace) swap in a new [`Trust`] only if it is usable:
///
/// - it loads and validates ([`Trust::load`]: signatures, credential);
/// - its root key is the current one ([`ReaderError::UnexpectedRoot`]
///   otherwise: a new root needs a restart, so a writable bundle file alone
///   cannot bring in another city's root);
/// - it is not older than the current bundle
///   ([`ReaderError::BundleRollback`]: replaying an old bundle would
///   un-revoke cards).
#[derive(Clone)]
pub struct TrustSource {
    inner: Arc<SourceInner>,
}

impl std::fmt::Debug for TrustSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSource")
            .field("files", &self.inner.files)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl TrustSource {
    /// A source with this trust and no files (reload with [`replace`](Self::replace)).
    pub fn new(trust: Trust) -> Self {
        Self::build(trust, None)
    }

    /// Loads the trust from files ([`Trust::load`]) and remembers them for reloads.
    ///
    /// # Errors
    ///
    /// Those of [`Trust::load`].
    pub fn from_files(bundle: &Path, credential: &Path) -> Result<Self, ReaderError> {
        let trust = Trust::load(bundle, credential)?;
        Ok(Self::build(
            trust,
            Some(TrustFiles {
                bundle: bundle.to_path_buf(),
                credential: credential.to_path_buf(),
            }),
        ))
    }

    /// Pins the root (see [`Trust::with_expected_root`]); reloads keep the
    /// same root anyway.
    ///
    /// # Errors
    ///
    /// [`ReaderError::UnexpectedRoot`].
    pub fn with_expected_root(self, fingerprint: &[u8; 32]) -> Result<Self, ReaderError> {
        let current = self.current();
        let found = current.root_fingerprint();
        if citycard_proto::crypto::mac_eq(&found, fingerprint) {
            Ok(self)
        } else {
            Err(ReaderError::UnexpectedRoot {
                found: hex::encode(found),
            })
        }
    }

    fn build(trust: Trust, files: Option<TrustFiles>) -> Self {
        Self {
            inner: Arc::new(SourceInner {
                current: RwLock::new(Arc::new(trust)),
                files,
                generation: AtomicU64::new(1),
                warn_before_secs: AtomicU64::new(crate::trust::DEFAULT_WARN_BEFORE_SECS),
                reload: Mutex::new(()),
            }),
        }
    }

    /// The trust in use now.
    pub fn current(&self) -> Arc<Trust> {
        self.inner
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// 1 for the initial trust, +1 for each accepted reload.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// The files reloads read, if the source was built from files.
    pub fn files(&self) -> Option<&TrustFiles> {
        self.inner.files.as_ref()
    }

    /// Swaps in `trust` if it keeps the root and is not older than the
    /// current bundle (see the type's documentation). Returns the new generation.
    ///
    /// # Errors
    ///
    /// [`ReaderError::UnexpectedRoot`], [`ReaderError::BundleRollback`]; the
    /// current trust stays then.
    pub fn replace(&self, trust: Trust) -> Result<u64, ReaderError> {
        let _serial = self
            .inner
            .reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.current();
        let found = trust.root_fingerprint();
        if !citycard_proto::crypto::mac_eq(&found, &current.root_fingerprint()) {
            return Err(ReaderError::UnexpectedRoot {
                found: hex::encode(found),
            });
        }
        let (old, new) = (
            current.bundle().body().issued_at,
            trust.bundle().body().issued_at,
        );
        let (old_seq, new_seq) = (
            current.bundle().body().revocations.body().sequence,
            trust.bundle().body().revocations.body().sequence,
        );
        if new < old || new_seq < old_seq {
            return Err(ReaderError::BundleRollback {
                current_issued_at: old,
                new_issued_at: new,
            });
        }
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(trust);
        Ok(self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Loads the bundle and credential files again and swaps them in if they
    /// are usable ([`Trust::load`], then [`replace`](Self::replace)). Call it
    /// on SIGHUP. Returns the new generation.
    ///
    /// # Errors
    ///
    /// [`ReaderError::NoTrustFiles`] for a source built with
    /// [`new`](Self::new); the errors of [`Trust::load`] and
    /// [`replace`](Self::replace). The current trust stays then.
    pub fn reload_from_files(&self) -> Result<u64, ReaderError> {
        let files = self.inner.files.as_ref().ok_or(ReaderError::NoTrustFiles)?;
        let trust = Trust::load(&files.bundle, &files.credential)?;
        self.replace(trust)
    }

    /// [`reload_from_files`](Self::reload_from_files), as the event to log:
    /// [`TapEvent::TrustReloaded`] or [`TapEvent::TrustReloadFailed`].
    pub fn reload_event(&self) -> TapEvent {
        let timestamp = SystemTime::now();
        match self.reload_from_files() {
            Ok(generation) => {
                let trust = self.current();
                let body = trust.bundle().body();
                TapEvent::TrustReloaded {
                    timestamp,
                    generation,
                    bundle_issued_at: body.issued_at,
                    revocation_sequence: body.revocations.body().sequence.into(),
                }
            }
            Err(e) => TapEvent::TrustReloadFailed {
                timestamp,
                error: e.to_string(),
            },
        }
    }

    /// Starts a thread that checks the bundle and credential files' size and
    /// modification time every `interval` (1 s is a good value) and, when
    /// either changed, reloads ([`reload_event`](Self::reload_event)) and
    /// reports the outcome to `on_event`. A refused file is reported once;
    /// the next change is tried again. The thread ends within `interval` (at
    /// most 50 ms after) of `shutdown`, or when `on_event` returns `false`.
    ///
    /// With tokio, pass [`channel_sink`](super::channel_sink)`(sender, shutdown.clone())`.
    ///
    /// Warns (a `warning` event, `revocation_list_expiring`) from `secs`
    /// before the revocation list's next update, and
    /// (`revocation_list_stale`) once past it; default
    /// [`DEFAULT_WARN_BEFORE_SECS`](crate::DEFAULT_WARN_BEFORE_SECS).
    pub fn with_stale_warning(self, secs: u64) -> Self {
        self.inner.warn_before_secs.store(secs, Ordering::SeqCst);
        self
    }

    /// The warning about the revocation list in use at `now_unix`, if any.
    pub fn freshness_event(&self, now_unix: u64) -> Option<TapEvent> {
        let warn = self.inner.warn_before_secs.load(Ordering::SeqCst);
        self.current()
            .freshness(now_unix, warn)
            .warning(now_unix)
            .map(|(kind, message)| TapEvent::warning(kind, message, None))
    }

    /// # Errors
    ///
    /// [`ReaderError::NoTrustFiles`]; [`ReaderError::WatchThread`] if the thread
    /// cannot be started.
    pub fn spawn_file_watcher(
        &self,
        interval: Duration,
        on_event: impl Fn(TapEvent) -> bool + Send + 'static,
        shutdown: Shutdown,
    ) -> Result<JoinHandle<()>, ReaderError> {
        let files = self.files().ok_or(ReaderError::NoTrustFiles)?.clone();
        let source = self.clone();
        std::thread::Builder::new()
            .name("citycard-trust-watch".into())
            .spawn(move || {
                let mut seen = file_stamps(&files);
                // The freshness warning last reported: (generation, kind).
                let mut warned: Option<(u64, String)> = None;
                while shutdown.sleep(interval) {
                    let unix = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    if let Some(event) = source.freshness_event(unix) {
                        let kind = match &event {
                            TapEvent::Warning { warning, .. } => warning.clone(),
                            _ => String::new(),
                        };
                        let key = (source.generation(), kind);
                        if warned.as_ref() != Some(&key) {
                            warned = Some(key);
                            if !on_event(event) {
                                return;
                            }
                        }
                    }
                    let now = file_stamps(&files);
                    if now == seen {
                        continue;
                    }
                    seen = now;
                    if !on_event(source.reload_event()) {
                        return;
                    }
                }
            })
            .map_err(|source| ReaderError::WatchThread {
                what: "trust file watcher",
                source,
            })
    }
}

type Stamp = Option<(SystemTime, u64)>;

fn file_stamps(files: &TrustFiles) -> (Stamp, Stamp) {
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()))
    };
    (stamp(&files.bundle), stamp(&files.credential))
}
