//! The state's modes, in one place: whatever the umask, other users can neither read the
//! database (every ban's log line, user names included, and the admin's password hashes)
//! nor enter a directory pyfilter creates for it.
//!
//! The state belongs to its owner and the state's group: the daemon runs as root, the web
//! admin as the `pyfilter` user of group `pyfilter`, and both write the database (the
//! installed state directory is root:pyfilter 2770, the daemon's unit has `UMask=0007`).
//! So the directory is created `DIR_MODE` and the database file `FILE_MODE`, less the
//! umask, before SQLite opens it; SQLite gives its `-wal` and `-shm` files the database's
//! own mode. Bits for others are never given: a database left readable by others by an
//! older version is closed down at the next open. An existing directory is left as it is:
//! it may be shared (`/tmp`, `/var/lib`).

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The state directory pyfilter creates, at most (less the umask).
pub const DIR_MODE: u32 = 0o770;
/// The database and its `-wal` and `-shm` files, at most (less the umask).
pub const FILE_MODE: u32 = 0o660;

/// Creates `dir` and its missing parents `DIR_MODE` less the umask.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    // DIR_MODE gives others nothing, so the umask can only take more away.
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates the database file `FILE_MODE` less the umask when it does not exist; closes
/// down one (and its `-wal`, `-shm`) that others may read.
pub fn prepare_file(db: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(db)
    {
        // FILE_MODE gives others nothing, so the umask can only take more away.
        Ok(_) => Ok(()),
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

    /// This process's umask (read by setting it and putting it back).
    fn umask() -> u32 {
        // SAFETY: umask cannot fail; it is put back at once.
        let old = unsafe { libc::umask(0o022) };
        unsafe { libc::umask(old) };
        old
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_state_is_private_and_an_open_database_is_closed_down() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir(&dir).unwrap();
        let umask = umask();
        let a = mode(&root.path().join("a"));
        assert_eq!((a, mode(&dir)), (0o770 & !umask, 0o770 & !umask));
        assert_eq!(a & 0o007, 0, "others cannot enter");
        let db = dir.join("x.db");
        prepare_file(&db).unwrap();
        assert_eq!(mode(&db), 0o660 & !umask);
        std::fs::set_permissions(&db, Permissions::from_mode(0o664)).unwrap();
        prepare_file(&db).unwrap();
        assert_eq!(mode(&db), 0o660, "others' bits taken, the group's kept");
    }
}
