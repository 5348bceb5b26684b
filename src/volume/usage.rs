//! Disk usage of a directory tree (`system df`, `volume prune`'s reclaimed space): the sizes of
//! its files, each hard-linked file once, symlinks counted as links (never followed), mounts
//! below the root not crossed. Directories are opened with `O_NOFOLLOW` relative to their
//! parent, so a tree changed while it is walked cannot lead the walk elsewhere.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// How deep a walk goes; deeper directories are not counted.
const MAX_DEPTH: usize = 256;

fn open_dir(dir: BorrowedFd<'_>, name: &str) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The bytes the files under `root` take (apparent sizes); 0 when `root` does not exist.
/// Entries that vanish while walked are skipped.
pub fn tree_size(root: &Path) -> io::Result<u64> {
    let fd = match rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::NOENT => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let dev = rustix::fs::fstat(&fd)?.st_dev;
    let mut walk = Walk {
        dev,
        seen: HashSet::new(),
        total: 0,
    };
    walk.dir(fd.as_fd(), 0)?;
    Ok(walk.total)
}

struct Walk {
    dev: u64,
    /// Inodes of files with several links, counted once.
    seen: HashSet<u64>,
    total: u64,
}

impl Walk {
    fn dir(&mut self, dir: BorrowedFd<'_>, depth: usize) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Ok(());
        }
        // Names first, so one descriptor per level is open while descending.
        let mut names = Vec::new();
        for item in rustix::fs::Dir::read_from(dir)? {
            let item = item?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        for name in names {
            let st = match rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) if e == rustix::io::Errno::NOENT => continue,
                Err(e) => return Err(e.into()),
            };
            if st.st_dev != self.dev {
                continue;
            }
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let sub = match open_dir(dir, &name) {
                        Ok(fd) => fd,
                        Err(e) if e == rustix::io::Errno::NOENT => continue,
                        // Replaced by something else since the stat: not a directory now.
                        Err(e)
                            if e == rustix::io::Errno::NOTDIR || e == rustix::io::Errno::LOOP =>
                        {
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    // A mount point shows the mounted tree's device once opened.
                    if rustix::fs::fstat(&sub)?.st_dev != self.dev {
                        continue;
                    }
                    self.dir(sub.as_fd(), depth + 1)?;
                }
                _ => {
                    if st.st_nlink > 1 && !self.seen.insert(st.st_ino) {
                        continue;
                    }
                    self.total = self
                        .total
                        .saturating_add(u64::try_from(st.st_size).unwrap_or(0));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_files_once_and_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("one"), vec![0u8; 1000]).unwrap();
        std::fs::write(root.join("a/b/two"), vec![0u8; 24]).unwrap();
        std::fs::hard_link(root.join("one"), root.join("a/one-again")).unwrap();
        // A big tree outside, reached only through symlinks.
        std::fs::write(dir.path().join("outside"), vec![0u8; 100_000]).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("a/up")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("file-link")).unwrap();
        let links = dir.path().as_os_str().len() + dir.path().join("outside").as_os_str().len();
        assert_eq!(tree_size(&root).unwrap(), 1024 + links as u64);
        assert_eq!(tree_size(&dir.path().join("missing")).unwrap(), 0);
        // The root itself is never followed when it is a symlink.
        std::os::unix::fs::symlink(&root, dir.path().join("root-link")).unwrap();
        assert!(tree_size(&dir.path().join("root-link")).is_err());
    }
}
