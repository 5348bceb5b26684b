//! Turning tar entries into filesystem objects inside the layer root: regular files (streamed,
//! zeros left as holes), directories (mode and times applied last), symlinks, hardlinks (target
//! resolved inside the root), device nodes and fifos, overlayfs whiteouts, ownership, times and
//! PAX xattrs. Every object is created relative to a parent fd from [`super::confined`].

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags, makedev};
use rustix::io::Errno;

use super::confined::{ensure_dir, errno_io, open_dir_in_root, remove_all_at};
use super::{
    COPY_BUFFER, OVERLAY_OPAQUE_XATTR, UnpackError, UnpackOptions, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};

type Result<T, E = UnpackError> = std::result::Result<T, E>;

static ZEROS: [u8; COPY_BUFFER] = [0; COPY_BUFFER];

/// Metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Timespec,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A directory whose mode and times are applied at the end, once its children exist.
struct Deferred {
    parent: Vec<u8>,
    name: Vec<u8>,
    dev: u64,
    ino: u64,
    mode: u32,
    times: Timestamps,
}

pub(super) struct Unpacker<'a> {
    root: BorrowedFd<'a>,
    options: &'a UnpackOptions,
    deferred: Vec<Deferred>,
}

/// An entry's path split into the parent (as the kernel will resolve it) and a plain final name.
struct Split {
    parent: Vec<u8>,
    name: Vec<u8>,
}

/// Splits an archive path. Empty and `.` components are dropped; `..` stays in the parent, where
/// `RESOLVE_IN_ROOT` clamps it at the layer root. `None` means the entry is the root itself.
fn split_path(path: &[u8]) -> Result<Option<Split>, &'static str> {
    if path.contains(&0) {
        return Err("contains a NUL byte");
    }
    let components: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let Some((name, parents)) = components.split_last() else {
        return Ok(None);
    };
    if *name == b".." {
        return Err("the final component is '..'");
    }
    Ok(Some(Split {
        parent: parents.join(&b'/'),
        name: name.to_vec(),
    }))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
    }
    let (sec, nsec) = if negative {
        if nanos == 0 {
            (-secs, 0)
        } else {
            (-secs - 1, 1_000_000_000 - nanos)
        }
    } else {
        (secs, nanos)
    };
    Some(Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    })
}

/// Whether an xattr from the archive may be applied. The overlay namespaces are ours: a layer
/// must not forge opaque markers, redirects or metacopy records.
fn xattr_allowed(name: &[u8]) -> bool {
    !(name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay."))
}

/// Errors that mean "this filesystem or this user cannot store that xattr": skipped, as Docker does.
fn xattr_ignorable(e: Errno) -> bool {
    e == Errno::NOTSUP || e == Errno::PERM
}

impl<'a> Unpacker<'a> {
    pub(super) fn new(root: BorrowedFd<'a>, options: &'a UnpackOptions) -> Unpacker<'a> {
        Unpacker {
            root,
            options,
            deferred: Vec::new(),
        }
    }

    pub(super) fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let path_bytes = entry.path_bytes().into_owned();
        let path = lossy(&path_bytes);
        let kind = entry.header().entry_type();
        let size = entry.size();
        if size > self.options.max_entry_size {
            return Err(UnpackError::EntryTooLarge {
                path,
                size,
                limit: self.options.max_entry_size,
            });
        }
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let meta = self.meta(entry, &path)?;
        let split = split_path(&path_bytes).map_err(|reason| UnpackError::InvalidName {
            path: path.clone(),
            reason,
        })?;
        let Some(split) = split else {
            // The layer root itself ("./"): only a directory makes sense there.
            if kind.is_dir() {
                return self.root_dir(&path, &meta);
            }
            return Err(UnpackError::InvalidName {
                path,
                reason: "a non-directory entry names the layer root",
            });
        };

        let parent =
            ensure_dir(self.root, &split.parent).map_err(|e| UnpackError::ResolveParent {
                path: path.clone(),
                source: errno_io(e),
            })?;
        let parent = parent.as_fd();

        if let Some(target) = split.name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(parent, &path, target, &meta);
        }

        let name =
            std::ffi::CString::new(split.name.clone()).map_err(|_| UnpackError::InvalidName {
                path: path.clone(),
                reason: "contains a NUL byte",
            })?;
        use tar::EntryType as T;
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.regular(parent, &name, &path, entry, size, &meta)
            }
            T::Directory => self.directory(parent, &split, &name, &path, &meta),
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        path: path.clone(),
                        reason: "symlink without a target".into(),
                    })?;
                self.symlink(parent, &name, &path, &target, &meta)
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::InvalidHeader {
                        path: path.clone(),
                        reason: "hardlink without a target".into(),
                    })?;
                self.hardlink(parent, &name, &path, &target)
            }
            T::Char | T::Block | T::Fifo => self.node(parent, &name, &path, entry, kind, &meta),
            other => Err(UnpackError::UnsupportedType {
                path,
                kind: format!("{:?}", other),
            }),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, path: &str) -> Result<Meta> {
        let invalid = |reason: String| UnpackError::InvalidHeader {
            path: path.to_string(),
            reason,
        };
        let header = entry.header();
        let mode = header.mode().map_err(|e| invalid(e.to_string()))? & 0o7777;
        let uid = header.uid().map_err(|e| invalid(e.to_string()))?;
        let gid = header.gid().map_err(|e| invalid(e.to_string()))?;
        let uid = u32::try_from(uid).map_err(|_| invalid(format!("uid {uid} out of range")))?;
        let gid = u32::try_from(gid).map_err(|_| invalid(format!("gid {gid} out of range")))?;
        let secs = header.mtime().map_err(|e| invalid(e.to_string()))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(secs)
                .map_err(|_| invalid(format!("mtime {secs} out of range")))?,
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(|e| invalid(format!("pax records: {e}")))?
        {
            for record in pax {
                let record = record.map_err(|e| invalid(format!("pax record: {e}")))?;
                let key = record.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if !name.is_empty() && xattr_allowed(name) {
                        xattrs.push((name.to_vec(), record.value_bytes().to_vec()));
                    }
                } else if key == b"mtime" {
                    if let Some(t) = parse_pax_time(record.value_bytes()) {
                        mtime = t;
                    }
                } else if key == b"atime" {
                    atime = parse_pax_time(record.value_bytes());
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            atime: atime.unwrap_or(mtime),
            mtime,
            xattrs,
        })
    }

    fn times(meta: &Meta) -> Timestamps {
        Timestamps {
            last_access: meta.atime,
            last_modification: meta.mtime,
        }
    }

    /// Removes whatever is at `name` (a directory recursively); a missing name is fine.
    fn remove(&self, parent: BorrowedFd<'_>, name: &CStr, path: &str) -> Result<()> {
        match remove_all_at(parent, name) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(UnpackError::RemoveExisting {
                path: path.to_string(),
                source: errno_io(e),
            }),
        }
    }

    /// Runs `create`; if the name exists, removes it and tries once more.
    fn create_replacing(
        &self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &str,
        what: &'static str,
        mut create: impl FnMut() -> Result<(), Errno>,
    ) -> Result<()> {
        let first = create();
        let result = match first {
            Err(Errno::EXIST) => {
                self.remove(parent, name, path)?;
                create()
            }
            other => other,
        };
        result.map_err(|e| UnpackError::Create {
            path: path.to_string(),
            what,
            source: errno_io(e),
        })
    }

    fn set_xattrs(&self, fd: BorrowedFd<'_>, path: &str, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_slice(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e) if xattr_ignorable(e) => {}
                Err(e) => {
                    return Err(UnpackError::Metadata {
                        path: path.to_string(),
                        what: "xattr",
                        source: errno_io(e),
                    });
                }
            }
        }
        Ok(())
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, path: &str, meta: &Meta) -> Result<()> {
        if !self.options.same_owner {
            return Ok(());
        }
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
        )
        .map_err(|e| UnpackError::Metadata {
            path: path.to_string(),
            what: "owner",
            source: errno_io(e),
        })
    }

    fn chown_at(&self, parent: BorrowedFd<'_>, name: &CStr, path: &str, meta: &Meta) -> Result<()> {
        if !self.options.same_owner {
            return Ok(());
        }
        rustix::fs::chownat(
            parent,
            name,
            Some(rustix::fs::Uid::from_raw(meta.uid)),
            Some(rustix::fs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| UnpackError::Metadata {
            path: path.to_string(),
            what: "owner",
            source: errno_io(e),
        })
    }

    fn times_at(&self, parent: BorrowedFd<'_>, name: &CStr, path: &str, meta: &Meta) -> Result<()> {
        rustix::fs::utimensat(parent, name, &Self::times(meta), AtFlags::SYMLINK_NOFOLLOW).map_err(
            |e| UnpackError::Metadata {
                path: path.to_string(),
                what: "times",
                source: errno_io(e),
            },
        )
    }

    fn regular<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &str,
        entry: &mut tar::Entry<'_, R>,
        size: u64,
        meta: &Meta,
    ) -> Result<()> {
        let mut fd = None;
        self.create_replacing(parent, name, path, "file", || {
            fd = Some(rustix::fs::openat(
                parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?);
            Ok(())
        })?;
        let Some(fd) = fd else {
            return Err(UnpackError::Create {
                path: path.to_string(),
                what: "file",
                source: io::Error::other("no file descriptor"),
            });
        };
        let mut file = File::from(fd);
        let written = copy_sparse(entry, &mut file, size, path)?;
        if written != size {
            return Err(UnpackError::Truncated {
                path: path.to_string(),
                expected: size,
                actual: written,
            });
        }
        let fd = file.as_fd();
        self.chown_fd(fd, path, meta)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode)).map_err(|e| {
            UnpackError::Metadata {
                path: path.to_string(),
                what: "mode",
                source: errno_io(e),
            }
        })?;
        // After chown: chown clears security.capability.
        self.set_xattrs(fd, path, meta)?;
        rustix::fs::futimens(fd, &Self::times(meta)).map_err(|e| UnpackError::Metadata {
            path: path.to_string(),
            what: "times",
            source: errno_io(e),
        })
    }

    fn directory(
        &mut self,
        parent: BorrowedFd<'_>,
        split: &Split,
        name: &CStr,
        path: &str,
        meta: &Meta,
    ) -> Result<()> {
        let mkdir = || rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700));
        match mkdir() {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let is_dir = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                    .unwrap_or(false);
                if !is_dir {
                    self.remove(parent, name, path)?;
                    mkdir().map_err(|e| UnpackError::Create {
                        path: path.to_string(),
                        what: "directory",
                        source: errno_io(e),
                    })?;
                }
            }
            Err(e) => {
                return Err(UnpackError::Create {
                    path: path.to_string(),
                    what: "directory",
                    source: errno_io(e),
                });
            }
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| UnpackError::Create {
            path: path.to_string(),
            what: "directory",
            source: errno_io(e),
        })?;
        self.dir_meta(
            dir.as_fd(),
            split.parent.clone(),
            split.name.clone(),
            path,
            meta,
        )
    }

    fn root_dir(&mut self, path: &str, meta: &Meta) -> Result<()> {
        self.dir_meta(self.root, Vec::new(), Vec::new(), path, meta)
    }

    /// Owner and xattrs now; mode and times once the directory's children are written.
    fn dir_meta(
        &mut self,
        dir: BorrowedFd<'_>,
        parent: Vec<u8>,
        name: Vec<u8>,
        path: &str,
        meta: &Meta,
    ) -> Result<()> {
        self.chown_fd(dir, path, meta)?;
        self.set_xattrs(dir, path, meta)?;
        let st = rustix::fs::fstat(dir).map_err(|e| UnpackError::Metadata {
            path: path.to_string(),
            what: "mode",
            source: errno_io(e),
        })?;
        self.deferred.push(Deferred {
            parent,
            name,
            dev: st.st_dev,
            ino: st.st_ino,
            mode: meta.mode,
            times: Self::times(meta),
        });
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &str,
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        if target.contains(&0) {
            return Err(UnpackError::InvalidHeader {
                path: path.to_string(),
                reason: "symlink target contains a NUL byte".into(),
            });
        }
        // The target is stored as written: it is only ever followed through openat2 IN_ROOT.
        self.create_replacing(parent, name, path, "symlink", || {
            rustix::fs::symlinkat(target, parent, name)
        })?;
        self.chown_at(parent, name, path, meta)?;
        self.times_at(parent, name, path, meta)
    }

    fn hardlink(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &str,
        target: &[u8],
    ) -> Result<()> {
        let target_error = |source: io::Error| UnpackError::HardlinkTarget {
            path: path.to_string(),
            target: lossy(target),
            source,
        };
        let split = split_path(target)
            .map_err(|reason| target_error(io::Error::new(io::ErrorKind::InvalidInput, reason)))?
            .ok_or_else(|| {
                target_error(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the target is the layer root",
                ))
            })?;
        let target_dir =
            open_dir_in_root(self.root, &split.parent).map_err(|e| target_error(errno_io(e)))?;
        let target_name = std::ffi::CString::new(split.name)
            .map_err(|_| target_error(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let target_stat = rustix::fs::statat(&target_dir, &target_name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| target_error(errno_io(e)))?;
        if FileType::from_raw_mode(target_stat.st_mode) == FileType::Directory {
            return Err(target_error(io::Error::from(Errno::ISDIR)));
        }
        if let Ok(existing) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
            && existing.st_dev == target_stat.st_dev
            && existing.st_ino == target_stat.st_ino
        {
            return Ok(());
        }
        self.create_replacing(parent, name, path, "hardlink", || {
            rustix::fs::linkat(&target_dir, &target_name, parent, name, AtFlags::empty())
        })
    }

    fn node<R: Read>(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &CStr,
        path: &str,
        entry: &tar::Entry<'_, R>,
        kind: tar::EntryType,
        meta: &Meta,
    ) -> Result<()> {
        let file_type = match kind {
            tar::EntryType::Char => FileType::CharacterDevice,
            tar::EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if file_type != FileType::Fifo && !self.options.devices {
            return Ok(());
        }
        let header = entry.header();
        let invalid = |reason: String| UnpackError::InvalidHeader {
            path: path.to_string(),
            reason,
        };
        // A fifo has no device numbers (writers often leave the fields empty).
        let (major, minor) = if file_type == FileType::Fifo {
            (0, 0)
        } else {
            let major = header
                .device_major()
                .map_err(|e| invalid(e.to_string()))?
                .unwrap_or(0);
            let minor = header
                .device_minor()
                .map_err(|e| invalid(e.to_string()))?
                .unwrap_or(0);
            (major, minor)
        };
        let mode = Mode::from_raw_mode(meta.mode);
        self.create_replacing(parent, name, path, "device node", || {
            rustix::fs::mknodat(parent, name, file_type, mode, makedev(major, minor))
        })?;
        self.chown_at(parent, name, path, meta)?;
        // The node was just created by us in a confined directory and is not a symlink.
        rustix::fs::chmodat(parent, name, mode, AtFlags::empty()).map_err(|e| {
            UnpackError::Metadata {
                path: path.to_string(),
                what: "mode",
                source: errno_io(e),
            }
        })?;
        self.times_at(parent, name, path, meta)
    }

    /// `.wh..wh..opq` → opaque xattr on the parent; `.wh.<name>` → a 0/0 character device.
    fn whiteout(
        &mut self,
        parent: BorrowedFd<'_>,
        path: &str,
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let whiteout_error = |source: io::Error| UnpackError::Whiteout {
            path: path.to_string(),
            source,
        };
        if target == &WHITEOUT_OPAQUE.as_bytes()[WHITEOUT_PREFIX.len()..] {
            return rustix::fs::fsetxattr(parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| whiteout_error(errno_io(e)));
        }
        if target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs) means nothing to overlayfs.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(UnpackError::InvalidName {
                path: path.to_string(),
                reason: "a whiteout must name a file",
            });
        }
        let name = std::ffi::CString::new(target).map_err(|_| UnpackError::InvalidName {
            path: path.to_string(),
            reason: "contains a NUL byte",
        })?;
        self.remove(parent, &name, path)?;
        rustix::fs::mknodat(
            parent,
            &name,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        )
        .map_err(|e| whiteout_error(errno_io(e)))?;
        self.chown_at(parent, &name, path, meta)?;
        self.times_at(parent, &name, path, meta)
    }

    /// Applies the directories' modes and times, now that nothing more is written into them.
    pub(super) fn finish(&mut self) -> Result<()> {
        for dir in self.deferred.drain(..).rev() {
            let path = lossy(&dir.name);
            let fd = if dir.name.is_empty() {
                match rustix::fs::openat(
                    self.root,
                    c".",
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(_) => continue,
                }
            } else {
                let Ok(parent) = open_dir_in_root(self.root, &dir.parent) else {
                    continue;
                };
                match rustix::fs::openat(
                    &parent,
                    dir.name.as_slice(),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Replaced or removed by a later entry: nothing to apply.
                    Err(_) => continue,
                }
            };
            let same = rustix::fs::fstat(&fd)
                .map(|st| st.st_dev == dir.dev && st.st_ino == dir.ino)
                .unwrap_or(false);
            if !same {
                continue;
            }
            let failed = |what: &'static str, e: Errno| UnpackError::Metadata {
                path: path.clone(),
                what,
                source: errno_io(e),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                .map_err(|e| failed("mode", e))?;
            rustix::fs::futimens(&fd, &dir.times).map_err(|e| failed("times", e))?;
        }
        Ok(())
    }
}

/// Streams `size` bytes of entry data into `file`, leaving holes where whole chunks are zeros.
/// Returns how many bytes the entry delivered.
fn copy_sparse<R: Read>(entry: &mut R, file: &mut File, size: u64, path: &str) -> Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut written: u64 = 0;
    let mut hole = false;
    while written < size {
        let want = usize::try_from((size - written).min(COPY_BUFFER as u64)).unwrap_or(COPY_BUFFER);
        let n = match entry.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(UnpackError::ReadEntry {
                    path: path.to_string(),
                    source,
                });
            }
        };
        let chunk = &buf[..n];
        let write_error = |source: io::Error| UnpackError::Write {
            path: path.to_string(),
            source,
        };
        if chunk == &ZEROS[..n] {
            file.seek(SeekFrom::Current(n as i64))
                .map_err(write_error)?;
            hole = true;
        } else {
            file.write_all(chunk).map_err(write_error)?;
            hole = false;
        }
        written += n as u64;
    }
    if hole {
        file.set_len(written).map_err(|source| UnpackError::Write {
            path: path.to_string(),
            source,
        })?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        let s = split_path(b"./a/b/c").unwrap().unwrap();
        assert_eq!(
            (s.parent.as_slice(), s.name.as_slice()),
            (&b"a/b"[..], &b"c"[..])
        );
        let s = split_path(b"/etc/x").unwrap().unwrap();
        assert_eq!(
            (s.parent.as_slice(), s.name.as_slice()),
            (&b"etc"[..], &b"x"[..])
        );
        let s = split_path(b"../../etc/x").unwrap().unwrap();
        assert_eq!(s.parent, b"../../etc");
        let s = split_path(b"dir/").unwrap().unwrap();
        assert_eq!(
            (s.parent.as_slice(), s.name.as_slice()),
            (&b""[..], &b"dir"[..])
        );
        assert!(split_path(b"./").unwrap().is_none());
        assert!(split_path(b"/").unwrap().is_none());
        assert!(split_path(b"a/..").is_err());
        assert!(split_path(b"a\0b").is_err());
    }

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time(b"-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time(b"x").is_none());
        assert!(parse_pax_time(b"1.x").is_none());
    }

    #[test]
    fn overlay_xattrs_from_archives_are_refused() {
        assert!(!xattr_allowed(b"trusted.overlay.opaque"));
        assert!(!xattr_allowed(b"trusted.overlay.redirect"));
        assert!(!xattr_allowed(b"user.overlay.opaque"));
        assert!(xattr_allowed(b"security.capability"));
        assert!(xattr_allowed(b"user.foo"));
    }
}
