//! [`FileStore`]: the card's persistent state in one file, replaced atomically.
//!
//! # On-disk format (version 1)
//!
//! | offset | size | field                                                        |
//! |-------:|-----:|--------------------------------------------------------------|
//! | 0      | 4    | magic `CCST`                                                 |
//! | 4      | 1    | format version, `1`                                          |
//! | 5      | 3    | reserved, zero                                               |
//! | 8      | 4    | payload length *n*, big-endian                               |
//! | 12     | 32   | SHA-256 over bytes 0..12 followed by the payload             |
//! | 44     | *n*  | payload: the card's state blob, as given to `commit`         |
//!
//! The file is exactly `44 + n` bytes long; anything else is [`StorageError::Corrupt`].
//!
//! # Commit protocol
//!
//! 1. write header and payload to `<state>.tmp` in the same directory (created or truncated);
//! 2. `fsync` the temporary file;
//! 3. `rename` it over the state file (atomic on POSIX file systems);
//! 4. `fsync` the directory, so the rename itself is durable.
//!
//! Power lost before step 3 leaves the old state file untouched and a partial
//! `<state>.tmp`, which the next [`load`](Storage::load) removes without reading;
//! power lost after step 3 leaves the new state. Either way `load` returns one
//! whole committed state, never a mix.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use citycard_card::{Storage, StorageError};
use sha2::{Digest, Sha256};

use crate::tearing::TornWrite;
use crate::EmulatorError;

/// The four bytes every state file starts with.
pub const STATE_MAGIC: [u8; 4] = *b"CCST";
/// The state file format version this crate writes and reads.
pub const STATE_FORMAT_VERSION: u8 = 1;
/// Size of the state file header (magic, version, reserved, length, SHA-256).
pub const STATE_HEADER_LEN: usize = 44;
/// Largest state payload accepted (1 MiB; a real card has tens of KiB of EEPROM).
/// Larger commits fail with [`StorageError::Failed`]; larger files load as
/// [`StorageError::Corrupt`].
pub const MAX_STATE_LEN: usize = 1 << 20;

/// Encodes `payload` as a complete state file (header followed by payload).
///
/// Fails with [`StorageError::Failed`] if the payload exceeds [`MAX_STATE_LEN`].
pub fn encode_state(payload: &[u8]) -> Result<Vec<u8>, StorageError> {
    if payload.len() > MAX_STATE_LEN {
        return Err(StorageError::Failed(format!(
            "state of {} bytes exceeds the {MAX_STATE_LEN}-byte limit",
            payload.len()
        )));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| StorageError::Failed("state length does not fit in 32 bits".into()))?;
    let mut out = Vec::with_capacity(STATE_HEADER_LEN + payload.len());
    out.extend_from_slice(&STATE_MAGIC);
    out.push(STATE_FORMAT_VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    let digest = checksum(&out, payload);
    out.extend_from_slice(&digest);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes a complete state file and returns its payload.
///
/// Returns [`StorageError::Corrupt`] for any byte string that [`encode_state`]
/// did not produce: wrong magic, unknown version, non-zero reserved bytes,
/// a length that does not match the file size, or a checksum mismatch.
/// Never panics.
pub fn decode_state(bytes: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (prefix, rest) = bytes
        .split_first_chunk::<12>()
        .ok_or(StorageError::Corrupt)?;
    let (digest, payload) = rest
        .split_first_chunk::<32>()
        .ok_or(StorageError::Corrupt)?;
    let (magic, tail) = prefix
        .split_first_chunk::<4>()
        .ok_or(StorageError::Corrupt)?;
    let (meta, len) = tail.split_first_chunk::<4>().ok_or(StorageError::Corrupt)?;
    if *magic != STATE_MAGIC || *meta != [STATE_FORMAT_VERSION, 0, 0, 0] {
        return Err(StorageError::Corrupt);
    }
    let len_bytes: [u8; 4] = len.try_into().map_err(|_| StorageError::Corrupt)?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| StorageError::Corrupt)?;
    if len != payload.len() || len > MAX_STATE_LEN {
        return Err(StorageError::Corrupt);
    }
    if checksum(prefix, payload) != *digest {
        return Err(StorageError::Corrupt);
    }
    Ok(payload.to_vec())
}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(header);
    hash.update(payload);
    hash.finalize().into()
}

fn failed(what: &str, path: &Path, err: &io::Error) -> StorageError {
    StorageError::Failed(format!("{what} {}: {err}", path.display()))
}

/// The card's persistent state in a file, committed tear-safely (see the
/// [module documentation](self) for the format and the commit protocol).
///
/// One `FileStore` per state file: two stores writing the same file at the
/// same time are not supported (they share the temporary file).
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
    temp: PathBuf,
    dir: PathBuf,
    commits: u64,
}

impl FileStore {
    /// A store for the state file at `path`. Nothing is read or created yet;
    /// the directory must exist when the first commit happens.
    ///
    /// Fails with [`EmulatorError::InvalidStatePath`] if `path` has no file name.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self, EmulatorError> {
        let path = path.into();
        let Some(name) = path.file_name() else {
            return Err(EmulatorError::InvalidStatePath(path));
        };
        let mut temp_name = OsString::from(name);
        temp_name.push(".tmp");
        let temp = path.with_file_name(temp_name);
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Self {
            path,
            temp,
            dir,
            commits: 0,
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file a commit writes before renaming it over [`path`](Self::path).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Number of commits this store completed since it was created.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    fn write_temp(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.temp)
            .map_err(|e| failed("cannot create", &self.temp, &e))?;
        file.write_all(bytes)
            .map_err(|e| failed("cannot write", &self.temp, &e))?;
        file.sync_all()
            .map_err(|e| failed("cannot fsync", &self.temp, &e))
    }

    fn sync_dir(&self) -> Result<(), StorageError> {
        #[cfg(unix)]
        {
            File::open(&self.dir)
                .and_then(|dir| dir.sync_all())
                .map_err(|e| failed("cannot fsync directory", &self.dir, &e))?;
        }
        Ok(())
    }

    fn remove_temp(&self) {
        // A leftover temporary file is the trace of a torn commit: its content
        // is never trusted, only discarded. Failing to remove it is harmless,
        // since the next commit truncates it.
        let _ = fs::remove_file(&self.temp);
    }
}

impl Storage for FileStore {
    fn load(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        self.remove_temp();
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed("cannot open", &self.path, &e)),
        };
        let limit = u64::try_from(STATE_HEADER_LEN + MAX_STATE_LEN).unwrap_or(u64::MAX);
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| failed("cannot read", &self.path, &e))?;
        decode_state(&bytes).map(Some)
    }

    fn commit(&mut self, state: &[u8]) -> Result<(), StorageError> {
        let bytes = encode_state(state)?;
        if let Err(e) = self.write_temp(&bytes) {
            self.remove_temp();
            return Err(e);
        }
        if let Err(e) = fs::rename(&self.temp, &self.path) {
            self.remove_temp();
            return Err(failed("cannot rename over", &self.path, &e));
        }
        self.sync_dir()?;
        self.commits += 1;
        Ok(())
    }
}

impl TornWrite for FileStore {
    /// Writes the first `written` bytes of the encoded state file (header
    /// included) to the temporary file, syncs them, and stops: no rename, so
    /// the committed state is untouched. Returns [`StorageError::PowerLost`].
    fn commit_interrupted(&mut self, state: &[u8], written: usize) -> Result<(), StorageError> {
        let bytes = encode_state(state)?;
        let partial = bytes.get(..written).unwrap_or(&bytes);
        self.write_temp(partial)?;
        Err(StorageError::PowerLost)
    }

    fn encoded_len(&self, state: &[u8]) -> usize {
        STATE_HEADER_LEN + state.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;

    fn store() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().join("card.state")).unwrap();
        (dir, store)
    }

    #[test]
    fn missing_file_loads_as_none() {
        let (_dir, mut store) = store();
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn round_trip_and_overwrite() {
        let (_dir, mut store) = store();
        store.commit(b"first").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b"first"[..]));
        store.commit(b"").unwrap();
        assert_eq!(store.load().unwrap().as_deref(), Some(&b""[..]));
        store.commit(&[0xAB; 5000]).unwrap();
        assert_eq!(store.load().unwrap(), Some(vec![0xAB; 5000]));
        assert_eq!(store.commits(), 3);
        assert!(
            !store.temp_path().exists(),
            "a completed commit leaves no temporary file"
        );
    }

    #[test]
    fn persists_across_reopening() {
        let (dir, mut store) = store();
        store.commit(b"persistent").unwrap();
        drop(store);
        let mut reopened = FileStore::new(dir.path().join("card.state")).unwrap();
        assert_eq!(
            reopened.load().unwrap().as_deref(),
            Some(&b"persistent"[..])
        );
    }

    #[test]
    fn file_format_is_as_documented() {
        let (_dir, mut store) = store();
        store.commit(b"abc").unwrap();
        let bytes = fs::read(store.path()).unwrap();
        assert_eq!(bytes.len(), STATE_HEADER_LEN + 3);
        assert_eq!(&bytes[..4], b"CCST");
        assert_eq!(&bytes[4..8], &[1, 0, 0, 0]);
        assert_eq!(&bytes[8..12], &[0, 0, 0, 3]);
        let mut h = Sha256::new();
        h.update(&bytes[..12]);
        h.update(b"abc");
        assert_eq!(&bytes[12..44], &h.finalize()[..]);
        assert_eq!(&bytes[44..], b"abc");
    }

    #[test]
    fn torn_write_at_every_offset_keeps_the_old_state() {
        let (_dir, mut store) = store();
        let old = b"old state: balance 10".to_vec();
        let new = b"NEW STATE, a bit longer: balance 9, log entry 42".to_vec();
        store.commit(&old).unwrap();
        let full = encode_state(&new).unwrap();
        for offset in 0..=full.len() {
            // The temporary file as power loss could leave it, byte by byte.
            fs::write(store.temp_path(), &full[..offset]).unwrap();
            assert_eq!(
                store.load().unwrap(),
                Some(old.clone()),
                "torn at byte {offset}"
            );
            assert!(
                !store.temp_path().exists(),
                "leftover temp removed (offset {offset})"
            );
            // The same through the interrupted-commit hook.
            let err = store.commit_interrupted(&new, offset).unwrap_err();
            assert_eq!(err, StorageError::PowerLost);
            assert!(store.temp_path().exists());
            let mut reopened = FileStore::new(store.path()).unwrap();
            assert_eq!(
                reopened.load().unwrap(),
                Some(old.clone()),
                "interrupted at byte {offset}"
            );
        }
        // And a commit after all that still works.
        store.commit(&new).unwrap();
        assert_eq!(store.load().unwrap(), Some(new));
    }

    #[test]
    fn torn_first_write_leaves_no_state() {
        let (_dir, mut store) = store();
        let full = encode_state(b"first ever").unwrap();
        for offset in 0..=full.len() {
            store.commit_interrupted(b"first ever", offset).unwrap_err();
            assert_eq!(store.load().unwrap(), None, "offset {offset}");
        }
    }

    #[test]
    fn truncated_state_file_is_corrupt() {
        let (_dir, mut store) = store();
        store.commit(b"some state").unwrap();
        let full = fs::read(store.path()).unwrap();
        for len in 0..full.len() {
            fs::write(store.path(), &full[..len]).unwrap();
            assert_eq!(
                store.load(),
                Err(StorageError::Corrupt),
                "truncated to {len}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_is_corrupt() {
        let (_dir, mut store) = store();
        store.commit(b"state!").unwrap();
        let full = fs::read(store.path()).unwrap();
        for i in 0..full.len() {
            for bit in 0..8 {
                let mut bad = full.clone();
                bad[i] ^= 1 << bit;
                fs::write(store.path(), &bad).unwrap();
                assert_eq!(
                    store.load(),
                    Err(StorageError::Corrupt),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn extra_trailing_bytes_are_corrupt() {
        let (_dir, mut store) = store();
        store.commit(b"x").unwrap();
        let mut full = fs::read(store.path()).unwrap();
        full.push(0);
        fs::write(store.path(), &full).unwrap();
        assert_eq!(store.load(), Err(StorageError::Corrupt));
    }

    #[test]
    fn garbage_never_panics() {
        let (_dir, mut store) = store();
        // A small deterministic generator: no dependency needed.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let len = (next() % 200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && bytes.len() >= 12 {
                // Valid-looking header with a random length and digest.
                bytes[..4].copy_from_slice(b"CCST");
                bytes[4..8].copy_from_slice(&[1, 0, 0, 0]);
            }
            assert_eq!(decode_state(&bytes), Err(StorageError::Corrupt));
            fs::write(store.path(), &bytes).unwrap();
            assert_eq!(store.load(), Err(StorageError::Corrupt));
        }
        // Absurd length field.
        let mut bytes = encode_state(b"abc").unwrap();
        bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_state(&bytes), Err(StorageError::Corrupt));
    }

    #[test]
    fn oversized_file_is_corrupt_and_oversized_commit_fails() {
        let (_dir, mut store) = store();
        fs::write(
            store.path(),
            vec![0u8; STATE_HEADER_LEN + MAX_STATE_LEN + 10],
        )
        .unwrap();
        assert_eq!(store.load(), Err(StorageError::Corrupt));
        assert!(matches!(
            store.commit(&vec![0; MAX_STATE_LEN + 1]),
            Err(StorageError::Failed(_))
        ));
    }

    #[test]
    fn unknown_version_is_corrupt() {
        let mut bytes = encode_state(b"v").unwrap();
        bytes[4] = 2;
        assert_eq!(decode_state(&bytes), Err(StorageError::Corrupt));
    }

    #[test]
    fn commit_into_missing_directory_fails_and_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path().join("nope").join("card.state")).unwrap();
        assert!(matches!(store.commit(b"x"), Err(StorageError::Failed(_))));
        assert_eq!(store.load().unwrap(), None);
    }

    #[test]
    fn path_without_file_name_is_rejected() {
        assert!(matches!(
            FileStore::new("/"),
            Err(EmulatorError::InvalidStatePath(_))
        ));
        assert!(matches!(
            FileStore::new(""),
            Err(EmulatorError::InvalidStatePath(_))
        ));
        let relative = FileStore::new("card.state").unwrap();
        assert_eq!(relative.temp_path(), Path::new("card.state.tmp"));
    }
}
