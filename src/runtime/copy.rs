//! `cp` between the host and a container's root filesystem, confined by file descriptors.
//!
//! The container side is never a joined path string: its root is opened once (for a running
//! container `/proc/<pid>/root`, which shows its mount namespace, bind mounts included; for a
//! stopped one its overlay — image layers under `upper/` — mounted in a private mount namespace
//! of this process, [`mount_stopped`]), every container path is resolved from that fd with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` and symlinks planted in the
//! container stay inside it, and trees are walked with `openat(O_NOFOLLOW)` relative to the
//! directory fds. Docker's rules for the destination: an existing directory receives the
//! source under its own name, anything else is the new name of the copy.
//!
//! [`mount_stopped`] unshares this process's mount namespace: only a single-threaded caller
//! may use it, the hidden `flotilla shim cp` helper the daemon runs ([`subcommand`]).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::image::unpack::confined;
use crate::runtime::config::ANNOTATION_LAYERS;

/// Deepest tree copied (symlink-free recursion, but a container can still build deep trees).
const MAX_DEPTH: usize = 512;

/// Why a copy failed; each variant names the side and the path.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("container path {path}: {source}")]
    Container { path: String, source: io::Error },
    #[error("host path {path}: {source}")]
    Host { path: PathBuf, source: io::Error },
    #[error("container path {path}: not a regular file, directory or symlink")]
    Unsupported { path: String },
    #[error("{path}: tree deeper than {MAX_DEPTH} levels")]
    TooDeep { path: String },
    #[error("mount the stopped container's root filesystem: {step}: {reason}")]
    Mount { step: &'static str, reason: String },
}

type Result<T, E = CopyError> = std::result::Result<T, E>;

fn cerr(path: &str) -> impl FnOnce(Errno) -> CopyError + '_ {
    move |e| CopyError::Container {
        path: path.to_string(),
        source: e.into(),
    }
}

fn herr(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Host {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens a container root (`/proc/<pid>/root` or a mounted overlay) as a directory fd.
pub fn open_root(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CopyError::Host {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

/// Resolves `path` inside `root` as if `root` were `/`.
fn resolve(root: BorrowedFd<'_>, path: &str, flags: OFlags) -> Result<OwnedFd, Errno> {
    confined::open_in_root(root, path.as_bytes(), flags)
}

/// `a/b/c` → (`a/b`, `c`); the last component of a container path, `.`/`..` refused.
fn split_last(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((if parent.is_empty() { "/" } else { parent }, name))
}

/// Copies the container's `src` to the host's `dest`.
pub fn copy_out(root: BorrowedFd<'_>, src: &str, dest: &Path) -> Result<()> {
    let entry = resolve(root, src, OFlags::PATH | OFlags::NOFOLLOW).map_err(cerr(src))?;
    let st = rustix::fs::fstat(&entry).map_err(cerr(src))?;
    let name = split_last(src).map(|(_, n)| n.to_string());
    let target = match (fs::metadata(dest), name) {
        (Ok(m), Some(name)) if m.is_dir() => dest.join(name),
        (Ok(m), None) if m.is_dir() => dest.to_path_buf(),
        _ => dest.to_path_buf(),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let dir = resolve(
                root,
                src,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW,
            )
            .map_err(cerr(src))?;
            dir_out(dir.as_fd(), src, &target, st.st_mode, 0)
        }
        FileType::RegularFile => {
            let file = resolve(
                root,
                src,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK,
            )
            .map_err(cerr(src))?;
            file_out(file, src, &target)
        }
        FileType::Symlink => {
            let link = rustix::fs::readlinkat(&entry, "", Vec::new()).map_err(cerr(src))?;
            let _ = fs::remove_file(&target);
            std::os::unix::fs::symlink(std::ffi::OsStr::new(&*link.to_string_lossy()), &target)
                .map_err(herr(&target))
        }
        _ => Err(CopyError::Unsupported {
            path: src.to_string(),
        }),
    }
}

fn file_out(file: OwnedFd, src: &str, target: &Path) -> Result<()> {
    let st = rustix::fs::fstat(&file).map_err(cerr(src))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(CopyError::Unsupported {
            path: src.to_string(),
        });
    }
    let mut reader = fs::File::from(file);
    let mut out = fs::File::create(target).map_err(herr(target))?;
    io::copy(&mut reader, &mut out).map_err(herr(target))?;
    out.set_permissions(fs::Permissions::from_mode(st.st_mode & 0o7777))
        .map_err(herr(target))
}

fn dir_out(dir: BorrowedFd<'_>, src: &str, target: &Path, mode: u32, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(CopyError::TooDeep {
            path: src.to_string(),
        });
    }
    match fs::create_dir(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && target.is_dir() => {}
        Err(e) => return Err(herr(target)(e)),
    }
    let _ = fs::set_permissions(target, fs::Permissions::from_mode(mode & 0o7777));
    for name in confined::sorted_names(dir).map_err(cerr(src))? {
        let child_src = format!("{}/{}", src.trim_end_matches('/'), name);
        let child = target.join(&name);
        let st = rustix::fs::statat(dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(cerr(&child_src))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    dir,
                    name.as_str(),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(cerr(&child_src))?;
                dir_out(sub.as_fd(), &child_src, &child, st.st_mode, depth + 1)?;
            }
            FileType::RegularFile => {
                let file = rustix::fs::openat(
                    dir,
                    name.as_str(),
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NOCTTY
                        | OFlags::NONBLOCK
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(cerr(&child_src))?;
                file_out(file, &child_src, &child)?;
            }
            FileType::Symlink => {
                let link = rustix::fs::readlinkat(dir, name.as_str(), Vec::new())
                    .map_err(cerr(&child_src))?;
                let _ = fs::remove_file(&child);
                std::os::unix::fs::symlink(&*link.to_string_lossy(), &child)
                    .map_err(herr(&child))?;
            }
            // Devices, fifos and sockets are skipped, as `docker cp` to a host directory does
            // not recreate them without privileges either.
            _ => {}
        }
    }
    Ok(())
}

/// Copies the host's `src` to the container's `dest`.
pub fn copy_in(root: BorrowedFd<'_>, src: &Path, dest: &str) -> Result<()> {
    let meta = fs::symlink_metadata(src).map_err(herr(src))?;
    let src_name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // An existing directory receives the source under its own name.
    let (parent, name, parent_path) = match resolve(root, dest, OFlags::DIRECTORY | OFlags::RDONLY)
    {
        Ok(dir) if !src_name.is_empty() => (dir, src_name, dest.to_string()),
        _ => {
            let Some((parent, name)) = split_last(dest) else {
                return Err(CopyError::Container {
                    path: dest.to_string(),
                    source: io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
                });
            };
            let dir =
                resolve(root, parent, OFlags::DIRECTORY | OFlags::RDONLY).map_err(cerr(parent))?;
            (dir, name.to_string(), parent.to_string())
        }
    };
    let path = format!("{}/{}", parent_path.trim_end_matches('/'), name);
    entry_in(parent.as_fd(), &name, &path, src, &meta, 0)
}

fn entry_in(
    parent: BorrowedFd<'_>,
    name: &str,
    path: &str,
    src: &Path,
    meta: &fs::Metadata,
    depth: usize,
) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(CopyError::TooDeep {
            path: path.to_string(),
        });
    }
    let mode = Mode::from_raw_mode(meta.mode() & 0o7777);
    let ft = meta.file_type();
    if ft.is_dir() {
        match rustix::fs::mkdirat(parent, name, mode) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(cerr(path)(e)),
        }
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(cerr(path))?;
        let _ = rustix::fs::fchmod(&dir, mode);
        let mut children: Vec<_> = fs::read_dir(src)
            .map_err(herr(src))?
            .collect::<io::Result<Vec<_>>>()
            .map_err(herr(src))?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let child_src = child.path();
            let child_meta = fs::symlink_metadata(&child_src).map_err(herr(&child_src))?;
            let child_name = child.file_name().to_string_lossy().into_owned();
            let child_path = format!("{}/{child_name}", path.trim_end_matches('/'));
            entry_in(
                dir.as_fd(),
                &child_name,
                &child_path,
                &child_src,
                &child_meta,
                depth + 1,
            )?;
        }
        Ok(())
    } else if ft.is_symlink() {
        let link = fs::read_link(src).map_err(herr(src))?;
        replace_non_dir(parent, name, path)?;
        rustix::fs::symlinkat(link.as_path(), parent, name).map_err(cerr(path))
    } else if ft.is_file() {
        let mut input = fs::File::open(src).map_err(herr(src))?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW;
        let out = match rustix::fs::openat(parent, name, flags | OFlags::CLOEXEC, mode) {
            // A symlink (or something else) in the way is replaced, never followed.
            Err(Errno::LOOP) | Err(Errno::ISDIR) | Err(Errno::NXIO) => {
                replace_non_dir(parent, name, path)?;
                rustix::fs::openat(parent, name, flags | OFlags::CLOEXEC, mode)
            }
            other => other,
        }
        .map_err(cerr(path))?;
        let mut out = fs::File::from(out);
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(herr(src)(e)),
            };
            out.write_all(&buf[..n])
                .map_err(|source| CopyError::Container {
                    path: path.to_string(),
                    source,
                })?;
        }
        rustix::fs::fchmod(&out, mode).map_err(cerr(path))
    } else {
        Err(CopyError::Host {
            path: src.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "not a regular file, directory or symlink",
            ),
        })
    }
}

/// Removes what is at `name` unless it is a directory (then the copy fails, like Docker's).
fn replace_non_dir(parent: BorrowedFd<'_>, name: &str, path: &str) -> Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(cerr(path)(e)),
    }
}

/// Exit status of `flotilla shim cp` when the container path does not exist.
pub const EXIT_NOT_FOUND: i32 = 3;
/// Exit status of `flotilla shim cp` for a container path that cannot be a destination.
pub const EXIT_BAD_PATH: i32 = 4;

/// The hidden `flotilla shim cp out|in STATE_DIR FROM TO` (the daemon's helper: a fresh
/// single-threaded process, so that a stopped container's overlay can be mounted in a private
/// mount namespace of its own). `out`: the container's FROM to the host's TO; `in`: the host's
/// FROM to the container's TO. A running container is reached through `/proc/<pid>/root`.
pub fn subcommand(args: &[std::ffi::OsString]) -> u8 {
    let [direction, dir, from, to] = args else {
        eprintln!("flotilla: usage: flotilla shim cp out|in STATE_DIR FROM TO");
        return 2;
    };
    let into = match direction.to_str() {
        Some("in") => true,
        Some("out") => false,
        _ => {
            eprintln!("flotilla: shim cp: expected out or in, not {direction:?}");
            return 2;
        }
    };
    let dir = Path::new(dir);
    let result = (|| {
        let st = crate::runtime::state::read(dir).map_err(|e| CopyError::Mount {
            step: "read the container's state",
            reason: e.to_string(),
        })?;
        let running = matches!(
            st.status,
            crate::runtime::state::Status::Running | crate::runtime::state::Status::Paused
        );
        let root = match st.pid.filter(|_| running) {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/root")),
            None => mount_stopped(dir, into)?,
        };
        let root = open_root(&root)?;
        if into {
            copy_in(root.as_fd(), Path::new(from), &to.to_string_lossy())
        } else {
            copy_out(root.as_fd(), &from.to_string_lossy(), Path::new(to))
        }
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("flotilla: {e}");
            match &e {
                CopyError::Container { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    EXIT_NOT_FOUND as u8
                }
                CopyError::Container { source, .. }
                    if matches!(
                        source.kind(),
                        io::ErrorKind::InvalidInput | io::ErrorKind::NotADirectory
                    ) =>
                {
                    EXIT_BAD_PATH as u8
                }
                CopyError::Unsupported { .. } => EXIT_BAD_PATH as u8,
                _ => 1,
            }
        }
    }
}

/// The image layer directories of the container of state dir `dir` (bottom first), from the
/// annotation of its `config.json`.
pub fn layers_of(dir: &Path) -> Result<Vec<PathBuf>> {
    let path = dir.join("config.json");
    let fail = |reason: String| CopyError::Mount {
        step: "read the layers",
        reason: format!("{}: {reason}", path.display()),
    };
    let spec = oci_spec::runtime::Spec::load(&path).map_err(|e| fail(e.to_string()))?;
    let text = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_LAYERS))
        .cloned()
        .unwrap_or_else(|| "[]".to_string());
    let layers: Vec<String> = serde_json::from_str(&text).map_err(|e| fail(e.to_string()))?;
    Ok(layers.into_iter().map(PathBuf::from).collect())
}

/// Mounts the stopped container's root filesystem (its layers, `upper/` on top) on its
/// `rootfs/` inside a new private mount namespace of this (single-threaded) process, so the
/// mount disappears with the process whatever happens. `writable`: `upper/` is the overlay's
/// upper dir (a copy into the container lands there); else it is the top lower dir.
pub fn mount_stopped(dir: &Path, writable: bool) -> Result<PathBuf> {
    let layers = layers_of(dir)?;
    let mount_err = |step: &'static str| {
        move |e: Errno| CopyError::Mount {
            step,
            reason: io::Error::from(e).to_string(),
        }
    };
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| CopyError::Mount {
        step: "unshare the mount namespace",
        reason: e.to_string(),
    })?;
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(mount_err("make the mounts private"))?;
    let upper = dir.join("upper");
    let work = dir.join("work");
    let target = dir.join("rootfs");
    let mut lowers: Vec<String> = layers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let data = if writable {
        format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            upper.display(),
            work.display()
        )
    } else {
        lowers.insert(0, upper.to_string_lossy().into_owned());
        if lowers.len() == 1 {
            // Without image layers: the upper dir alone, bound read-only.
            rustix::mount::mount_bind(&upper, &target).map_err(mount_err("bind"))?;
            rustix::mount::mount_remount(
                &target,
                rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::RDONLY,
                "",
            )
            .map_err(mount_err("remount read-only"))?;
            return Ok(target);
        }
        format!("lowerdir={}", lowers.join(":"))
    };
    let data = std::ffi::CString::new(data).map_err(|e| CopyError::Mount {
        step: "mount overlay",
        reason: e.to_string(),
    })?;
    rustix::mount::mount(
        "overlay",
        &target,
        "overlay",
        rustix::mount::MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(mount_err("mount overlay"))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_components() {
        assert_eq!(split_last("/etc/hosts"), Some(("/etc", "hosts")));
        assert_eq!(split_last("/x/"), Some(("/", "x")));
        assert_eq!(split_last("file"), Some(("/", "file")));
        assert_eq!(split_last("/"), None);
        assert_eq!(split_last("/a/.."), None);
    }

    #[test]
    fn copies_stay_inside_the_root() {
        let root_dir = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let r = root_dir.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/secret"), "inside").unwrap();
        // A planted symlink pointing at the host's /etc resolves inside the root.
        std::os::unix::fs::symlink("/etc", r.join("escape")).unwrap();
        let root = open_root(r).unwrap();
        copy_out(root.as_fd(), "/escape/secret", &host.path().join("got")).unwrap();
        assert_eq!(
            fs::read_to_string(host.path().join("got")).unwrap(),
            "inside"
        );
        copy_out(root.as_fd(), "/../../etc/secret", &host.path().join("got2")).unwrap();
        assert_eq!(
            fs::read_to_string(host.path().join("got2")).unwrap(),
            "inside"
        );
        // Into the container through the same symlink: lands in the root's /etc.
        fs::write(host.path().join("new"), "hello").unwrap();
        copy_in(root.as_fd(), &host.path().join("new"), "/escape/").unwrap();
        assert_eq!(fs::read_to_string(r.join("etc/new")).unwrap(), "hello");
        // A symlink at the destination name is replaced, not followed.
        std::os::unix::fs::symlink("/etc/passwd-nonexistent-target", r.join("etc/link")).unwrap();
        copy_in(root.as_fd(), &host.path().join("new"), "/etc/link").unwrap();
        assert!(
            !fs::symlink_metadata(r.join("etc/link"))
                .unwrap()
                .is_symlink()
        );
        // Directories both ways.
        fs::create_dir_all(host.path().join("tree/sub")).unwrap();
        fs::write(host.path().join("tree/sub/f"), "deep").unwrap();
        copy_in(root.as_fd(), &host.path().join("tree"), "/").unwrap();
        assert_eq!(fs::read_to_string(r.join("tree/sub/f")).unwrap(), "deep");
        copy_out(root.as_fd(), "/tree", &host.path().join("back")).unwrap();
        assert_eq!(
            fs::read_to_string(host.path().join("back/sub/f")).unwrap(),
            "deep"
        );
    }
}
