//! Watch's `sync` into a running container: files written and removed under its root
//! (`/proc/<pid>/root`), confined like `cp` ([`crate::image::unpack::confined`]: every path
//! resolved from the root fd with `openat2(RESOLVE_IN_ROOT)`, the last component handled with
//! `*at` calls that never follow it). A file is written to a temporary name beside its target,
//! then renamed over it, so a server in the container reads the old or the new content, never
//! half of it. Missing parent directories are created; what is created gets the owner given
//! (the container's user, as Compose's sync gives files the image user). A deleted path that
//! is a directory is removed with its tree.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use crate::image::unpack::confined;

/// Deepest tree removed.
const MAX_DEPTH: usize = 512;

/// One change to apply: the absolute path in the container, and its new content (mode bits
/// with it), or `None` when it was deleted.
#[derive(Debug, Clone)]
pub struct Change {
    pub path: String,
    pub content: Option<(Vec<u8>, u32)>,
}

#[derive(Debug, thiserror::Error)]
#[error("container path {path}: {step}: {source}")]
pub struct SyncError {
    pub path: String,
    pub step: &'static str,
    pub source: std::io::Error,
}

fn err<'a>(path: &'a str, step: &'static str) -> impl FnOnce(Errno) -> SyncError + 'a {
    move |e| SyncError {
        path: path.to_string(),
        step,
        source: e.into(),
    }
}

/// `/a/b/c` → (`/a/b`, `c`); `None` for `/`, `.` and `..` last components.
fn split_last(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let i = trimmed.rfind('/')?;
    let (parent, name) = (&trimmed[..i], &trimmed[i + 1..]);
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((if parent.is_empty() { "/" } else { parent }, name))
}

/// Applies `changes` in order under `root`; `owner` (uid, gid) for what is created.
pub fn apply(
    root: BorrowedFd<'_>,
    changes: &[Change],
    owner: Option<(u32, u32)>,
) -> Result<(), SyncError> {
    for c in changes {
        let Some((parent, name)) = split_last(&c.path) else {
            return Err(SyncError {
                path: c.path.clone(),
                step: "check",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not an absolute path naming a file",
                ),
            });
        };
        match &c.content {
            Some((data, mode)) => {
                let dir = parent_dir(root, parent, owner)?;
                write_file(dir.as_fd(), name, &c.path, data, *mode, owner)?;
            }
            None => {
                let dir = match confined::open_in_root(
                    root,
                    parent.as_bytes(),
                    OFlags::DIRECTORY | OFlags::RDONLY,
                ) {
                    Ok(d) => d,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                    Err(e) => return Err(err(parent, "open")(e)),
                };
                remove(dir.as_fd(), name, &c.path, 0)?;
            }
        }
    }
    Ok(())
}

/// Opens directory `path`, creating what is missing of it (owned by `owner`).
fn parent_dir(
    root: BorrowedFd<'_>,
    path: &str,
    owner: Option<(u32, u32)>,
) -> Result<OwnedFd, SyncError> {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY;
    match confined::open_in_root(root, path.as_bytes(), flags) {
        Ok(d) => return Ok(d),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(err(path, "open")(e)),
    }
    let Some((up, name)) = split_last(path) else {
        return confined::open_in_root(root, path.as_bytes(), flags).map_err(err(path, "open"));
    };
    let above = parent_dir(root, up, owner)?;
    match rustix::fs::mkdirat(&above, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => {
            if let Some((u, g)) = owner {
                let _ = rustix::fs::chownat(
                    &above,
                    name,
                    Some(Uid::from_raw(u)),
                    Some(Gid::from_raw(g)),
                    AtFlags::SYMLINK_NOFOLLOW,
                );
            }
        }
        Err(Errno::EXIST) => {}
        Err(e) => return Err(err(path, "create directory")(e)),
    }
    rustix::fs::openat(
        &above,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(path, "open"))
}

fn write_file(
    dir: BorrowedFd<'_>,
    name: &str,
    path: &str,
    data: &[u8],
    mode: u32,
    owner: Option<(u32, u32)>,
) -> Result<(), SyncError> {
    let tmp = format!(".{name}.flotilla-sync-{}", std::process::id());
    let mode = Mode::from_raw_mode(mode & 0o7777);
    let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode,
    )
    .map_err(err(path, "create"))?;
    let result = (|| {
        let mut f = std::fs::File::from(fd);
        f.write_all(data).map_err(|source| SyncError {
            path: path.to_string(),
            step: "write",
            source,
        })?;
        rustix::fs::fchmod(&f, mode).map_err(err(path, "chmod"))?;
        if let Some((u, g)) = owner {
            rustix::fs::fchown(&f, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                .map_err(err(path, "chown"))?;
        }
        rustix::fs::renameat(dir, tmp.as_str(), dir, name).map_err(err(path, "rename"))
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Removes `name` in `dir`, a directory with its tree; a missing one is fine.
fn remove(dir: BorrowedFd<'_>, name: &str, path: &str, depth: usize) -> Result<(), SyncError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(err(path, "remove")(e)),
    }
    if depth > MAX_DEPTH {
        return Err(err(path, "remove")(Errno::LOOP));
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(path, "open"))?;
    for child in confined::sorted_names(sub.as_fd()).map_err(err(path, "read directory"))? {
        let child_path = format!("{}/{child}", path.trim_end_matches('/'));
        remove(sub.as_fd(), &child, &child_path, depth + 1)?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(err(path, "remove")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_components() {
        assert_eq!(split_last("/a/b"), Some(("/a", "b")));
        assert_eq!(split_last("/a"), Some(("/", "a")));
        assert_eq!(split_last("/a/b/"), Some(("/a", "b")));
        assert_eq!(split_last("/"), None);
        assert_eq!(split_last("/a/.."), None);
        assert_eq!(split_last("rel"), None);
    }

    #[test]
    fn writes_creates_parents_and_removes_trees() {
        let tmp = tempfile::tempdir().unwrap();
        let root =
            rustix::fs::open(tmp.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let changes = [
            Change {
                path: "/www/sub/index.html".into(),
                content: Some((b"hello".to_vec(), 0o640)),
            },
            Change {
                path: "/www/other".into(),
                content: Some((b"x".to_vec(), 0o644)),
            },
        ];
        apply(root.as_fd(), &changes, None).unwrap();
        let f = tmp.path().join("www/sub/index.html");
        assert_eq!(std::fs::read(&f).unwrap(), b"hello");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // A symlink planted at the target is replaced, never followed.
        std::fs::remove_file(tmp.path().join("www/other")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("www/other")).unwrap();
        apply(root.as_fd(), &changes[1..], None).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("www/other")).unwrap(), b"x");
        let gone = [
            Change {
                path: "/www/sub".into(),
                content: None,
            },
            Change {
                path: "/www/missing".into(),
                content: None,
            },
        ];
        apply(root.as_fd(), &gone, None).unwrap();
        assert!(!tmp.path().join("www/sub").exists());
        assert!(tmp.path().join("www/other").exists());
    }
}
