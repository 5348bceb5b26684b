//! The fd-confined filesystem primitives of the unpacker: resolving a layer path with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` from the layer root's fd, creating missing
//! parents one component at a time under such fds, and removing a tree without following
//! symlinks. Nothing here takes a path string that is joined onto the host filesystem.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

pub(super) fn errno_io(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// Opens `path` under `root`, resolved by the kernel as if `root` were `/`
/// (`openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`): `..` and symlinks can never leave it.
/// The one fd-confined open shared by the unpacker, `cp` and volume copy-up.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let start = path.iter().position(|b| *b != b'/').unwrap_or(path.len());
    let rel: &[u8] = if start == path.len() {
        b"."
    } else {
        &path[start..]
    };
    let mut attempts = 0;
    loop {
        match rustix::fs::openat2(
            root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            // openat2 asks for a retry when a concurrent rename could have raced "..".
            Err(Errno::AGAIN) if attempts < 8 => attempts += 1,
            other => return other,
        }
    }
}

/// The entries of a directory but `.` and `..`, sorted.
pub fn sorted_names(dir: BorrowedFd<'_>) -> Result<Vec<String>, Errno> {
    let mut names = Vec::new();
    for item in rustix::fs::Dir::read_from(dir)? {
        let item = item?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Opens a directory of the layer by path, resolved by the kernel as if the layer root were `/`.
pub(super) fn open_dir_in_root(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    open_in_root(root, rel, OFlags::DIRECTORY | OFlags::RDONLY)
}

/// Opens (creating missing directories, mode 0755, like Docker) the parent directory `rel`.
pub(super) fn ensure_dir(root: BorrowedFd<'_>, rel: &[u8]) -> Result<OwnedFd, Errno> {
    match open_dir_in_root(root, rel) {
        Err(Errno::NOENT) if !rel.is_empty() => {
            let (up, last) = match rel.iter().rposition(|b| *b == b'/') {
                Some(i) => (&rel[..i], &rel[i + 1..]),
                None => (&rel[..0], rel),
            };
            let parent = ensure_dir(root, up)?;
            if last != b".." {
                match rustix::fs::mkdirat(&parent, last, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
            }
            open_dir_in_root(root, rel)
        }
        other => other,
    }
}

/// Deepest directory tree [`remove_all_at`] descends into: symlinks let an archive build trees
/// deeper than `PATH_MAX`, and recursion must not exhaust the stack or the fd table.
const MAX_REMOVE_DEPTH: usize = 1024;

/// Removes `name` in `dir`, recursively when it is a directory (never following symlinks).
pub(super) fn remove_all_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    remove_all_at_depth(dir, name, 0)
}

fn remove_all_at_depth(dir: BorrowedFd<'_>, name: &CStr, depth: usize) -> Result<(), Errno> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(Errno::NAMETOOLONG);
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for item in rustix::fs::Dir::read_from(&sub)? {
        let item = item?;
        let child = item.file_name();
        if child != c"." && child != c".." {
            names.push(child.to_owned());
        }
    }
    for child in names {
        remove_all_at_depth(sub.as_fd(), &child, depth + 1)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}
