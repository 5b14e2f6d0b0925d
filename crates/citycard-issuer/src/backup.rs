//! `citycard issuer backup`: one file with a consistent snapshot of an
//! issuer home.
//!
//! The archive is a plain tar file (restore with `tar -xpf FILE -C NEWDIR`)
//! holding `issuer.json`, the root key file (if the root is not in a
//! token), every station's `station.json` and key files, every preparer's
//! `preparer.json` and key file, the partners' certificates, the last revocation list, and `registry.sqlite` copied
//! with SQLite's online backup, so the copy is consistent even while desks
//! are issuing. Key files stay encrypted under their passphrases; keys in a
//! PKCS#11 token are not in the archive (back the token up with its own
//! tools). Desk leases' lock files are not copied: a restored home starts
//! with no desk at work, and intents that were open at backup time are
//! reconciled as orphans once their leases lapse.
//!
//! The archive holds everything the registry holds (including retained
//! resident attributes, if the city keeps any): it is written mode 0600 and
//! must be kept like the registry itself.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::IssuerError;
use crate::home::IssuerHome;
use citycard_files::{Overwrite, Written};

/// What a backup contains.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// Paths in the archive, relative to the home.
    pub files: Vec<PathBuf>,
    /// Card records in the registry snapshot.
    pub cards: u64,
    /// How the output was written.
    pub written: Written,
}

fn collect(home: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), IssuerError> {
    let dir = home.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| IssuerError::io(&dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        if name_str.starts_with('.') {
            continue;
        }
        let rel = rel.join(&name);
        let kind = entry
            .file_type()
            .map_err(|e| IssuerError::io(&entry.path(), e))?;
        if kind.is_dir() {
            collect(home, &rel, out)?;
        } else if kind.is_file() {
            out.push(rel);
        }
    }
    Ok(())
}

impl IssuerHome {
    /// Writes a consistent snapshot of the home to `out` (see the module
    /// documentation).
    pub fn backup(&self, out: &Path, overwrite: Overwrite) -> Result<BackupReport, IssuerError> {
        citycard_files::check_output(out, overwrite)?;
        let registry = self.registry()?;
        let cards = {
            let c = registry.counts()?;
            c.issued + c.spoiled + c.open_intents
        };
        // The snapshot goes to a private temporary directory inside the home.
        let scratch = tempfile::Builder::new()
            .prefix(".backup-")
            .tempdir_in(self.dir())
            .map_err(|e| IssuerError::io(self.dir(), e))?;
        let snapshot = scratch.path().join("registry.sqlite");
        // A registry on a server is backed up with the server (pg_dump); the
        // home's archive then holds its keys, certificates and configuration.
        let on_server = self.config().registry.is_some();
        drop(registry);
        if !on_server {
            citycard_registry::Registry::open(self.registry_path())?.backup_to(&snapshot)?;
        }
        let mut listed = vec![PathBuf::from("issuer.json")];
        if self.dir().join("root.key.pem").is_file() {
            listed.push(PathBuf::from("root.key.pem"));
        }
        for sub in ["stations", "preparers", "partners", "revocation"] {
            if self.dir().join(sub).is_dir() {
                collect(self.dir(), Path::new(sub), &mut listed)?;
            }
        }
        let mut names = listed.clone();
        if !on_server {
            names.push(PathBuf::from("registry.sqlite"));
        }
        let written = citycard_files::write_with(out, overwrite, |w| -> Result<(), IssuerError> {
            let mut tar = tar::Builder::new(w);
            tar.mode(tar::HeaderMode::Deterministic);
            let err = |p: &Path| {
                let p = p.to_path_buf();
                move |e: std::io::Error| IssuerError::io(&p, e)
            };
            for dir in ["stations", "preparers", "partners", "revocation"] {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o700);
                header.set_size(0);
                header.set_mtime(0);
                header.set_cksum();
                tar.append_data(&mut header, dir, std::io::empty())
                    .map_err(err(Path::new(dir)))?;
            }
            for rel in &listed {
                append(&mut tar, rel, &self.dir().join(rel))?;
            }
            if !on_server {
                append(&mut tar, Path::new("registry.sqlite"), &snapshot)?;
            }
            tar.finish().map_err(err(out))?;
            Ok(())
        })?;
        Ok(BackupReport {
            files: names,
            cards,
            written,
        })
    }
}

/// Appends the file at `path` as `rel`, streamed (the registry of a big
/// city is large), mode 0600.
fn append<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    rel: &Path,
    path: &Path,
) -> Result<(), IssuerError> {
    let file = fs::File::open(path).map_err(|e| IssuerError::io(path, e))?;
    let len = file.metadata().map_err(|e| IssuerError::io(path, e))?.len();
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(citycard_files::FILE_MODE);
    header.set_size(len);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, rel, file)
        .map_err(|e| IssuerError::io(path, e))
}
