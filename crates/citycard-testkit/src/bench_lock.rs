//! One lock on the PC/SC test bench's virtual readers for every test process.
//!
//! A test that serves a card into `Virtual PCD 00 00` (or `00 01`) owns that
//! reader until it ends. Tests of one binary take an in-process mutex; test
//! binaries and developers' runs in other processes (two `cargo test`
//! invocations at once) take an exclusive `flock` on one lock file too, so
//! they wait for each other instead of serving two cards into one reader.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Held while a test uses the vpcd readers; released on drop.
pub struct BenchGuard {
    _file: Option<File>,
    _guard: MutexGuard<'static, ()>,
}

/// The lock file: `$CITYCARD_BENCH_LOCK`, or `citycard-vpcd.lock` in the
/// system's temporary directory.
fn lock_path() -> PathBuf {
    std::env::var_os("CITYCARD_BENCH_LOCK")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("citycard-vpcd.lock"))
}

/// Waits until no other test (in this process or another) uses the vpcd
/// readers, then holds them until the guard is dropped. If the lock file
/// cannot be opened, only the in-process lock is taken.
pub fn vpcd_lock() -> BenchGuard {
    let guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path())
        .ok()
        .filter(|f| f.lock().is_ok());
    BenchGuard {
        _file: file,
        _guard: guard,
    }
}
