#![doc = include_str!("../README.md")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Mode of every file written here (Unix).
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory created here (Unix).
pub const DIR_MODE: u32 = 0o700;

/// Why a file could not be written.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A regular file exists at the path and replacing it was not asked for.
    #[error("{} already exists; refusing to overwrite", .0.display())]
    AlreadyExists(PathBuf),
    /// The path is a directory.
    #[error("{} is a directory", .0.display())]
    IsADirectory(PathBuf),
    /// The path's parent exists and is not a directory.
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The operating system refused (missing directory, permission, full
    /// disk…).
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::AlreadyExists(p) | Self::IsADirectory(p) | Self::NotADirectory(p) => p,
            Self::Io { path, .. } => path,
        }
    }

    /// The path and an [`std::io::Error`] of the matching kind
    /// (`AlreadyExists`, `IsADirectory`, `NotADirectory`, or the operating
    /// system's own error), for error types that carry a path and an I/O
    /// error.
    pub fn into_io(self) -> (PathBuf, std::io::Error) {
        use std::io::ErrorKind;
        match self {
            Self::AlreadyExists(p) => (p, ErrorKind::AlreadyExists.into()),
            Self::IsADirectory(p) => (p, ErrorKind::IsADirectory.into()),
            Self::NotADirectory(p) => (p, ErrorKind::NotADirectory.into()),
            Self::Io { path, source } => (path, source),
        }
    }
}

/// What to do when the output path already holds a regular file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse with [`FileError::AlreadyExists`] (the default).
    #[default]
    Refuse,
    /// Replace it atomically.
    Replace,
}

/// What [`write_file`] or [`write_with`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// A new regular file was created.
    Created,
    /// An existing regular file was replaced.
    Replaced,
    /// The path is a device, FIFO or socket: the bytes were written to it.
    WrittenThrough,
}

/// Whether a path exists as something that is neither a regular file nor a
/// directory (after following symbolic links): the kind of path
/// [`write_file`] writes through.
pub fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// Checks, before any work is done, that [`write_file`] would accept `path`,
/// so a command can refuse an existing output before it changes anything.
///
/// # Errors
///
/// [`FileError::AlreadyExists`] (a regular file, with [`Overwrite::Refuse`]),
/// [`FileError::IsADirectory`], [`FileError::NotADirectory`] (the parent),
/// [`FileError::Io`] (e.g. a missing parent directory).
pub fn check_output(path: &Path, overwrite: Overwrite) -> Result<(), FileError> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(FileError::IsADirectory(path.to_path_buf())),
        Ok(m) if m.is_file() && overwrite == Overwrite::Refuse => {
            Err(FileError::AlreadyExists(path.to_path_buf()))
        }
        Ok(_) => Ok(()),
        // `a/b` where `a` is a file: ENOTDIR.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            let parent = parent_of(path);
            match fs::metadata(parent) {
                Ok(m) if m.is_dir() => Ok(()),
                Ok(_) => Err(FileError::NotADirectory(parent.to_path_buf())),
                Err(e) => Err(FileError::io(parent, e)),
            }
        }
        Err(e) => Err(FileError::io(path, e)),
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` as described in the crate documentation.
///
/// # Errors
///
/// Those of [`check_output`], [`FileError::AlreadyExists`] if a regular file
/// appeared at `path` meanwhile, [`FileError::Io`].
pub fn write_file(path: &Path, bytes: &[u8], overwrite: Overwrite) -> Result<Written, FileError> {
    write_with(path, overwrite, |w| {
        w.write_all(bytes).map_err(|e| FileError::io(path, e))
    })
}

/// Writes what `fill` produces to `path` as described in the crate
/// documentation, for outputs too large to hold in memory. `fill` writes to
/// a buffered writer over the temporary file (or over the device); its own
/// error type only has to take a [`FileError`]. If `fill` fails, nothing is
/// left behind: the temporary file is removed and `path` is untouched.
///
/// # Errors
///
/// Those of [`write_file`], and whatever `fill` returns.
pub fn write_with<E, F>(path: &Path, overwrite: Overwrite, fill: F) -> Result<Written, E>
where
    E: From<FileError>,
    F: FnOnce(&mut dyn Write) -> Result<(), E>,
{
    check_output(path, overwrite)?;
    if is_special(path) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| FileError::io(path, e))?;
        fill(&mut f)?;
        f.flush().map_err(|e| FileError::io(path, e))?;
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
        .map_err(|e| FileError::io(dir, e))?;
    set_mode(tmp.as_file(), FILE_MODE).map_err(|e| FileError::io(tmp.path(), e))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush().map_err(|e| FileError::io(path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| FileError::io(tmp.path(), e))?;
    let written = match overwrite {
        Overwrite::Refuse => match tmp.persist_noclobber(path) {
            Ok(_) => Written::Created,
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(FileError::AlreadyExists(path.to_path_buf()).into())
            }
            Err(e) => return Err(FileError::io(path, e.error).into()),
        },
        Overwrite::Replace => {
            // The special-file check above and this rename are not one
            // step; a device node appearing in between is the one case
            // left, and creating one needs privileges citycard never has.
            let existed = path.exists();
            tmp.persist(path)
                .map_err(|e| FileError::io(path, e.error))?;
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
///
/// # Errors
///
/// [`FileError::Io`] (including a path that exists as a file).
pub fn create_private_dir(dir: &Path) -> Result<bool, FileError> {
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
        Err(e) => return Err(FileError::io(dir, e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| FileError::io(dir, e))?;
    }
    sync_dir(parent_of(dir));
    Ok(true)
}

/// Creates (or opens) a lock file, mode 0600, for `File::lock`-style
/// advisory locks: its content is never read.
///
/// # Errors
///
/// [`FileError::Io`].
pub fn create_lock_file(path: &Path) -> Result<fs::File, FileError> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    let file = options.open(path).map_err(|e| FileError::io(path, e))?;
    set_mode(&file, FILE_MODE).map_err(|e| FileError::io(path, e))?;
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
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_private_and_never_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        assert_eq!(
            write_file(&p, b"one", Overwrite::Refuse).unwrap(),
            Written::Created
        );
        let err = write_file(&p, b"two", Overwrite::Refuse).unwrap_err();
        assert!(
            matches!(&err, FileError::AlreadyExists(q) if q == &p),
            "{err}"
        );
        assert_eq!(err.path(), p);
        let (q, io) = err.into_io();
        assert_eq!(
            (q, io.kind()),
            (p.clone(), std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(
            write_file(&p, b"two", Overwrite::Replace).unwrap(),
            Written::Replaced
        );
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(mode(&p), 0o600);
        // Nothing else was left in the directory.
        assert_eq!(entries(dir.path()), ["out.bin"]);
        // Replace on a new path creates.
        let q = dir.path().join("new.bin");
        assert_eq!(
            write_file(&q, b"x", Overwrite::Replace).unwrap(),
            Written::Created
        );
    }

    /// A file that appears between the check and the link (another process
    /// writing the same output) is not clobbered: the link itself refuses.
    #[test]
    fn a_file_created_meanwhile_is_not_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        let err = write_with(&p, Overwrite::Refuse, |w| {
            fs::write(&p, b"theirs").unwrap();
            w.write_all(b"ours").map_err(|e| FileError::io(&p, e))
        })
        .unwrap_err();
        assert!(matches!(err, FileError::AlreadyExists(_)), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"theirs");
        assert_eq!(entries(dir.path()), ["out.bin"]);
    }

    #[derive(Debug)]
    enum FillError {
        File(FileError),
        Broken,
    }

    impl From<FileError> for FillError {
        fn from(e: FileError) -> Self {
            Self::File(e)
        }
    }

    #[test]
    fn a_failing_fill_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        let err = write_with(&p, Overwrite::Refuse, |w| {
            w.write_all(&[7; 100_000]).unwrap();
            Err::<(), _>(FillError::Broken)
        })
        .unwrap_err();
        assert!(matches!(err, FillError::Broken));
        assert!(entries(dir.path()).is_empty());
        // Replacing: the old file stays whole.
        write_file(&p, b"old", Overwrite::Refuse).unwrap();
        let err = write_with(&p, Overwrite::Replace, |w| {
            w.write_all(b"half").unwrap();
            Err::<(), _>(FillError::Broken)
        })
        .unwrap_err();
        assert!(matches!(err, FillError::Broken));
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(entries(dir.path()), ["out.bin"]);
        // The caller's error type carries the file errors.
        let err = write_with(&p, Overwrite::Refuse, |_| Ok::<(), FillError>(())).unwrap_err();
        assert!(matches!(err, FillError::File(FileError::AlreadyExists(_))));
    }

    #[test]
    fn directories_and_missing_parents_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for overwrite in [Overwrite::Refuse, Overwrite::Replace] {
            let err = write_file(dir.path(), b"x", overwrite).unwrap_err();
            assert!(matches!(err, FileError::IsADirectory(_)), "{err}");
            assert_eq!(err.into_io().1.kind(), std::io::ErrorKind::IsADirectory);
            let err = write_file(&dir.path().join("no/such"), b"x", overwrite).unwrap_err();
            assert!(
                matches!(&err, FileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
                "{err}"
            );
            let file = dir.path().join("file");
            fs::write(&file, b"").unwrap();
            let err = write_file(&file.join("below"), b"x", overwrite).unwrap_err();
            assert!(
                matches!(&err, FileError::NotADirectory(p) if p == &file),
                "{err}"
            );
            assert_eq!(fs::read(&file).unwrap(), b"");
        }
        // A file where a directory is asked for.
        let file = dir.path().join("file");
        assert!(matches!(
            create_private_dir(&file),
            Err(FileError::Io { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_written_through_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let null = Path::new("/dev/null");
        assert!(is_special(null));
        for overwrite in [Overwrite::Refuse, Overwrite::Replace] {
            check_output(null, overwrite).unwrap();
            assert_eq!(
                write_file(null, b"x", overwrite).unwrap(),
                Written::WrittenThrough
            );
            assert!(fs::metadata(null).unwrap().file_type().is_char_device());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_written_through_not_replaced() {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(status.success());
        for overwrite in [Overwrite::Refuse, Overwrite::Replace] {
            let reader = {
                let fifo = fifo.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    fs::File::open(&fifo)
                        .unwrap()
                        .read_to_end(&mut got)
                        .unwrap();
                    got
                })
            };
            assert_eq!(
                write_file(&fifo, b"through the pipe", overwrite).unwrap(),
                Written::WrittenThrough
            );
            assert_eq!(reader.join().unwrap(), b"through the pipe");
            assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
        }
        assert_eq!(entries(dir.path()), ["pipe"]);
    }

    #[cfg(unix)]
    #[test]
    fn directories_are_0700() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        assert!(create_private_dir(&d).unwrap());
        assert!(!create_private_dir(&d).unwrap());
        for p in [dir.path().join("a"), d] {
            assert_eq!(mode(&p), 0o700);
        }
    }

    /// Set by [`permissions_hold_under_umask_000`] in the child it runs.
    const UMASK_CHILD: &str = "CITYCARD_FILES_UMASK_000_DIR";

    /// The modes do not depend on the umask: the test runs itself again in
    /// a child process whose umask is 000 (the umask is per process, so it
    /// is not changed under the other tests), which writes and checks.
    #[cfg(unix)]
    #[test]
    fn permissions_hold_under_umask_000() {
        if let Some(dir) = std::env::var_os(UMASK_CHILD) {
            let dir = PathBuf::from(dir);
            // The umask really is 000 here: a plain create gets 0666.
            let plain = dir.join("plain");
            fs::File::create(&plain).unwrap();
            assert_eq!(mode(&plain), 0o666);
            let d = dir.join("a/b");
            create_private_dir(&d).unwrap();
            assert_eq!(mode(&dir.join("a")), 0o700);
            assert_eq!(mode(&d), 0o700);
            let f = d.join("f");
            write_file(&f, b"x", Overwrite::Refuse).unwrap();
            assert_eq!(mode(&f), 0o600);
            write_file(&f, b"y", Overwrite::Replace).unwrap();
            assert_eq!(mode(&f), 0o600);
            create_lock_file(&d.join("lock")).unwrap();
            assert_eq!(mode(&d.join("lock")), 0o600);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000 && exec \"$0\" \"$@\"")
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::permissions_hold_under_umask_000",
                "--test-threads=1",
            ])
            .env(UMASK_CHILD, dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The child really ran the test.
        assert!(stdout.contains("1 passed"), "{stdout}");
        assert_eq!(mode(&dir.path().join("a/b/f")), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn lock_files_keep_their_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lock");
        fs::write(&p, b"held").unwrap();
        drop(create_lock_file(&p).unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"held");
        assert_eq!(mode(&p), 0o600);
    }
}
