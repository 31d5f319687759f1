//! Where the `--upgrade` handoff happens: the upgrade socket and the directory that protects
//! it. Pingora unlinks, binds and makes the socket world-writable, and a process that listens
//! there receives runoff's listening sockets: only runoff's user may be able to write its
//! directory.
//!
//! Must not: start with a socket in a directory others may write or own.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StartError;

/// The socket's path: the configured one, or `upgrade.sock` in `runoff-<uid>` under the
/// temporary directory (made 0700 when missing). Its directory must belong to this user and
/// be closed to group and others.
pub(super) fn socket(configured: Option<&Path>) -> Result<PathBuf, StartError> {
    let err = |m: String| StartError::UpgradeSock(m);
    let uid = fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| err(format!("cannot tell which user runs runoff: {e}")))?;
    let path = match configured {
        Some(p) => p.to_path_buf(),
        None => {
            let dir = std::env::temp_dir().join(format!("runoff-{uid}"));
            if !dir.exists() {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
            }
            dir.join("upgrade.sock")
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let meta = fs::metadata(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.uid() != uid || mode & 0o077 != 0 {
        return Err(err(format!(
            "{} is {} (mode {mode:o}): the directory of the upgrade socket must belong to runoff's user and be closed to others (chmod 700), or a local user could take the listeners over",
            dir.display(),
            if meta.uid() == uid { "open to others" } else { "another user's" },
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_must_sit_in_a_private_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let sock = dir.path().join("upgrade.sock");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(socket(Some(&sock)).ok(), Some(sock.clone()));
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
        let e = socket(Some(&sock)).expect_err("open directory");
        assert!(e.to_string().contains("closed to others"), "{e}");
        let default = socket(None).expect("the default directory");
        assert!(default.ends_with("upgrade.sock"));
    }
}
