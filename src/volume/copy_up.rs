//! Copy-up: a new, empty volume mounted over an image path that has content receives that
//! content first (Docker's behaviour), with modes, ownership, symlinks and mtimes.
//!
//! The image side is never a joined path string: the mount target is resolved from the fd of
//! the container's root (its rootfs or the lower layer root) with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, and the tree is walked with
//! `openat(O_NOFOLLOW)` relative to directory fds, so `..` and symlinks in the image stay
//! inside it; symlinks are recreated as symlinks, never followed. The volume side is written
//! relative to the fd of its mountpoint, held under an exclusive `flock` while the volume is
//! checked empty and filled, so two containers starting together copy once.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{
    AtFlags, FileType, FlockOperation, Gid, Mode, OFlags, Stat, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;

use super::local::{Result, Volume, VolumeError};
use crate::image::unpack::confined;

/// Deepest image tree copied.
const MAX_DEPTH: usize = 512;

/// What [`copy_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyUp {
    /// The image's content is now in the volume.
    Copied,
    /// The volume already had content; nothing was touched.
    NotEmpty,
    /// The image has no directory at that path; nothing to copy.
    NothingInImage,
}

/// Copies the directory `image_path` of the image whose root is `root` into `volume` when the
/// volume is still empty; the volume's root takes the image directory's owner and mode.
pub fn copy_up(volume: &Volume, root: BorrowedFd<'_>, image_path: &str) -> Result<CopyUp> {
    let name = volume.name.as_str();
    let image_err = |path: &str| {
        let path = path.to_string();
        move |e: Errno| VolumeError::Image {
            name: name.to_string(),
            path,
            source: e.into(),
        }
    };
    let src = match resolve(root, image_path) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Ok(CopyUp::NothingInImage),
        Err(e) => return Err(image_err(image_path)(e)),
    };
    let src_st = rustix::fs::fstat(&src).map_err(image_err(image_path))?;
    let dest = rustix::fs::open(
        &volume.mountpoint,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| VolumeError::Io {
        name: name.to_string(),
        op: "open",
        path: volume.mountpoint.clone(),
        source: e.into(),
    })?;
    let dest_err = |path: &str| {
        let path = format!("{}/{}", volume.mountpoint.display(), path);
        move |e: Errno| VolumeError::Io {
            name: name.to_string(),
            op: "write",
            path: path.into(),
            source: e.into(),
        }
    };
    // Released when `dest` is closed.
    rustix::fs::flock(&dest, FlockOperation::LockExclusive).map_err(dest_err(""))?;
    if !confined::sorted_names(dest.as_fd())
        .map_err(dest_err(""))?
        .is_empty()
    {
        return Ok(CopyUp::NotEmpty);
    }
    let mut copy = Copy { volume: name };
    copy.dir(src.as_fd(), image_path, dest.as_fd(), "", 0)?;
    copy.attrs(dest.as_fd(), &src_st, "")?;
    Ok(CopyUp::Copied)
}

/// Resolves `path` as a directory inside `root` as if `root` were `/`.
fn resolve(root: BorrowedFd<'_>, path: &str) -> Result<OwnedFd, Errno> {
    confined::open_in_root(root, path.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY)
}

fn timespec<S: TryInto<i64>, N: TryInto<i64>>(sec: S, nsec: N) -> Timespec {
    Timespec {
        tv_sec: sec.try_into().unwrap_or(0),
        tv_nsec: nsec.try_into().unwrap_or(0),
    }
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: timespec(st.st_atime, st.st_atime_nsec),
        last_modification: timespec(st.st_mtime, st.st_mtime_nsec),
    }
}

/// Only root may give files away; anyone else keeps their own ownership.
fn chown_result(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::PERM) if !rustix::process::geteuid().is_root() => Ok(()),
        other => other,
    }
}

struct Copy<'a> {
    volume: &'a str,
}

impl Copy<'_> {
    fn src_err(&self, path: &str) -> impl FnOnce(Errno) -> VolumeError + use<'_> {
        let path = path.to_string();
        move |e| VolumeError::Image {
            name: self.volume.to_string(),
            path,
            source: e.into(),
        }
    }

    fn dest_err(&self, path: &str) -> impl FnOnce(Errno) -> VolumeError + use<'_> {
        let path = path.to_string();
        move |e| VolumeError::Io {
            name: self.volume.to_string(),
            op: "write",
            path: path.into(),
            source: e.into(),
        }
    }

    /// Owner, mode (after the owner: chown clears set-id bits) and times of a file or
    /// directory fd, from the image's stat.
    fn attrs(&mut self, fd: BorrowedFd<'_>, st: &Stat, path: &str) -> Result<()> {
        chown_result(rustix::fs::fchown(
            fd,
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        ))
        .map_err(self.dest_err(path))?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))
            .map_err(self.dest_err(path))?;
        rustix::fs::futimens(fd, &times(st)).map_err(self.dest_err(path))
    }

    fn dir(
        &mut self,
        src: BorrowedFd<'_>,
        src_path: &str,
        dest: BorrowedFd<'_>,
        dest_path: &str,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(VolumeError::TooDeep {
                name: self.volume.to_string(),
                path: src_path.to_string(),
                max: MAX_DEPTH,
            });
        }
        for name in confined::sorted_names(src).map_err(self.src_err(src_path))? {
            let child_src = format!("{}/{}", src_path.trim_end_matches('/'), name);
            let child_dest = format!("{dest_path}/{name}");
            let st = rustix::fs::statat(src, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(self.src_err(&child_src))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let sub_src = rustix::fs::openat(
                        src,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(self.src_err(&child_src))?;
                    rustix::fs::mkdirat(dest, name.as_str(), Mode::from_raw_mode(0o700))
                        .map_err(self.dest_err(&child_dest))?;
                    let sub_dest = rustix::fs::openat(
                        dest,
                        name.as_str(),
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(self.dest_err(&child_dest))?;
                    self.dir(
                        sub_src.as_fd(),
                        &child_src,
                        sub_dest.as_fd(),
                        &child_dest,
                        depth + 1,
                    )?;
                    // Last: the children's creation changed the directory's mtime.
                    self.attrs(sub_dest.as_fd(), &st, &child_dest)?;
                }
                FileType::RegularFile => {
                    let file_src = rustix::fs::openat(
                        src,
                        name.as_str(),
                        OFlags::RDONLY
                            | OFlags::NOFOLLOW
                            | OFlags::NOCTTY
                            | OFlags::NONBLOCK
                            | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(self.src_err(&child_src))?;
                    let file_dest = rustix::fs::openat(
                        dest,
                        name.as_str(),
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                    .map_err(self.dest_err(&child_dest))?;
                    let mut reader = fs::File::from(file_src);
                    let mut writer = fs::File::from(file_dest);
                    io::copy(&mut reader, &mut writer).map_err(|source| VolumeError::Io {
                        name: self.volume.to_string(),
                        op: "copy into",
                        path: child_dest.clone().into(),
                        source,
                    })?;
                    self.attrs(writer.as_fd(), &st, &child_dest)?;
                }
                FileType::Symlink => {
                    let target = rustix::fs::readlinkat(src, name.as_str(), Vec::new())
                        .map_err(self.src_err(&child_src))?;
                    rustix::fs::symlinkat(target.as_c_str(), dest, name.as_str())
                        .map_err(self.dest_err(&child_dest))?;
                    chown_result(rustix::fs::chownat(
                        dest,
                        name.as_str(),
                        Some(Uid::from_raw(st.st_uid)),
                        Some(Gid::from_raw(st.st_gid)),
                        AtFlags::SYMLINK_NOFOLLOW,
                    ))
                    .map_err(self.dest_err(&child_dest))?;
                    rustix::fs::utimensat(
                        dest,
                        name.as_str(),
                        &times(&st),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(self.dest_err(&child_dest))?;
                }
                // Devices, fifos and sockets: not volume content an image ships in practice.
                _ => tracing::debug!(
                    volume = self.volume,
                    path = child_src,
                    "copy-up skips a special file"
                ),
            }
        }
        Ok(())
    }
}
