//! The state's modes, in one place: whatever the umask, other users can neither read the
//! database (every ban's log line, user names included, and the admin's password hashes)
//! nor enter a directory pyfilter creates for it.
//!
//! The directory is created `DIR_MODE` and the database file `FILE_MODE` before SQLite
//! opens it; SQLite gives its `-wal` and `-shm` files the database's own mode. A database
//! left more open by an older version is closed down to `FILE_MODE` at the next open. An
//! existing directory is left as it is: it may be shared (`/tmp`, `/var/lib`).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The state directory pyfilter creates.
pub const DIR_MODE: u32 = 0o700;
/// The database and its `-wal` and `-shm` files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents `DIR_MODE`, whatever the umask.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // The umask may have taken more than asked; what pyfilter created is set exactly.
    for d in missing.drain(..) {
        std::fs::set_permissions(&d, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Creates the database file `FILE_MODE` when it does not exist; closes down one (and
/// its `-wal`, `-shm`) that others may read.
pub fn prepare_file(db: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(db)
    {
        Ok(f) => f.set_permissions(Permissions::from_mode(FILE_MODE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            for suffix in ["", "-wal", "-shm"] {
                let mut name = db.as_os_str().to_os_string();
                name.push(suffix);
                close_down(Path::new(&name));
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Takes from `file` the bits `FILE_MODE` does not give, when this user owns it (another
/// user reading it was given the right by its owner).
fn close_down(file: &Path) {
    let Ok(meta) = std::fs::metadata(file) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    // SAFETY: geteuid cannot fail.
    let mine = meta.uid() == unsafe { libc::geteuid() };
    if mode & !FILE_MODE != 0 && meta.is_file() && mine {
        match std::fs::set_permissions(file, Permissions::from_mode(mode & FILE_MODE)) {
            Ok(()) => log::info!(
                "{}: was mode {mode:o}, readable by others; now {:o}",
                file.display(),
                mode & FILE_MODE
            ),
            Err(e) => log::warn!(
                "{}: readable by others, and cannot be closed down: {e}",
                file.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_state_is_private_and_an_open_database_is_closed_down() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!((mode(&root.path().join("a")), mode(&dir)), (0o700, 0o700));
        let db = dir.join("x.db");
        prepare_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        std::fs::set_permissions(&db, Permissions::from_mode(0o644)).unwrap();
        prepare_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
