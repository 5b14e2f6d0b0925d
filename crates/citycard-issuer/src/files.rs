//! The one way the issuing side writes files: private, atomic, and never
//! destroying what is not a regular file.
//!
//! - Every file is created mode 0600 and every directory 0700, whatever the
//!   process umask (the permissions are set explicitly after creation).
//! - A regular file is written to a temporary file in the same directory,
//!   synced, and linked into place with `persist_noclobber` (or, when
//!   replacing is asked for, renamed over the old file); then the directory
//!   is synced, so the new entry survives a crash.
//! - A path that exists and is **not** a regular file (a character device
//!   such as `/dev/null` or `/dev/stdout`, a FIFO, a socket) is written
//!   through, never replaced: renaming a temporary file over it would destroy
//!   it. A directory is refused.
//! - An existing regular file is refused with [`IssuerError::AlreadyExists`]
//!   unless the caller passes [`Overwrite::Replace`] (the CLI's `--force`).

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::IssuerError;

/// Mode of every file the issuer writes.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory the issuer creates.
pub const DIR_MODE: u32 = 0o700;

/// What to do when the output path already holds a regular file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with [`IssuerError::AlreadyExists`] (the default).
    #[default]
    Refuse,
    /// Replace it atomically.
    Replace,
}

/// What [`write_file`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// A new regular file was created.
    Created,
    /// An existing regular file was replaced.
    Replaced,
    /// The path is a device, FIFO or socket: the bytes were written to it.
    WrittenThrough,
}

/// Whether a path exists as something that is not a regular file (after
/// following symbolic links): the kind of path [`write_file`] writes through.
pub fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Checks, before any work is done, that [`write_file`] would accept `path`:
/// so a command can refuse an existing output before it changes anything.
pub fn check_output(path: &Path, overwrite: Overwrite) -> Result<(), IssuerError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(IssuerError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"),
        )),
        Ok(m) if m.is_file() && overwrite == Overwrite::Refuse => {
            Err(IssuerError::AlreadyExists(path.to_path_buf()))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = parent_of(path);
            match fs::metadata(parent) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(IssuerError::io(
                    parent,
                    std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
                )),
                Err(e) => Err(IssuerError::io(parent, e)),
            }
        }
        Err(e) => Err(IssuerError::io(path, e)),
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` as described in the module documentation.
pub fn write_file(path: &Path, bytes: &[u8], overwrite: Overwrite) -> Result<Written, IssuerError> {
    write_with(path, overwrite, &mut |w| {
        w.write_all(bytes).map_err(|e| IssuerError::io(path, e))
    })
}

/// Writes what `fill` produces to `path` as described in the module
/// documentation (for outputs too large to hold in memory). If `fill`
/// fails, nothing is left behind: the temporary file is removed.
pub fn write_with(
    path: &Path,
    overwrite: Overwrite,
    fill: &mut dyn FnMut(&mut dyn Write) -> Result<(), IssuerError>,
) -> Result<Written, IssuerError> {
    check_output(path, overwrite)?;
    if is_special(path) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| IssuerError::io(path, e))?;
        fill(&mut f)?;
        f.flush().map_err(|e| IssuerError::io(path, e))?;
        return Ok(Written::WrittenThrough);
    }
    let dir = parent_of(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(".citycard-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(FILE_MODE));
    }
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| IssuerError::io(dir, e))?;
    set_mode(tmp.as_file(), FILE_MODE).map_err(|e| IssuerError::io(tmp.path(), e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush().map_err(|e| IssuerError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| IssuerError::io(tmp.path(), e))?;
    let written = match overwrite {
        Overwrite::Refuse => match tmp.persist_noclobber(path) {
            Ok(_) => Written::Created,
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(IssuerError::AlreadyExists(path.to_path_buf()))
            }
            Err(e) => return Err(IssuerError::io(path, e.error)),
        },
        Overwrite::Replace => {
            // The special-file check above and this rename are not one
            // step; a device node appearing in between is the one case
            // left, and creating one needs privileges the office never has.
            let existed = path.exists();
            tmp.persist(path)
                .map_err(|e| IssuerError::io(path, e.error))?;
            if existed {
                Written::Replaced
            } else {
                Written::Created
            }
        }
    };
    sync_dir(dir);
    Ok(written)
}

/// Creates `dir` (and missing parents) with mode 0700 whatever the umask;
/// an existing directory is left as it is. Returns whether `dir` was created.
pub fn create_private_dir(dir: &Path) -> Result<bool, IssuerError> {
    if dir.is_dir() {
        return Ok(false);
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            create_private_dir(parent)?;
        }
    }
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {
            return Ok(false)
        }
        Err(e) => return Err(IssuerError::io(dir, e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| IssuerError::io(dir, e))?;
    }
    sync_dir(parent_of(dir));
    Ok(true)
}

/// Creates (or opens) a lock file, mode 0600, for `File::lock`-style
/// advisory locks: its content is never read.
pub fn create_lock_file(path: &Path) -> Result<fs::File, IssuerError> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path).map_err(|e| IssuerError::io(path, e))?;
    set_mode(&file, FILE_MODE).map_err(|e| IssuerError::io(path, e))?;
    Ok(file)
}

/// Makes a directory's entries durable (best effort: not every platform
/// can fsync a directory).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn set_mode(file: &fs::File, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_files_are_private_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        assert_eq!(
            write_file(&p, b"one", Overwrite::Refuse).unwrap(),
            Written::Created
        );
        assert!(matches!(
            write_file(&p, b"two", Overwrite::Refuse),
            Err(IssuerError::AlreadyExists(_))
        ));
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            write_file(&p, b"two", Overwrite::Replace).unwrap(),
            Written::Replaced
        );
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // Nothing else was left in the directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_through_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        for overwrite in [Overwrite::Refuse, Overwrite::Replace] {
            assert_eq!(
                write_file(null, b"x", overwrite).unwrap(),
                Written::WrittenThrough
            );
            assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        }
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        assert!(create_private_dir(&d).unwrap());
        assert!(!create_private_dir(&d).unwrap());
        for p in [dir.path().join("a"), d] {
            assert_eq!(
                fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }
}
